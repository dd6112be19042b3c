//! `catalog-service`: runs the extracted catalog on its own.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use catalog_service::{Application, Config, DEFAULT_LISTEN};
use clap::Parser;
use reqwest::Url;
use service_runtime::telemetry::{self, LogFormat};
use service_runtime::{server, DatabaseUrl};

/// The catalog service extracted from the sample shop: products in its own
/// database, stock read from and written to the monolith's inventory.
#[derive(Parser)]
#[command(version)]
struct Args {
    /// Address to listen on.
    #[arg(long, env = "CATALOG_LISTEN", default_value = DEFAULT_LISTEN)]
    listen: SocketAddr,
    /// Database: a SQLite path or `sqlite://` URL, or a `postgres://` URL.
    #[arg(long, env = "CATALOG_DATABASE_URL", default_value = "data/catalog.db")]
    database_url: DatabaseUrl,
    /// Base URL of the legacy monolith, which owns stock.
    #[arg(long, env = "MONOLITH_URL", default_value = "http://127.0.0.1:8081")]
    monolith_url: Url,
    /// Milliseconds one call to the monolith may take, connecting included.
    #[arg(
        long,
        env = "CATALOG_UPSTREAM_TIMEOUT_MS",
        default_value_t = 2000,
        value_parser = clap::value_parser!(u64).range(1..)
    )]
    upstream_timeout_ms: u64,
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
    let telemetry = telemetry::init(args.log_format, "info", "catalog-service")?;
    let app = Application::build(Config {
        listen: args.listen,
        database_url: args.database_url.clone(),
        monolith_url: args.monolith_url.clone(),
        upstream_timeout: Duration::from_millis(args.upstream_timeout_ms),
        grace_period: Duration::from_secs(args.grace_seconds),
    })
    .await
    .with_context(|| format!("starting the catalog service on {}", args.database_url))?;
    tracing::info!(
        addr = %app.local_addr(),
        monolith = %args.monolith_url,
        "catalog service listening"
    );
    let served = app
        .run_until_stopped(server::shutdown_signal())
        .await
        .context("serving the catalog service");
    // The last spans are exported once the requests have drained.
    telemetry.shutdown().await;
    served
}
