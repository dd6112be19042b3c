//! The copy itself: keyset-paginated batches, each upserted into the
//! service's table together with its checkpoint in one transaction.
//!
//! The checkpoint lives in the service's database (table
//! `strangler_backfill_checkpoints`) precisely so that a batch and the record
//! of it commit or vanish together. A run whose previous run finished starts
//! a fresh pass from the first key (re-copying is harmless: rows are
//! upserted); a run whose previous run was interrupted resumes after the last
//! committed key.

use mapping::{CapabilityMapping, ColumnPair, Side, TableMapping};
use sqlx::any::AnyRow;
use toolkit_db::sql_value::{bind_value, decode_row, SqlValue};
use toolkit_db::{timestamp, Database};

/// SQLite's default limit on bound parameters is 32,766; stay below it.
const MAX_PARAMETERS: usize = 30_000;

/// Why a backfill stopped. Batches committed before the error stay, and the
/// next run resumes after them.
#[derive(Debug, thiserror::Error)]
pub enum BackfillError {
    /// A mapped table or column does not exist on one side.
    #[error(
        "the {side} database has no table `{table}` with the mapped columns ({columns}); fix the mapping file or the schema"
    )]
    Schema {
        /// Which database.
        side: Side,
        /// The table.
        table: String,
        /// The columns the mapping expects.
        columns: String,
        /// The driver's reason.
        #[source]
        source: sqlx::Error,
    },
    /// Reading or writing a batch failed.
    #[error("copying table `{table}` failed in the {side} database after {rows_copied} rows of this run")]
    Batch {
        /// Which database.
        side: Side,
        /// The legacy table.
        table: String,
        /// Rows committed by this run before the failure.
        rows_copied: u64,
        /// The driver's reason.
        #[source]
        source: sqlx::Error,
    },
    /// The checkpoint table could not be read or written.
    #[error("cannot use the backfill checkpoint table in the service database")]
    Checkpoint(#[source] sqlx::Error),
}

/// How to copy.
#[derive(Debug, Clone, Copy)]
pub struct BackfillOptions {
    /// Rows per batch (and per transaction).
    pub batch_size: usize,
    /// Stop after this many batches per table, leaving a resumable
    /// checkpoint; `None` copies everything.
    pub max_batches: Option<u64>,
}

impl Default for BackfillOptions {
    fn default() -> Self {
        Self {
            batch_size: 500,
            max_batches: None,
        }
    }
}

/// What happened to one table.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct TableReport {
    /// Table in the monolith.
    pub legacy_table: String,
    /// Table in the service.
    pub service_table: String,
    /// Rows written by this run.
    pub rows_copied: u64,
    /// Batches committed by this run.
    pub batches: u64,
    /// Whether this run continued an interrupted one.
    pub resumed: bool,
    /// Whether the table is now fully copied.
    pub complete: bool,
}

/// Copies every table of `capability`, in order, from `legacy` into `service`.
pub async fn backfill(
    capability: &CapabilityMapping,
    legacy: &Database,
    service: &Database,
    options: BackfillOptions,
) -> Result<Vec<TableReport>, BackfillError> {
    for table in &capability.tables {
        for (db, side, name) in [
            (legacy, Side::Legacy, &table.legacy_table),
            (service, Side::Service, &table.service_table),
        ] {
            let columns = table.columns.iter().map(|c| c.on(side));
            check_columns(db, side, &name.quoted(), columns).await?;
        }
    }
    ensure_checkpoint_table(service).await?;
    let mut reports = Vec::with_capacity(capability.tables.len());
    for table in &capability.tables {
        let report = copy_table(&capability.name, table, legacy, service, options).await?;
        tracing::info!(
            capability = %capability.name,
            table = %table.legacy_table,
            rows = report.rows_copied,
            batches = report.batches,
            resumed = report.resumed,
            complete = report.complete,
            "backfill of table finished"
        );
        reports.push(report);
        if !reports.last().is_some_and(|r| r.complete) {
            break;
        }
    }
    Ok(reports)
}

async fn check_columns<'a>(
    db: &Database,
    side: Side,
    table: &str,
    columns: impl Iterator<Item = &'a mapping::Identifier>,
) -> Result<(), BackfillError> {
    let names: Vec<&mapping::Identifier> = columns.collect();
    let list = names
        .iter()
        .map(|c| format!("t.{}", c.quoted()))
        .collect::<Vec<_>>()
        .join(", ");
    sqlx::query(&format!("SELECT {list} FROM {table} t WHERE 1 = 0"))
        .fetch_all(db.pool())
        .await
        .map_err(|source| BackfillError::Schema {
            side,
            table: table.trim_matches('"').to_owned(),
            columns: names.iter().map(|c| c.as_str()).collect::<Vec<_>>().join(", "),
            source,
        })?;
    Ok(())
}

async fn ensure_checkpoint_table(service: &Database) -> Result<(), BackfillError> {
    sqlx::query(
        "CREATE TABLE IF NOT EXISTS strangler_backfill_checkpoints (
            capability   TEXT   NOT NULL,
            table_name   TEXT   NOT NULL,
            last_key     TEXT,
            rows_copied  BIGINT NOT NULL,
            completed_at TEXT,
            updated_at   TEXT   NOT NULL,
            PRIMARY KEY (capability, table_name)
        )",
    )
    .execute(service.pool())
    .await
    .map_err(BackfillError::Checkpoint)?;
    Ok(())
}

struct Checkpoint {
    last_key: Option<Vec<SqlValue>>,
    rows_copied: i64,
}

/// The checkpoint to resume from, or `None` to start a fresh pass.
async fn resume_point(
    service: &Database,
    capability: &str,
    table: &str,
) -> Result<Option<Checkpoint>, BackfillError> {
    let row: Option<(Option<String>, i64, Option<String>)> = sqlx::query_as(
        "SELECT last_key, rows_copied, completed_at FROM strangler_backfill_checkpoints \
         WHERE capability = $1 AND table_name = $2",
    )
    .bind(capability)
    .bind(table)
    .fetch_optional(service.pool())
    .await
    .map_err(BackfillError::Checkpoint)?;
    Ok(match row {
        Some((Some(key), rows_copied, None)) => {
            let last_key = serde_json::from_str(&key)
                .map_err(|e| BackfillError::Checkpoint(sqlx::Error::Decode(Box::new(e))))?;
            Some(Checkpoint {
                last_key: Some(last_key),
                rows_copied,
            })
        }
        _ => None,
    })
}

async fn copy_table(
    capability: &str,
    table: &TableMapping,
    legacy: &Database,
    service: &Database,
    options: BackfillOptions,
) -> Result<TableReport, BackfillError> {
    let key_len = table.key.len();
    let checkpoint = resume_point(service, capability, table.legacy_table.as_str()).await?;
    let resumed = checkpoint.is_some();
    let (mut last_key, mut total_rows) = match checkpoint {
        Some(c) => (c.last_key, c.rows_copied),
        None => (None, 0),
    };
    let batch_size = options
        .batch_size
        .clamp(1, (MAX_PARAMETERS / table.columns.len().max(1)).max(1));
    // Columns are qualified (`t."name"`) because SQLite reads an unknown
    // bare "name" as a string literal instead of failing.
    let select_list = column_list(&table.columns, Side::Legacy, "t.");
    let key_list = column_list(&table.key, Side::Legacy, "t.");
    let mut report = TableReport {
        legacy_table: table.legacy_table.to_string(),
        service_table: table.service_table.to_string(),
        rows_copied: 0,
        batches: 0,
        resumed,
        complete: false,
    };
    let batch_error = |side, rows_copied, source| BackfillError::Batch {
        side,
        table: table.legacy_table.to_string(),
        rows_copied,
        source,
    };
    loop {
        if options.max_batches.is_some_and(|max| report.batches >= max) {
            return Ok(report);
        }
        let mut conditions = Vec::new();
        for filter in table.legacy_filter.iter().chain(&table.backfill_filter) {
            conditions.push(format!("({filter})"));
        }
        if last_key.is_some() {
            let params = (1..=key_len)
                .map(|n| format!("${n}"))
                .collect::<Vec<_>>()
                .join(", ");
            conditions.push(format!("({key_list}) > ({params})"));
        }
        let where_clause = if conditions.is_empty() {
            String::new()
        } else {
            format!("WHERE {}", conditions.join(" AND "))
        };
        let sql = format!(
            "SELECT {select_list} FROM {} t {where_clause} ORDER BY {key_list} LIMIT {batch_size}",
            table.legacy_table.quoted()
        );
        let mut select = sqlx::query(&sql);
        for value in last_key.iter().flatten() {
            select = bind_value(select, value);
        }
        let rows: Vec<AnyRow> = select
            .fetch_all(legacy.pool())
            .await
            .map_err(|e| batch_error(Side::Legacy, report.rows_copied, e))?;
        let rows: Vec<Vec<SqlValue>> = rows
            .iter()
            .map(decode_row)
            .collect::<Result<_, _>>()
            .map_err(|e| batch_error(Side::Legacy, report.rows_copied, e))?;
        let Some(last) = rows.last() else {
            mark_complete(service, capability, table, total_rows)
                .await
                .map_err(BackfillError::Checkpoint)?;
            report.complete = true;
            return Ok(report);
        };
        let next_key: Vec<SqlValue> = last[..key_len].to_vec();
        total_rows += rows.len() as i64;
        write_batch(service, capability, table, &rows, &next_key, total_rows)
            .await
            .map_err(|e| batch_error(Side::Service, report.rows_copied, e))?;
        report.rows_copied += rows.len() as u64;
        report.batches += 1;
        last_key = Some(next_key);
    }
}

/// The names of `columns` on `side`, quoted, each after `prefix`, joined
/// by commas.
fn column_list(columns: &[ColumnPair], side: Side, prefix: &str) -> String {
    columns
        .iter()
        .map(|c| format!("{prefix}{}", c.on(side).quoted()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Upserts `rows` and moves the checkpoint, in one transaction.
async fn write_batch(
    service: &Database,
    capability: &str,
    table: &TableMapping,
    rows: &[Vec<SqlValue>],
    last_key: &[SqlValue],
    total_rows: i64,
) -> Result<(), sqlx::Error> {
    let columns = column_list(&table.columns, Side::Service, "");
    let key = column_list(&table.key, Side::Service, "");
    let updates: Vec<String> = table.columns[table.key.len()..]
        .iter()
        .map(|c| format!("{0} = excluded.{0}", c.service.quoted()))
        .collect();
    let on_conflict = if updates.is_empty() {
        "DO NOTHING".to_owned()
    } else {
        format!("DO UPDATE SET {}", updates.join(", "))
    };
    // NULLs are written as literals: a bound NULL carries a type, and
    // PostgreSQL refuses a text-typed NULL for an integer column.
    let mut n = 0;
    let values: Vec<String> = rows
        .iter()
        .map(|row| {
            let cells: Vec<String> = row
                .iter()
                .map(|value| match value {
                    SqlValue::Null => "NULL".to_owned(),
                    _ => {
                        n += 1;
                        format!("${n}")
                    }
                })
                .collect();
            format!("({})", cells.join(", "))
        })
        .collect();
    let sql = format!(
        "INSERT INTO {} ({columns}) VALUES {} ON CONFLICT ({key}) {on_conflict}",
        table.service_table.quoted(),
        values.join(", ")
    );
    let mut insert = sqlx::query(&sql);
    for value in rows.iter().flatten().filter(|v| **v != SqlValue::Null) {
        insert = bind_value(insert, value);
    }
    let key_json = serde_json::to_string(last_key).map_err(|e| sqlx::Error::Encode(Box::new(e)))?;
    let mut tx = service.pool().begin().await?;
    insert.execute(&mut *tx).await?;
    sqlx::query(
        "INSERT INTO strangler_backfill_checkpoints (capability, table_name, last_key, rows_copied, completed_at, updated_at) \
         VALUES ($1, $2, $3, $4, NULL, $5) \
         ON CONFLICT (capability, table_name) DO UPDATE SET last_key = excluded.last_key, \
         rows_copied = excluded.rows_copied, completed_at = NULL, updated_at = excluded.updated_at",
    )
    .bind(capability)
    .bind(table.legacy_table.as_str())
    .bind(key_json)
    .bind(total_rows)
    .bind(timestamp::now())
    .execute(&mut *tx)
    .await?;
    tx.commit().await
}

async fn mark_complete(
    service: &Database,
    capability: &str,
    table: &TableMapping,
    total_rows: i64,
) -> Result<(), sqlx::Error> {
    let now = timestamp::now();
    sqlx::query(
        "INSERT INTO strangler_backfill_checkpoints (capability, table_name, last_key, rows_copied, completed_at, updated_at) \
         VALUES ($1, $2, NULL, $3, $4, $4) \
         ON CONFLICT (capability, table_name) DO UPDATE SET last_key = NULL, rows_copied = excluded.rows_copied, \
         completed_at = excluded.completed_at, updated_at = excluded.updated_at",
    )
    .bind(capability)
    .bind(table.legacy_table.as_str())
    .bind(total_rows)
    .bind(&now)
    .execute(service.pool())
    .await?;
    Ok(())
}
