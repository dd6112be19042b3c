//! `legacy-monolith`: runs the sample shop on its own.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use legacy_monolith::settings::Settings;
use legacy_monolith::{Application, Config, DEFAULT_LISTEN};
use service_runtime::telemetry::{self, LogFormat};
use service_runtime::{server, DatabaseUrl};

/// The sample legacy shop: catalog, customers, inventory, orders and
/// payments in one process with one database.
#[derive(Parser)]
#[command(version)]
struct Args {
    /// Address to listen on.
    #[arg(long, env = "MONOLITH_LISTEN", default_value = DEFAULT_LISTEN)]
    listen: SocketAddr,
    /// Database: a SQLite path or `sqlite://` URL, or a `postgres://` URL.
    #[arg(long, env = "MONOLITH_DATABASE_URL", default_value = "data/monolith.db")]
    database_url: DatabaseUrl,
    /// Load the sample data set when the database is empty.
    #[arg(long)]
    seed: bool,
    /// Serve `GET`/`PUT /internal/settings`, runtime switches for chaos
    /// tests (an injected latency, none at start). Off by default: the
    /// monolith is the facade's default backend, so any client could reach
    /// the endpoint through it.
    #[arg(long, env = "MONOLITH_FAULT_SWITCHES")]
    fault_switches: bool,
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
    let telemetry = telemetry::init(args.log_format, "info", "legacy-monolith")?;
    let config = Config {
        listen: args.listen,
        database_url: args.database_url.clone(),
        seed: args.seed,
        grace_period: Duration::from_secs(args.grace_seconds),
    };
    let app = if args.fault_switches {
        Application::build_with_settings(config, Settings::default()).await
    } else {
        Application::build(config).await
    }
    .with_context(|| format!("starting the monolith on {}", args.database_url))?;
    tracing::info!(addr = %app.local_addr(), "legacy monolith listening");
    let served = app
        .run_until_stopped(server::shutdown_signal())
        .await
        .context("serving the monolith");
    // The last spans are exported once the requests have drained.
    telemetry.shutdown().await;
    served
}
