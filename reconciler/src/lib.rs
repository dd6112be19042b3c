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
mod field_ref;
mod fingerprint;
mod incremental;
pub mod key_text;
mod merge;
pub mod metrics;
mod mysql_native;
mod normalize;
mod plan;
pub mod progress;
mod read;
pub mod render;
pub mod repair;
pub mod report;
mod run_store;
pub mod schedule;
pub mod shard;
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
pub use report::{Method, Report, RunKind, Shard, Status, TableReport, Totals};
pub use run_store::{RunId, RunRecord, RunStatus, RunStore, ShardRun, UnknownRunStatus, Watermark};
pub use shard::{ShardIndex, ShardSpec};

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

/// Whether a run compares every row or what changed since the last clean
/// run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    /// Every row.
    #[default]
    Full,
    /// What changed since the last clean run recorded in the toolkit store:
    /// [`reconcile_and_record`] reads the store's watermark and turns this
    /// into [`Mode::Since`], or into a full run when there is no clean run
    /// yet or the last clean full run is older than the capability's
    /// `full_every`.
    Incremental,
    /// What changed since `clean_from` (a clean run's start) less
    /// `overlap`, in every table with an `updated_at_column`.
    Since {
        /// When the last clean run started.
        clean_from: DateTime<Utc>,
        /// How far before it to look, for clocks that run behind.
        overlap: Duration,
        /// Whether row counts are checked for rows deleted on one side
        /// only; otherwise full runs find them.
        count_deletes: bool,
    },
}

/// How to run a comparison.
#[derive(Debug, Clone)]
pub struct Options {
    /// Merge or bisect.
    pub strategy: Strategy,
    /// Every row, or what changed.
    pub mode: Mode,
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
    /// Connections per side that checksum segments at once. A table keyed
    /// by one integer column is swept on one connection per side.
    pub parallel: usize,
    /// Limit on every statement, server-side where the engine has one and
    /// always client-side.
    pub statement_timeout: Duration,
    /// The end of the settle window; `None` means the start of the run.
    pub now: Option<DateTime<Utc>>,
    /// Told how far each table's comparison is; `None` counts nothing.
    pub progress: Option<ProgressHook>,
    /// One process's part of a sharded run; `None` compares every key.
    pub shard: Option<ShardSpec>,
    /// Changed keys per side an incremental comparison holds in memory, at
    /// most; a table with more changed since the last clean run is
    /// compared in full, which streams.
    pub changed_keys_limit: usize,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            strategy: Strategy::Auto,
            mode: Mode::Full,
            batch_size: 1000,
            bisect_leaf_rows: 2000,
            segment_rows: 10_000,
            target_query_time: Duration::from_secs(1),
            parallel: 2,
            statement_timeout: Duration::from_secs(30),
            now: None,
            progress: None,
            shard: None,
            changed_keys_limit: 1_000_000,
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
    if options.mode == Mode::Incremental {
        return Err(ReconcileError::Unsupported(
            "an incremental run needs the toolkit store, where the last clean run is recorded; \
             pass --store-url, or run in full"
                .to_owned(),
        ));
    }
    if options.shard.is_some() && options.mode != Mode::Full {
        return Err(ReconcileError::Unsupported(
            "a sharded run compares every key of its range; drop --incremental, or --shard".to_owned(),
        ));
    }
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
        kind: RunKind::Full,
        since: None,
        kind_note: None,
        shard: None,
        totals: Totals::default(),
        tables,
    };
    report.shard = options.shard.as_ref().map(|spec| Shard {
        group: spec.group.clone(),
        index: spec.shard.index,
        count: spec.shard.count,
    });
    if let Mode::Since {
        clean_from, overlap, ..
    } = options.mode
    {
        report.kind = RunKind::Incremental;
        report.since = Some(timestamp_text(since(clean_from, overlap, 0)));
    }
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
    // Both sides at once: across a network, connecting costs round trips.
    let (legacy, service) = tokio::join!(
        Source::connect(Side::Legacy, legacy_url, options.statement_timeout),
        Source::connect(Side::Service, service_url, options.statement_timeout),
    );
    match (legacy, service) {
        (Ok(legacy), Ok(service)) => Ok(Lane { legacy, service }),
        (Err(error), other) | (other @ Ok(_), Err(error)) => {
            if let Ok(open) = other {
                open.close().await;
            }
            Err(error)
        }
    }
}

/// RFC 3339 with milliseconds, in UTC.
fn timestamp_text(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// Where an incremental comparison starts reading changed rows: `overlap`
/// before the last clean run's start, or the settle window before it when
/// that is longer (rows settling then were not judged).
fn since(clean_from: DateTime<Utc>, overlap: Duration, settle_seconds: u64) -> DateTime<Utc> {
    let back = overlap.max(Duration::from_secs(settle_seconds));
    clean_from - chrono::Duration::from_std(back).unwrap_or(chrono::Duration::MAX)
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
        let range = match &options.shard {
            None => Some(KeyRange::default()),
            Some(spec) => {
                let main = &mut lanes[0];
                shard::range_of(
                    spec,
                    &capability.name,
                    &mut main.legacy,
                    &plan.legacy,
                    plan.key_len(),
                )
                .await?
            }
        };
        reports.push(compare_table(&capability.name, plan, range, lanes, urls, options, now, target).await?);
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
#[allow(clippy::too_many_arguments)] // one call site, each argument distinct
async fn compare_table(
    capability: &str,
    plan: &TablePlan,
    range: Option<KeyRange>,
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
    let incremental = match (options.mode, &plan.change_time) {
        (
            Mode::Since {
                clean_from, overlap, ..
            },
            Some(_),
        ) => {
            let settle = plan.settle.map_or(0, |(_, seconds)| seconds);
            Some(since(clean_from, overlap, settle))
        }
        _ => None,
    };
    let (method, note) = match (incremental, options.mode) {
        (Some(_), _) => (Method::Incremental, None),
        (None, Mode::Since { .. }) => (
            method,
            Some("compared in full: the table has no updated_at_column to find changed rows by".to_owned()),
        ),
        (None, _) => (method, note),
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
    // A shard past the table's last cut has no keys to compare.
    let Some(range) = range else {
        return Ok(judge.finish());
    };
    // Whether the table is still to be merged whole after its method ran.
    let merge_whole = match method {
        Method::Incremental => {
            let since = incremental.unwrap_or(now);
            let count_deletes = matches!(
                options.mode,
                Mode::Since {
                    count_deletes: true,
                    ..
                }
            );
            let leaf_rows = options.bisect_leaf_rows;
            let summary = incremental::compare_changed(
                plan,
                &mut lanes[0],
                since,
                count_deletes,
                leaf_rows,
                options.changed_keys_limit,
                &mut judge,
            )
            .await?;
            match summary {
                Some(summary) => {
                    judge.report.strategy_note = Some(summary.note(since));
                    false
                }
                None => {
                    // Nothing was judged yet: the whole table is merged.
                    judge.report.strategy = Method::Merge;
                    judge.report.strategy_note = Some(format!(
                        "compared in full: more than {} keys changed on one side since {}",
                        options.changed_keys_limit,
                        timestamp_text(since)
                    ));
                    true
                }
            }
        }
        Method::Merge => true,
        Method::Bisect => {
            // A swept table needs one lane: each stretch is one query per side.
            let wanted = if checksum::uses_lanes(plan) {
                options.parallel.max(1)
            } else {
                1
            };
            let missing = wanted.saturating_sub(lanes.len());
            let connected =
                futures::future::join_all((0..missing).map(|_| connect_lane(urls.0, urls.1, options))).await;
            let mut failure = None;
            for lane in connected {
                match lane {
                    Ok(lane) => lanes.push(lane),
                    Err(error) => failure = failure.or(Some(error)),
                }
            }
            if let Some(error) = failure {
                return Err(error);
            }
            let segments = SegmentOptions {
                segment_rows: options.segment_rows,
                leaf_rows: options.bisect_leaf_rows,
                target_query_time: target,
                adaptive: options.strategy == Strategy::Auto,
            };
            if let Some(costs) =
                checksum::bisect(plan, lanes, &range, &segments, &mut sizes, &mut judge).await?
            {
                tracing::info!(table = %plan.legacy.table, "{}", costs.note());
                judge.report.strategy = Method::Merge;
                judge.report.strategy_note = Some(costs.note());
                span.record("strategy", Method::Merge.as_str());
            }
            false
        }
    };
    if merge_whole {
        let main = &mut lanes[0];
        merge_range(
            plan,
            &mut main.legacy,
            &mut main.service,
            &range,
            &mut sizes,
            &mut judge,
        )
        .await?;
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
    let mut resolved = options.clone();
    let mut kind_note = None;
    if options.mode == Mode::Incremental {
        if let Some(store) = store {
            let watermark = store.watermark(&capability.name).await?;
            let (mode, note) = resolve_incremental(watermark, capability.incremental, Utc::now());
            resolved.mode = mode;
            kind_note = note;
        }
    }
    if let Some(spec) = &mut resolved.shard {
        if spec.store.is_none() {
            spec.store = store.cloned();
        }
    }
    let shard = resolved.shard.as_ref().map(|spec| Shard {
        group: spec.group.clone(),
        index: spec.shard.index,
        count: spec.shard.count,
    });
    let run = match store {
        Some(store) => Some((store, store.start_shard(&capability.name, shard.as_ref()).await?)),
        None => None,
    };
    let mut result = reconcile(capability, legacy_url, service_url, &resolved).await;
    if let Ok(report) = &mut result {
        report.kind_note = kind_note;
    }
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

/// What an incremental run asked for becomes, given the store's
/// `watermark`: a comparison since the last clean run, or a full one (and
/// why) when there is none or the last clean full run is older than
/// `full_every`.
fn resolve_incremental(
    watermark: Option<Watermark>,
    settings: mapping::IncrementalSettings,
    now: DateTime<Utc>,
) -> (Mode, Option<String>) {
    let Some(watermark) = watermark else {
        return (
            Mode::Full,
            Some("no clean run is recorded yet, so this run compared every row".to_owned()),
        );
    };
    let full_every = humantime::format_duration(settings.full_every);
    let Some(full_at) = watermark.full_at else {
        return (
            Mode::Full,
            Some(format!(
                "no clean full run is recorded, and one runs at least every {full_every}, so this run compared every row"
            )),
        );
    };
    let age = (now - full_at).to_std().unwrap_or_default();
    if age >= settings.full_every {
        // Whole seconds: the age is for people to read.
        let age = humantime::format_duration(Duration::from_secs(age.as_secs()));
        return (
            Mode::Full,
            Some(format!(
                "the last clean full run was {age} ago and full_every is {full_every}, so this run compared every row"
            )),
        );
    }
    (
        Mode::Since {
            clean_from: watermark.clean_from,
            overlap: settings.overlap,
            count_deletes: settings.deletes == mapping::DeleteCheck::Counts,
        },
        None,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn an_incremental_run_is_full_until_a_clean_full_run_is_recent_enough() {
        let settings = mapping::IncrementalSettings::default();
        let now = Utc.with_ymd_and_hms(2026, 12, 6, 12, 0, 0).unwrap();
        let hours_ago = |h: i64| now - chrono::Duration::hours(h);
        let (mode, note) = resolve_incremental(None, settings, now);
        assert_eq!(mode, Mode::Full);
        assert!(note.unwrap().starts_with("no clean run is recorded yet"));
        let watermark = |full: Option<i64>| Watermark {
            clean_from: hours_ago(1),
            full_at: full.map(hours_ago),
            run_id: 7,
        };
        let (mode, note) = resolve_incremental(Some(watermark(Some(25))), settings, now);
        assert_eq!(mode, Mode::Full);
        assert_eq!(
            note.as_deref(),
            Some("the last clean full run was 1day 1h ago and full_every is 1day, so this run compared every row")
        );
        let (mode, note) = resolve_incremental(Some(watermark(Some(3))), settings, now);
        assert_eq!(
            mode,
            Mode::Since {
                clean_from: hours_ago(1),
                overlap: settings.overlap,
                count_deletes: true,
            }
        );
        assert_eq!(note, None);
        assert_eq!(
            resolve_incremental(Some(watermark(None)), settings, now).0,
            Mode::Full
        );
    }

    #[test]
    fn changed_rows_are_read_from_the_overlap_or_the_settle_window_whichever_is_longer() {
        let clean = Utc.with_ymd_and_hms(2026, 12, 6, 12, 0, 0).unwrap();
        let five_minutes = Duration::from_secs(300);
        assert_eq!(
            since(clean, five_minutes, 0),
            clean - chrono::Duration::minutes(5)
        );
        assert_eq!(
            since(clean, five_minutes, 600),
            clean - chrono::Duration::minutes(10)
        );
    }
}
