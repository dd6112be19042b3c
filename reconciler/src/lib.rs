//! The dual-write reconciler: compares a capability's tables in the
//! monolith's database with the service's and reports every divergence —
//! every key missing from the service, every extra key, every changed row
//! with the columns that differ and both values. Nothing is sampled.
//!
//! The two sides may be PostgreSQL, MySQL/MariaDB or SQLite in any pairing.
//! What to compare comes from the backfill mapping file plus its reconciler
//! fields ([`mapping::CompareSettings`]). A run:
//! 1. connects to both sides read-only, under a statement timeout
//!    (`source`);
//! 2. checks every mapped table and column against both live schemas before
//!    comparing anything (`plan`), and asks each catalog whether a primary
//!    key or unique index proves the mapped key unique (`catalog`); where
//!    none does, the comparison checks it in the data, so that a repeated
//!    key stops the run instead of passing as clean. Where the catalog
//!    does not prove the key columns NOT NULL, it asks each side once for
//!    a row with a NULL key, which no comparison would read, and one stops
//!    the run;
//! 3. compares each table by a streaming sorted merge (`merge`, reading
//!    each side as `read` says) or by checksum-and-bisect (`checksum`), as
//!    [`Strategy`] says: by default, checksums where they are sound until
//!    the measured costs say that merging the rest is cheaper;
//! 4. returns a [`Report`] ([`report`]), which [`reconcile_and_record`] also
//!    writes to the toolkit store ([`RunStore`]).
//!
//! Each table's comparison runs in a `reconcile_table` tracing span
//! (capability, table, strategy, rows compared, differences found).
//!
//! *Invariant:* the reconciler never writes to a compared database; every
//! session it opens there is read-only.

mod catalog;
mod checksum;
mod copy_text;
mod error;
mod fingerprint;
pub mod key_text;
mod merge;
pub mod metrics;
mod normalize;
mod plan;
pub mod progress;
mod read;
pub mod render;
pub mod repair;
pub mod report;
mod run_store;
pub mod schedule;
mod source;
mod sql;

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use mapping::CapabilityMapping;
use mapping::Side;
use toolkit_db::DatabaseUrl;

pub use error::ReconcileError;
pub use progress::{Progress, ProgressHook};
pub use report::{Method, Report, Status, TableReport, Totals};
pub use run_store::{RunId, RunRecord, RunStatus, RunStore, UnknownRunStatus};

use crate::checksum::{Lane, SegmentOptions};
use crate::merge::{merge_range, Judge, KeyRange, ReadSizes};
use crate::plan::{plan_table, TablePlan};
use crate::progress::TableProgress;
use crate::source::Source;

/// How tables are compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Strategy {
    /// Checksums where they are sound (same server engine on both sides,
    /// no one-sided normalization) until merging the rest of a table is
    /// measured to be cheaper (dense differences, or databases close enough
    /// that streaming costs less than hashing); the merge elsewhere.
    #[default]
    Auto,
    /// Always the streaming merge.
    Merge,
    /// Bisection wherever it is sound; other tables are merged and the
    /// report says why.
    Bisect,
}

impl FromStr for Strategy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "auto" => Ok(Self::Auto),
            "merge" => Ok(Self::Merge),
            "bisect" => Ok(Self::Bisect),
            other => Err(format!("unknown strategy `{other}`; use auto, merge or bisect")),
        }
    }
}

impl fmt::Display for Strategy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Strategy::Auto => "auto",
            Strategy::Merge => "merge",
            Strategy::Bisect => "bisect",
        })
    }
}

/// How to run a comparison.
#[derive(Debug, Clone)]
pub struct Options {
    /// Merge or bisect.
    pub strategy: Strategy,
    /// Rows of each side's first keyset batch; later batches grow or shrink
    /// towards `target_query_time`. Rows are streamed, so memory is a few
    /// chunks of rows per side whatever the batch.
    pub batch_size: usize,
    /// Bisection stops splitting at ranges this small and merges them.
    pub bisect_leaf_rows: u64,
    /// Rows per checksummed segment, at most.
    pub segment_rows: u64,
    /// What one query should take: batches and segments are sized for it.
    pub target_query_time: Duration,
    /// Connections per side that checksum segments at once.
    pub parallel: usize,
    /// Limit on every statement, server-side where the engine has one and
    /// always client-side.
    pub statement_timeout: Duration,
    /// The end of the settle window; `None` means the start of the run.
    pub now: Option<DateTime<Utc>>,
    /// Told how far each table's comparison is; `None` counts nothing.
    pub progress: Option<ProgressHook>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            strategy: Strategy::Auto,
            batch_size: 1000,
            bisect_leaf_rows: 2000,
            segment_rows: 10_000,
            target_query_time: Duration::from_secs(1),
            parallel: 2,
            statement_timeout: Duration::from_secs(30),
            now: None,
            progress: None,
        }
    }
}

/// Compares every table of `capability` between the two databases.
///
/// All tables are checked against both schemas before any is compared.
#[tracing::instrument(skip_all, fields(capability = %capability.name))]
pub async fn reconcile(
    capability: &CapabilityMapping,
    legacy_url: &DatabaseUrl,
    service_url: &DatabaseUrl,
    options: &Options,
) -> Result<Report, ReconcileError> {
    let started = Utc::now();
    let now = options.now.unwrap_or(started);
    let mut lanes = vec![connect_lane(legacy_url, service_url, options).await?];
    let result = compare_all(capability, &mut lanes, (legacy_url, service_url), options, now).await;
    for lane in lanes {
        lane.legacy.close().await;
        lane.service.close().await;
    }
    let tables = result?;
    let mut report = Report {
        schema_version: report::SCHEMA_VERSION,
        capability: capability.name.clone(),
        source_of_truth: capability.source_of_truth,
        legacy_engine: legacy_url.engine().to_string(),
        service_engine: service_url.engine().to_string(),
        started_at: started.to_rfc3339_opts(SecondsFormat::Millis, true),
        finished_at: Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true),
        status: Status::Clean,
        totals: Totals::default(),
        tables,
    };
    report.finish();
    tracing::info!(
        status = report.status.as_str(),
        missing = report.totals.missing,
        extra = report.totals.extra,
        changed = report.totals.changed,
        "reconciliation finished"
    );
    Ok(report)
}

async fn connect_lane(
    legacy_url: &DatabaseUrl,
    service_url: &DatabaseUrl,
    options: &Options,
) -> Result<Lane, ReconcileError> {
    let legacy = Source::connect(Side::Legacy, legacy_url, options.statement_timeout).await?;
    match Source::connect(Side::Service, service_url, options.statement_timeout).await {
        Ok(service) => Ok(Lane { legacy, service }),
        Err(error) => {
            legacy.close().await;
            Err(error)
        }
    }
}

/// Rows per merge batch at most, whatever the target time says.
const MAX_BATCH_ROWS: usize = 1_000_000;

async fn compare_all(
    capability: &CapabilityMapping,
    lanes: &mut Vec<Lane>,
    urls: (&DatabaseUrl, &DatabaseUrl),
    options: &Options,
    now: DateTime<Utc>,
) -> Result<Vec<TableReport>, ReconcileError> {
    let mut plans = Vec::with_capacity(capability.tables.len());
    for table in &capability.tables {
        let main = &mut lanes[0];
        plans.push(plan_table(table, &mut main.legacy, &mut main.service).await?);
    }
    // A query should stay well inside the statement timeout.
    let target = options.target_query_time.min(options.statement_timeout / 4);
    let mut reports = Vec::with_capacity(plans.len());
    for plan in &plans {
        reports.push(compare_table(&capability.name, plan, lanes, urls, options, now, target).await?);
    }
    Ok(reports)
}

/// Compares one planned table, in a span that records what was found.
#[tracing::instrument(
    name = "reconcile_table",
    skip_all,
    fields(
        capability = %capability,
        table = %plan.legacy.table,
        strategy = tracing::field::Empty,
        rows_compared = tracing::field::Empty,
        differences = tracing::field::Empty,
    )
)]
async fn compare_table(
    capability: &str,
    plan: &TablePlan,
    lanes: &mut Vec<Lane>,
    urls: (&DatabaseUrl, &DatabaseUrl),
    options: &Options,
    now: DateTime<Utc>,
    target: Duration,
) -> Result<TableReport, ReconcileError> {
    let span = tracing::Span::current();
    let unsupported = checksum::unsupported_reason(plan);
    let (method, note) = match (options.strategy, unsupported) {
        (Strategy::Merge, _) => (Method::Merge, None),
        (Strategy::Auto | Strategy::Bisect, None) => (Method::Bisect, None),
        (Strategy::Auto, Some(_)) => (Method::Merge, None),
        (Strategy::Bisect, Some(reason)) => (Method::Merge, Some(reason)),
    };
    span.record("strategy", method.as_str());
    let report = TableReport {
        legacy_table: plan.legacy.table.to_string(),
        service_table: plan.service.table.to_string(),
        key_columns: plan.key_columns.clone(),
        strategy: method,
        strategy_note: note,
        rows_legacy: 0,
        rows_service: 0,
        rows_compared: 0,
        rows_fetched: 0,
        missing: Vec::new(),
        extra: Vec::new(),
        changed: Vec::new(),
        settling: Vec::new(),
    };
    let mut judge = Judge::new(plan, now, report);
    if let Some(hook) = &options.progress {
        let main = &mut lanes[0];
        let legacy = catalog::estimated_rows(&mut main.legacy, &plan.legacy.table).await;
        let service = catalog::estimated_rows(&mut main.service, &plan.service.table).await;
        let estimate = legacy.max(service);
        judge = judge.with_progress(TableProgress::start(
            hook.clone(),
            plan.legacy.table.as_str(),
            estimate,
        ));
    }
    let mut sizes = ReadSizes::new(options.batch_size, MAX_BATCH_ROWS.max(options.batch_size), target);
    match method {
        Method::Merge => {
            let main = &mut lanes[0];
            merge_range(
                plan,
                &mut main.legacy,
                &mut main.service,
                &KeyRange::default(),
                &mut sizes,
                &mut judge,
            )
            .await?
        }
        Method::Bisect => {
            while lanes.len() < options.parallel.max(1) {
                lanes.push(connect_lane(urls.0, urls.1, options).await?);
            }
            let segments = SegmentOptions {
                segment_rows: options.segment_rows,
                leaf_rows: options.bisect_leaf_rows,
                target_query_time: target,
                adaptive: options.strategy == Strategy::Auto,
            };
            if let Some(costs) = checksum::bisect(plan, lanes, &segments, &mut sizes, &mut judge).await? {
                tracing::info!(table = %plan.legacy.table, "{}", costs.note());
                judge.report.strategy = Method::Merge;
                judge.report.strategy_note = Some(costs.note());
                span.record("strategy", Method::Merge.as_str());
            }
        }
    }
    let report = judge.finish();
    span.record("rows_compared", report.rows_compared);
    span.record(
        "differences",
        report.missing.len() + report.extra.len() + report.changed.len(),
    );
    Ok(report)
}

/// [`reconcile`], recorded in the toolkit store when one is given: the run
/// is `running` while it runs, then `clean`, `diverged` or `failed` (with
/// the error's cause chain, which holds no password).
pub async fn reconcile_and_record(
    store: Option<&RunStore>,
    capability: &CapabilityMapping,
    legacy_url: &DatabaseUrl,
    service_url: &DatabaseUrl,
    options: &Options,
) -> Result<Report, ReconcileError> {
    let run = match store {
        Some(store) => Some((store, store.start(&capability.name).await?)),
        None => None,
    };
    let result = reconcile(capability, legacy_url, service_url, options).await;
    if let Some((store, id)) = run {
        match &result {
            Ok(report) => store.finish(id, report).await?,
            Err(error) => {
                if let Err(store_error) = store.fail(id, &error.chain()).await {
                    tracing::error!(error = %store_error.chain(), "cannot record the failed run");
                }
            }
        }
    }
    result
}
