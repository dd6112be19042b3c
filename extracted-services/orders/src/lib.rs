//! The orders service: the sample shop's second extraction.
//!
//! It owns orders and their lines in its own database and serves the same
//! public routes as the monolith's orders capability. Stock and payments stay
//! in the monolith, so placing an order is a saga ([`saga`]) over the
//! monolith's API ([`monolith_client`]). During the dual-write phase every
//! order is also written back into the monolith's tables ([`dual_write`]),
//! with optional fault injection so the two databases can be made to differ.
//! `GET`/`PUT /internal/settings` ([`settings`]) change that fault rate and
//! switch a simulated outage while the service runs. `POST /orders` honours
//! `Idempotency-Key`, and [`recovery`] compensates the orders of sagas that
//! a dead process left pending, on start and on a timer.

pub mod dual_write;
pub mod monolith_client;
pub mod order_store;
pub mod recovery;
mod routes;
pub mod saga;
pub mod settings;

use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use reqwest::Url;

use service_runtime::app::{json_api, BoundApp};
use service_runtime::{Database, DatabaseError, DatabaseUrl, Migrations};
use sqlx::migrate::Migrator;

use crate::dual_write::{DualWriteConfig, DualWriter};
use crate::monolith_client::MonolithClient;
use crate::order_store::OrderStore;
use crate::recovery::{RecoveryConfig, SagaRecovery};
use crate::settings::Outage;

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
    /// The simulated outage switch (`/internal/settings`).
    pub outage: Outage,
    /// Saga recovery, for its counters (`/internal/recovery`).
    pub recovery: SagaRecovery,
}

/// The app as a deployable: [`Application::build`] opens its database and
/// binds its listener, returning a [`BoundApp`] ready to serve.
#[derive(Debug)]
pub struct Application;

impl Application {
    /// Validates the settings, opens and migrates the database, and binds;
    /// saga recovery runs with its defaults ([`RecoveryConfig::default`]).
    pub async fn build(config: Config) -> Result<BoundApp, StartError> {
        Self::build_with_recovery(config, RecoveryConfig::default()).await
    }

    /// [`Application::build`] with saga recovery's settings. Recovery runs
    /// beside the server: a pass once it serves, then every interval.
    pub async fn build_with_recovery(
        config: Config,
        recovery: RecoveryConfig,
    ) -> Result<BoundApp, StartError> {
        config.dual_write.validate().map_err(StartError::Config)?;
        if config.monolith_timeout.is_zero() {
            return Err(StartError::Config(
                "the monolith timeout must be above zero".to_owned(),
            ));
        }
        recovery
            .validate(config.monolith_timeout)
            .map_err(StartError::Config)?;
        if recovery.pending_timeout < config.monolith_timeout.saturating_mul(10) {
            tracing::warn!(
                pending_timeout = ?recovery.pending_timeout,
                monolith_timeout = ?config.monolith_timeout,
                "the saga recovery timeout is shorter than a slow saga may take; \
                 such sagas will be compensated and answered with a 500"
            );
        }
        let db = Database::connect(&config.database_url, &MIGRATIONS).await?;
        let monolith =
            MonolithClient::new(config.monolith_url, config.monolith_timeout).map_err(StartError::Client)?;
        let orders = OrderStore::new(db.clone());
        let recovery = SagaRecovery::new(orders.clone(), monolith.clone(), recovery);
        let router = router(AppState {
            orders,
            dual_writer: DualWriter::new(monolith.clone(), config.dual_write),
            monolith,
            db: db.clone(),
            outage: Outage::default(),
            recovery: recovery.clone(),
        });
        Ok(BoundApp::bind(config.listen, router, db, config.grace_period)
            .await?
            .with_background(recovery.run_periodically()))
    }
}

/// Every route of the service, behind the outage switch.
pub fn router(state: AppState) -> Router {
    let outage = state.outage.clone();
    // Outermost, so that during an outage even `/health` and unknown paths
    // answer 503, as a dead process would fail them all.
    json_api(routes::routes().merge(settings::routes()), state).layer(axum::middleware::from_fn_with_state(
        outage,
        settings::outage_guard,
    ))
}
