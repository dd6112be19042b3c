//! The catalog service: the first capability extracted from the monolith.
//!
//! It serves the same public routes as the monolith's catalog
//! (`GET /products`, `GET /products/{id}`, `PUT /products/{id}`) with the
//! same JSON, so the facade can route them here without clients noticing.
//! Behind that contract it is a different system: products live in the
//! service's own database under a modernized schema (`title`,
//! `unit_price_cents`), while stock stays in the monolith, which the service
//! reads and sets through the monolith's inventory endpoints
//! ([`inventory_client`]). Every such call has a timeout; when the monolith
//! cannot answer, requests that need stock fail fast with a 503 naming the
//! inventory dependency.

pub mod inventory_client;
pub mod products;

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use reqwest::Url;
use service_runtime::api_error::{method_not_allowed_fallback, not_found_fallback};
use service_runtime::request_id::with_request_tracing;
use service_runtime::{server, Database, DatabaseError, DatabaseUrl, Migrations};
use sqlx::migrate::Migrator;
use tokio::net::TcpListener;

use crate::inventory_client::{ClientBuildError, InventoryClient};

static SQLITE_MIGRATIONS: Migrator = sqlx::migrate!("../../migrations/catalog/sqlite");
static POSTGRES_MIGRATIONS: Migrator = sqlx::migrate!("../../migrations/catalog/postgres");

/// The catalog service's schema, per engine.
pub static MIGRATIONS: Migrations = Migrations {
    sqlite: &SQLITE_MIGRATIONS,
    postgres: &POSTGRES_MIGRATIONS,
};

/// The default listen address: the port after the monolith's 8081.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8082";

/// What the catalog service needs to start.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where to listen; port 0 picks a free port.
    pub listen: SocketAddr,
    /// The service's own database, holding products.
    pub database_url: DatabaseUrl,
    /// Base URL of the monolith, whose inventory endpoints own stock.
    pub monolith_url: Url,
    /// The most one call to the monolith may take, connecting included.
    pub upstream_timeout: Duration,
    /// How long in-flight requests may finish after shutdown begins.
    pub grace_period: Duration,
}

/// Errors that stop the catalog service from starting.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The database could not be opened or migrated.
    #[error(transparent)]
    Database(#[from] DatabaseError),
    /// The listen address could not be bound.
    #[error(transparent)]
    Bind(#[from] std::io::Error),
    /// The client for the monolith's inventory could not be built.
    #[error(transparent)]
    Inventory(#[from] ClientBuildError),
}

/// Shared state of every handler.
#[derive(Clone, Debug, axum::extract::FromRef)]
pub struct AppState {
    /// The service's database: products.
    pub db: Database,
    /// The monolith's inventory: stock.
    pub inventory: InventoryClient,
}

/// A bound, migrated, ready-to-serve catalog service.
pub struct Application {
    listener: TcpListener,
    state: AppState,
    grace_period: Duration,
}

impl Application {
    /// Builds the inventory client, opens and migrates the database, and
    /// binds the listener (so that [`Application::local_addr`] is known before
    /// serving). The monolith is not contacted: the service starts, and
    /// answers what it can, while the monolith is down.
    pub async fn build(config: Config) -> Result<Self, StartError> {
        let inventory = InventoryClient::new(config.monolith_url, config.upstream_timeout)?;
        let db = Database::connect(&config.database_url, &MIGRATIONS).await?;
        let listener = server::bind(config.listen).await?;
        Ok(Self {
            listener,
            state: AppState { db, inventory },
            grace_period: config.grace_period,
        })
    }

    /// The address actually bound.
    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 0)))
    }

    /// The database the service serves from.
    pub fn database(&self) -> &Database {
        &self.state.db
    }

    /// Serves until `shutdown` resolves, then drains.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let db = self.state.db.clone();
        let result = server::serve(self.listener, router(self.state), shutdown, self.grace_period).await;
        db.close().await;
        result
    }
}

/// Every route of the catalog service.
pub fn router(state: AppState) -> Router {
    let routes = Router::new()
        .merge(service_runtime::health::routes())
        .merge(products::routes())
        .fallback(not_found_fallback)
        .method_not_allowed_fallback(method_not_allowed_fallback)
        .with_state(state);
    with_request_tracing(routes)
}
