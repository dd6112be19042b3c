//! The sweep: checksums of a long stretch of a table in one query per
//! side, grouped into buckets of key values, for tables keyed by one
//! integer column.
//!
//! Segment by segment, every round pays a query to find its boundaries
//! and a round trip per lane, and a database cannot spread a small range
//! over its cores. A sweep asks each side once for the `COUNT(*)` and
//! checksum of every bucket of `width` consecutive key values in a stretch
//! of the key space (`GROUP BY (key - start) / width`): no boundary query,
//! one round trip, and as many rows per query as the target query time
//! allows. A bucket holds about `leaf_rows` rows, so a bucket that differs
//! is already a leaf: it is merged directly, and consecutive differing
//! buckets are merged as one range. A differing bucket much fuller than
//! that (keys denser there than where the width was measured) is bisected
//! as before.
//!
//! A stretch ends at the monolith's `rows`th key from its start (one
//! `OFFSET` through the key's index), so it never holds more rows than
//! wanted however unevenly the keys are spread, and its width is its span
//! times `leaf_rows / rows`. Stretches grow or shrink (at most 4× a step)
//! towards the target query time, like the merge's batches. A key span that
//! does not fit a signed 64-bit integer falls back to segments.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use toolkit_db::sql_value::SqlValue;
use toolkit_db::Engine;

use super::range::{grouped_sums, key_at, key_span, settled, Sum};
use super::{bisect_range, timed_merge, Costs, Lane, SegmentOptions};
use crate::merge::{merge_range, range_where, Judge, KeyRange, ReadSizes};
use crate::plan::{SidePlan, TablePlan};
use crate::source::Source;
use crate::sql::ColumnClass;
use crate::ReconcileError;

/// Rows the first sweep covers, in segments: enough for a first verdict on
/// how dense the differences are, early.
const FIRST_SWEEP_SEGMENTS: u64 = 8;

/// A differing bucket holding more than this many leaves' worth of rows is
/// bisected instead of merged.
const MERGE_BUCKET_LEAVES: u64 = 2;

/// Whether `plan` can be swept: one integer key column, never NULL, on
/// both sides.
pub(super) fn applies(plan: &TablePlan) -> bool {
    let side = |side: &SidePlan| {
        side.key_exprs.len() == 1 && side.classes.first() == Some(&ColumnClass::Integer) && side.not_null_key
    };
    side(&plan.legacy) && side(&plan.service)
}

/// What judging a stretch's buckets left to do.
enum Judged {
    /// Every bucket was judged.
    All,
    /// The merge takes over from just after this key (`None`: from the
    /// range's start), where the first bucket differed.
    MergeFrom(Option<Vec<SqlValue>>),
}

/// What [`sweep`] did.
pub(super) enum Swept {
    /// The range was compared to its end; with `Some`, the merge took over
    /// part of it (the costs say why).
    Done(Option<Costs>),
    /// The key span does not fit the arithmetic; nothing was judged.
    NotApplicable,
}

/// A stretch of key values `[start, start + span)`, cut into buckets of
/// `width` values, and the range's upper bound when the stretch is the
/// last one.
struct Stretch {
    start: i64,
    /// The last key value in the stretch, `None` to the range's end.
    last: Option<i64>,
    width: i64,
    /// The range's own upper bound (a shard's last key).
    range_upper: Option<i64>,
}

impl Stretch {
    /// The keys of bucket `b`, clamped to the stretch.
    fn bucket(&self, b: i64) -> KeyRange {
        self.buckets(b, b)
    }

    /// The keys of buckets `first..=last`, clamped to the stretch.
    fn buckets(&self, first: i64, last: i64) -> KeyRange {
        let start = i128::from(self.start);
        let width = i128::from(self.width);
        let lower = start + i128::from(first) * width - 1;
        let upper = start + (i128::from(last) + 1) * width - 1;
        let upper = match self.last.or(self.range_upper) {
            Some(cap) if i128::from(cap) <= upper => Some(cap),
            _ => i64::try_from(upper).ok(),
        };
        KeyRange {
            // Below i64::MIN nothing exists; `None` says the same.
            lower: i64::try_from(lower).ok().map(|k| vec![SqlValue::Int(k)]),
            upper: upper.map(|k| vec![SqlValue::Int(k)]),
        }
    }

    /// The whole stretch as a key range.
    fn range(&self) -> KeyRange {
        KeyRange {
            lower: self.start.checked_sub(1).map(|k| vec![SqlValue::Int(k)]),
            upper: self.last.or(self.range_upper).map(|k| vec![SqlValue::Int(k)]),
        }
    }
}

/// Compares `range` of `plan` sweep by sweep on `lane`, judging every
/// differing row; with `options.adaptive`, merges the rest once that is
/// cheaper (`costs` holds what was measured before).
pub(super) async fn sweep(
    plan: &TablePlan,
    lane: &mut Lane,
    range: &KeyRange,
    options: &SegmentOptions,
    sizes: &mut ReadSizes,
    judge: &mut Judge<'_>,
    costs: &mut Costs,
) -> Result<Swept, ReconcileError> {
    let range_upper = match range.upper.as_deref() {
        None => None,
        Some([SqlValue::Int(k)]) => Some(*k),
        Some(_) => return Ok(Swept::NotApplicable),
    };
    let (legacy, service) = tokio::try_join!(
        key_span(&mut lane.legacy, &plan.legacy, range),
        key_span(&mut lane.service, &plan.service, range)
    )?;
    let (low, high) = match (legacy, service) {
        (None, None) => return Ok(Swept::Done(None)),
        (Some(a), None) | (None, Some(a)) => a,
        (Some(a), Some(b)) => (a.0.min(b.0), a.1.max(b.1)),
    };
    // Every key in the range, less the start, must be a 64-bit integer.
    if i64::try_from(i128::from(high) - i128::from(low)).is_err() {
        return Ok(Swept::NotApplicable);
    }
    let leaf_rows = options.leaf_rows.max(1);
    let mut rows_wanted = options
        .segment_rows
        .max(leaf_rows)
        .saturating_mul(FIRST_SWEEP_SEGMENTS);
    let mut start = low;
    loop {
        // The stretch ends at the monolith's `rows_wanted`th key from its
        // start, found through the key's index: a stretch never holds
        // more rows than wanted, however the keys' density changes.
        let from = KeyRange {
            lower: start.checked_sub(1).map(|k| vec![SqlValue::Int(k)]),
            upper: range.upper.clone(),
        };
        // Timed from here: finding the end is part of what a stretch's
        // checksums cost.
        let timed = Instant::now();
        let end = key_at(&mut lane.legacy, &plan.legacy, 1, &from, rows_wanted - 1).await?;
        let last = match end.as_deref() {
            Some([SqlValue::Int(k)]) => Some(*k),
            // Stretches before this one are judged: no falling back now.
            Some(_) => {
                return Err(ReconcileError::Unsupported(format!(
                    "table `{}` has an integer key, but a key was not read as an integer",
                    plan.legacy.table
                )))
            }
            None => None,
        };
        // Buckets of about `leaf_rows` rows at the stretch's own density;
        // the last stretch, with fewer rows than wanted, gets buckets no
        // fuller than that.
        let span = i128::from(last.unwrap_or(high)) - i128::from(start) + 1;
        let width = i64::try_from(span * i128::from(leaf_rows) / i128::from(rows_wanted.max(1)))
            .unwrap_or(i64::MAX)
            .max(1);
        let stretch = Stretch {
            start,
            last,
            width,
            range_upper,
        };
        let (l, s) = tokio::try_join!(
            bucket_sums(&mut lane.legacy, &plan.legacy, &stretch),
            bucket_sums(&mut lane.service, &plan.service, &stretch)
        )?;
        let elapsed = timed.elapsed();
        let buckets = pair(l, s);
        let (mut rows, mut differing) = (0, 0);
        for (l, s) in buckets.values() {
            rows += l.rows.max(s.rows);
            if !settled(l, s) {
                differing += l.rows.max(s.rows);
            }
        }
        costs.checksummed(rows, differing, elapsed);
        let merge_rest = options.adaptive && costs.merge_is_cheaper();
        if let Judged::MergeFrom(from) = judge_buckets(
            plan, lane, &stretch, &buckets, merge_rest, leaf_rows, sizes, judge, costs,
        )
        .await?
        {
            // The rest, from the first bucket that differed, in one pass.
            let rest = KeyRange {
                lower: from,
                upper: range.upper.clone(),
            };
            merge_range(plan, &mut lane.legacy, &mut lane.service, &rest, sizes, judge).await?;
            return Ok(Swept::Done(Some(costs.clone())));
        }
        let Some(last) = last else {
            return Ok(Swept::Done(None));
        };
        if merge_rest {
            let rest = KeyRange {
                lower: Some(vec![SqlValue::Int(last)]),
                upper: range.upper.clone(),
            };
            merge_range(plan, &mut lane.legacy, &mut lane.service, &rest, sizes, judge).await?;
            return Ok(Swept::Done(Some(costs.clone())));
        }
        rows_wanted = next_size(rows_wanted, elapsed, options.target_query_time, leaf_rows);
        let Some(next) = last.checked_add(1) else {
            return Ok(Swept::Done(None));
        };
        start = next;
    }
}

/// The next sweep's rows: scaled towards `target` by the last sweep's
/// time, at most 4× up or down a step.
fn next_size(rows: u64, took: Duration, target: Duration, least: u64) -> u64 {
    let scale = (target.as_secs_f64() / took.as_secs_f64().max(1e-6)).clamp(0.25, 4.0);
    ((rows as f64 * scale) as u64).max(least)
}

/// Judges a sweep's buckets in key order: equal ones counted, differing
/// ones merged (consecutive ones together) or bisected; with `merge_rest`,
/// stops at the first differing bucket for the merge to take over there.
#[allow(clippy::too_many_arguments)] // the state of one table's comparison
async fn judge_buckets(
    plan: &TablePlan,
    lane: &mut Lane,
    stretch: &Stretch,
    buckets: &BTreeMap<i64, (Sum, Sum)>,
    merge_rest: bool,
    leaf_rows: u64,
    sizes: &mut ReadSizes,
    judge: &mut Judge<'_>,
    costs: &mut Costs,
) -> Result<Judged, ReconcileError> {
    // A run of consecutive differing buckets, merged as one range.
    let mut run: Option<(i64, i64)> = None;
    for (&b, (l, s)) in buckets {
        let mergeable = l.rows.max(s.rows) <= MERGE_BUCKET_LEAVES * leaf_rows || !(l.distinct && s.distinct);
        let differs = !settled(l, s);
        if differs && merge_rest {
            // Nothing is pending: with `merge_rest` no run is ever started.
            return Ok(Judged::MergeFrom(stretch.bucket(b).lower));
        }
        if differs && mergeable && run.is_some_and(|(_, last)| last + 1 == b) {
            run = run.map(|(first, _)| (first, b));
            continue;
        }
        if let Some((first, last)) = run.take() {
            timed_merge(plan, lane, &stretch.buckets(first, last), sizes, judge, costs).await?;
        }
        if !differs {
            judge.equal_rows(l.rows);
        } else if mergeable {
            run = Some((b, b));
        } else {
            let counts = (l.rows, s.rows);
            bisect_range(
                plan,
                lane,
                &stretch.bucket(b),
                counts,
                leaf_rows,
                sizes,
                judge,
                costs,
            )
            .await?;
        }
    }
    if let Some((first, last)) = run {
        timed_merge(plan, lane, &stretch.buckets(first, last), sizes, judge, costs).await?;
    }
    Ok(Judged::All)
}

/// Both sides' buckets side by side; a bucket one side lacks holds no rows
/// there.
fn pair(legacy: Vec<(i64, Sum)>, service: Vec<(i64, Sum)>) -> BTreeMap<i64, (Sum, Sum)> {
    let mut buckets: BTreeMap<i64, (Sum, Sum)> = BTreeMap::new();
    for (b, sum) in legacy {
        buckets.entry(b).or_insert_with(|| (Sum::empty(), Sum::empty())).0 = sum;
    }
    for (b, sum) in service {
        buckets.entry(b).or_insert_with(|| (Sum::empty(), Sum::empty())).1 = sum;
    }
    buckets
}

/// Each non-empty bucket of `stretch` on `plan`'s side: its number, and
/// its count and checksum.
async fn bucket_sums(
    source: &mut Source,
    plan: &SidePlan,
    stretch: &Stretch,
) -> Result<Vec<(i64, Sum)>, ReconcileError> {
    let key = &plan.key_exprs[0];
    let (start, width) = (stretch.start, stretch.width);
    // Widened to 64 bits before subtracting: a 32-bit key less a negative
    // start could overflow its own type.
    let bucket = match plan.dialect.engine() {
        Engine::MySql => format!("(CAST({key} AS SIGNED) - ({start})) DIV {width}"),
        _ => format!("(CAST({key} AS BIGINT) - ({start})) / {width}"),
    };
    let range = stretch.range();
    let (clause, binds) = range_where(plan, range.lower.as_deref(), range.upper.as_deref());
    let doing = format!("computing bucket checksums of table `{}`", plan.table);
    grouped_sums(source, plan, &bucket, &clause, &binds, &doing).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stretch(start: i64, last: Option<i64>, width: i64, range_upper: Option<i64>) -> Stretch {
        Stretch {
            start,
            last,
            width,
            range_upper,
        }
    }

    fn bounds(range: &KeyRange) -> (Option<i64>, Option<i64>) {
        let int = |key: &Option<Vec<SqlValue>>| match key.as_deref() {
            Some([SqlValue::Int(k)]) => Some(*k),
            _ => None,
        };
        (int(&range.lower), int(&range.upper))
    }

    #[test]
    fn buckets_cover_the_stretch_without_gaps_or_overlap() {
        let s = stretch(101, Some(1000), 100, None);
        // Lower bounds are exclusive, upper ones inclusive.
        assert_eq!(bounds(&s.bucket(0)), (Some(100), Some(200)));
        assert_eq!(bounds(&s.bucket(1)), (Some(200), Some(300)));
        assert_eq!(bounds(&s.buckets(1, 3)), (Some(200), Some(500)));
        // The last bucket stops at the stretch's last key.
        assert_eq!(bounds(&s.bucket(9)), (Some(1000), Some(1000)));
        assert_eq!(bounds(&s.range()), (Some(100), Some(1000)));
    }

    #[test]
    fn the_last_stretch_runs_to_the_range_end() {
        let open = stretch(1, None, 10, None);
        assert_eq!(bounds(&open.range()), (Some(0), None));
        assert_eq!(bounds(&open.bucket(5)), (Some(50), Some(60)));
        let shard = stretch(1, None, 10, Some(55));
        assert_eq!(bounds(&shard.range()), (Some(0), Some(55)));
        assert_eq!(bounds(&shard.bucket(5)), (Some(50), Some(55)));
    }

    #[test]
    fn bounds_at_the_edges_of_64_bits_do_not_overflow() {
        let s = stretch(i64::MIN, None, i64::MAX, None);
        assert_eq!(bounds(&s.bucket(0)), (None, Some(-2)));
        assert_eq!(bounds(&s.range()), (None, None));
        let top = stretch(i64::MAX - 5, None, 10, None);
        assert_eq!(bounds(&top.bucket(0)), (Some(i64::MAX - 6), None));
    }

    #[test]
    fn sweeps_grow_and_shrink_towards_the_target_time_by_at_most_four_times() {
        let target = Duration::from_secs(1);
        assert_eq!(next_size(1000, Duration::from_millis(10), target, 1), 4000);
        assert_eq!(next_size(1000, Duration::from_millis(500), target, 1), 2000);
        assert_eq!(next_size(1000, Duration::from_secs(10), target, 1), 250);
        assert_eq!(next_size(1000, Duration::from_secs(10), target, 600), 600);
    }
}
