//! A bucketed sliding window of success/failure counts, the building block of the retry budget and the
//! error budget. The window is split into `buckets` equal slots arranged in a ring (the same layout as
//! Hystrix's rolling counters and Envoy's outlier-detection intervals): recording touches one slot,
//! reading sums the slots still inside the window, and a slot is recycled lazily when time reaches it
//! again, so memory is fixed and no background timer is needed. Time is always passed in, which keeps the
//! logic deterministic under test.
//!
//! Precision is one bucket: an event stays counted for at least `window - window / buckets` and less
//! than `window`, depending on where inside its bucket it landed.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Upper bound on the bucket count: a ring is allocated eagerly, and finer slots than this buy no useful
/// precision for request-rate decisions while a careless `u32::MAX` would try to allocate ~100 GB.
pub const MAX_BUCKETS: u32 = 4096;

/// Unsynchronised ring of counters; owners wrap it in a `Mutex` so that a composite operation
/// (read, decide, write) can happen under one lock. Holds two counters per slot, `first` and `second`,
/// whose meaning is up to the owner.
#[derive(Debug)]
pub(crate) struct Buckets {
    slots: Vec<Slot>,
    /// Never zero, so that slot arithmetic cannot divide by zero.
    bucket_nanos: u128,
    /// Slot boundaries are aligned to the first recorded instant rather than to construction time, since
    /// the constructor has no clock and callers may pass instants from before it.
    origin: Option<Instant>,
}

#[derive(Debug, Clone, Copy, Default)]
struct Slot {
    /// Absolute slot number these counts belong to; a slot whose number has fallen out of the window is
    /// stale and ignored until reused.
    index: u64,
    first: u64,
    second: u64,
}

impl Buckets {
    /// See [`SlidingWindow::new`] for how out-of-range arguments are clamped.
    pub(crate) fn new(window: Duration, buckets: u32) -> Self {
        let buckets = buckets.clamp(1, MAX_BUCKETS);
        let bucket_nanos = (window.as_nanos() / u128::from(buckets)).max(1);
        Self {
            slots: vec![Slot::default(); buckets as usize],
            bucket_nanos,
            origin: None,
        }
    }

    fn len(&self) -> u64 {
        self.slots.len() as u64
    }

    fn slot_number(&self, origin: Instant, now: Instant) -> u64 {
        // An instant before the origin (another task's clock read raced ours) lands in slot 0, which is
        // at worst one bucket of imprecision.
        let n = now.saturating_duration_since(origin).as_nanos() / self.bucket_nanos;
        u64::try_from(n).unwrap_or(u64::MAX)
    }

    pub(crate) fn add(&mut self, now: Instant, first: u64, second: u64) {
        let origin = *self.origin.get_or_insert(now);
        let number = self.slot_number(origin, now);
        let position = (number % self.len()) as usize;
        let slot = &mut self.slots[position];
        if slot.index == number {
            slot.first = slot.first.saturating_add(first);
            slot.second = slot.second.saturating_add(second);
        } else if slot.index < number {
            *slot = Slot {
                index: number,
                first,
                second,
            };
        }
        // Otherwise the ring position already holds a newer slot: `now` is older than the whole window
        // (a late report), so the event would have expired already and is dropped.
    }

    pub(crate) fn sums(&self, now: Instant) -> (u64, u64) {
        let Some(origin) = self.origin else {
            return (0, 0);
        };
        let current = self.slot_number(origin, now);
        let oldest = current.saturating_sub(self.len() - 1);
        self.slots
            .iter()
            .filter(|slot| (oldest..=current).contains(&slot.index))
            .fold((0u64, 0u64), |(a, b), slot| {
                (a.saturating_add(slot.first), b.saturating_add(slot.second))
            })
    }

    pub(crate) fn clear(&mut self) {
        self.slots.fill(Slot::default());
        self.origin = None;
    }
}

/// Counts successes and failures over a sliding window split into equal buckets; buckets older than the
/// window expire as the `now` passed in moves forward.
///
/// Thread-safe (one short `Mutex` section per call), so it can be shared behind an `Arc`.
#[derive(Debug)]
pub struct SlidingWindow {
    inner: Mutex<Buckets>,
}

impl SlidingWindow {
    /// A window of length `window` made of `buckets` slots (more buckets: smoother expiry, a little more
    /// memory and summing). `buckets` is clamped to `1..=`[`MAX_BUCKETS`]; a window too short to split gets
    /// one-nanosecond buckets.
    pub fn new(window: Duration, buckets: u32) -> Self {
        Self {
            inner: Mutex::new(Buckets::new(window, buckets)),
        }
    }

    /// Adds `ok` successes and `failed` failures at `now`. Reports older than the whole window are dropped.
    pub fn record(&self, now: Instant, ok: u64, failed: u64) {
        self.inner
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .add(now, ok, failed);
    }

    /// `(successes, failures)` within the window ending at `now`.
    pub fn totals(&self, now: Instant) -> (u64, u64) {
        self.inner.lock().unwrap_or_else(|e| e.into_inner()).sums(now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn counts_within_window() {
        let base = Instant::now();
        let w = SlidingWindow::new(Duration::from_secs(10), 10);
        assert_eq!(w.totals(base), (0, 0));
        w.record(base, 3, 1);
        w.record(base + ms(2500), 2, 0);
        assert_eq!(w.totals(base + ms(2500)), (5, 1));
        assert_eq!(w.totals(base + ms(9999)), (5, 1));
    }

    #[test]
    fn old_events_expire_at_bucket_boundaries() {
        let base = Instant::now();
        let w = SlidingWindow::new(Duration::from_secs(10), 10);
        w.record(base, 1, 0); // bucket 0
        w.record(base + ms(999), 0, 1); // still bucket 0
        w.record(base + ms(1000), 10, 0); // bucket 1
        assert_eq!(w.totals(base + ms(9999)), (11, 1));
        // Bucket 0 leaves the window as soon as bucket 10 starts.
        assert_eq!(w.totals(base + ms(10_000)), (10, 0));
        assert_eq!(w.totals(base + ms(10_999)), (10, 0));
        assert_eq!(w.totals(base + ms(11_000)), (0, 0));
    }

    #[test]
    fn ring_slots_are_reused_without_leaking_old_counts() {
        let base = Instant::now();
        let w = SlidingWindow::new(Duration::from_secs(10), 10);
        w.record(base + ms(500), 7, 7); // slot 0
        w.record(base + ms(10_500), 1, 0); // slot 10, same ring position
        assert_eq!(w.totals(base + ms(10_500)), (1, 0));
        // Long idle gap: everything expired.
        assert_eq!(w.totals(base + Duration::from_secs(3600)), (0, 0));
        w.record(base + Duration::from_secs(3600), 0, 2);
        assert_eq!(w.totals(base + Duration::from_secs(3600)), (0, 2));
    }

    #[test]
    fn late_reports_inside_window_count_and_outside_are_dropped() {
        let base = Instant::now();
        let w = SlidingWindow::new(Duration::from_secs(10), 10);
        w.record(base, 0, 0);
        w.record(base + ms(15_000), 1, 0);
        w.record(base + ms(12_000), 0, 1); // late but inside the window
        w.record(base + ms(3_000), 0, 100); // older than the window ending at 15 s
        assert_eq!(w.totals(base + ms(15_000)), (1, 1));
    }

    #[test]
    fn degenerate_parameters_do_not_panic() {
        let base = Instant::now();
        let w = SlidingWindow::new(Duration::ZERO, 0);
        w.record(base, 1, 1);
        assert_eq!(w.totals(base), (1, 1));
        assert_eq!(w.totals(base + ms(1)), (0, 0));
        let w = SlidingWindow::new(Duration::MAX, u32::MAX);
        w.record(base, 1, 0);
        w.record(base, u64::MAX, 0);
        assert_eq!(w.totals(base), (u64::MAX, 0));
    }
}
