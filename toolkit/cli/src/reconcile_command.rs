//! `strangler reconcile run <capability>`: compares a capability's tables in
//! the monolith's and the service's databases once, prints the report and
//! records the run in the toolkit store. `strangler reconcile report
//! <capability>` shows the latest recorded run and the trend before it.
//!
//! Exit codes: 0 clean, 1 divergence found, 2 error (the run could not
//! finish, or the arguments are wrong).
//!
//! On a terminal, `run` and `repair` draw a progress bar per table on
//! standard error (`progress.rs`); `--quiet`, `--output json` or output
//! that is not a terminal turn them off.

mod progress;
mod repair;
mod report;

use crate::databases::DatabaseArgs;
use crate::output::{say, say_raw};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Subcommand, ValueEnum};
use mapping::Mapping;
use reconciler::metrics::ScheduleMetrics;
use reconciler::render::{self, TrendPoint};
use reconciler::schedule::run_schedule;
use reconciler::{reconcile_and_record, Mode, Options, RunStore, ShardSpec, Status, Strategy};
use toolkit_db::DatabaseUrl;

/// The demo's toolkit store, the default store when it exists.
const DEMO_STORE: &str = ".strangler-demo/toolkit.db";

/// Exit code of a clean run.
pub const EXIT_CLEAN: u8 = 0;
/// Exit code of a run that found divergence.
pub const EXIT_DIVERGED: u8 = 1;
/// Exit code of a run that could not finish.
pub const EXIT_ERROR: u8 = 2;

#[derive(Args)]
pub struct ReconcileArgs {
    #[command(subcommand)]
    command: ReconcileCommand,
}

#[derive(Subcommand)]
enum ReconcileCommand {
    /// Compare one capability once, only reading both databases. Exit code
    /// 0: clean; 1: divergence found; 2: error.
    Run(RunArgs),
    /// Show the latest recorded run of a capability and the trend of the
    /// runs before it. Exit code: that of the latest run (a failed run is 2).
    Report(report::ReportArgs),
    /// Compare every capability that has a `schedule` in the mapping file on
    /// that cron expression, until Ctrl-C.
    Schedule(ScheduleArgs),
    /// Plan (and with --apply, make) the changes that bring the follower side
    /// in line with the source of truth, then compare again. A row changed
    /// since the comparison is never overwritten: it is listed as changed
    /// since the report, not repaired. Exit code 0: nothing (left) to
    /// repair; 1: divergence remains; 2: error.
    Repair(repair::RepairArgs),
}

#[derive(Args)]
struct ScheduleArgs {
    /// The mapping file; each scheduled capability names its databases
    /// (`legacy_database_url`, `service_database_url`: a URL or `env:NAME`).
    #[arg(long, env = "STRANGLER_MAPPING", default_value = "demo/mapping.toml")]
    mapping: PathBuf,
    /// The toolkit store every pass is recorded in.
    #[arg(long, env = "STRANGLER_STORE_URL")]
    store_url: Option<DatabaseUrl>,
    /// Folder for each pass's JSON, Markdown and HTML reports (and `latest.*`).
    #[arg(long)]
    report_dir: Option<PathBuf>,
    /// How tables are compared.
    #[arg(long, value_enum, default_value = "auto")]
    strategy: StrategyArg,
    /// Make every pass incremental (see `reconcile run --incremental`):
    /// each compares what changed since the last clean pass, and a full
    /// pass runs whenever the last clean full one is older than the
    /// capability's `full_every`.
    #[arg(long)]
    incremental: bool,
    /// Serve Prometheus metrics (divergences per capability, last-run age)
    /// at `http://ADDR/metrics`.
    #[arg(long, env = "STRANGLER_RECONCILE_METRICS_LISTEN")]
    metrics_listen: Option<std::net::SocketAddr>,
}

/// Output style of `reconcile run` and `reconcile report`.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub(crate) enum Format {
    /// Readable lines.
    Human,
    /// The report's documented JSON schema.
    Json,
    /// Markdown, for a pull request or a ticket.
    Markdown,
    /// A self-contained HTML page with side-by-side row differences and the
    /// divergence trend.
    Html,
}

/// `--strategy`.
#[derive(Clone, Copy, Debug, ValueEnum)]
enum StrategyArg {
    /// Checksums where sound (same server engine on both sides) until merging
    /// the rest is measured to be cheaper; merge elsewhere.
    Auto,
    /// Streaming merge of both sides in key order.
    Merge,
    /// Checksum-and-bisect wherever sound.
    Bisect,
}

#[derive(Args)]
struct RunArgs {
    /// The capability to compare, as named in the mapping file.
    capability: String,
    #[command(flatten)]
    databases: DatabaseArgs,
    /// The toolkit store the run is recorded in; by default the demo's
    /// `.strangler-demo/toolkit.db` if it exists, and otherwise the run is
    /// not recorded.
    #[arg(long, env = "STRANGLER_STORE_URL")]
    store_url: Option<DatabaseUrl>,
    /// Output style.
    #[arg(long, value_enum, default_value = "human")]
    output: Format,
    /// How tables are compared.
    #[arg(long, value_enum, default_value = "auto")]
    strategy: StrategyArg,
    /// Rows of each side's first batch; later batches grow or shrink so that
    /// a query takes about a second. Rows are streamed: memory stays a few
    /// thousand rows per side whatever the batch.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    batch_size: u32,
    /// Limit on every statement, in seconds.
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=3600))]
    statement_timeout: u64,
    /// Connections per side that checksum key ranges at once (a table keyed
    /// by one integer column is swept on one).
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u8).range(1..=16))]
    parallel: u8,
    /// Compare only the rows changed since the last clean run recorded in
    /// the store (in tables with an `updated_at_column`), less the
    /// capability's `incremental_overlap`, and check row counts for
    /// deletes. The run is full when no clean run is recorded or the last
    /// clean full run is older than `full_every`; the report says which.
    #[arg(long)]
    incremental: bool,
    /// Compare only shard I of N of every table (`2/4`): N processes, on
    /// N hosts if need be, each started with the same `--group` and its own
    /// I, compare disjoint key ranges cut by the table's own keys. `reconcile
    /// report --group` merges their runs into one report.
    #[arg(long, value_name = "I/N", requires = "group")]
    shard: Option<reconciler::ShardIndex>,
    /// The run group a sharded run's processes share (letters, digits,
    /// `-`, `_`, `.`, `:`), like `nightly-2026-12-06`.
    #[arg(long, requires = "shard", value_parser = group_name)]
    group: Option<String>,
    /// Draw no progress bars. They are drawn on standard error only when
    /// standard output and standard error are both terminals, and never
    /// with `--output json`.
    #[arg(long, short)]
    quiet: bool,
}

impl RunArgs {
    /// The comparison options these flags ask for; `run` and `repair` share
    /// them, so that a flag cannot work in one and be ignored by the other.
    fn options(&self) -> Options {
        Options {
            strategy: strategy(self.strategy),
            mode: if self.incremental {
                Mode::Incremental
            } else {
                Mode::Full
            },
            batch_size: self.batch_size as usize,
            statement_timeout: Duration::from_secs(self.statement_timeout),
            parallel: usize::from(self.parallel),
            progress: progress::hook(self.output, self.quiet),
            shard: self
                .shard
                .zip(self.group.clone())
                .map(|(shard, group)| ShardSpec {
                    group,
                    shard,
                    store: None,
                }),
            ..Options::default()
        }
    }
}

/// `--group`, checked.
pub(crate) fn group_name(text: &str) -> Result<String, String> {
    reconciler::shard::check_group(text).map(|()| text.to_owned())
}

impl ReconcileArgs {
    /// Whether this runs until stopped (and so should log its progress).
    pub fn is_long_running(&self) -> bool {
        matches!(self.command, ReconcileCommand::Schedule(_))
    }
}

/// Runs the subcommand; an `Err` means exit code 2.
pub async fn run(args: ReconcileArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        ReconcileCommand::Run(args) => run_once(args).await,
        ReconcileCommand::Report(args) => report::report(args).await,
        ReconcileCommand::Schedule(args) => schedule(args).await,
        ReconcileCommand::Repair(args) => repair::repair(args).await,
    }
}

fn plural(n: usize, word: &str) -> String {
    if n == 1 {
        format!("1 {word}")
    } else {
        format!("{n} {word}s")
    }
}

async fn schedule(args: ScheduleArgs) -> anyhow::Result<ExitCode> {
    let mapping = Mapping::load(&args.mapping)?;
    let store = open_store(args.store_url.as_ref(), "passes are").await?;
    let options = Options {
        strategy: strategy(args.strategy),
        mode: if args.incremental {
            Mode::Incremental
        } else {
            Mode::Full
        },
        ..Options::default()
    };
    let metrics = Arc::new(ScheduleMetrics::new());
    let stop = tokio_util::sync::CancellationToken::new();
    if let Some(addr) = args.metrics_listen {
        let listener = facade::server::bind(addr).await?;
        tracing::info!(addr = %listener.local_addr()?, "reconciliation metrics at /metrics");
        let served = Arc::clone(&metrics);
        let router = axum::Router::new().route(
            "/metrics",
            axum::routing::get(move || {
                let metrics = Arc::clone(&served);
                async move { metrics.render() }
            }),
        );
        let stopped = stop.clone().cancelled_owned();
        tokio::spawn(async move {
            if let Err(error) = axum::serve(listener, router)
                .with_graceful_shutdown(stopped)
                .await
            {
                tracing::error!(%error, "the reconciliation metrics endpoint stopped");
            }
        });
    }
    tracing::info!("reconciliation schedule running; Ctrl-C stops it after the pass in progress");
    let result = run_schedule(
        &mapping,
        store,
        args.report_dir,
        options,
        Some(metrics),
        crate::signals::shutdown_signal(),
    )
    .await;
    stop.cancel();
    result?;
    Ok(ExitCode::from(EXIT_CLEAN))
}

/// The toolkit store runs are recorded in, if one is given; without one,
/// says that `what` not recorded.
async fn open_store(url: Option<&DatabaseUrl>, what: &str) -> anyhow::Result<Option<RunStore>> {
    // Inside the repository, runs go where the running demo's facade and
    // scheduled passes keep theirs, as `strangler routes` finds its token.
    let demo_store = Path::new(DEMO_STORE);
    let fallback = (url.is_none() && demo_store.exists()).then(|| DatabaseUrl::sqlite_file(demo_store));
    let Some(url) = url.or(fallback.as_ref()) else {
        tracing::warn!("no --store-url or STRANGLER_STORE_URL: {what} not recorded");
        return Ok(None);
    };
    let store = RunStore::open(url)
        .await
        .with_context(|| format!("opening the toolkit store {url}"))?;
    Ok(Some(store))
}

fn strategy(arg: StrategyArg) -> Strategy {
    match arg {
        StrategyArg::Auto => Strategy::Auto,
        StrategyArg::Merge => Strategy::Merge,
        StrategyArg::Bisect => Strategy::Bisect,
    }
}

async fn run_once(args: RunArgs) -> anyhow::Result<ExitCode> {
    let mapping = Mapping::load(&args.databases.mapping)?;
    let capability = mapping.capability(&args.capability)?;
    let store = open_store(args.store_url.as_ref(), "this run is").await?;
    let options = args.options();
    let (legacy, service) = args.databases.resolve(capability)?;
    let report = reconcile_and_record(store.as_ref(), capability, &legacy, &service, &options)
        .await
        .with_context(|| format!("reconciling capability `{}`", args.capability))?;
    let trend = match &store {
        Some(store) => store
            .runs(&args.capability)
            .await?
            .iter()
            .map(TrendPoint::from)
            .collect(),
        None => Vec::new(),
    };
    match args.output {
        Format::Json => say!("{}", serde_json::to_string_pretty(&report)?),
        Format::Human => say_raw!("{}", report.to_human()),
        Format::Markdown => say_raw!("{}", render::markdown(&report, &trend)),
        Format::Html => say_raw!("{}", render::html(&report, &trend)),
    }
    Ok(ExitCode::from(match report.status {
        Status::Clean => EXIT_CLEAN,
        Status::Diverged => EXIT_DIVERGED,
    }))
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    /// `strangler reconcile …` as clap sees it.
    #[derive(Parser)]
    struct Command {
        #[command(subcommand)]
        command: ReconcileCommand,
    }

    fn run_args(args: &[&str]) -> RunArgs {
        let parsed = Command::try_parse_from(std::iter::once("reconcile").chain(args.iter().copied()));
        match parsed.map(|c| c.command) {
            Ok(ReconcileCommand::Run(run)) => run,
            Ok(ReconcileCommand::Repair(repair)) => repair.run,
            Ok(_) => panic!("not a run or a repair: {args:?}"),
            Err(error) => panic!("{args:?}: {error}"),
        }
    }

    #[test]
    fn run_and_repair_build_the_same_options_from_the_same_flags() {
        let flags = [
            "orders",
            "--strategy",
            "bisect",
            "--batch-size",
            "15",
            "--statement-timeout",
            "7",
            "--parallel",
            "5",
        ];
        for command in ["run", "repair"] {
            let args: Vec<&str> = std::iter::once(command).chain(flags).collect();
            let options = run_args(&args).options();
            assert_eq!(options.parallel, 5, "{command}");
            assert_eq!(options.batch_size, 15, "{command}");
            assert_eq!(options.strategy, Strategy::Bisect, "{command}");
            assert_eq!(options.statement_timeout, Duration::from_secs(7), "{command}");
        }
        let defaults = run_args(&["repair", "orders"]).options();
        assert_eq!(defaults.parallel, Options::default().parallel);
    }
}
