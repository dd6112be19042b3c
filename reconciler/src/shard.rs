//! Sharded runs: a table too big for one machine is compared by N
//! processes, on N hosts if need be, each over its own range of keys.
//!
//! The ranges follow the table's own key distribution: N-1 cut keys at
//! every (rows / N)th key of the monolith's side, found through the key's
//! index. When the run is recorded, the first process of a run group to
//! reach a table fixes its cuts in the toolkit store
//! (`reconciliation_shard_bounds`) and every other process uses those,
//! so that rows written between two processes' starts cannot fall between
//! ranges or into two. Shard `i` compares the keys after cut `i-1` up to
//! and including cut `i`.
//!
//! Each shard's run is recorded with the group, its index and the count;
//! [`merge_shards`] turns the latest finished run of every shard into one
//! report, which equals what one process comparing everything reports:
//! ranges are disjoint and in key order, so the findings of shard 1, then
//! 2, … are in key order, and counts add up.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use toolkit_db::sql_value::SqlValue;

use crate::checksum::range::boundaries;
use crate::merge::{range_where, KeyRange};
use crate::plan::SidePlan;
use crate::report::{Report, RunKind, TableReport};
use crate::run_store::ShardRun;
use crate::source::Source;
use crate::sql::ColumnClass;
use crate::{ReconcileError, RunStatus, RunStore};

/// Shards of one run at most.
pub const MAX_SHARDS: u32 = 1024;

/// `--shard I/N`: this process is shard `index` of `count`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShardIndex {
    /// From 1.
    pub index: u32,
    /// How many shards.
    pub count: u32,
}

impl FromStr for ShardIndex {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let usage = || format!("`{text}` is no shard: write it as I/N, like 2/4 for the second of four");
        let (index, count) = text.split_once('/').ok_or_else(usage)?;
        let index: u32 = index.trim().parse().map_err(|_| usage())?;
        let count: u32 = count.trim().parse().map_err(|_| usage())?;
        if count == 0 || count > MAX_SHARDS {
            return Err(format!("`{text}`: the shard count must be 1 to {MAX_SHARDS}"));
        }
        if index == 0 || index > count {
            return Err(format!("`{text}`: the shard must be 1 to {count}"));
        }
        Ok(Self { index, count })
    }
}

impl fmt::Display for ShardIndex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

/// Checks a run group's name: what `--group` may be.
pub fn check_group(group: &str) -> Result<(), String> {
    let fine = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':');
    if group.is_empty() || group.len() > 100 || !group.chars().all(fine) {
        return Err(format!(
            "run group `{group}` must be 1 to 100 letters, digits, `-`, `_`, `.` or `:` (like nightly-2026-12-06)"
        ));
    }
    Ok(())
}

/// One process's part of a sharded run.
#[derive(Debug, Clone)]
pub struct ShardSpec {
    /// The run group all its processes share.
    pub group: String,
    /// Which shard this process is.
    pub shard: ShardIndex,
    /// Where the group's cuts are agreed on; without it, each process
    /// cuts the tables itself, which is exact only while the monolith's
    /// keys do not change between the processes' starts.
    pub store: Option<RunStore>,
}

/// The key range shard `spec` compares in `plan`'s table (monolith side
/// `legacy`), or `None` when the table has too few rows to reach it.
pub(crate) async fn range_of(
    spec: &ShardSpec,
    capability: &str,
    legacy: &mut Source,
    plan: &SidePlan,
    key_len: usize,
) -> Result<Option<KeyRange>, ReconcileError> {
    let count = spec.shard.count;
    let table = plan.table.to_string();
    let cuts = match &spec.store {
        None => cut(legacy, plan, key_len, count).await?,
        Some(store) => match store.shard_cuts(&spec.group, capability, &table).await? {
            Some(stored) => stored.for_count(&spec.group, count)?,
            None => {
                let cuts = cut(legacy, plan, key_len, count).await?;
                store
                    .offer_shard_cuts(&spec.group, capability, &table, count, &cuts)
                    .await?;
                // Another process may have fixed them first: theirs hold.
                match store.shard_cuts(&spec.group, capability, &table).await? {
                    Some(stored) => stored.for_count(&spec.group, count)?,
                    None => cuts,
                }
            }
        },
    };
    Ok(nth_range(&cuts, spec.shard.index))
}

/// A table's cuts as stored, and the shard count they were made for.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct StoredCuts {
    pub count: u32,
    pub cuts: Vec<Vec<SqlValue>>,
}

impl StoredCuts {
    /// The cuts, when they were made for `count` shards.
    fn for_count(self, group: &str, count: u32) -> Result<Vec<Vec<SqlValue>>, ReconcileError> {
        if self.count != count {
            return Err(ReconcileError::Unsupported(format!(
                "run group `{group}` was cut into {} shards and this process was started as one of {count}; \
                 start every process of a group with the same --shard …/N, or pick a new --group",
                self.count
            )));
        }
        Ok(self.cuts)
    }
}

/// The N-1 keys cutting `plan`'s rows into `count` ranges of about equal
/// size: the keys at every (rows / count)th row.
async fn cut(
    source: &mut Source,
    plan: &SidePlan,
    key_len: usize,
    count: u32,
) -> Result<Vec<Vec<SqlValue>>, ReconcileError> {
    if count <= 1 {
        return Ok(Vec::new());
    }
    let everything = KeyRange::default();
    let (clause, binds) = range_where(plan, None, None);
    let sql = format!(
        "SELECT COUNT(*) FROM {} t {clause}",
        plan.dialect.quote(&plan.table)
    );
    let binds: Vec<&SqlValue> = binds.iter().collect();
    let doing = format!(
        "counting the rows of table `{}` to cut it into shards",
        plan.table
    );
    let rows = source
        .fetch(&sql, &binds, &[ColumnClass::Integer], &doing)
        .await?;
    let total = match rows.first().and_then(|row| row.first()) {
        Some(SqlValue::Int(n)) => (*n).max(0) as u64,
        _ => 0,
    };
    let every = total.div_ceil(u64::from(count)).max(1);
    boundaries(source, plan, key_len, &everything, every, (count - 1) as usize).await
}

/// The range of shard `index` (from 1) between `cuts`, or `None` past them.
fn nth_range(cuts: &[Vec<SqlValue>], index: u32) -> Option<KeyRange> {
    let i = (index as usize).checked_sub(1)?;
    if i > cuts.len() {
        return None;
    }
    Some(KeyRange {
        lower: i.checked_sub(1).and_then(|j| cuts.get(j).cloned()),
        upper: cuts.get(i).cloned(),
    })
}

/// One report from the latest finished run of every shard of `group`:
/// tables' counts added up and findings concatenated in shard order.
/// An error names the shards that have no finished run, or failed.
pub fn merge_shards(capability: &str, group: &str, runs: &[ShardRun]) -> Result<Report, ReconcileError> {
    let refuse = |message: String| Err(ReconcileError::Unsupported(message));
    let Some(first) = runs.first() else {
        return refuse(format!(
            "no run of `{capability}` is recorded in run group `{group}`; start its shards with \
             `strangler reconcile run {capability} --shard I/N --group {group}`"
        ));
    };
    let count = first.shard.count;
    if let Some(other) = runs.iter().find(|run| run.shard.count != count) {
        return refuse(format!(
            "run group `{group}` holds runs cut into {count} shards and into {} shards; pick a new --group",
            other.shard.count
        ));
    }
    // The latest run of each shard (runs come oldest first).
    let mut latest: BTreeMap<u32, &ShardRun> = BTreeMap::new();
    for run in runs {
        latest.insert(run.shard.index, run);
    }
    let mut problems = Vec::new();
    let mut reports = Vec::with_capacity(count as usize);
    for index in 1..=count {
        match latest.get(&index) {
            None => problems.push(format!("shard {index}/{count} has no run")),
            Some(run) => match (run.record.status, &run.record.report) {
                (RunStatus::Clean | RunStatus::Diverged, Some(json)) => {
                    match serde_json::from_str::<Report>(json) {
                        Ok(report) => reports.push(report),
                        Err(error) => problems.push(format!(
                            "shard {index}/{count} (run #{}) has a report this version cannot read: {error}",
                            run.record.id
                        )),
                    }
                }
                (RunStatus::Running, _) => problems.push(format!(
                    "shard {index}/{count} (run #{}) is still running",
                    run.record.id
                )),
                (_, _) => problems.push(format!(
                    "shard {index}/{count} (run #{}) failed: {}",
                    run.record.id,
                    run.record.error.as_deref().unwrap_or("no report")
                )),
            },
        }
    }
    if !problems.is_empty() {
        return refuse(format!(
            "run group `{group}` of `{capability}` cannot be merged yet: {}; run the missing or failed shards \
             again with --shard I/{count} --group {group}",
            problems.join("; ")
        ));
    }
    Ok(merge_reports(reports))
}

/// Reports of disjoint key ranges, in key order, as one.
fn merge_reports(reports: Vec<Report>) -> Report {
    let mut parts = reports.into_iter();
    let Some(mut merged) = parts.next() else {
        return Report {
            schema_version: crate::report::SCHEMA_VERSION,
            capability: String::new(),
            source_of_truth: mapping::SourceOfTruth::Legacy,
            legacy_engine: String::new(),
            service_engine: String::new(),
            started_at: String::new(),
            finished_at: String::new(),
            status: crate::Status::Clean,
            kind: RunKind::Full,
            since: None,
            kind_note: None,
            shard: None,
            totals: Default::default(),
            tables: Vec::new(),
        };
    };
    for part in parts {
        if part.started_at < merged.started_at {
            merged.started_at = part.started_at.clone();
        }
        if part.finished_at > merged.finished_at {
            merged.finished_at = part.finished_at.clone();
        }
        for (table, more) in merged.tables.iter_mut().zip(part.tables) {
            add_table(table, more);
        }
    }
    merged.shard = None;
    merged.finish();
    merged
}

/// Adds the next range's findings of a table to `table`'s.
fn add_table(table: &mut TableReport, more: TableReport) {
    table.rows_legacy += more.rows_legacy;
    table.rows_service += more.rows_service;
    table.rows_compared += more.rows_compared;
    table.rows_fetched += more.rows_fetched;
    table.missing.extend(more.missing);
    table.extra.extend(more.extra);
    table.changed.extend(more.changed);
    table.settling.extend(more.settling);
    if table.strategy != more.strategy || table.strategy_note != more.strategy_note {
        // Shards may settle on different strategies (`auto` measures each
        // range); the merged report says so rather than pick one.
        let note = format!(
            "shards used {} and {}{}",
            table.strategy.as_str(),
            more.strategy.as_str(),
            more.strategy_note.map(|n| format!(" ({n})")).unwrap_or_default()
        );
        table.strategy_note = Some(match table.strategy_note.take() {
            Some(first) if first != note => format!("{first}; {note}"),
            _ => note,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_are_written_i_of_n() {
        assert_eq!("2/4".parse(), Ok(ShardIndex { index: 2, count: 4 }));
        assert!("0/4".parse::<ShardIndex>().unwrap_err().contains("1 to 4"));
        assert!("5/4".parse::<ShardIndex>().unwrap_err().contains("1 to 4"));
        assert!("2-4".parse::<ShardIndex>().unwrap_err().contains("I/N"));
        assert!("1/0".parse::<ShardIndex>().unwrap_err().contains("count"));
        assert!(check_group("nightly-2026-12-06").is_ok());
        assert!(check_group("a b").is_err());
        assert!(check_group("").is_err());
    }

    #[test]
    fn ranges_between_cuts_cover_every_key_once() {
        let cuts = vec![vec![SqlValue::Int(10)], vec![SqlValue::Int(20)]];
        let bounds = |index| nth_range(&cuts, index).map(|r| (r.lower, r.upper));
        let key = |v| Some(vec![SqlValue::Int(v)]);
        assert_eq!(bounds(1), Some((None, key(10))));
        assert_eq!(bounds(2), Some((key(10), key(20))));
        assert_eq!(bounds(3), Some((key(20), None)));
        // A table with fewer rows than shards gives the last ones nothing.
        assert_eq!(bounds(4), None);
        assert_eq!(nth_range(&[], 1).map(|r| (r.lower, r.upper)), Some((None, None)));
    }
}
