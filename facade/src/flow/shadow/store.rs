//! The shadow tables of the toolkit store: counts per ten-second bucket,
//! the fields that differed, learned noise and sample diffs.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};
use sqlx::FromRow;
use toolkit_db::Database;

/// Samples kept per capability.
const SAMPLES_KEPT: i64 = 200;

/// Counts of one capability in one bucket.
#[derive(Debug, Default, Clone)]
pub struct Bucket {
    /// Comparisons made.
    pub compared: i64,
    /// Comparisons that differed.
    pub mismatched: i64,
    /// Copies dropped on a full queue.
    pub dropped: i64,
    /// Requests not shadowed.
    pub skipped: i64,
    /// Mismatches per field.
    pub fields: BTreeMap<String, i64>,
}

impl Bucket {
    /// Adds another bucket's counts.
    pub fn add(&mut self, other: &Bucket) {
        self.compared += other.compared;
        self.mismatched += other.mismatched;
        self.dropped += other.dropped;
        self.skipped += other.skipped;
        for (field, count) in &other.fields {
            *self.fields.entry(field.clone()).or_default() += count;
        }
    }
}

/// One mismatch kept with its diff.
#[derive(Debug, Clone, Serialize, Deserialize, FromRow, PartialEq)]
pub struct Sample {
    /// When (RFC 3339).
    pub at: String,
    /// Correlation id of the client's request.
    pub request_id: String,
    /// Method.
    pub method: String,
    /// Normalized path, without the query.
    pub path: String,
    /// The monolith's status.
    pub legacy_status: i64,
    /// The service's status (0 when it did not answer).
    pub service_status: i64,
    /// JSON array of the fields that differed.
    pub fields: String,
    /// Unified diff of the normalized answers.
    pub diff: String,
}

/// Totals over a window.
#[derive(Debug, Default, Clone, Copy, Serialize, Deserialize, PartialEq)]
pub struct Totals {
    /// Comparisons made.
    pub compared: i64,
    /// Comparisons that differed.
    pub mismatched: i64,
    /// Copies dropped on a full queue.
    pub dropped: i64,
    /// Requests not shadowed.
    pub skipped: i64,
}

impl Totals {
    /// Mismatches per comparison (0 without comparisons).
    pub fn mismatch_rate(&self) -> f64 {
        if self.compared == 0 {
            0.0
        } else {
            self.mismatched as f64 / self.compared as f64
        }
    }
}

/// Writes a flush in one transaction: counts are added into their buckets
/// (several facades may share a bucket), samples appended and trimmed.
pub(crate) async fn write(
    db: &Database,
    buckets: &HashMap<(&'static str, i64), Bucket>,
    samples: &HashMap<&'static str, Vec<Sample>>,
    noise: &[(&'static str, String)],
    now: &str,
) -> Result<(), sqlx::Error> {
    let mut tx = db.pool().begin().await?;
    for ((capability, bucket), counts) in buckets {
        sqlx::query(
            "INSERT INTO shadow_windows (capability, bucket, compared, mismatched, dropped, skipped) \
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (capability, bucket) DO UPDATE SET \
             compared = shadow_windows.compared + excluded.compared, \
             mismatched = shadow_windows.mismatched + excluded.mismatched, \
             dropped = shadow_windows.dropped + excluded.dropped, \
             skipped = shadow_windows.skipped + excluded.skipped",
        )
        .bind(*capability)
        .bind(*bucket)
        .bind(counts.compared)
        .bind(counts.mismatched)
        .bind(counts.dropped)
        .bind(counts.skipped)
        .execute(&mut *tx)
        .await?;
        for (field, count) in &counts.fields {
            sqlx::query(
                "INSERT INTO shadow_fields (capability, bucket, field, mismatches) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (capability, bucket, field) DO UPDATE SET \
                 mismatches = shadow_fields.mismatches + excluded.mismatches",
            )
            .bind(*capability)
            .bind(*bucket)
            .bind(field)
            .bind(*count)
            .execute(&mut *tx)
            .await?;
        }
    }
    for (capability, list) in samples {
        for sample in list {
            sqlx::query(
                "INSERT INTO shadow_samples (capability, at, request_id, method, path, legacy_status, \
                 service_status, fields, diff) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
            )
            .bind(*capability)
            .bind(&sample.at)
            .bind(&sample.request_id)
            .bind(&sample.method)
            .bind(&sample.path)
            .bind(sample.legacy_status)
            .bind(sample.service_status)
            .bind(&sample.fields)
            .bind(&sample.diff)
            .execute(&mut *tx)
            .await?;
        }
        sqlx::query(
            "DELETE FROM shadow_samples WHERE capability = $1 AND id <= \
             (SELECT id FROM shadow_samples WHERE capability = $1 ORDER BY id DESC LIMIT 1 OFFSET $2)",
        )
        .bind(*capability)
        .bind(SAMPLES_KEPT)
        .execute(&mut *tx)
        .await?;
    }
    for (capability, field) in noise {
        sqlx::query(
            "INSERT INTO shadow_noise (capability, field, learned_at) VALUES ($1, $2, $3) \
             ON CONFLICT (capability, field) DO NOTHING",
        )
        .bind(*capability)
        .bind(field)
        .bind(now)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await
}

/// Totals of `capability` from bucket `since` on.
pub async fn totals(db: &Database, capability: &str, since: i64) -> Result<Totals, sqlx::Error> {
    let (compared, mismatched, dropped, skipped): (i64, i64, i64, i64) = sqlx::query_as(
        "SELECT CAST(COALESCE(SUM(compared), 0) AS BIGINT), CAST(COALESCE(SUM(mismatched), 0) AS BIGINT), \
         CAST(COALESCE(SUM(dropped), 0) AS BIGINT), CAST(COALESCE(SUM(skipped), 0) AS BIGINT) \
         FROM shadow_windows WHERE capability = $1 AND bucket >= $2",
    )
    .bind(capability)
    .bind(since)
    .fetch_one(db.pool())
    .await?;
    Ok(Totals {
        compared,
        mismatched,
        dropped,
        skipped,
    })
}

/// The fields that differed most often from bucket `since` on.
pub async fn top_fields(
    db: &Database,
    capability: &str,
    since: i64,
    limit: i64,
) -> Result<Vec<(String, i64)>, sqlx::Error> {
    sqlx::query_as(
        "SELECT field, CAST(SUM(mismatches) AS BIGINT) AS n FROM shadow_fields \
         WHERE capability = $1 AND bucket >= $2 GROUP BY field ORDER BY n DESC, field LIMIT $3",
    )
    .bind(capability)
    .bind(since)
    .bind(limit)
    .fetch_all(db.pool())
    .await
}

/// The latest samples, newest first.
pub async fn samples(db: &Database, capability: &str, limit: i64) -> Result<Vec<Sample>, sqlx::Error> {
    sqlx::query_as(
        "SELECT at, request_id, method, path, legacy_status, service_status, fields, diff \
         FROM shadow_samples WHERE capability = $1 ORDER BY id DESC LIMIT $2",
    )
    .bind(capability)
    .bind(limit)
    .fetch_all(db.pool())
    .await
}

/// Fields learned as noise.
pub async fn noise(db: &Database, capability: &str) -> Result<Vec<String>, sqlx::Error> {
    let rows: Vec<(String,)> =
        sqlx::query_as("SELECT field FROM shadow_noise WHERE capability = $1 ORDER BY field")
            .bind(capability)
            .fetch_all(db.pool())
            .await?;
    Ok(rows.into_iter().map(|(f,)| f).collect())
}
