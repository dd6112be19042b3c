//! The history of runs in the toolkit store's `reconciliation_runs` table:
//! a run is recorded as `running` when it starts and becomes `clean`,
//! `diverged` or `failed` when it ends, with its counts and its JSON report,
//! or with its error (which never holds a connection string).

use std::fmt;
use std::future::Future;
use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use toolkit_db::{timestamp, DatabaseUrl};
use toolkit_store::StateStore;

use crate::report::{Report, RunKind, Shard, Status};
use crate::shard::{ShardIndex, StoredCuts};
use crate::ReconcileError;
use toolkit_db::sql_value::SqlValue;

/// How long any statement on the store may take.
const STORE_TIMEOUT: Duration = Duration::from_secs(10);

/// A run's id in `reconciliation_runs`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunId(pub i64);

/// Where a run is: its `reconciliation_runs.status`, written (by `Display`,
/// in the store and in JSON) as `running`, `clean`, `diverged` or `failed`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    /// Started and not ended.
    Running,
    /// Ended with no divergence.
    Clean,
    /// Ended with at least one divergence.
    Diverged,
    /// Could not finish; the run's `error` says why.
    Failed,
}

impl RunStatus {
    /// Every status, in the order a run goes through them.
    pub const ALL: [RunStatus; 4] = [
        RunStatus::Running,
        RunStatus::Clean,
        RunStatus::Diverged,
        RunStatus::Failed,
    ];

    /// The name stored in `reconciliation_runs.status`.
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Running => "running",
            RunStatus::Clean => "clean",
            RunStatus::Diverged => "diverged",
            RunStatus::Failed => "failed",
        }
    }
}

impl fmt::Display for RunStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A stored run status that [`RunStatus`] does not know.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown run status `{0}`; a run is running, clean, diverged or failed")]
pub struct UnknownRunStatus(pub String);

impl FromStr for RunStatus {
    type Err = UnknownRunStatus;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        RunStatus::ALL
            .into_iter()
            .find(|status| status.as_str() == text)
            .ok_or_else(|| UnknownRunStatus(text.to_owned()))
    }
}

/// A finished comparison's outcome as a run status.
impl From<Status> for RunStatus {
    fn from(status: Status) -> Self {
        match status {
            Status::Clean => RunStatus::Clean,
            Status::Diverged => RunStatus::Diverged,
        }
    }
}

/// One recorded run, as read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunRecord {
    /// Its id.
    pub id: i64,
    /// The capability.
    pub capability: String,
    /// Running, clean, diverged or failed.
    pub status: RunStatus,
    /// When it started (RFC 3339, UTC).
    pub started_at: String,
    /// When it ended, if it did.
    pub finished_at: Option<String>,
    /// Distinct keys compared.
    pub rows_compared: Option<i64>,
    /// Keys in the monolith only.
    pub missing: Option<i64>,
    /// Keys in the service only.
    pub extra: Option<i64>,
    /// Changed rows.
    pub changed: Option<i64>,
    /// Why a failed run failed.
    pub error: Option<String>,
    /// The JSON report of a finished run.
    pub report: Option<String>,
    /// `full` or `incremental` (`full` for runs recorded before kinds were).
    pub kind: String,
    /// Of one shard of a run group: `I/N`.
    pub shard: Option<String>,
}

/// Where the last clean run of a capability left off, from
/// `reconciliation_watermarks`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Watermark {
    /// When the last clean run started: every row changed before then was
    /// equal on both sides.
    pub clean_from: DateTime<Utc>,
    /// When the last clean full run started.
    pub full_at: Option<DateTime<Utc>>,
    /// The run that set `clean_from`.
    pub run_id: i64,
}

/// A recorded run of one shard of a run group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardRun {
    /// Which shard it was.
    pub shard: ShardIndex,
    /// The run.
    pub record: RunRecord,
}

/// A stored RFC 3339 time, or an error naming the capability.
fn stored_time(capability: &str, text: &str) -> Result<DateTime<Utc>, ReconcileError> {
    DateTime::parse_from_rfc3339(text)
        .map(|at| at.with_timezone(&Utc))
        .map_err(|error| {
            ReconcileError::Unsupported(format!(
                "the toolkit store's watermark of `{capability}` holds `{text}`, which is no RFC 3339 time ({error}); \
                 delete its row in reconciliation_watermarks to start over with a full run"
            ))
        })
}

/// A row of `reconciliation_runs` as stored, its status still text.
#[derive(sqlx::FromRow)]
struct RunRow {
    id: i64,
    capability: String,
    status: String,
    started_at: String,
    finished_at: Option<String>,
    rows_compared: Option<i64>,
    missing: Option<i64>,
    extra: Option<i64>,
    changed: Option<i64>,
    error: Option<String>,
    report: Option<String>,
    kind: String,
    shard_index: Option<i64>,
    shard_count: Option<i64>,
}

impl TryFrom<RunRow> for RunRecord {
    type Error = ReconcileError;

    fn try_from(row: RunRow) -> Result<Self, Self::Error> {
        let status = row
            .status
            .parse()
            .map_err(|source| ReconcileError::StoredRun { id: row.id, source })?;
        Ok(Self {
            id: row.id,
            capability: row.capability,
            status,
            started_at: row.started_at,
            finished_at: row.finished_at,
            rows_compared: row.rows_compared,
            missing: row.missing,
            extra: row.extra,
            changed: row.changed,
            error: row.error,
            report: row.report,
            kind: row.kind,
            shard: row
                .shard_index
                .zip(row.shard_count)
                .map(|(i, n)| format!("{i}/{n}")),
        })
    }
}

/// The reconciler's view of the toolkit store.
#[derive(Debug, Clone)]
pub struct RunStore {
    store: StateStore,
}

async fn bounded<T>(
    doing: &str,
    work: impl Future<Output = Result<T, sqlx::Error>>,
) -> Result<T, ReconcileError> {
    match tokio::time::timeout(STORE_TIMEOUT, work).await {
        Ok(result) => result.map_err(ReconcileError::Store),
        Err(_) => Err(ReconcileError::StoreTimeout {
            doing: doing.to_owned(),
            seconds: STORE_TIMEOUT.as_secs(),
        }),
    }
}

impl RunStore {
    /// Opens (and migrates) the toolkit store at `url`.
    pub async fn open(url: &DatabaseUrl) -> Result<Self, ReconcileError> {
        match tokio::time::timeout(STORE_TIMEOUT, StateStore::open(url)).await {
            Ok(result) => Ok(Self {
                store: result.map_err(ReconcileError::StoreOpen)?,
            }),
            Err(_) => Err(ReconcileError::StoreTimeout {
                doing: "opening it".to_owned(),
                seconds: STORE_TIMEOUT.as_secs(),
            }),
        }
    }

    /// Records the start of a run of `capability`.
    pub async fn start(&self, capability: &str) -> Result<RunId, ReconcileError> {
        self.start_shard(capability, None).await
    }

    /// Records the start of a run of `capability`, one shard of a run group
    /// when `shard` says so (so that a merge can tell it is still running).
    pub async fn start_shard(
        &self,
        capability: &str,
        shard: Option<&Shard>,
    ) -> Result<RunId, ReconcileError> {
        let id: i64 = bounded(
            "recording the start of a run",
            sqlx::query_scalar(
                "INSERT INTO reconciliation_runs (capability, status, started_at, run_group, shard_index, shard_count) \
                 VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
            )
            .bind(capability)
            .bind(RunStatus::Running.as_str())
            .bind(timestamp::now())
            .bind(shard.map(|s| s.group.clone()))
            .bind(shard.map(|s| i64::from(s.index)))
            .bind(shard.map(|s| i64::from(s.count)))
            .fetch_one(self.store.database().pool()),
        )
        .await?;
        Ok(RunId(id))
    }

    /// Records a finished run and its report.
    pub async fn finish(&self, id: RunId, report: &Report) -> Result<(), ReconcileError> {
        let json = serde_json::to_string(report)
            .map_err(|e| ReconcileError::Store(sqlx::Error::Encode(Box::new(e))))?;
        let totals = &report.totals;
        let shard = report.shard.as_ref();
        bounded(
            "recording the result of a run",
            sqlx::query(
                "UPDATE reconciliation_runs SET status = $1, finished_at = $2, rows_compared = $3, \
                 missing = $4, extra = $5, changed = $6, report = $7, kind = $8, since = $9, \
                 run_group = $10, shard_index = $11, shard_count = $12 WHERE id = $13",
            )
            .bind(RunStatus::from(report.status).as_str())
            .bind(timestamp::now())
            .bind(totals.rows_compared as i64)
            .bind(totals.missing as i64)
            .bind(totals.extra as i64)
            .bind(totals.changed as i64)
            .bind(json)
            .bind(report.kind.as_str())
            .bind(report.since.clone())
            .bind(shard.map(|s| s.group.clone()))
            .bind(shard.map(|s| i64::from(s.index)))
            .bind(shard.map(|s| i64::from(s.count)))
            .bind(id.0)
            .execute(self.store.database().pool()),
        )
        .await?;
        // Only a clean run over every key moves the watermark: a shard saw
        // part of the keys, and a diverged run leaves its rows to be read
        // again.
        if report.status == Status::Clean && report.shard.is_none() {
            let full_at = (report.kind == RunKind::Full).then(|| report.started_at.clone());
            bounded(
                "recording the watermark of a clean run",
                sqlx::query(
                    "INSERT INTO reconciliation_watermarks (capability, clean_from, full_at, run_id) \
                     VALUES ($1, $2, $3, $4) ON CONFLICT (capability) DO UPDATE SET \
                     clean_from = excluded.clean_from, \
                     full_at = COALESCE(excluded.full_at, reconciliation_watermarks.full_at), \
                     run_id = excluded.run_id",
                )
                .bind(&report.capability)
                .bind(&report.started_at)
                .bind(full_at)
                .bind(id.0)
                .execute(self.store.database().pool()),
            )
            .await?;
        }
        Ok(())
    }

    /// Where the last clean run of `capability` left off, if one did.
    pub async fn watermark(&self, capability: &str) -> Result<Option<Watermark>, ReconcileError> {
        let row: Option<(String, Option<String>, i64)> = bounded(
            "reading the watermark of the last clean run",
            sqlx::query_as(
                "SELECT clean_from, full_at, run_id FROM reconciliation_watermarks WHERE capability = $1",
            )
            .bind(capability)
            .fetch_optional(self.store.database().pool()),
        )
        .await?;
        let Some((clean_from, full_at, run_id)) = row else {
            return Ok(None);
        };
        Ok(Some(Watermark {
            clean_from: stored_time(capability, &clean_from)?,
            full_at: full_at.map(|at| stored_time(capability, &at)).transpose()?,
            run_id,
        }))
    }

    /// Records a failed run and why.
    pub async fn fail(&self, id: RunId, error: &str) -> Result<(), ReconcileError> {
        bounded(
            "recording a failed run",
            sqlx::query(
                "UPDATE reconciliation_runs SET status = $1, finished_at = $2, error = $3 WHERE id = $4",
            )
            .bind(RunStatus::Failed.as_str())
            .bind(timestamp::now())
            .bind(error)
            .bind(id.0)
            .execute(self.store.database().pool()),
        )
        .await?;
        Ok(())
    }

    /// The cut keys of `table` fixed for run group `group`, if a process of
    /// the group fixed them.
    pub(crate) async fn shard_cuts(
        &self,
        group: &str,
        capability: &str,
        table: &str,
    ) -> Result<Option<StoredCuts>, ReconcileError> {
        let row: Option<(i64, String)> = bounded(
            "reading the key ranges of a sharded run",
            sqlx::query_as(
                "SELECT shard_count, bounds FROM reconciliation_shard_bounds \
                 WHERE run_group = $1 AND capability = $2 AND table_name = $3",
            )
            .bind(group)
            .bind(capability)
            .bind(table)
            .fetch_optional(self.store.database().pool()),
        )
        .await?;
        let Some((count, bounds)) = row else {
            return Ok(None);
        };
        let cuts: Vec<Vec<SqlValue>> = serde_json::from_str(&bounds).map_err(|error| {
            ReconcileError::Unsupported(format!(
                "the key ranges stored for run group `{group}`, table `{table}`, cannot be read ({error}); \
                 pick a new --group"
            ))
        })?;
        Ok(Some(StoredCuts {
            count: u32::try_from(count).unwrap_or(0),
            cuts,
        }))
    }

    /// Fixes `cuts` as `table`'s for run group `group`, unless a process of
    /// the group fixed them first.
    pub(crate) async fn offer_shard_cuts(
        &self,
        group: &str,
        capability: &str,
        table: &str,
        count: u32,
        cuts: &[Vec<SqlValue>],
    ) -> Result<(), ReconcileError> {
        let json = serde_json::to_string(cuts)
            .map_err(|e| ReconcileError::Store(sqlx::Error::Encode(Box::new(e))))?;
        bounded(
            "recording the key ranges of a sharded run",
            sqlx::query(
                "INSERT INTO reconciliation_shard_bounds (run_group, capability, table_name, shard_count, bounds) \
                 VALUES ($1, $2, $3, $4, $5) ON CONFLICT (run_group, capability, table_name) DO NOTHING",
            )
            .bind(group)
            .bind(capability)
            .bind(table)
            .bind(i64::from(count))
            .bind(json)
            .execute(self.store.database().pool()),
        )
        .await?;
        Ok(())
    }

    /// The runs of `capability` in run group `group`, oldest first.
    pub async fn group_runs(&self, capability: &str, group: &str) -> Result<Vec<ShardRun>, ReconcileError> {
        let rows: Vec<RunRow> = bounded(
            "reading the runs of a run group",
            sqlx::query_as(
                "SELECT id, capability, status, started_at, finished_at, rows_compared, \
                 missing, extra, changed, error, report, kind, shard_index, shard_count FROM reconciliation_runs \
                 WHERE capability = $1 AND run_group = $2 AND shard_index IS NOT NULL AND shard_count IS NOT NULL \
                 ORDER BY id",
            )
            .bind(capability)
            .bind(group)
            .fetch_all(self.store.database().pool()),
        )
        .await?;
        rows.into_iter()
            .map(|run| {
                let shard = ShardIndex {
                    index: run.shard_index.and_then(|i| u32::try_from(i).ok()).unwrap_or(0),
                    count: run.shard_count.and_then(|n| u32::try_from(n).ok()).unwrap_or(0),
                };
                Ok(ShardRun {
                    shard,
                    record: RunRecord::try_from(run)?,
                })
            })
            .collect()
    }

    /// The runs of `capability`, oldest first.
    /// A run whose status this version does not know is an error naming it.
    pub async fn runs(&self, capability: &str) -> Result<Vec<RunRecord>, ReconcileError> {
        let rows: Vec<RunRow> = bounded(
            "reading past runs",
            sqlx::query_as(
                "SELECT id, capability, status, started_at, finished_at, rows_compared, missing, extra, changed, error, report, \
                 kind, shard_index, shard_count FROM reconciliation_runs WHERE capability = $1 ORDER BY id",
            )
            .bind(capability)
            .fetch_all(self.store.database().pool()),
        )
        .await?;
        rows.into_iter().map(RunRecord::try_from).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(status: &str) -> RunRow {
        RunRow {
            id: 7,
            capability: "orders".to_owned(),
            status: status.to_owned(),
            started_at: "2026-01-01T00:00:00.000Z".to_owned(),
            finished_at: None,
            rows_compared: None,
            missing: None,
            extra: None,
            changed: None,
            error: None,
            report: None,
            kind: "full".to_owned(),
            shard_index: None,
            shard_count: None,
        }
    }

    #[test]
    fn statuses_read_and_write_the_stored_names() {
        for (status, name) in RunStatus::ALL
            .into_iter()
            .zip(["running", "clean", "diverged", "failed"])
        {
            assert_eq!(status.as_str(), name);
            assert_eq!(status.to_string(), name);
            assert_eq!(name.parse::<RunStatus>(), Ok(status));
            assert_eq!(serde_json::to_value(status).unwrap(), name);
            assert_eq!(RunRecord::try_from(row(name)).unwrap().status, status);
        }
        assert_eq!(RunStatus::from(Status::Clean), RunStatus::Clean);
        assert_eq!(RunStatus::from(Status::Diverged), RunStatus::Diverged);
    }

    #[test]
    fn an_unknown_stored_status_is_an_error_naming_it() {
        assert_eq!(
            "cancelled".parse::<RunStatus>(),
            Err(UnknownRunStatus("cancelled".to_owned()))
        );
        let error = RunRecord::try_from(row("cancelled")).unwrap_err().chain();
        assert_eq!(
            error,
            "run #7 in the toolkit store cannot be read: \
             unknown run status `cancelled`; a run is running, clean, diverged or failed"
        );
    }
}
