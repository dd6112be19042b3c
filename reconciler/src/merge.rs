//! The streaming sorted merge: both sides read in key order, in
//! keyset-paginated batches (`WHERE key > last ORDER BY key LIMIT n`), and
//! walked side by side like the merge step of a merge sort. Memory is one
//! batch per side, never the table.
//!
//! The merge also judges each row ([`Judge`]): a key on one side only is
//! missing or extra, a key on both sides is compared column by column after
//! normalization, and any difference on a row changed within the settle
//! window is held back as settling.

use std::cmp::Ordering;

use backfill::copy::Side;
use chrono::{DateTime, Utc};
use service_runtime::sql_value::SqlValue;

use crate::normalize::{compare_keys, normalize, parse_timestamp, same};
use crate::plan::{SidePlan, TablePlan};
use crate::report::{json_key, json_value, ChangedRow, ColumnDiff, KeyEntry, Kind, SettlingRow, TableReport};
use crate::source::Source;
use crate::sql::Bound;
use crate::ReconcileError;

/// A range of keys: strictly after `lower`, up to and including `upper`;
/// `None` is unbounded.
#[derive(Debug, Clone, Default)]
pub struct KeyRange {
    /// Exclusive lower bound.
    pub lower: Option<Vec<SqlValue>>,
    /// Inclusive upper bound.
    pub upper: Option<Vec<SqlValue>>,
}

/// The `WHERE` clause selecting `plan`'s rows in `(after, upper]` that
/// pass its filter, and the values to bind, in order.
pub fn range_where(
    plan: &SidePlan,
    after: Option<&[SqlValue]>,
    upper: Option<&[SqlValue]>,
) -> (String, Vec<SqlValue>) {
    let mut conditions = Vec::new();
    let mut binds = Vec::new();
    if let Some(filter) = &plan.filter {
        conditions.push(format!("({filter})"));
    }
    let mut next = 1;
    for (key, bound) in [(after, Bound::After), (upper, Bound::UpTo)] {
        if let Some(key) = key {
            let (sql, order) = plan.dialect.key_bound(&plan.key_exprs, bound, &mut next);
            conditions.push(sql);
            binds.extend(order.into_iter().filter_map(|i| key.get(i).cloned()));
        }
    }
    let clause = if conditions.is_empty() {
        String::new()
    } else {
        format!("WHERE {}", conditions.join(" AND "))
    };
    (clause, binds)
}

/// One side read in key order, a batch at a time.
struct Cursor<'a> {
    source: &'a mut Source,
    plan: &'a SidePlan,
    key_len: usize,
    batch_size: usize,
    upper: Option<Vec<SqlValue>>,
    last: Option<Vec<SqlValue>>,
    previous: Option<Vec<SqlValue>>,
    buffer: std::vec::IntoIter<Vec<SqlValue>>,
    exhausted: bool,
    fetched: u64,
}

impl<'a> Cursor<'a> {
    fn new(
        source: &'a mut Source,
        plan: &'a SidePlan,
        key_len: usize,
        range: &KeyRange,
        batch: usize,
    ) -> Self {
        Self {
            source,
            plan,
            key_len,
            batch_size: batch.max(1),
            upper: range.upper.clone(),
            last: range.lower.clone(),
            previous: None,
            buffer: Vec::new().into_iter(),
            exhausted: false,
            fetched: 0,
        }
    }

    async fn next(&mut self) -> Result<Option<Vec<SqlValue>>, ReconcileError> {
        loop {
            if let Some(row) = self.buffer.next() {
                let key = &row[..self.key_len];
                if key.contains(&SqlValue::Null) {
                    return Err(ReconcileError::NullKey {
                        side: self.plan.side,
                        table: self.plan.table.to_string(),
                    });
                }
                if let Some(previous) = &self.previous {
                    if compare_keys(previous, key) != Ordering::Less {
                        return Err(ReconcileError::KeyNotUnique {
                            side: self.plan.side,
                            table: self.plan.table.to_string(),
                            key: format!("{:?}", json_key(key)),
                        });
                    }
                }
                self.previous = Some(key.to_vec());
                return Ok(Some(row));
            }
            if self.exhausted {
                return Ok(None);
            }
            let (clause, binds) = range_where(self.plan, self.last.as_deref(), self.upper.as_deref());
            let sql = format!(
                "SELECT {} FROM {} t {clause} ORDER BY {} LIMIT {}",
                self.plan.select_list,
                self.plan.dialect.quote(&self.plan.table),
                self.plan.key_exprs.join(", "),
                self.batch_size
            );
            let binds: Vec<&SqlValue> = binds.iter().collect();
            let rows = self
                .source
                .fetch(
                    &sql,
                    &binds,
                    &self.plan.classes,
                    &format!("reading table `{}`", self.plan.table),
                )
                .await?;
            self.exhausted = rows.len() < self.batch_size;
            self.fetched += rows.len() as u64;
            if let Some(last) = rows.last() {
                self.last = Some(last[..self.key_len.min(last.len())].to_vec());
            }
            self.buffer = rows.into_iter();
        }
    }
}

/// Judges rows and records the verdicts in a table's report.
pub struct Judge<'a> {
    plan: &'a TablePlan,
    now: DateTime<Utc>,
    /// The table's report, filled in as rows are judged.
    pub report: TableReport,
}

impl<'a> Judge<'a> {
    /// A judge for `plan`, with `now` as the end of the settle window.
    pub fn new(plan: &'a TablePlan, now: DateTime<Utc>, report: TableReport) -> Self {
        Self { plan, now, report }
    }

    fn settling(&self, row: &[SqlValue]) -> bool {
        let Some((index, seconds)) = self.plan.settle else {
            return false;
        };
        let at = match row.get(index) {
            Some(SqlValue::Text(text)) => parse_timestamp(text),
            _ => None,
        };
        // A change time in the future (clock skew) is treated as recent.
        at.is_some_and(|at| (self.now - at).num_milliseconds() < (seconds as i64).saturating_mul(1000))
    }

    fn key(&self, row: &[SqlValue]) -> Vec<serde_json::Value> {
        json_key(&row[..self.plan.key_len()])
    }

    /// A row in the monolith only.
    pub fn legacy_only(&mut self, row: &[SqlValue]) {
        self.report.rows_legacy += 1;
        self.report.rows_compared += 1;
        let key = self.key(row);
        if self.settling(row) {
            self.report.settling.push(SettlingRow {
                key,
                kind: Kind::Missing,
            });
        } else {
            self.report.missing.push(KeyEntry { key });
        }
    }

    /// A row in the service only.
    pub fn service_only(&mut self, row: &[SqlValue]) {
        self.report.rows_service += 1;
        self.report.rows_compared += 1;
        let key = self.key(row);
        if self.settling(row) {
            self.report.settling.push(SettlingRow {
                key,
                kind: Kind::Extra,
            });
        } else {
            self.report.extra.push(KeyEntry { key });
        }
    }

    /// The same key on both sides.
    pub fn both(&mut self, legacy: Vec<SqlValue>, service: Vec<SqlValue>) {
        self.report.rows_legacy += 1;
        self.report.rows_service += 1;
        self.report.rows_compared += 1;
        let mut diffs = Vec::new();
        for column in &self.plan.compared {
            let get = |row: &[SqlValue]| row.get(column.index).cloned().unwrap_or(SqlValue::Null);
            let l = normalize(get(&legacy), Side::Legacy, column.values.as_ref(), &column.steps);
            let s = normalize(
                get(&service),
                Side::Service,
                column.values.as_ref(),
                &column.steps,
            );
            if !same(&l, &s) {
                diffs.push(ColumnDiff {
                    column: column.legacy.clone(),
                    service_column: column.service.clone(),
                    legacy: json_value(&l),
                    service: json_value(&s),
                });
            }
        }
        if diffs.is_empty() {
            return;
        }
        let key = self.key(&legacy);
        if self.settling(&legacy) || self.settling(&service) {
            self.report.settling.push(SettlingRow {
                key,
                kind: Kind::Changed,
            });
        } else {
            self.report.changed.push(ChangedRow { key, columns: diffs });
        }
    }

    /// Rows known equal without being read (a matching checksum range).
    pub fn equal_rows(&mut self, count: u64) {
        self.report.rows_legacy += count;
        self.report.rows_service += count;
        self.report.rows_compared += count;
    }
}

/// Merges both sides over `range`, judging every row.
pub async fn merge_range(
    plan: &TablePlan,
    legacy: &mut Source,
    service: &mut Source,
    range: &KeyRange,
    batch_size: usize,
    judge: &mut Judge<'_>,
) -> Result<(), ReconcileError> {
    let key_len = plan.key_len();
    let mut left = Cursor::new(legacy, &plan.legacy, key_len, range, batch_size);
    let mut right = Cursor::new(service, &plan.service, key_len, range, batch_size);
    let mut l = left.next().await?;
    let mut r = right.next().await?;
    loop {
        match (l.take(), r.take()) {
            (None, None) => break,
            (Some(row), None) => {
                judge.legacy_only(&row);
                l = left.next().await?;
            }
            (None, Some(row)) => {
                judge.service_only(&row);
                r = right.next().await?;
            }
            (Some(a), Some(b)) => match compare_keys(&a[..key_len], &b[..key_len]) {
                Ordering::Less => {
                    judge.legacy_only(&a);
                    r = Some(b);
                    l = left.next().await?;
                }
                Ordering::Greater => {
                    judge.service_only(&b);
                    l = Some(a);
                    r = right.next().await?;
                }
                Ordering::Equal => {
                    judge.both(a, b);
                    l = left.next().await?;
                    r = right.next().await?;
                }
            },
        }
    }
    judge.report.rows_fetched += left.fetched + right.fetched;
    Ok(())
}
