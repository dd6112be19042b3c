//! The history of runs in the toolkit store's `reconciliation_runs` table:
//! a run is recorded as `running` when it starts and becomes `clean`,
//! `diverged` or `failed` when it ends, with its counts and its JSON report,
//! or with its error (which never holds a connection string).

use std::future::Future;
use std::time::Duration;

use toolkit_db::{timestamp, DatabaseUrl};
use toolkit_store::StateStore;

use crate::report::Report;
use crate::ReconcileError;

/// How long any statement on the store may take.
const STORE_TIMEOUT: Duration = Duration::from_secs(10);

/// A run's id in `reconciliation_runs`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunId(pub i64);

/// One recorded run, as read back.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct RunRecord {
    /// Its id.
    pub id: i64,
    /// The capability.
    pub capability: String,
    /// `running`, `clean`, `diverged` or `failed`.
    pub status: String,
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
        let id: i64 = bounded(
            "recording the start of a run",
            sqlx::query_scalar(
                "INSERT INTO reconciliation_runs (capability, status, started_at) \
                 VALUES ($1, 'running', $2) RETURNING id",
            )
            .bind(capability)
            .bind(timestamp::now())
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
        bounded(
            "recording the result of a run",
            sqlx::query(
                "UPDATE reconciliation_runs SET status = $1, finished_at = $2, rows_compared = $3, \
                 missing = $4, extra = $5, changed = $6, report = $7 WHERE id = $8",
            )
            .bind(report.status.as_str())
            .bind(timestamp::now())
            .bind(totals.rows_compared as i64)
            .bind(totals.missing as i64)
            .bind(totals.extra as i64)
            .bind(totals.changed as i64)
            .bind(json)
            .bind(id.0)
            .execute(self.store.database().pool()),
        )
        .await?;
        Ok(())
    }

    /// Records a failed run and why.
    pub async fn fail(&self, id: RunId, error: &str) -> Result<(), ReconcileError> {
        bounded(
            "recording a failed run",
            sqlx::query(
                "UPDATE reconciliation_runs SET status = 'failed', finished_at = $1, error = $2 WHERE id = $3",
            )
            .bind(timestamp::now())
            .bind(error)
            .bind(id.0)
            .execute(self.store.database().pool()),
        )
        .await?;
        Ok(())
    }

    /// The runs of `capability`, oldest first.
    pub async fn runs(&self, capability: &str) -> Result<Vec<RunRecord>, ReconcileError> {
        bounded(
            "reading past runs",
            sqlx::query_as(
                "SELECT id, capability, status, started_at, finished_at, rows_compared, missing, extra, changed, error, report \
                 FROM reconciliation_runs WHERE capability = $1 ORDER BY id",
            )
            .bind(capability)
            .fetch_all(self.store.database().pool()),
        )
        .await
    }
}
