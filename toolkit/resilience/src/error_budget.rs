//! An error budget per migrated capability: the trigger for automatic rollback. While traffic for a
//! capability is shifted to an extracted service, the facade records each of the service's outcomes;
//! when the failure rate over a sliding window exceeds the allowed maximum, the budget is "exceeded"
//! and the migration stage should roll back to the monolith. This is the SRE error-budget idea applied
//! to a canary, in the spirit of automated canary analysis (Kayenta, Flagger's failure threshold):
//! judge by rate over a recent window, and only once there is enough traffic for the rate to mean
//! something (`min_requests`), so three requests with one failure do not trigger a rollback.

use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::window::Buckets;

/// Buckets per window; ten gives expiry in steps of a tenth of the window.
const BUCKETS: u32 = 10;

/// The figures of an [`ErrorBudget`] at one instant (returned both when it fires and on demand).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Exceeded {
    /// Failed outcomes in the window.
    pub failures: u64,
    /// All outcomes (failed or not) in the window.
    pub requests: u64,
    /// `failures / requests`, or 0 when there were no requests.
    pub rate: f64,
}

impl Exceeded {
    fn from_counts(ok: u64, failures: u64) -> Self {
        let requests = ok.saturating_add(failures);
        let rate = if requests == 0 {
            0.0
        } else {
            failures as f64 / requests as f64
        };
        Self {
            failures,
            requests,
            rate,
        }
    }
}

/// Tracks a capability's failure rate over a sliding window and reports when it exceeds `max_rate`.
///
/// Thread-safe; recording and judging happen under one lock, so the figures returned are exactly those
/// the decision was made on.
#[derive(Debug)]
pub struct ErrorBudget {
    max_rate: f64,
    min_requests: u64,
    /// `first` counts successes, `second` failures.
    counts: Mutex<Buckets>,
}

impl ErrorBudget {
    /// A budget that is exceeded when, over `window`, there were at least `min_requests` outcomes and
    /// the failure rate is strictly above `max_rate` (e.g. `0.05`). A `max_rate` of 1 or more (or NaN)
    /// never fires; a negative one fires on any failure.
    pub fn new(max_rate: f64, window: Duration, min_requests: u64) -> Self {
        Self {
            max_rate,
            min_requests,
            counts: Mutex::new(Buckets::new(window, BUCKETS)),
        }
    }

    /// Records one outcome of the service side. Returns `Some(figures)` when, including this outcome, the
    /// window holds at least `min_requests` outcomes and `failures / requests > max_rate`.
    ///
    /// It keeps returning `Some` for every outcome while the rate stays too high; the caller should act
    /// once (roll back) and then [`reset`](Self::reset).
    pub fn record(&self, now: Instant, failed: bool) -> Option<Exceeded> {
        let mut counts = self.lock();
        counts.add(now, u64::from(!failed), u64::from(failed));
        let (ok, failures) = counts.sums(now);
        let figures = Exceeded::from_counts(ok, failures);
        // `requests > 0` guards a min_requests of 0 against judging an empty window (possible when a
        // very late report was dropped).
        let enough = figures.requests > 0 && figures.requests >= self.min_requests;
        (enough && figures.rate > self.max_rate).then_some(figures)
    }

    /// The current figures over the window ending at `now`, whether or not the budget is exceeded.
    pub fn rate(&self, now: Instant) -> Exceeded {
        let (ok, failures) = self.lock().sums(now);
        Exceeded::from_counts(ok, failures)
    }

    /// Forgets every recorded outcome, e.g. after a rollback or a stage change, so the next stage is
    /// judged on its own traffic only.
    pub fn reset(&self) {
        self.lock().clear();
    }

    fn lock(&self) -> MutexGuard<'_, Buckets> {
        self.counts.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn budget() -> ErrorBudget {
        ErrorBudget::new(0.1, Duration::from_secs(60), 20)
    }

    #[test]
    fn never_fires_below_min_requests() {
        let base = Instant::now();
        let b = budget();
        for _ in 0..19 {
            assert_eq!(b.record(base, true), None);
        }
        assert_eq!(
            b.rate(base),
            Exceeded {
                failures: 19,
                requests: 19,
                rate: 1.0
            }
        );
        assert_eq!(
            b.record(base, true),
            Some(Exceeded {
                failures: 20,
                requests: 20,
                rate: 1.0
            })
        );
    }

    #[test]
    fn fires_only_when_rate_strictly_exceeds_max() {
        let base = Instant::now();
        let b = budget();
        for _ in 0..18 {
            assert_eq!(b.record(base, false), None);
        }
        assert_eq!(b.record(base, true), None);
        assert_eq!(b.record(base, true), None, "2/20 = 0.1 is not above 0.1");
        let fired = b.record(base, true).expect("3/21 > 0.1");
        assert_eq!((fired.failures, fired.requests), (3, 21));
        assert!((fired.rate - 3.0 / 21.0).abs() < 1e-12);
        // Successes bring the rate back under the maximum.
        for _ in 0..8 {
            b.record(base, false);
        }
        assert_eq!(b.record(base, false), None);
        assert_eq!(b.rate(base).requests, 30);
    }

    #[test]
    fn old_failures_expire() {
        let base = Instant::now();
        let b = budget();
        for _ in 0..20 {
            b.record(base, true);
        }
        assert!(b.record(base + Duration::from_secs(59), false).is_some());
        let later = base + Duration::from_secs(60);
        assert_eq!(
            b.rate(later),
            Exceeded {
                failures: 0,
                requests: 1,
                rate: 0.0
            }
        );
        for _ in 0..19 {
            assert_eq!(b.record(later, false), None);
        }
        assert_eq!(b.record(later, true), None);
    }

    #[test]
    fn reset_clears_everything() {
        let base = Instant::now();
        let b = budget();
        for _ in 0..30 {
            b.record(base, true);
        }
        b.reset();
        assert_eq!(
            b.rate(base),
            Exceeded {
                failures: 0,
                requests: 0,
                rate: 0.0
            }
        );
        for _ in 0..19 {
            assert_eq!(b.record(base + Duration::from_secs(1), true), None);
        }
        assert!(b.record(base + Duration::from_secs(1), true).is_some());
    }

    #[test]
    fn degenerate_limits() {
        let base = Instant::now();
        let never = ErrorBudget::new(1.0, Duration::from_secs(60), 0);
        let nan = ErrorBudget::new(f64::NAN, Duration::from_secs(60), 0);
        let any = ErrorBudget::new(0.0, Duration::from_secs(60), 0);
        for _ in 0..10 {
            assert_eq!(never.record(base, true), None);
            assert_eq!(nan.record(base, true), None);
        }
        assert_eq!(any.record(base, false), None);
        assert!(any.record(base, true).is_some());
    }
}
