//! `strangler facade`: run the facade from a configuration file.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use facade::config::FacadeConfig;
use facade::Facade;
use toolkit_db::DatabaseUrl;
use toolkit_telemetry::SpanSink;

#[derive(Args)]
pub struct FacadeArgs {
    /// The facade's configuration file.
    #[arg(long, short, env = "STRANGLER_CONFIG", default_value = "strangler.toml")]
    config: PathBuf,
    /// Override `[facade] listen`.
    #[arg(long, env = "STRANGLER_LISTEN")]
    listen: Option<SocketAddr>,
    /// Override `[facade] tls_listen` (the configuration must set up TLS).
    #[arg(long, env = "STRANGLER_TLS_LISTEN")]
    tls_listen: Option<SocketAddr>,
    /// Override `[facade] admin_listen`.
    #[arg(long, env = "STRANGLER_ADMIN_LISTEN")]
    admin_listen: Option<SocketAddr>,
    /// Override `[store] url` (SQLite path or URL, or `postgres://…`).
    #[arg(long, env = "STRANGLER_STORE_URL")]
    store_url: Option<DatabaseUrl>,
}

/// Runs the facade until Ctrl-C or SIGTERM; sampled requests' spans go to
/// `tracing` when traces are exported.
pub async fn run(args: FacadeArgs, tracing: Option<SpanSink>) -> anyhow::Result<()> {
    let mut config = FacadeConfig::load(&args.config)?;
    if let Some(listen) = args.listen {
        config.listen = Some(listen);
    }
    if let Some(tls_listen) = args.tls_listen {
        match config.tls.as_mut() {
            Some(tls) => tls.listen = tls_listen,
            None => anyhow::bail!(
                "--tls-listen needs TLS configured in {}: add `tls_listen` and [[facade.certificates]] to [facade]",
                args.config.display()
            ),
        }
    }
    if let Some(admin_listen) = args.admin_listen {
        config.admin_listen = admin_listen;
    }
    if let Some(store_url) = args.store_url {
        config.store_url = store_url;
    }
    let facade = Facade::build_traced(config, tracing)
        .await
        .context("starting the facade")?;
    match facade.tls_addr() {
        Some(tls) => {
            tracing::info!(proxy = %facade.proxy_addr(), tls = %tls, admin = %facade.admin_addr(), "facade listening")
        }
        None => {
            tracing::info!(proxy = %facade.proxy_addr(), admin = %facade.admin_addr(), "facade listening")
        }
    }
    facade
        .run_until_stopped(crate::signals::shutdown_signal())
        .await
        .context("serving the facade")
}
