//! The orders service: the sample shop's second extraction.
//!
//! It owns orders and their lines in its own database and serves the same
//! public routes as the monolith's orders capability. Stock and payments stay
//! in the monolith, so placing an order is a saga ([`saga`]) over the
//! monolith's API ([`monolith_client`]). During the dual-write phase every
//! order is also written back into the monolith's tables ([`dual_write`]),
//! with optional fault injection so the two databases can be made to differ.

pub mod dual_write;
pub mod monolith_client;
pub mod order_store;
mod routes;
pub mod saga;

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

use crate::dual_write::{DualWriteConfig, DualWriter};
use crate::monolith_client::MonolithClient;
use crate::order_store::OrderStore;

static SQLITE_MIGRATIONS: Migrator = sqlx::migrate!("../../migrations/orders/sqlite");
static POSTGRES_MIGRATIONS: Migrator = sqlx::migrate!("../../migrations/orders/postgres");

/// The service's schema, per engine.
pub static MIGRATIONS: Migrations = Migrations {
    sqlite: &SQLITE_MIGRATIONS,
    postgres: &POSTGRES_MIGRATIONS,
};

/// The default listen address, documented in the README.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8083";

/// What the orders service needs to start.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where to listen; port 0 picks a free port.
    pub listen: SocketAddr,
    /// The service's own database.
    pub database_url: DatabaseUrl,
    /// The monolith's base URL (stock, payments, customers, dual writes).
    pub monolith_url: Url,
    /// Time limit of each call to the monolith.
    pub monolith_timeout: Duration,
    /// Dual writes to the monolith.
    pub dual_write: DualWriteConfig,
    /// How long in-flight requests may finish after shutdown begins.
    pub grace_period: Duration,
}

/// Errors that stop the service from starting.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A setting is out of range.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// The database could not be opened or migrated.
    #[error(transparent)]
    Database(#[from] DatabaseError),
    /// The HTTP client could not be built.
    #[error("cannot build the HTTP client for the monolith")]
    Client(#[source] reqwest::Error),
    /// The listen address could not be bound.
    #[error(transparent)]
    Bind(#[from] std::io::Error),
}

/// Shared state of every handler.
#[derive(Clone, Debug, axum::extract::FromRef)]
pub struct AppState {
    /// The service's database (for health checks).
    pub db: Database,
    /// The order tables.
    pub orders: OrderStore,
    /// The monolith's API.
    pub monolith: MonolithClient,
    /// Dual writes into the monolith.
    pub dual_writer: DualWriter,
}

/// A bound, migrated, ready-to-serve orders service.
pub struct Application {
    listener: TcpListener,
    state: AppState,
    grace_period: Duration,
}

impl Application {
    /// Validates the settings, opens and migrates the database, and binds.
    pub async fn build(config: Config) -> Result<Self, StartError> {
        config.dual_write.validate().map_err(StartError::Config)?;
        if config.monolith_timeout.is_zero() {
            return Err(StartError::Config(
                "the monolith timeout must be above zero".to_owned(),
            ));
        }
        let db = Database::connect(&config.database_url, &MIGRATIONS).await?;
        let monolith =
            MonolithClient::new(config.monolith_url, config.monolith_timeout).map_err(StartError::Client)?;
        let listener = server::bind(config.listen).await?;
        Ok(Self {
            listener,
            state: AppState {
                orders: OrderStore::new(db.clone()),
                dual_writer: DualWriter::new(monolith.clone(), config.dual_write),
                monolith,
                db,
            },
            grace_period: config.grace_period,
        })
    }

    /// The address actually bound.
    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 0)))
    }

    /// The service's database.
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

/// Every route of the service.
pub fn router(state: AppState) -> Router {
    let routes = Router::new()
        .merge(service_runtime::health::routes())
        .merge(routes::routes())
        .fallback(not_found_fallback)
        .method_not_allowed_fallback(method_not_allowed_fallback)
        .with_state(state);
    with_request_tracing(routes)
}
