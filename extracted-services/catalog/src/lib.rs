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
//!
//! `GET`/`PUT /internal/settings` ([`settings`]) switch the demo's planted
//! price-rounding bug on and off while the service runs.

pub mod inventory_client;
pub mod products;
pub mod settings;

use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use reqwest::Url;

use service_runtime::app::{json_api, BoundApp};
use service_runtime::{Database, DatabaseError, DatabaseUrl, Migrations};
use sqlx::migrate::Migrator;

use crate::inventory_client::{ClientBuildError, InventoryClient};
use crate::settings::{Settings, SharedSettings};

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
    /// The runtime switches (`/internal/settings`).
    pub settings: SharedSettings,
}

/// The app as a deployable: [`Application::build`] opens its database and
/// binds its listener, returning a [`BoundApp`] ready to serve.
#[derive(Debug)]
pub struct Application;

impl Application {
    /// Builds the inventory client, opens and migrates the database, and
    /// binds the listener (so that [`BoundApp::local_addr`] is known before
    /// serving). The monolith is not contacted: the service starts, and
    /// answers what it can, while the monolith is down. Every runtime switch
    /// starts off.
    pub async fn build(config: Config) -> Result<BoundApp, StartError> {
        Self::build_with_settings(config, Settings::default()).await
    }

    /// Like [`Application::build`], with the runtime switches starting as
    /// `settings` (the demo starts with its planted bug on).
    ///
    /// A separate constructor rather than a [`Config`] field, so that every
    /// existing `Config { .. }` literal keeps compiling unchanged.
    pub async fn build_with_settings(config: Config, settings: Settings) -> Result<BoundApp, StartError> {
        let inventory = InventoryClient::new(config.monolith_url, config.upstream_timeout)?;
        let db = Database::connect(&config.database_url, &MIGRATIONS).await?;
        let router = router(AppState {
            db: db.clone(),
            inventory,
            settings: SharedSettings::new(settings),
        });
        Ok(BoundApp::bind(config.listen, router, db, config.grace_period).await?)
    }
}

/// Every route of the catalog service.
pub fn router(state: AppState) -> Router {
    json_api(products::routes().merge(settings::routes()), state)
}
