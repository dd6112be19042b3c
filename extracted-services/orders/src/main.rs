//! `orders-service`: runs the extracted orders service on its own.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use orders_service::dual_write::DualWriteConfig;
use orders_service::recovery::{
    RecoveryConfig, DEFAULT_CLAIM_LEASE, DEFAULT_INTERVAL, DEFAULT_PENDING_TIMEOUT,
};
use orders_service::{Application, Config, DEFAULT_LISTEN};
use reqwest::Url;
use service_runtime::telemetry::{self, LogFormat};
use service_runtime::{server, DatabaseUrl};

/// The extracted orders service: orders in their own database, placed
/// through a saga against the monolith and dual-written back to it.
#[derive(Parser)]
#[command(version)]
struct Args {
    /// Address to listen on.
    #[arg(long, env = "ORDERS_LISTEN", default_value = DEFAULT_LISTEN)]
    listen: SocketAddr,
    /// Database: a SQLite path or `sqlite://` URL, or a `postgres://` URL.
    #[arg(long, env = "ORDERS_DATABASE_URL", default_value = "data/orders.db")]
    database_url: DatabaseUrl,
    /// The monolith's base URL.
    #[arg(long, env = "MONOLITH_URL", default_value = "http://127.0.0.1:8081/")]
    monolith_url: Url,
    /// Time limit of each call to the monolith, in milliseconds.
    #[arg(long, default_value_t = 2000)]
    monolith_timeout_ms: u64,
    /// Also write every order into the monolith's database (dual-write phase).
    #[arg(long, env = "ORDERS_DUAL_WRITE")]
    dual_write: bool,
    /// Share of dual writes to drop on purpose (0.0 to 1.0), to make the
    /// databases diverge in demos and tests.
    #[arg(long, env = "ORDERS_DUAL_WRITE_FAULT_RATE", default_value_t = 0.0)]
    dual_write_fault_rate: f64,
    /// Seconds after which a pending order is taken for the remains of a
    /// dead saga and compensated by saga recovery.
    #[arg(long, env = "ORDERS_RECOVERY_TIMEOUT_SECS", default_value_t = DEFAULT_PENDING_TIMEOUT.as_secs())]
    recovery_timeout_secs: u64,
    /// Seconds between two saga recovery passes (the first runs at start).
    #[arg(long, env = "ORDERS_RECOVERY_INTERVAL_SECS", default_value_t = DEFAULT_INTERVAL.as_secs())]
    recovery_interval_secs: u64,
    /// Seconds a recovering instance holds an order before another may try.
    #[arg(long, env = "ORDERS_RECOVERY_LEASE_SECS", default_value_t = DEFAULT_CLAIM_LEASE.as_secs())]
    recovery_lease_secs: u64,
    /// Seconds in-flight requests may take to finish on shutdown.
    #[arg(long, default_value_t = 10)]
    grace_seconds: u64,
    /// `human` or `json` log lines.
    #[arg(long, env = "STRANGLER_LOG_FORMAT", default_value = "human")]
    log_format: LogFormat,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let telemetry = telemetry::init(args.log_format, "info", "orders-service")?;
    let recovery = RecoveryConfig {
        pending_timeout: Duration::from_secs(args.recovery_timeout_secs),
        interval: Duration::from_secs(args.recovery_interval_secs),
        claim_lease: Duration::from_secs(args.recovery_lease_secs),
    };
    let app = Application::build_with_recovery(
        Config {
            listen: args.listen,
            database_url: args.database_url.clone(),
            monolith_url: args.monolith_url,
            monolith_timeout: Duration::from_millis(args.monolith_timeout_ms),
            dual_write: DualWriteConfig {
                enabled: args.dual_write,
                fault_rate: args.dual_write_fault_rate,
            },
            grace_period: Duration::from_secs(args.grace_seconds),
        },
        recovery,
    )
    .await
    .with_context(|| format!("starting the orders service on {}", args.database_url))?;
    tracing::info!(addr = %app.local_addr(), "orders service listening");
    let served = app
        .run_until_stopped(server::shutdown_signal())
        .await
        .context("serving the orders service");
    // The last spans are exported once the requests have drained.
    telemetry.shutdown().await;
    served
}
