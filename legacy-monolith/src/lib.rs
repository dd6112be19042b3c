//! The legacy monolith: the sample application a team migrates away from.
//!
//! A small but realistic shop — catalog, customers, inventory, orders with
//! lines, payments — in one process with ONE database, where placing an order
//! is one local transaction across all of them. That transaction is exactly
//! what becomes a saga once orders move to their own service, which is why
//! the monolith also exposes the inventory and payment endpoints the
//! extracted orders service calls, and an internal endpoint that receives the
//! service's dual writes.
//!
//! For chaos tests the monolith can also be started with runtime switches
//! ([`settings`]: an injected latency at `/internal/settings`), which are
//! absent unless asked for.

pub mod catalog;
pub mod customers;
pub mod inventory;
pub mod orders;
pub mod payments;
pub mod seed;
pub mod settings;

use std::net::SocketAddr;
use std::time::Duration;

use axum::middleware::from_fn_with_state;
use axum::Router;

use service_runtime::app::{json_api, BoundApp};
use service_runtime::idempotency;
use service_runtime::{Database, DatabaseError, DatabaseUrl, Migrations};
use sqlx::migrate::Migrator;

use crate::settings::{Settings, SharedSettings};

static SQLITE_MIGRATIONS: Migrator = sqlx::migrate!("../migrations/monolith/sqlite");
static POSTGRES_MIGRATIONS: Migrator = sqlx::migrate!("../migrations/monolith/postgres");

/// The monolith's schema, per engine.
pub static MIGRATIONS: Migrations = Migrations {
    sqlite: &SQLITE_MIGRATIONS,
    postgres: &POSTGRES_MIGRATIONS,
};

/// The default listen address, documented in the README.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8081";

/// How often idempotency keys older than their retention are purged.
pub const KEY_PURGE_INTERVAL: Duration = Duration::from_secs(60 * 60);

/// What the monolith needs to start.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where to listen; port 0 picks a free port.
    pub listen: SocketAddr,
    /// The one database of every capability.
    pub database_url: DatabaseUrl,
    /// Load the sample data set when the database is empty.
    pub seed: bool,
    /// How long in-flight requests may finish after shutdown begins.
    pub grace_period: Duration,
}

/// Errors that stop the monolith from starting.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The database could not be opened or migrated.
    #[error(transparent)]
    Database(#[from] DatabaseError),
    /// The listen address could not be bound.
    #[error(transparent)]
    Bind(#[from] std::io::Error),
    /// Loading the sample data failed; nothing of it was kept.
    #[error("cannot load the sample data")]
    Seed(#[source] sqlx::Error),
}

/// Shared state of every handler.
#[derive(Clone, Debug, axum::extract::FromRef)]
pub struct AppState {
    /// The shop's database.
    pub db: Database,
}

/// The app as a deployable: [`Application::build`] opens its database and
/// binds its listener, returning a [`BoundApp`] ready to serve.
#[derive(Debug)]
pub struct Application;

impl Application {
    /// Opens and migrates the database, seeds it if asked, and binds the
    /// listener (so that [`BoundApp::local_addr`] is known before serving).
    /// While it serves, expired idempotency keys are purged every
    /// [`KEY_PURGE_INTERVAL`].
    pub async fn build(config: Config) -> Result<BoundApp, StartError> {
        Self::start(config, None).await
    }

    /// Like [`Application::build`], with the runtime switches of
    /// [`settings`] mounted at `/internal/settings` and starting as
    /// `settings` (chaos tests: `legacy-monolith --fault-switches`).
    ///
    /// A separate constructor rather than a [`Config`] field, so that every
    /// existing `Config { .. }` literal keeps compiling unchanged.
    pub async fn build_with_settings(config: Config, settings: Settings) -> Result<BoundApp, StartError> {
        Self::start(config, Some(SharedSettings::new(settings))).await
    }

    async fn start(config: Config, settings: Option<SharedSettings>) -> Result<BoundApp, StartError> {
        let db = Database::connect(&config.database_url, &MIGRATIONS).await?;
        if config.seed {
            let report = seed::seed_if_empty(&db, seed::SeedSize::default())
                .await
                .map_err(StartError::Seed)?;
            tracing::info!(?report, "sample data");
        }
        let state = AppState { db: db.clone() };
        let router = match settings {
            None => router(state),
            Some(settings) => router_with_settings(state, settings),
        };
        let purge = idempotency::purge_periodically(db.clone(), KEY_PURGE_INTERVAL);
        Ok(BoundApp::bind(config.listen, router, db, config.grace_period)
            .await?
            .with_background(purge))
    }
}

/// Every route of the monolith.
pub fn router(state: AppState) -> Router {
    json_api(shop_routes(), state)
}

/// Every route of the monolith, every shop route held for the latency in
/// `settings`, and `/internal/settings` to change it ([`settings`]).
pub fn router_with_settings(state: AppState, settings: SharedSettings) -> Router {
    let routes = shop_routes()
        .layer(from_fn_with_state(settings.clone(), settings::slow_down))
        .merge(settings::routes(settings));
    json_api(routes, state)
}

fn shop_routes() -> Router<AppState> {
    Router::new()
        .merge(catalog::routes())
        .merge(customers::routes())
        .merge(inventory::routes())
        .merge(orders::routes())
        .merge(payments::routes())
}
