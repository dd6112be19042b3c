//! Checksum-and-bisect, for big tables whose two sides run on the same
//! server engine (PostgreSQL or MySQL/MariaDB).
//!
//! For a key range, each database computes `COUNT(*)` and the sum of a
//! 64-bit hash of every row's key and compared columns (see
//! [`crate::sql::Dialect::checksum_expr`]); only those two numbers travel.
//! Equal on both sides: the range's rows are equal and none is read. Where
//! the catalog does not prove a side's key unique, its checksum also counts
//! distinct keys: the same repeated row on both sides leaves the checksums
//! equal, so a range with fewer distinct keys than rows is merged instead,
//! and the merge stops at the repeat and names it ([`range`]).
//!
//! The table is cut into segments of consecutive keys (boundaries found on
//! the monolith's side through the key index), whose checksums are computed
//! a few at a time, each segment on its own pair of connections
//! ([`Lane`]). A segment shrinks when its checksum takes longer than the
//! target query time. A segment that differs is bisected: split at the
//! median key of its larger side, both halves checked, down to ranges of at
//! most `leaf_rows` rows, which are merged ([`crate::merge`]). Segments are
//! finished in key order, so findings come out sorted.
//!
//! A table keyed by one integer column is swept instead ([`sweep`]): each
//! side checksums a long stretch of keys in one query, grouped into
//! buckets of about `leaf_rows` rows, and only differing buckets are read.
//!
//! Under [`crate::Strategy::Auto`] the costs are measured as the table is
//! compared ([`Costs`]): the first segment is merged, the others
//! checksummed, and once streaming the rest is expected to be cheaper than
//! checksumming it and resolving the differing share of it (dense
//! differences, or databases so close that streaming costs less than
//! hashing), the rest of the table is merged in one pass.
//!
//! Why only same-engine pairs: two engines render values as text
//! differently, so their checksums are not comparable. Why only when every
//! normalization treats both sides alike: a checksum covers raw values, and
//! equal raw rows must stay equal after normalization (a value map or
//! `cents_from_decimal` changes one side only). SQLite has no hash function.
//! In all of these cases the table is merged instead, and the report says why.

use std::time::{Duration, Instant};

use toolkit_db::sql_value::SqlValue;
use toolkit_db::Engine;

use crate::merge::{merge_range, Judge, KeyRange, ReadSizes};
use crate::plan::TablePlan;
use crate::source::Source;
use crate::ReconcileError;

pub(crate) mod range;
mod sweep;

use range::{boundaries, checksums, key_at, settled};

/// Why bisection cannot be used for `plan`, or `None` when it can.
pub fn unsupported_reason(plan: &TablePlan) -> Option<String> {
    let (l, s) = (plan.legacy.dialect.engine(), plan.service.dialect.engine());
    if l != s {
        return Some(format!(
            "bisection needs both sides on the same engine ({l} vs {s}): checksums are not comparable across engines"
        ));
    }
    if l == Engine::Sqlite {
        return Some("bisection is not available on SQLite, which has no hash function".to_owned());
    }
    if !plan.checksum_sound {
        return Some(
            "bisection needs normalizations that treat both sides alike (this table has a value map or cents_from_decimal)"
                .to_owned(),
        );
    }
    None
}

/// Whether [`bisect`] checksums `plan` segment by segment on several lanes;
/// a table it sweeps needs only the first.
pub fn uses_lanes(plan: &TablePlan) -> bool {
    !sweep::applies(plan)
}

/// How many segments' worth of rows [`bisect`] merges first under
/// `Strategy::Auto`, to measure the merge.
const PROBE_SEGMENTS: u64 = 5;

/// Checksums must cost less than this share of the merge for `Auto` to keep
/// them. On co-located PostgreSQL the two were measured within 5% of each
/// other, where a coin toss between them made run times vary by half.
const MERGE_MARGIN: f64 = 0.8;

/// Segments per lane whose boundaries one query finds.
const SEGMENTS_PER_LANE: usize = 4;

/// One pair of connections, one per side; checksums of several segments
/// run at once on several lanes.
#[derive(Debug)]
pub struct Lane {
    /// The monolith's side.
    pub legacy: Source,
    /// The service's side.
    pub service: Source,
}

/// How segments are sized and which strategy decides.
#[derive(Debug, Clone)]
pub struct SegmentOptions {
    /// Rows per segment at most (and at first).
    pub segment_rows: u64,
    /// Bisection stops splitting at ranges this small and merges them.
    pub leaf_rows: u64,
    /// A checksum query slower than this makes segments smaller.
    pub target_query_time: Duration,
    /// Merge the rest of the table when that is expected to be cheaper.
    pub adaptive: bool,
}

/// What comparing a table cost so far, in wall-clock seconds per row
/// (both sides at once), and how much of it differed.
#[derive(Debug, Clone, Default)]
pub struct Costs {
    checksum_seconds: f64,
    checksum_rows: u64,
    differing_rows: u64,
    merge_seconds: f64,
    merge_rows: u64,
}

impl Costs {
    /// Records a round of segment checksums.
    pub fn checksummed(&mut self, rows: u64, differing_rows: u64, elapsed: Duration) {
        self.checksum_rows += rows;
        self.differing_rows += differing_rows;
        self.checksum_seconds += elapsed.as_secs_f64();
    }

    /// Records a merge of `rows` (the larger side's count).
    pub fn merged(&mut self, rows: u64, elapsed: Duration) {
        self.merge_rows += rows;
        self.merge_seconds += elapsed.as_secs_f64();
    }

    /// Whether merging the rest is expected to be cheaper than
    /// checksumming it: per row, a checksum costs `c` and the differing
    /// share `d` of the rows must be read anyway at `m`, so checksums cost
    /// `c + d·m` against the merge's `m`. Checksums must win by a margin
    /// ([`MERGE_MARGIN`]): the merge's cost is one predictable pass, while
    /// bisection pays again for every differing range, in round trips the
    /// estimate does not see. Undecided (false) until both costs have been
    /// measured.
    pub fn merge_is_cheaper(&self) -> bool {
        if self.checksum_rows == 0 || self.merge_rows == 0 {
            return false;
        }
        let c = self.checksum_seconds / self.checksum_rows as f64;
        let m = self.merge_seconds / self.merge_rows as f64;
        let d = self.differing_rows as f64 / self.checksum_rows as f64;
        c + d * m >= MERGE_MARGIN * m
    }

    /// A sentence for the report when the merge took over.
    pub fn note(&self) -> String {
        format!(
            "switched to the merge after checksumming {} rows: {:.1}% of them differed, and streaming was measured at {:.2} µs a row against {:.2} µs for a checksum",
            self.checksum_rows,
            100.0 * self.differing_rows as f64 / self.checksum_rows.max(1) as f64,
            1e6 * self.merge_seconds / self.merge_rows.max(1) as f64,
            1e6 * self.checksum_seconds / self.checksum_rows.max(1) as f64,
        )
    }
}

/// Compares `plan` segment by segment, judging every differing row; with
/// `options.adaptive`, merges the rest once that is cheaper. Returns the
/// costs when the merge took over, `None` when the table was bisected to
/// the end.
pub async fn bisect(
    plan: &TablePlan,
    lanes: &mut [Lane],
    range: &KeyRange,
    options: &SegmentOptions,
    sizes: &mut ReadSizes,
    judge: &mut Judge<'_>,
) -> Result<Option<Costs>, ReconcileError> {
    let Some(main) = lanes.first_mut() else {
        return Err(ReconcileError::Unsupported(
            "bisection needs a connection per side".to_owned(),
        ));
    };
    let mut costs = Costs::default();
    let mut segment_rows = options.segment_rows.max(options.leaf_rows).max(1);
    let mut lower = range.lower.clone();
    // The range's end (a shard's last key), `None` for the table's end.
    let end = &range.upper;
    let after = |lower: &Option<Vec<SqlValue>>| KeyRange {
        lower: lower.clone(),
        upper: end.clone(),
    };
    let sweeps = sweep::applies(plan);
    if options.adaptive {
        // The first rows are merged, to measure what streaming costs here:
        // enough of them that a batch's fixed cost does not dominate (a
        // small table is merged whole, which is what suits it anyway).
        // Sweeps checksum so much more cheaply than they stream that one
        // segment measures the merge well enough, and over a slow link
        // every row merged is dear.
        let probe = segment_rows.saturating_mul(if sweeps { 1 } else { PROBE_SEGMENTS });
        let upper = key_at(
            &mut main.legacy,
            &plan.legacy,
            plan.key_len(),
            &after(&lower),
            probe - 1,
        )
        .await?;
        let Some(upper) = upper else {
            timed_merge(plan, main, &after(&lower), sizes, judge, &mut costs).await?;
            return Ok(None);
        };
        let probed = KeyRange {
            lower: lower.clone(),
            upper: Some(upper.clone()),
        };
        timed_merge(plan, main, &probed, sizes, judge, &mut costs).await?;
        lower = Some(upper);
    }
    if sweeps {
        let main = &mut lanes[0];
        let rest = after(&lower);
        if let sweep::Swept::Done(merged) =
            sweep::sweep(plan, main, &rest, options, sizes, judge, &mut costs).await?
        {
            return Ok(merged);
        }
    }
    loop {
        if options.adaptive && costs.merge_is_cheaper() {
            let main = &mut lanes[0];
            merge_range(
                plan,
                &mut main.legacy,
                &mut main.service,
                &after(&lower),
                sizes,
                judge,
            )
            .await?;
            return Ok(Some(costs));
        }
        // The next segments, a few per lane. The round is timed from here:
        // finding boundaries is part of what checksums cost.
        let started = Instant::now();
        // The first round is one segment per lane, so that a first
        // verdict on density comes early.
        let per_lane = if costs.checksum_rows == 0 {
            1
        } else {
            SEGMENTS_PER_LANE
        };
        let per_round = lanes.len() * per_lane;
        let main = &mut lanes[0];
        let ends = boundaries(
            &mut main.legacy,
            &plan.legacy,
            plan.key_len(),
            &after(&lower),
            segment_rows,
            per_round,
        )
        .await?;
        let mut ranges = Vec::with_capacity(per_round);
        let mut cursor = lower.clone();
        // Fewer cuts than asked for: the last segment runs to the end.
        let reaches_end = ends.len() < per_round;
        for i in 0..per_round {
            let cut = ends.get(i).cloned();
            let upper = cut.clone().or_else(|| end.clone());
            ranges.push(KeyRange {
                lower: cursor,
                upper: upper.clone(),
            });
            cursor = upper;
            if cut.is_none() {
                break;
            }
        }
        // Decided after every group of segments, before any differing one
        // is bisected: with dense differences, bisecting would cost the most.
        let mut boundary_time = Some(started.elapsed());
        let mut slowest = Duration::ZERO;
        // Each lane checksums a run of consecutive segments in one query
        // per side, so a round costs one round trip whatever its size.
        let per_lane_ranges = ranges.len().div_ceil(lanes.len()).max(1);
        for group in ranges.chunks(per_lane_ranges * lanes.len()) {
            let timed = Instant::now();
            let batches =
                futures::future::try_join_all(lanes.iter_mut().zip(group.chunks(per_lane_ranges)).map(
                    |(lane, batch)| async move {
                        let timed = Instant::now();
                        let (l, s) = tokio::try_join!(
                            checksums(&mut lane.legacy, &plan.legacy, batch),
                            checksums(&mut lane.service, &plan.service, batch)
                        )?;
                        let took = timed.elapsed();
                        Ok::<_, ReconcileError>(l.into_iter().zip(s).map(move |(l, s)| (l, s, took)))
                    },
                ))
                .await?;
            let sums: Vec<_> = batches.into_iter().flatten().collect();
            let (mut rows, mut differing) = (0, 0);
            for (l, s, took) in &sums {
                rows += l.rows.max(s.rows);
                slowest = slowest.max(*took);
                if !settled(l, s) {
                    differing += l.rows.max(s.rows);
                }
            }
            let elapsed = timed.elapsed() + boundary_time.take().unwrap_or_default();
            costs.checksummed(rows, differing, elapsed);
            let merge_rest = options.adaptive && costs.merge_is_cheaper();
            for (range, (l, s, _)) in group.iter().zip(&sums) {
                if settled(l, s) {
                    judge.equal_rows(l.rows);
                } else if merge_rest {
                    let main = &mut lanes[0];
                    let rest = after(&range.lower);
                    merge_range(plan, &mut main.legacy, &mut main.service, &rest, sizes, judge).await?;
                    return Ok(Some(costs));
                } else if !(l.distinct && s.distinct) {
                    let lane = &mut lanes[0];
                    timed_merge(plan, lane, range, sizes, judge, &mut costs).await?;
                } else {
                    let counts = (l.rows, s.rows);
                    let lane = &mut lanes[0];
                    bisect_range(
                        plan,
                        lane,
                        range,
                        counts,
                        options.leaf_rows,
                        sizes,
                        judge,
                        &mut costs,
                    )
                    .await?;
                }
            }
            if merge_rest {
                let Some(from) = group.last().and_then(|r| r.upper.clone()) else {
                    return Ok(None);
                };
                let main = &mut lanes[0];
                let rest = after(&Some(from));
                merge_range(plan, &mut main.legacy, &mut main.service, &rest, sizes, judge).await?;
                return Ok(Some(costs));
            }
        }
        if slowest > options.target_query_time && segment_rows > options.leaf_rows {
            // Shorter queries: scale the segment to the target time.
            let scale = options.target_query_time.as_secs_f64() / slowest.as_secs_f64();
            segment_rows = ((segment_rows as f64 * scale) as u64)
                .max(options.leaf_rows)
                .max(1);
        }
        if reaches_end {
            return Ok(None);
        }
        match ranges.pop().and_then(|r| r.upper) {
            Some(upper) => lower = Some(upper),
            None => return Ok(None),
        }
    }
}

async fn timed_merge(
    plan: &TablePlan,
    lane: &mut Lane,
    range: &KeyRange,
    sizes: &mut ReadSizes,
    judge: &mut Judge<'_>,
    costs: &mut Costs,
) -> Result<(), ReconcileError> {
    let (rows_legacy, rows_service) = (judge.report.rows_legacy, judge.report.rows_service);
    let started = Instant::now();
    merge_range(plan, &mut lane.legacy, &mut lane.service, range, sizes, judge).await?;
    let rows = (judge.report.rows_legacy - rows_legacy).max(judge.report.rows_service - rows_service);
    costs.merged(rows, started.elapsed());
    Ok(())
}

/// Bisects one range found different, with `counts` rows on each side,
/// down to leaves of at most `leaf_rows` rows, which are merged.
#[allow(clippy::too_many_arguments)] // the state of one table's comparison
async fn bisect_range(
    plan: &TablePlan,
    lane: &mut Lane,
    range: &KeyRange,
    counts: (u64, u64),
    leaf_rows: u64,
    sizes: &mut ReadSizes,
    judge: &mut Judge<'_>,
    costs: &mut Costs,
) -> Result<(), ReconcileError> {
    let leaf_rows = leaf_rows.max(1);
    // Ranges still to judge, the next on top, with both sides' row counts;
    // `merge` when a key repeats there (the merge names it).
    let mut stack = vec![(range.clone(), counts, false)];
    while let Some((range, (lc, sc), merge)) = stack.pop() {
        if merge || lc.max(sc) <= leaf_rows {
            timed_merge(plan, lane, &range, sizes, judge, costs).await?;
            continue;
        }
        let mid = if lc >= sc {
            key_at(&mut lane.legacy, &plan.legacy, plan.key_len(), &range, lc / 2 - 1).await?
        } else {
            key_at(
                &mut lane.service,
                &plan.service,
                plan.key_len(),
                &range,
                sc / 2 - 1,
            )
            .await?
        };
        let Some(mid) = mid else {
            // The table changed under us; merging the range is always right.
            timed_merge(plan, lane, &range, sizes, judge, costs).await?;
            continue;
        };
        let halves = [
            KeyRange {
                lower: range.lower,
                upper: Some(mid.clone()),
            },
            KeyRange {
                lower: Some(mid),
                upper: range.upper,
            },
        ];
        // Both halves in one query per side: one round trip a level.
        let (l, s) = tokio::try_join!(
            checksums(&mut lane.legacy, &plan.legacy, &halves),
            checksums(&mut lane.service, &plan.service, &halves)
        )?;
        // Upper half pushed first so that the lower half is judged first,
        // and findings come out in key order.
        for (half, (l, s)) in halves.into_iter().zip(l.into_iter().zip(s)).rev() {
            if settled(&l, &s) {
                judge.equal_rows(l.rows);
            } else {
                stack.push((half, (l.rows, s.rows), !(l.distinct && s.distinct)));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn costs(checksum_us: f64, merge_us: f64, differing: f64) -> Costs {
        let mut costs = Costs::default();
        costs.checksummed(
            100_000,
            (100_000.0 * differing) as u64,
            Duration::from_secs_f64(checksum_us / 10.0),
        );
        costs.merged(100_000, Duration::from_secs_f64(merge_us / 10.0));
        costs
    }

    #[test]
    fn auto_keeps_checksums_only_while_they_clearly_pay() {
        // A remote database: streaming is dear, checksums cheap.
        assert!(!costs(0.2, 2.0, 0.0).merge_is_cheaper());
        assert!(!costs(0.2, 2.0, 0.3).merge_is_cheaper());
        // Dense differences: most rows must be read anyway.
        assert!(costs(0.2, 2.0, 0.95).merge_is_cheaper());
        // Co-located: hashing costs about what streaming does.
        assert!(costs(1.0, 1.1, 0.0).merge_is_cheaper());
    }

    #[test]
    fn nothing_is_decided_before_both_costs_are_measured() {
        let mut only_checksums = Costs::default();
        only_checksums.checksummed(1000, 1000, Duration::from_secs(5));
        assert!(!only_checksums.merge_is_cheaper());
        let mut only_merges = Costs::default();
        only_merges.merged(1000, Duration::from_millis(1));
        assert!(!only_merges.merge_is_cheaper());
    }
}
