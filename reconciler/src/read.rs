//! Reading one side of a key range in key order, for the streaming merge.
//!
//! Each side is read by its own future, which runs beside the other side's
//! and beside the merge itself (`tokio::try_join!` in one task: no thread,
//! no `'static` borrow), and hands rows over in chunks through a small
//! bounded channel. Memory is a few chunks per side, never a batch and never
//! the table, and one side's query runs while the other's rows are compared.
//!
//! Batches are keyset-paginated (`WHERE key > last ORDER BY key LIMIT n`) so
//! that every statement stays short; `n` adapts so that a batch takes about
//! the target query time ([`BatchSize`]). On PostgreSQL a batch is read with
//! `COPY … TO STDOUT` in text format and each row is kept as its raw line:
//! only the key is decoded, and two rows whose lines are equal byte for byte
//! are known equal without decoding the rest ([`ReadRow::raw`]). PostgreSQL's
//! binary and `Any` decoding cost several times the server's own work; the
//! text lines cost about what writing them to `/dev/null` costs. On MySQL
//! each row stays the native driver's row (the `Any` row type in between
//! cost a third of the client's time) and only its key is decoded; on
//! SQLite rows come through the `Any` driver, decoded. Either way the merge
//! first compares rows as read ([`ReadRow::fields`]) and decodes only rows
//! that differ.

use std::cmp::Ordering;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::{FutureExt, StreamExt};
use smallvec::SmallVec;
use tokio::sync::mpsc;
use toolkit_db::sql_value::{bind_value, SqlValue};

use crate::copy_text::{decode_field, text};
use crate::field_ref::Fields;
use crate::merge::{bounded_where, KeyRange};
use crate::mysql_native::{temporal_text, NativeRead};
use crate::normalize::compare_keys;
use crate::plan::SidePlan;
use crate::source::{decode, Source};
use crate::sql::{Bound, ColumnClass};
use crate::ReconcileError;
use mapping::Side;

/// Rows per chunk handed from a reader to the merge.
const CHUNK_ROWS: usize = 1024;
/// Chunks a reader may run ahead of the merge.
pub(crate) const CHANNEL_CHUNKS: usize = 4;

/// How many rows the next keyset batch asks for: it grows or shrinks (at
/// most 4× per batch) so that a batch takes about `target`.
#[derive(Debug, Clone)]
pub struct BatchSize {
    rows: usize,
    min: usize,
    max: usize,
    target: Duration,
}

impl BatchSize {
    /// Starts at `initial` rows (also the minimum), never above `max`.
    pub fn new(initial: usize, max: usize, target: Duration) -> Self {
        let min = initial.max(1);
        Self {
            rows: min,
            min,
            max: max.max(min),
            target,
        }
    }

    /// The rows the next batch asks for.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Takes note that a batch of `rows` took `elapsed`.
    pub fn record(&mut self, rows: usize, elapsed: Duration) {
        if rows < self.rows {
            // A short batch was the range's last; it says nothing about speed.
            return;
        }
        let seconds = elapsed.as_secs_f64().max(1e-4);
        let wanted = self.rows as f64 * self.target.as_secs_f64() / seconds;
        let bounded = wanted.clamp(self.rows as f64 / 4.0, self.rows as f64 * 4.0);
        self.rows = (bounded as usize).clamp(self.min, self.max);
    }
}

/// One row read from one side: its key decoded, the rest decoded on demand.
#[derive(Debug)]
pub struct ReadRow {
    /// Every selected column, or only the key's when `held` holds the row
    /// (then, for a key of one column, without a heap allocation).
    values: SmallVec<[SqlValue; 1]>,
    key_len: usize,
    held: Held,
}

/// What a row keeps of what was read, besides its key.
#[derive(Debug)]
enum Held {
    /// Nothing: `values` is the whole row.
    Nothing,
    /// The row's `COPY` text line, without its newline.
    Line(Bytes),
    /// The native MySQL row, undecoded.
    MySql(sqlx::mysql::MySqlRow),
}

impl ReadRow {
    /// The key values, in key order.
    pub fn key(&self) -> &[SqlValue] {
        &self.values[..self.key_len.min(self.values.len())]
    }

    /// The row's raw `COPY` line, when it was read that way.
    pub fn raw(&self) -> Option<&[u8]> {
        match &self.held {
            Held::Line(line) => Some(line),
            _ => None,
        }
    }

    /// Every column `plan` selects, as read, without decoding
    /// ([`crate::field_ref::FieldRef`]).
    pub(crate) fn fields<'a>(&'a self, plan: &'a SidePlan) -> Fields<'a> {
        match &self.held {
            Held::Nothing => Fields::values(&self.values),
            Held::Line(line) => Fields::copy_line(line, &plan.classes),
            Held::MySql(row) => Fields::mysql(row, &plan.classes, &plan.native_reads),
        }
    }

    /// Every column `plan` selects, decoded as its class says.
    pub fn values(&self, plan: &SidePlan) -> Result<Vec<SqlValue>, sqlx::Error> {
        match &self.held {
            Held::Nothing => Ok(self.values.to_vec()),
            Held::Line(line) => Ok(line
                .split(|b| *b == b'\t')
                .zip(&plan.classes)
                .map(|(field, class)| decode_field(field, *class))
                .collect()),
            Held::MySql(row) => decode_mysql(row, &plan.classes, &plan.native_reads),
        }
    }

    /// A row read whole; its first `key_len` values are the key.
    fn decoded(values: Vec<SqlValue>, key_len: usize) -> Self {
        Self {
            values: SmallVec::from_vec(values),
            key_len,
            held: Held::Nothing,
        }
    }
}

/// Rows on their way to the merge, a chunk at a time.
struct Chunker<'a> {
    tx: &'a mpsc::Sender<Vec<ReadRow>>,
    chunk: Vec<ReadRow>,
    /// Rows read, the dropped re-read one included.
    rows: usize,
    last: Option<Vec<SqlValue>>,
    /// The previous batch's last key, when this batch starts at it: its
    /// first row with that key was handed on already.
    reread: Option<&'a [SqlValue]>,
}

impl<'a> Chunker<'a> {
    fn new(tx: &'a mpsc::Sender<Vec<ReadRow>>, reread: Option<&'a [SqlValue]>) -> Self {
        Self {
            tx,
            chunk: Vec::with_capacity(CHUNK_ROWS),
            rows: 0,
            last: None,
            reread,
        }
    }

    /// Adds a row; `false` when the chunk is full and must be sent
    /// ([`Self::send`]). Not `async`: the row then moves once, into the
    /// chunk, instead of first into a future's state.
    #[inline]
    fn add(&mut self, row: ReadRow) -> bool {
        self.rows += 1;
        if self.rows == 1
            && self
                .reread
                .is_some_and(|key| compare_keys(key, row.key()) == Ordering::Equal)
        {
            return true;
        }
        self.chunk.push(row);
        self.chunk.len() < CHUNK_ROWS
    }

    /// Hands the chunk on; `false` when the merge is gone.
    async fn send(&mut self) -> bool {
        if let Some(row) = self.chunk.last() {
            self.last = Some(row.key().to_vec());
        }
        let chunk = std::mem::replace(&mut self.chunk, Vec::with_capacity(CHUNK_ROWS));
        chunk.is_empty() || self.tx.send(chunk).await.is_ok()
    }

    /// The batch's row count and last key, or `None` when the merge is gone.
    async fn finish(mut self) -> Option<(usize, Option<Vec<SqlValue>>)> {
        self.send().await.then_some((self.rows, self.last))
    }
}

/// One keyset batch: its bounds and size.
#[derive(Debug, Clone, Copy)]
struct Batch<'a> {
    /// The previous batch's last key (or the range's lower bound), with
    /// `>` or, when that key is read again, `>=`.
    lower: Option<(&'a [SqlValue], Bound)>,
    /// The range's upper bound, inclusive.
    upper: Option<&'a [SqlValue]>,
    /// Rows to ask for.
    limit: usize,
}

impl<'a> Batch<'a> {
    /// The key whose first row this batch reads again, if it does.
    fn reread(&self) -> Option<&'a [SqlValue]> {
        match self.lower {
            Some((key, Bound::From)) => Some(key),
            _ => None,
        }
    }
}

/// Reads `plan`'s rows in `range`, in key order, into `tx`; returns how
/// many rows were read. Stops early, without error, when the receiver is
/// gone.
///
/// Keyset pagination alone would hide a repeated key: when a batch ends on
/// the first of two rows with one key, `key > last` skips the second. So,
/// unless the catalog proves the key unique, every batch after the range's
/// first starts *at* the last key handed on (`key >= last`) and asks for
/// one row more; its first row, the one already handed on, is dropped, and
/// any further row with that key reaches the merge, whose feed stops at two
/// equal keys in a row. That costs one row per batch; a full-table query
/// to look for duplicates up front would cost a pass over the table.
pub(crate) async fn read_range(
    source: &mut Source,
    plan: &SidePlan,
    key_len: usize,
    range: &KeyRange,
    size: &mut BatchSize,
    tx: mpsc::Sender<Vec<ReadRow>>,
) -> Result<u64, ReconcileError> {
    let mut last = range.lower.clone();
    // Whether `last` came from this range's previous batch, not its bound.
    let mut read_before = false;
    let mut fetched = 0;
    loop {
        let reread = read_before && !plan.unique_key;
        let lower_bound = if reread { Bound::From } else { Bound::After };
        let batch = Batch {
            lower: last.as_deref().map(|key| (key, lower_bound)),
            upper: range.upper.as_deref(),
            limit: size.rows() + usize::from(reread),
        };
        let started = Instant::now();
        let copy_sql = if source.can_copy() {
            copy_query(plan, &batch)
        } else {
            None
        };
        let result = match copy_sql {
            Some(sql) => copy_batch(source, plan, key_len, &sql, batch.reread(), &tx).await?,
            None => decoded_batch(source, plan, key_len, &batch, &tx).await?,
        };
        let Some((rows, last_key)) = result else {
            return Ok(fetched);
        };
        fetched += rows as u64;
        size.record(rows - usize::from(reread).min(rows), started.elapsed());
        if rows < batch.limit {
            return Ok(fetched);
        }
        last = last_key;
        read_before = true;
    }
}

/// The `SELECT` of a keyset batch of `select_list` whose `WHERE` clause is
/// `clause`.
fn batch_select(plan: &SidePlan, select_list: &str, clause: &str, limit: usize) -> String {
    format!(
        "SELECT {select_list} FROM {} t {clause} ORDER BY {} LIMIT {limit}",
        plan.dialect.quote(&plan.table),
        plan.key_exprs.join(", "),
    )
}

/// A keyset batch of `select_list` with bound parameters.
fn batch_query(plan: &SidePlan, select_list: &str, batch: &Batch<'_>) -> (String, Vec<SqlValue>) {
    let (clause, binds) = bounded_where(plan, batch.lower, batch.upper);
    (batch_select(plan, select_list, &clause, batch.limit), binds)
}

/// The text of a `COPY` batch, or `None` when a bound has no literal.
fn copy_query(plan: &SidePlan, batch: &Batch<'_>) -> Option<String> {
    let mut conditions = Vec::new();
    if let Some(filter) = &plan.filter {
        conditions.push(format!("({filter})"));
    }
    for (key, bound) in [batch.lower, batch.upper.map(|key| (key, Bound::UpTo))]
        .into_iter()
        .flatten()
    {
        conditions.push(plan.dialect.key_bound_literal(&plan.key_exprs, bound, key)?);
    }
    let clause = if conditions.is_empty() {
        String::new()
    } else {
        format!("WHERE {}", conditions.join(" AND "))
    };
    Some(batch_select(plan, &plan.select_list, &clause, batch.limit))
}

/// What a batch's reader needs to bound each row in time and to name a
/// failure: the side, what it was doing, and the statement's deadline.
struct Reading {
    side: Side,
    doing: String,
    seconds: u64,
    deadline: tokio::time::Instant,
}

impl Reading {
    /// Reading a batch of `plan`'s table from `source`, from now on.
    fn new(source: &Source, plan: &SidePlan) -> Self {
        Self {
            side: source.side(),
            doing: format!("reading table `{}`", plan.table),
            seconds: source.timeout().as_secs(),
            deadline: tokio::time::Instant::now() + source.timeout(),
        }
    }

    /// The stream's next item, `None` at its end, or an error when it fails
    /// or the deadline passes first.
    async fn next<T>(
        &self,
        stream: &mut (impl futures::Stream<Item = Result<T, sqlx::Error>> + Unpin),
    ) -> Result<Option<T>, ReconcileError> {
        // Most rows are already buffered: take them without setting up a
        // timer, which per row cost a noticeable share of the merge. The
        // deadline means the same as before: `timeout_at` also takes an
        // item that is ready before it looks at the clock.
        if let Some(next) = stream.next().now_or_never() {
            return next.transpose().map_err(|source| self.failed(source));
        }
        match tokio::time::timeout_at(self.deadline, stream.next()).await {
            Err(_) => Err(ReconcileError::Timeout {
                side: self.side,
                doing: self.doing.clone(),
                seconds: self.seconds,
            }),
            Ok(next) => next.transpose().map_err(|source| self.failed(source)),
        }
    }

    fn failed(&self, source: sqlx::Error) -> ReconcileError {
        ReconcileError::Query {
            side: self.side,
            doing: self.doing.clone(),
            source,
        }
    }
}

/// One batch read by `COPY`: the rows sent and the last key, or `None` when
/// the receiver is gone.
async fn copy_batch(
    source: &mut Source,
    plan: &SidePlan,
    key_len: usize,
    sql: &str,
    reread: Option<&[SqlValue]>,
    tx: &mpsc::Sender<Vec<ReadRow>>,
) -> Result<Option<(usize, Option<Vec<SqlValue>>)>, ReconcileError> {
    let reading = Reading::new(source, plan);
    let mut stream = source.copy_out(sql, &reading.doing).await?;
    let mut out = Chunker::new(tx, reread);
    while let Some(data) = reading.next(&mut stream).await? {
        // PostgreSQL sends one line per message; splitting anyway costs
        // nothing and does not depend on it. A newline inside a value is
        // escaped, so a raw one always ends a row.
        let mut start = 0;
        while start < data.len() {
            let end = memchr::memchr(b'\n', &data[start..]).map_or(data.len(), |i| start + i);
            let line = data.slice(start..end);
            start = end + 1;
            let key = line
                .split(|b| *b == b'\t')
                .zip(&plan.classes)
                .take(key_len)
                .map(|(field, class)| decode_field(field, *class))
                .collect();
            let row = ReadRow {
                values: key,
                key_len,
                held: Held::Line(line),
            };
            if !out.add(row) && !out.send().await {
                return Ok(None);
            }
        }
    }
    Ok(out.finish().await)
}

/// One batch streamed through the native MySQL driver when `source` has
/// one (each row kept as the driver's row, only its key decoded) and
/// through the `Any` driver otherwise (each column decoded as its class
/// says); `None` inside when the merge is gone.
async fn decoded_batch(
    source: &mut Source,
    plan: &SidePlan,
    key_len: usize,
    batch: &Batch<'_>,
    tx: &mpsc::Sender<Vec<ReadRow>>,
) -> Result<Option<(usize, Option<Vec<SqlValue>>)>, ReconcileError> {
    let reading = Reading::new(source, plan);
    let out = Chunker::new(tx, batch.reread());
    if let Some(conn) = source.mysql() {
        let (sql, binds) = batch_query(plan, &plan.native_select_list, batch);
        let query = binds
            .iter()
            .fold(sqlx::query::<sqlx::MySql>(&sql), |query, value| match value {
                SqlValue::Null => query.bind(None::<String>),
                SqlValue::Int(v) => query.bind(*v),
                SqlValue::Float(v) => query.bind(*v),
                SqlValue::Text(v) => query.bind(v.clone()),
                SqlValue::Bytes(v) => query.bind(v.clone()),
            });
        let key_columns = key_len.min(plan.classes.len());
        let keep_row = |row: sqlx::mysql::MySqlRow| {
            Ok(ReadRow {
                values: decode_mysql(&row, &plan.classes[..key_columns], &plan.native_reads)?,
                key_len,
                held: Held::MySql(row),
            })
        };
        return stream_rows(query.fetch(conn), keep_row, &reading, out).await;
    }
    let (sql, binds) = batch_query(plan, &plan.select_list, batch);
    let query = binds.iter().fold(sqlx::query(&sql), bind_value);
    let decode_row =
        |row: sqlx::any::AnyRow| decode(&row, &plan.classes).map(|values| ReadRow::decoded(values, key_len));
    stream_rows(query.fetch(source.connection()), decode_row, &reading, out).await
}

/// Hands the rows of one batch to the merge in chunks, every row within
/// the statement's deadline; `None` inside when the merge is gone.
async fn stream_rows<R>(
    mut stream: impl futures::Stream<Item = Result<R, sqlx::Error>> + Unpin,
    read_row: impl Fn(R) -> Result<ReadRow, sqlx::Error>,
    reading: &Reading,
    mut out: Chunker<'_>,
) -> Result<Option<(usize, Option<Vec<SqlValue>>)>, ReconcileError> {
    while let Some(row) = reading.next(&mut stream).await? {
        let row = read_row(row).map_err(|source| reading.failed(source))?;
        if !out.add(row) && !out.send().await {
            return Ok(None);
        }
    }
    Ok(out.finish().await)
}

/// A MySQL row decoded as the `Any` driver and [`decode`] would decode the
/// same row selected through the converting select list: integers (signed
/// types as stored, others selected as `SIGNED`) as integers, floats as
/// floats, binary columns as bytes, dates and times read in binary form
/// spelled as `CAST(… AS CHAR)` would spell them
/// ([`crate::mysql_native`]), everything else as text. `reads` says how
/// each column was selected; the first `classes.len()` columns are decoded.
fn decode_mysql<C: FromIterator<SqlValue>>(
    row: &sqlx::mysql::MySqlRow,
    classes: &[ColumnClass],
    reads: &[NativeRead],
) -> Result<C, sqlx::Error> {
    use sqlx::{Row, ValueRef};
    classes
        .iter()
        .enumerate()
        .map(|(i, class)| {
            let read = reads.get(i).copied().unwrap_or(NativeRead::Converted);
            if read.is_temporal() {
                // Before the NULL check: sqlx calls a zero date NULL, and
                // `CAST(… AS CHAR)` spells it `0000-00-00`.
                return match row.try_get_unchecked::<&[u8], _>(i) {
                    Ok(raw) => Ok(SqlValue::Text(match temporal_text(raw, read) {
                        Some(spelled) => spelled,
                        // Sent as text (a statement without parameters).
                        None => text(raw),
                    })),
                    Err(_) if row.try_get_raw(i)?.is_null() => Ok(SqlValue::Null),
                    Err(error) => Err(error),
                };
            }
            if row.try_get_raw(i)?.is_null() {
                return Ok(SqlValue::Null);
            }
            Ok(match class {
                ColumnClass::Integer | ColumnClass::Bool => SqlValue::Int(row.try_get::<i64, _>(i)?),
                ColumnClass::Float => match row.try_get::<f64, _>(i) {
                    Ok(f) => SqlValue::Float(f),
                    Err(_) => SqlValue::Float(f64::from(row.try_get::<f32, _>(i)?)),
                },
                ColumnClass::Bytes => SqlValue::Bytes(row.try_get_unchecked::<Vec<u8>, _>(i)?),
                ColumnClass::Text | ColumnClass::Other => {
                    SqlValue::Text(text(row.try_get_unchecked::<&[u8], _>(i)?))
                }
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_grow_and_shrink_towards_the_target_time() {
        let mut size = BatchSize::new(1000, 1_000_000, Duration::from_millis(500));
        size.record(1000, Duration::from_millis(10));
        assert_eq!(size.rows(), 4000, "at most 4x per batch");
        size.record(4000, Duration::from_millis(250));
        assert_eq!(size.rows(), 8000);
        size.record(8000, Duration::from_secs(4));
        assert_eq!(size.rows(), 2000);
        size.record(10, Duration::from_secs(60));
        assert_eq!(size.rows(), 2000, "a short last batch says nothing");
        size.record(2000, Duration::from_secs(60));
        assert_eq!(size.rows(), 1000, "never below the first size");
    }
}
