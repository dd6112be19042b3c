//! Incremental comparison of one table: only the rows changed since a
//! point in time (`since`, the last clean run's start less the overlap)
//! on either side, plus a count check that catches rows deleted on one
//! side only, which leave no change time behind.
//!
//! 1. Each side lists the keys of its rows whose `updated_at_column` is at
//!    or after `since` (an index on that column makes this cheap). Their
//!    union is the set of changed keys: a row changed on one side only is
//!    in it, whatever its change time on the other side.
//! 2. Both sides' rows with those keys are read by key, a chunk of keys per
//!    query, and judged like the merge judges them.
//! 3. Each side counts its rows, and sums its keys where the key is one
//!    integer column. Outside the changed keys both sides must hold the
//!    same rows, so the counts (and sums) less those of the changed keys
//!    each side holds must be equal. Where they are not, a range where one
//!    side holds one row more is tried as one row whose key the sums name,
//!    and any other is cut into sixteen and counted again, down to ranges
//!    of `leaf_rows`, which are read whole and judged (changed keys left
//!    out: they were judged in step 2). See [`deletes`].
//!
//! What this cannot see: rows deleted on one side and others deleted on the
//! other, none changed since, whose counts (and key sums) cancel out; a
//! change time written more than the overlap in the past.
//! The full run that `full_every` schedules catches both.

use std::cmp::Ordering;

use chrono::{DateTime, Utc};
use toolkit_db::sql_value::SqlValue;
use toolkit_db::Engine;

use crate::checksum::Lane;
use crate::key_text::named_key_text;
use crate::merge::Judge;
use crate::normalize::compare_keys;
use crate::plan::{SidePlan, TablePlan};
use crate::report::json_key;
use crate::source::Source;
use crate::sql::{ColumnClass, Dialect};
use crate::ReconcileError;

mod deletes;

use deletes::Held;

/// Bound values per by-key query, at most: well inside every engine's limit
/// on parameters (SQLite's is the lowest, 32,766).
const BINDS_PER_QUERY: usize = 4096;

/// What an incremental comparison of a table did, for its report's note.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ChangedSummary {
    /// Keys changed on either side since the watermark.
    pub changed_keys: u64,
    /// Key ranges read whole because their counts disagreed.
    pub ranges_read: u64,
    /// Rows found on one side only by their key alone: a range where one
    /// side held one row more, and the key sums named it.
    pub lone_keys: u64,
    /// Whether row counts were checked.
    pub counted: bool,
}

impl ChangedSummary {
    /// The table report's note: what was read, since when.
    pub fn note(&self, since: DateTime<Utc>) -> String {
        let keys = match self.changed_keys {
            1 => "1 key".to_owned(),
            n => format!("{n} keys"),
        };
        let ranges = match (self.ranges_read, self.lone_keys) {
            _ if !self.counted => "rows deleted on one side only are left to full runs".to_owned(),
            (0, 0) => "row counts agree elsewhere".to_owned(),
            (ranges, lone) => {
                let mut parts = Vec::new();
                if lone > 0 {
                    let rows = if lone == 1 {
                        "1 row".to_owned()
                    } else {
                        format!("{lone} rows")
                    };
                    parts.push(format!(
                        "{rows} on one side only found by key from the counts' key sums"
                    ));
                }
                match ranges {
                    0 => {}
                    1 => parts.push("1 key range whose row counts differed was read whole".to_owned()),
                    n => parts.push(format!(
                        "{n} key ranges whose row counts differed were read whole"
                    )),
                }
                parts.join("; ")
            }
        };
        format!(
            "{keys} changed since {} on either side; {ranges}",
            since.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
        )
    }
}

/// Compares the rows of `plan` changed since `since` on either side, then
/// checks the counts of the rest; every verdict goes to `judge`, whose
/// report then holds each side's full row count.
pub(crate) async fn compare_changed(
    plan: &TablePlan,
    lane: &mut Lane,
    since: DateTime<Utc>,
    count_deletes: bool,
    leaf_rows: u64,
    key_limit: usize,
    judge: &mut Judge<'_>,
) -> Result<Option<ChangedSummary>, ReconcileError> {
    let Some(change_time) = &plan.change_time else {
        return Err(ReconcileError::Unsupported(format!(
            "table `{}` has no updated_at_column, which an incremental comparison needs",
            plan.legacy.table
        )));
    };
    let key_len = plan.key_len();
    let legacy_predicate = {
        let (column, declared) = change_time.on(mapping::Side::Legacy);
        changed_since(plan.legacy.dialect, column, declared, since)
    };
    let service_predicate = {
        let (column, declared) = change_time.on(mapping::Side::Service);
        changed_since(plan.service.dialect, column, declared, since)
    };
    let (legacy_keys, service_keys) = tokio::try_join!(
        changed_keys(
            &mut lane.legacy,
            &plan.legacy,
            key_len,
            &legacy_predicate,
            key_limit
        ),
        changed_keys(
            &mut lane.service,
            &plan.service,
            key_len,
            &service_predicate,
            key_limit
        ),
    )?;
    let (Some(legacy_keys), Some(service_keys)) = (legacy_keys, service_keys) else {
        // The changed keys are held in memory; past this many, reading them
        // costs about what the full comparison costs, which streams.
        return Ok(None);
    };
    let changed = union(legacy_keys, service_keys);
    // The changed keys each side holds, in key order, for the count check.
    let mut held = Held::default();
    let per_query = (BINDS_PER_QUERY / key_len.max(1)).max(1);
    for chunk in changed.chunks(per_query) {
        let (legacy_rows, service_rows) = tokio::try_join!(
            rows_by_key(&mut lane.legacy, &plan.legacy, key_len, chunk),
            rows_by_key(&mut lane.service, &plan.service, key_len, chunk),
        )?;
        judge.report.rows_fetched += (legacy_rows.len() + service_rows.len()) as u64;
        held.legacy
            .extend(legacy_rows.iter().map(|row| row[..key_len].to_vec()));
        held.service
            .extend(service_rows.iter().map(|row| row[..key_len].to_vec()));
        walk(key_len, legacy_rows, service_rows, judge);
    }
    let mut summary = ChangedSummary {
        changed_keys: changed.len() as u64,
        ranges_read: 0,
        lone_keys: 0,
        counted: count_deletes,
    };
    if !count_deletes {
        sort_findings(judge);
        return Ok(Some(summary));
    }
    let (rows_legacy, rows_service) =
        deletes::check_counts(plan, lane, &changed, &held, leaf_rows, judge, &mut summary).await?;
    sort_findings(judge);
    judge.report.rows_legacy = rows_legacy;
    judge.report.rows_service = rows_service;
    Ok(Some(summary))
}

/// Changed keys are judged first and ranges whose counts differ after: puts
/// the findings in key order, as every report has them.
fn sort_findings(judge: &mut Judge<'_>) {
    let report = &mut judge.report;
    report.missing.sort_by(|a, b| compare_json_keys(&a.key, &b.key));
    report.extra.sort_by(|a, b| compare_json_keys(&a.key, &b.key));
    report.changed.sort_by(|a, b| compare_json_keys(&a.key, &b.key));
    report.settling.sort_by(|a, b| compare_json_keys(&a.key, &b.key));
}

/// Two report keys in the order [`compare_keys`] puts the values they were
/// made from: numbers by value, text (and hex-spelled bytes) by bytes.
fn compare_json_keys(a: &[serde_json::Value], b: &[serde_json::Value]) -> Ordering {
    use serde_json::Value;
    fn rank(value: &Value) -> u8 {
        match value {
            Value::Null => 0,
            Value::Bool(_) | Value::Number(_) => 1,
            Value::String(_) => 2,
            Value::Array(_) | Value::Object(_) => 3,
        }
    }
    for (x, y) in a.iter().zip(b) {
        let order = match (x, y) {
            (Value::Number(x), Value::Number(y)) => match (x.as_i64(), y.as_i64()) {
                (Some(x), Some(y)) => x.cmp(&y),
                _ => x.as_f64().partial_cmp(&y.as_f64()).unwrap_or(Ordering::Equal),
            },
            (Value::String(x), Value::String(y)) => x.as_bytes().cmp(y.as_bytes()),
            _ if rank(x) != rank(y) => rank(x).cmp(&rank(y)),
            _ => x.to_string().cmp(&y.to_string()),
        };
        if order != Ordering::Equal {
            return order;
        }
    }
    a.len().cmp(&b.len())
}

/// The SQL condition "changed at or after `since`" on `column`, whose
/// declared type is `declared`. Change times without a zone are taken as
/// UTC, as everywhere else in the reconciler. `since` is spelled in as a
/// literal made of digits and separators only.
pub(crate) fn changed_since(
    dialect: Dialect,
    column: &mapping::Identifier,
    declared: &str,
    since: DateTime<Utc>,
) -> String {
    let column = dialect.column(column);
    let declared = declared.to_ascii_lowercase();
    let at = since.format("%Y-%m-%d %H:%M:%S%.6f");
    match dialect.engine() {
        // A timestamp column compared as it is keeps its index usable.
        Engine::Postgres if declared.starts_with("timestamp") || declared == "date" => {
            format!("{column} >= '{at}+00'")
        }
        Engine::Postgres => format!("CAST({column} AS timestamptz) >= '{at}+00'"),
        // The session's time zone is UTC (see `source`).
        Engine::MySql if matches!(declared.as_str(), "datetime" | "timestamp" | "date") => {
            format!("{column} >= '{at}'")
        }
        Engine::MySql => format!("CAST({column} AS DATETIME(6)) >= '{at}'"),
        // SQLite keeps change times as text (any of the formats its date
        // functions read) or as Unix seconds.
        Engine::Sqlite => format!(
            "(CASE WHEN typeof({column}) IN ('integer', 'real') THEN julianday({column}, 'unixepoch') \
             ELSE julianday({column}) END) >= julianday('{at}')"
        ),
    }
}

/// The keys of `plan`'s rows (within its filter) for which `predicate`
/// holds, in key order; `None` when there are more than `limit`.
async fn changed_keys(
    source: &mut Source,
    plan: &SidePlan,
    key_len: usize,
    predicate: &str,
    limit: usize,
) -> Result<Option<Vec<Vec<SqlValue>>>, ReconcileError> {
    let mut conditions = Vec::with_capacity(2);
    if let Some(filter) = &plan.filter {
        conditions.push(format!("({filter})"));
    }
    conditions.push(predicate.to_owned());
    let sql = format!(
        "SELECT {} FROM {} t WHERE {} ORDER BY {} LIMIT {}",
        plan.key_select,
        plan.dialect.quote(&plan.table),
        conditions.join(" AND "),
        plan.key_exprs.join(", "),
        limit.saturating_add(1)
    );
    let doing = format!("reading the keys of rows changed in table `{}`", plan.table);
    let mut keys = source.fetch(&sql, &[], &plan.classes[..key_len], &doing).await?;
    if keys.len() > limit {
        return Ok(None);
    }
    keys.sort_by(|a, b| compare_keys(a, b));
    Ok(Some(keys))
}

/// Both lists merged in key order, each key once.
fn union(a: Vec<Vec<SqlValue>>, b: Vec<Vec<SqlValue>>) -> Vec<Vec<SqlValue>> {
    let mut all = Vec::with_capacity(a.len() + b.len());
    all.extend(a);
    all.extend(b);
    all.sort_by(|x, y| compare_keys(x, y));
    all.dedup_by(|x, y| compare_keys(x, y) == Ordering::Equal);
    all
}

/// The rows of `plan` (within its filter) whose keys are in `keys` (sorted),
/// in key order; an error names a key held by two rows.
async fn rows_by_key(
    source: &mut Source,
    plan: &SidePlan,
    key_len: usize,
    keys: &[Vec<SqlValue>],
) -> Result<Vec<Vec<SqlValue>>, ReconcileError> {
    if keys.is_empty() {
        return Ok(Vec::new());
    }
    let dialect = plan.dialect;
    // Integer and text keys by their own columns, not their ordering
    // expressions, so that an index on the key answers `IN`; rows that an
    // engine's collation also matches are dropped below by the exact
    // comparison. Other keys (dates, say) are read as text, and bound as
    // text: by the expression they are ordered by.
    let columns: Vec<String> = plan.checksum_columns[..key_len]
        .iter()
        .zip(&plan.key_exprs)
        .zip(&plan.classes)
        .map(|((column, expr), class)| match class {
            ColumnClass::Integer | ColumnClass::Text => dialect.column(column),
            _ => expr.clone(),
        })
        .collect();
    let mut next = 1;
    let mut tuples = Vec::with_capacity(keys.len());
    for _ in keys {
        let placeholders: Vec<String> = (0..key_len)
            .map(|_| {
                let p = dialect.placeholder(next);
                next += 1;
                p
            })
            .collect();
        tuples.push(if key_len == 1 {
            placeholders.concat()
        } else {
            format!("({})", placeholders.join(", "))
        });
    }
    let target = if key_len == 1 {
        columns.concat()
    } else {
        format!("({})", columns.join(", "))
    };
    let mut conditions = Vec::with_capacity(2);
    if let Some(filter) = &plan.filter {
        conditions.push(format!("({filter})"));
    }
    conditions.push(format!("{target} IN ({})", tuples.join(", ")));
    let sql = format!(
        "SELECT {} FROM {} t WHERE {}",
        plan.select_list,
        dialect.quote(&plan.table),
        conditions.join(" AND ")
    );
    let binds: Vec<&SqlValue> = keys.iter().flatten().collect();
    let doing = format!("reading changed rows of table `{}`", plan.table);
    let mut rows = source.fetch(&sql, &binds, &plan.classes, &doing).await?;
    rows.retain(|row| {
        keys.binary_search_by(|k| compare_keys(k, &row[..key_len]))
            .is_ok()
    });
    sorted_unique(plan, key_len, rows)
}

/// `rows` sorted by key; an error names a key two rows hold.
fn sorted_unique(
    plan: &SidePlan,
    key_len: usize,
    mut rows: Vec<Vec<SqlValue>>,
) -> Result<Vec<Vec<SqlValue>>, ReconcileError> {
    rows.sort_by(|a, b| compare_keys(&a[..key_len], &b[..key_len]));
    if let Some(pair) = rows
        .windows(2)
        .find(|pair| compare_keys(&pair[0][..key_len], &pair[1][..key_len]) == Ordering::Equal)
    {
        return Err(ReconcileError::KeyNotUnique {
            side: plan.side,
            table: plan.table.to_string(),
            key: named_key_text(&plan.key_columns, &json_key(&pair[1][..key_len])),
        });
    }
    Ok(rows)
}

/// Judges two key-sorted row lists side by side.
fn walk(key_len: usize, legacy: Vec<Vec<SqlValue>>, service: Vec<Vec<SqlValue>>, judge: &mut Judge<'_>) {
    let mut legacy = legacy.into_iter().peekable();
    let mut service = service.into_iter().peekable();
    loop {
        let order = match (legacy.peek(), service.peek()) {
            (None, None) => break,
            (Some(_), None) => Ordering::Less,
            (None, Some(_)) => Ordering::Greater,
            (Some(l), Some(s)) => compare_keys(&l[..key_len], &s[..key_len]),
        };
        match order {
            Ordering::Less => {
                if let Some(row) = legacy.next() {
                    judge.legacy_only(&row);
                }
            }
            Ordering::Greater => {
                if let Some(row) = service.next() {
                    judge.service_only(&row);
                }
            }
            Ordering::Equal => {
                if let (Some(l), Some(s)) = (legacy.next(), service.next()) {
                    judge.both(l, s);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use mapping::Identifier;

    fn keys(values: &[i64]) -> Vec<Vec<SqlValue>> {
        values.iter().map(|v| vec![SqlValue::Int(*v)]).collect()
    }

    #[test]
    fn changed_keys_of_both_sides_are_merged_once_each_in_order() {
        assert_eq!(
            union(keys(&[1, 4, 9]), keys(&[2, 4, 10])),
            keys(&[1, 2, 4, 9, 10])
        );
    }

    #[test]
    fn the_change_predicate_keeps_timestamp_columns_bare_and_reads_any_sqlite_time() {
        let since = Utc.with_ymd_and_hms(2026, 12, 6, 9, 30, 0).unwrap();
        let column = Identifier::parse("updated_at").unwrap();
        assert_eq!(
            changed_since(
                Dialect::new(Engine::Postgres),
                &column,
                "timestamp with time zone",
                since
            ),
            "t.\"updated_at\" >= '2026-12-06 09:30:00.000000+00'"
        );
        assert_eq!(
            changed_since(Dialect::new(Engine::Postgres), &column, "text", since),
            "CAST(t.\"updated_at\" AS timestamptz) >= '2026-12-06 09:30:00.000000+00'"
        );
        assert_eq!(
            changed_since(Dialect::new(Engine::MySql), &column, "datetime", since),
            "t.`updated_at` >= '2026-12-06 09:30:00.000000'"
        );
        assert!(
            changed_since(Dialect::new(Engine::Sqlite), &column, "DATETIME", since)
                .ends_with(">= julianday('2026-12-06 09:30:00.000000')")
        );
    }
}
