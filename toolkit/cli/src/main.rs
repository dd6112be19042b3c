//! `strangler`: the toolkit's one user-facing command.
//!
//! Parses arguments, sets up logging, and hands over to one module per
//! subcommand. Errors are printed with their whole cause chain and exit 1;
//! usage errors exit 2 (clap's convention). `strangler reconcile` has its
//! own codes: 0 clean, 1 divergence found, 2 error.

mod backfill_command;
mod databases;
#[cfg(feature = "demo")]
mod demo;
mod facade_command;
mod output;
mod reconcile_command;
mod routes_command;
mod routes_view;
mod signals;
mod table;
mod telemetry;

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use telemetry::LogFormat;

/// Migrate a live monolith to services, one capability at a time.
#[derive(Parser)]
#[command(name = "strangler", version, propagate_version = true)]
struct Cli {
    /// `human` or `json` log lines (on standard error).
    #[arg(long, global = true, env = "STRANGLER_LOG_FORMAT", default_value = "human")]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Start the sample shop — monolith, catalog and orders services — on
    /// SQLite with sample data, for trying the toolkit on a laptop; or flip
    /// its failure switches while it runs (`strangler demo switch`).
    #[cfg(feature = "demo")]
    Demo(demo::DemoArgs),
    /// Copy a capability's rows from the monolith's database into its
    /// service's database (batched, idempotent, resumable).
    ///
    /// The monolith's database is only read; the service's tables must
    /// already exist.
    Backfill(backfill_command::BackfillArgs),
    /// Run the facade: the reverse proxy in front of the monolith.
    Facade(facade_command::FacadeArgs),
    /// Look at and change where each capability's traffic goes.
    Routes(routes_command::RoutesArgs),
    /// Compare a capability's tables in the monolith's and the service's
    /// databases and report every divergence.
    Reconcile(reconcile_command::ReconcileArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let default_filter = match &cli.command {
        Command::Reconcile(args) if args.is_long_running() => "info,sqlx=warn",
        #[cfg(feature = "demo")]
        Command::Demo(args) if args.is_subcommand() => "warn",
        #[cfg(feature = "demo")]
        Command::Demo(_) => "info,sqlx=warn",
        Command::Facade(_) => "info,sqlx=warn",
        Command::Backfill(_) | Command::Routes(_) | Command::Reconcile(_) => "warn",
    };
    // The commands that serve or compare export traces (when the `OTEL_*`
    // variables name an endpoint), under this default service name.
    let traced_as = match &cli.command {
        Command::Facade(_) => Some("strangler-facade"),
        Command::Reconcile(_) => Some("strangler-reconciler"),
        #[cfg(feature = "demo")]
        Command::Demo(args) if !args.is_subcommand() => Some("strangler-demo"),
        _ => None,
    };
    let error_code = match cli.command {
        Command::Reconcile(_) => ExitCode::from(reconcile_command::EXIT_ERROR),
        _ => ExitCode::FAILURE,
    };
    let telemetry = match telemetry::init(cli.log_format, default_filter, traced_as) {
        Ok(telemetry) => telemetry,
        Err(error) => {
            eprintln!("error: {error}");
            for cause in error.chain().skip(1) {
                eprintln!("  caused by: {cause}");
            }
            return error_code;
        }
    };
    let span_sink = telemetry.span_sink();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return error_code;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            #[cfg(feature = "demo")]
            Command::Demo(args) => demo::run(args, span_sink).await.map(|()| ExitCode::SUCCESS),
            Command::Backfill(args) => backfill_command::run(args).await.map(|()| ExitCode::SUCCESS),
            Command::Facade(args) => facade_command::run(args, span_sink)
                .await
                .map(|()| ExitCode::SUCCESS),
            Command::Routes(args) => routes_command::run(args).await.map(|()| ExitCode::SUCCESS),
            Command::Reconcile(args) => reconcile_command::run(args).await,
        }
    });
    // Spans still queued are exported before the process ends. The runtime
    // goes first: a task it still holds may keep a span open, and a span
    // is exported only once closed.
    drop(runtime);
    telemetry.shutdown();
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error}");
            for cause in error.chain().skip(1) {
                eprintln!("  caused by: {cause}");
            }
            error_code
        }
    }
}
