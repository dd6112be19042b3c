//! A retry budget: retries are allowed only while they stay under a fixed fraction of the original
//! requests seen over a sliding window, as in Finagle's `RetryBudget` and Envoy's `retry_budget`
//! (`budget_percent`). Unlike a per-request retry limit, a budget bounds the *extra load* retries add to
//! a struggling backend: when everything fails, traffic grows by at most `ratio`, instead of multiplying
//! by the number of attempts and turning a blip into a retry storm.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::window::Buckets;

/// Buckets per window: one-second slots for the usual 10 s window, fine enough for a load ratio.
const BUCKETS: u32 = 10;

/// Absorbs binary floating-point error in `ratio * requests` (0.29 * 100 is 28.999999999999996), so a
/// budget that is a whole number of retries on paper grants exactly that many.
const EPSILON: f64 = 1e-9;

/// Caps retries at `ratio` times the original requests seen over a sliding window.
///
/// Thread-safe; the check and the counting of a retry happen under one lock, so concurrent callers can
/// never overshoot the budget together.
#[derive(Debug)]
pub struct RetryBudget {
    ratio: f64,
    /// `first` counts original requests, `second` counts granted retries.
    counts: Mutex<Buckets>,
}

/// The budget's figures at one instant, for metrics and debugging.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BudgetSnapshot {
    /// Original requests recorded within the window.
    pub requests: u64,
    /// Retries granted within the window.
    pub retries: u64,
    /// The configured maximum retries-per-request ratio.
    pub ratio: f64,
}

impl RetryBudget {
    /// A budget allowing `ratio` retries per original request (e.g. `0.2`) over `window` (e.g. 10 s).
    /// A negative or NaN ratio is treated as 0 (no retries); an infinite one never refuses.
    pub fn new(ratio: f64, window: Duration) -> Self {
        // `f64::max` returns the non-NaN operand, so this maps NaN and negatives to 0 in one step.
        let ratio = ratio.max(0.0);
        Self {
            ratio,
            counts: Mutex::new(Buckets::new(window, BUCKETS)),
        }
    }

    /// Records one original request (call it for every request, not for retries): each one deposits
    /// `ratio` retries into the budget.
    pub fn record_request(&self, now: Instant) {
        self.lock().add(now, 1, 0);
    }

    /// Whether one more retry fits (`retries in window + 1 <= ratio * requests in window`); if it does, the
    /// retry is counted at once, so a `true` is a reservation the caller should use.
    pub fn try_retry(&self, now: Instant) -> bool {
        let mut counts = self.lock();
        let (requests, retries) = counts.sums(now);
        // f64 is exact for counts up to 2^53, far beyond what a window can hold in practice.
        let allowed = retries as f64 + 1.0 <= self.ratio * requests as f64 + EPSILON;
        if allowed {
            counts.add(now, 0, 1);
        }
        allowed
    }

    /// Requests and retries currently inside the window ending at `now`.
    pub fn snapshot(&self, now: Instant) -> BudgetSnapshot {
        let (requests, retries) = self.lock().sums(now);
        BudgetSnapshot {
            requests,
            retries,
            ratio: self.ratio,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Buckets> {
        self.counts.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allows_exactly_ratio_of_requests() {
        let base = Instant::now();
        let budget = RetryBudget::new(0.2, Duration::from_secs(10));
        for _ in 0..100 {
            budget.record_request(base);
        }
        for i in 0..20 {
            assert!(budget.try_retry(base), "retry {i} should fit");
        }
        assert!(!budget.try_retry(base), "the 21st retry must be refused");
        assert_eq!(
            budget.snapshot(base),
            BudgetSnapshot {
                requests: 100,
                retries: 20,
                ratio: 0.2
            }
        );
    }

    #[test]
    fn refusals_are_not_counted() {
        let base = Instant::now();
        let budget = RetryBudget::new(0.5, Duration::from_secs(10));
        assert!(!budget.try_retry(base));
        assert!(!budget.try_retry(base));
        assert_eq!(budget.snapshot(base).retries, 0);
        budget.record_request(base);
        budget.record_request(base);
        assert!(budget.try_retry(base));
        assert!(!budget.try_retry(base));
    }

    #[test]
    fn recovers_when_window_moves() {
        let base = Instant::now();
        let budget = RetryBudget::new(0.2, Duration::from_secs(10));
        for _ in 0..100 {
            budget.record_request(base);
        }
        while budget.try_retry(base) {}
        assert!(!budget.try_retry(base + Duration::from_secs(9)));
        // Old requests and retries both expired: a fresh window needs fresh requests.
        let later = base + Duration::from_secs(10);
        assert_eq!(
            budget.snapshot(later),
            BudgetSnapshot {
                requests: 0,
                retries: 0,
                ratio: 0.2
            }
        );
        assert!(!budget.try_retry(later));
        for _ in 0..10 {
            budget.record_request(later);
        }
        assert!(budget.try_retry(later));
        assert!(budget.try_retry(later));
        assert!(!budget.try_retry(later));
    }

    #[test]
    fn float_rounding_does_not_cost_a_retry() {
        let base = Instant::now();
        let budget = RetryBudget::new(0.29, Duration::from_secs(10));
        for _ in 0..100 {
            budget.record_request(base);
        }
        let granted = (0..100).filter(|_| budget.try_retry(base)).count();
        assert_eq!(granted, 29);
    }

    #[test]
    fn odd_ratios() {
        let base = Instant::now();
        for ratio in [f64::NAN, -1.0, 0.0] {
            let budget = RetryBudget::new(ratio, Duration::from_secs(10));
            budget.record_request(base);
            assert!(!budget.try_retry(base));
        }
        let budget = RetryBudget::new(f64::INFINITY, Duration::from_secs(10));
        budget.record_request(base);
        assert!((0..1000).all(|_| budget.try_retry(base)));
    }
}
