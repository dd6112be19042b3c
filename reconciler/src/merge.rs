//! The streaming sorted merge: both sides read in key order, in
//! keyset-paginated batches (`WHERE key > last ORDER BY key LIMIT n`), by
//! readers that run beside the merge ([`crate::read`]), and walked side by
//! side like the merge step of a merge sort. Memory is a few chunks of rows
//! per side, never the table.
//!
//! The merge also judges each row ([`Judge`]): a key on one side only is
//! missing or extra, a key on both sides is compared column by column after
//! normalization, and any difference on a row changed within the settle
//! window is held back as settling.

use std::cmp::Ordering;
use std::time::Duration;

use chrono::{DateTime, Utc};
use mapping::Normalization;
use mapping::Side;
use toolkit_db::sql_value::SqlValue;

use crate::normalize::{compare_keys, normalize, parse_timestamp, same};
use tokio::sync::mpsc;

use crate::field_ref::{field_millis, FieldRef};
use crate::fingerprint::fingerprint;
use crate::key_text::{key_text, named_key_text};
use crate::plan::{ComparedColumn, SidePlan, TablePlan};
use crate::progress::TableProgress;
use crate::read::{read_range, BatchSize, ReadRow, CHANNEL_CHUNKS};
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
    bounded_where(plan, after.map(|key| (key, Bound::After)), upper)
}

/// [`range_where`] with the lower bound's kind given: [`Bound::After`] or
/// [`Bound::From`].
pub fn bounded_where(
    plan: &SidePlan,
    lower: Option<(&[SqlValue], Bound)>,
    upper: Option<&[SqlValue]>,
) -> (String, Vec<SqlValue>) {
    bounded_where_from(plan, lower, upper, &mut 1)
}

/// [`bounded_where`] with placeholders numbered from `*next`, for a
/// statement whose earlier parts take parameters too.
pub fn bounded_where_from(
    plan: &SidePlan,
    lower: Option<(&[SqlValue], Bound)>,
    upper: Option<&[SqlValue]>,
    next: &mut usize,
) -> (String, Vec<SqlValue>) {
    let mut conditions = Vec::new();
    let mut binds = Vec::new();
    if let Some(filter) = &plan.filter {
        conditions.push(format!("({filter})"));
    }
    for (key, bound) in [lower, upper.map(|key| (key, Bound::UpTo))].into_iter().flatten() {
        let (sql, order) = plan.dialect.key_bound(&plan.key_exprs, bound, next);
        conditions.push(sql);
        binds.extend(order.into_iter().filter_map(|i| key.get(i).cloned()));
    }
    let clause = if conditions.is_empty() {
        String::new()
    } else {
        format!("WHERE {}", conditions.join(" AND "))
    };
    (clause, binds)
}

/// One side's rows as they arrive from its reader, checked on arrival:
/// no NULL in a key, keys strictly increasing. A repeated key shows up
/// here as two equal keys in a row, also across keyset batches (the reader
/// re-reads each batch's last key when the catalog does not prove the key
/// unique; see [`crate::read`]).
struct Feed<'a> {
    rx: mpsc::Receiver<Vec<ReadRow>>,
    plan: &'a SidePlan,
    /// The chunk being walked: rows stay in it, looked at in place, and
    /// are never moved one by one.
    chunk: Vec<ReadRow>,
    /// The current row's position in `chunk`.
    at: usize,
    previous: Option<Vec<SqlValue>>,
}

impl<'a> Feed<'a> {
    fn new(rx: mpsc::Receiver<Vec<ReadRow>>, plan: &'a SidePlan) -> Self {
        Self {
            rx,
            plan,
            chunk: Vec::new(),
            at: 0,
            previous: None,
        }
    }

    /// `key` with this side's key column names.
    fn key_text(&self, key: &[SqlValue]) -> String {
        named_key_text(&self.plan.key_columns, &json_key(key))
    }

    /// The current row, if any ([`Self::fill`] first).
    fn current(&self) -> Option<&ReadRow> {
        self.chunk.get(self.at)
    }

    /// Moves on to the next row.
    fn advance(&mut self) {
        self.at += 1;
    }

    /// Every column of the current row, decoded.
    fn values(&self) -> Result<Vec<SqlValue>, ReconcileError> {
        let Some(row) = self.current() else {
            return Ok(Vec::new());
        };
        row.values(self.plan).map_err(|source| ReconcileError::Query {
            side: self.plan.side,
            doing: format!("reading table `{}`", self.plan.table),
            source,
        })
    }

    /// Makes sure a current row is there, unless the side has no more.
    async fn fill(&mut self) -> Result<(), ReconcileError> {
        loop {
            if self.at < self.chunk.len() {
                return Ok(());
            }
            let Some(chunk) = self.rx.recv().await else {
                return Ok(());
            };
            // Checked a chunk at a time, so that only one key per chunk is
            // kept aside for the next chunk's check.
            let mut previous = self.previous.as_deref();
            for row in &chunk {
                if row.key().contains(&SqlValue::Null) {
                    return Err(ReconcileError::NullKey {
                        side: self.plan.side,
                        table: self.plan.table.to_string(),
                        key: self.plan.key_names(),
                    });
                }
                if let Some(previous) = previous {
                    match compare_keys(previous, row.key()) {
                        Ordering::Less => {}
                        Ordering::Equal => {
                            return Err(ReconcileError::KeyNotUnique {
                                side: self.plan.side,
                                table: self.plan.table.to_string(),
                                key: self.key_text(row.key()),
                            })
                        }
                        Ordering::Greater => {
                            return Err(ReconcileError::KeyOutOfOrder {
                                side: self.plan.side,
                                table: self.plan.table.to_string(),
                                key: self.key_text(row.key()),
                                previous: key_text(&json_key(previous)),
                            })
                        }
                    }
                }
                previous = Some(row.key());
            }
            self.previous = chunk.last().map(|row| row.key().to_vec());
            self.chunk = chunk;
            self.at = 0;
        }
    }
}

/// The adaptive batch sizes of both sides' reads, kept across the ranges
/// of one table.
#[derive(Debug, Clone)]
pub struct ReadSizes {
    /// The monolith's side.
    pub legacy: BatchSize,
    /// The service's side.
    pub service: BatchSize,
}

impl ReadSizes {
    /// Both sides starting at `initial` rows per batch, up to `max`, aiming
    /// at `target` per batch.
    pub fn new(initial: usize, max: usize, target: Duration) -> Self {
        let size = BatchSize::new(initial, max, target);
        Self {
            legacy: size.clone(),
            service: size,
        }
    }
}

/// Whether `value`, a row's change time, lies within `seconds` before
/// `now`, or after it: a change time in the future (clock skew) is treated
/// as recent. A value that is no timestamp is not recent.
pub(crate) fn changed_within(value: Option<&SqlValue>, now: DateTime<Utc>, seconds: u64) -> bool {
    let at = match value {
        Some(SqlValue::Text(text)) => parse_timestamp(text),
        _ => None,
    };
    at.is_some_and(|at| (now - at).num_milliseconds() < (seconds as i64).saturating_mul(1000))
}

/// Judges rows and records the verdicts in a table's report.
pub struct Judge<'a> {
    plan: &'a TablePlan,
    now: DateTime<Utc>,
    /// The table's report, filled in as rows are judged.
    pub report: TableReport,
    progress: Option<TableProgress>,
}

impl<'a> Judge<'a> {
    /// A judge for `plan`, with `now` as the end of the settle window.
    pub fn new(plan: &'a TablePlan, now: DateTime<Utc>, report: TableReport) -> Self {
        Self {
            plan,
            now,
            report,
            progress: None,
        }
    }

    /// Tells `progress` how many keys are compared as they are.
    pub(crate) fn with_progress(mut self, progress: TableProgress) -> Self {
        self.progress = Some(progress);
        self
    }

    /// The table's report, once every row is judged; the progress display,
    /// if any, is told the last keys and that the table is done.
    pub(crate) fn finish(mut self) -> TableReport {
        if let Some(progress) = self.progress.take() {
            progress.finish(self.report.rows_compared);
        }
        self.report
    }

    /// Counts one more compared key, or `keys` more.
    #[inline]
    fn compared(&mut self, keys: u64) {
        self.report.rows_compared += keys;
        if let Some(progress) = &mut self.progress {
            progress.update(self.report.rows_compared);
        }
    }

    fn settling(&self, row: &[SqlValue]) -> bool {
        let Some((index, seconds)) = self.plan.settle else {
            return false;
        };
        changed_within(row.get(index), self.now, seconds)
    }

    fn key(&self, row: &[SqlValue]) -> Vec<serde_json::Value> {
        json_key(&row[..self.plan.key_len()])
    }

    /// A row in the monolith only.
    pub fn legacy_only(&mut self, row: &[SqlValue]) {
        self.report.rows_legacy += 1;
        self.one_side_only(row, Kind::Missing);
    }

    /// A row in the service only.
    pub fn service_only(&mut self, row: &[SqlValue]) {
        self.report.rows_service += 1;
        self.one_side_only(row, Kind::Extra);
    }

    /// A row on one side only: `kind` is [`Kind::Missing`] (in the service)
    /// or [`Kind::Extra`].
    fn one_side_only(&mut self, row: &[SqlValue], kind: Kind) {
        self.compared(1);
        let key = self.key(row);
        if self.settling(row) {
            self.report.settling.push(SettlingRow { key, kind });
            return;
        }
        let entry = KeyEntry {
            key,
            fingerprint: Some(fingerprint(row)),
        };
        if kind == Kind::Missing {
            self.report.missing.push(entry);
        } else {
            self.report.extra.push(entry);
        }
    }

    /// The same key on both sides.
    pub fn both(&mut self, legacy: Vec<SqlValue>, service: Vec<SqlValue>) {
        self.report.rows_legacy += 1;
        self.report.rows_service += 1;
        self.compared(1);
        let mut diffs = Vec::new();
        for column in &self.plan.compared {
            if let (Some(l), Some(s)) = (legacy.get(column.index), service.get(column.index)) {
                if plainly_equal(column, FieldRef::of(l), FieldRef::of(s)) {
                    continue;
                }
            }
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
            self.report.changed.push(ChangedRow {
                key,
                columns: diffs,
                legacy_fingerprint: Some(fingerprint(&legacy)),
                service_fingerprint: Some(fingerprint(&service)),
            });
        }
    }

    /// Rows known equal without being read (a matching checksum range).
    pub fn equal_rows(&mut self, count: u64) {
        self.report.rows_legacy += count;
        self.report.rows_service += count;
        self.compared(count);
    }
}

/// Whether two values are equal after normalization, decided without
/// normalizing: identical values under normalizations that treat both
/// sides alike, or timestamps at the same millisecond. Normalizing builds
/// new strings, which cost most of a cross-engine merge; `false` means
/// "decode, normalize and see".
fn plainly_equal(column: &ComparedColumn, legacy: FieldRef<'_>, service: FieldRef<'_>) -> bool {
    if column.values.is_some() || !column.steps.iter().all(|step| step.is_symmetric()) {
        return false;
    }
    match (legacy, service) {
        (FieldRef::Unknown, _) | (_, FieldRef::Unknown) => false,
        (l, s) if l == s => true,
        (l, s) => {
            column.steps.as_slice() == [Normalization::TimestampMs]
                && matches!((field_millis(l), field_millis(s)), (Some(x), Some(y)) if x == y)
        }
    }
}

/// Whether every compared column of two rows with one key is
/// [`plainly_equal`], seen as read.
fn equal_as_read(plan: &TablePlan, legacy: &ReadRow, service: &ReadRow) -> bool {
    let fields = legacy.fields(&plan.legacy).zip(service.fields(&plan.service));
    // Both rows' fields are walked once, in step; the compared columns
    // come in select-list order, and one left over (never the case for a
    // plan's rows) means "decode and see".
    let mut compared = plan.compared.iter().peekable();
    for (index, (l, s)) in fields.enumerate() {
        let Some(column) = compared.next_if(|column| column.index == index) else {
            continue;
        };
        if !plainly_equal(column, l, s) {
            return false;
        }
    }
    compared.next().is_none()
}

/// Merges both sides over `range`, judging every row.
pub async fn merge_range(
    plan: &TablePlan,
    legacy: &mut Source,
    service: &mut Source,
    range: &KeyRange,
    sizes: &mut ReadSizes,
    judge: &mut Judge<'_>,
) -> Result<(), ReconcileError> {
    let key_len = plan.key_len();
    let (ltx, lrx) = mpsc::channel(CHANNEL_CHUNKS);
    let (stx, srx) = mpsc::channel(CHANNEL_CHUNKS);
    let read_legacy = read_range(legacy, &plan.legacy, key_len, range, &mut sizes.legacy, ltx);
    let read_service = read_range(service, &plan.service, key_len, range, &mut sizes.service, stx);
    let walk = walk(
        plan,
        Feed::new(lrx, &plan.legacy),
        Feed::new(srx, &plan.service),
        judge,
    );
    let (from_legacy, from_service, ()) = tokio::try_join!(read_legacy, read_service, walk)?;
    judge.report.rows_fetched += from_legacy + from_service;
    Ok(())
}

/// What the merge does with the current rows.
enum Step {
    /// The monolith's row has no partner.
    Legacy,
    /// The service's row has no partner.
    Service,
    /// One key, equal rows.
    Equal,
    /// One key, rows to decode and judge.
    Judge,
}

/// The merge step proper: both feeds walked side by side in key order.
async fn walk(
    plan: &TablePlan,
    mut left: Feed<'_>,
    mut right: Feed<'_>,
    judge: &mut Judge<'_>,
) -> Result<(), ReconcileError> {
    loop {
        left.fill().await?;
        right.fill().await?;
        let step = match (left.current(), right.current()) {
            (None, None) => break,
            (Some(_), None) => Step::Legacy,
            (None, Some(_)) => Step::Service,
            (Some(a), Some(b)) => match compare_keys(a.key(), b.key()) {
                Ordering::Less => Step::Legacy,
                Ordering::Greater => Step::Service,
                Ordering::Equal => {
                    let same_line = plan.raw_comparable && a.raw().is_some() && a.raw() == b.raw();
                    if same_line || equal_as_read(plan, a, b) {
                        Step::Equal
                    } else {
                        Step::Judge
                    }
                }
            },
        };
        match step {
            Step::Legacy => {
                judge.legacy_only(&left.values()?);
                left.advance();
            }
            Step::Service => {
                judge.service_only(&right.values()?);
                right.advance();
            }
            Step::Equal => {
                judge.equal_rows(1);
                left.advance();
                right.advance();
            }
            Step::Judge => {
                judge.both(left.values()?, right.values()?);
                left.advance();
                right.advance();
            }
        }
    }
    Ok(())
}
