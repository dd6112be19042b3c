//! Exponential backoff with "full jitter", as described in the AWS Architecture Blog post "Exponential
//! Backoff And Jitter": the delay before retry `n` is drawn uniformly from `[0, min(cap, base * 2^n)]`.
//! Randomising the whole interval (rather than adding a little noise to a fixed delay) spreads the
//! retries of many clients that failed together, so they do not hit the recovering backend in lockstep.
//! The random source is passed in so tests can use a seeded generator.

use std::time::Duration;

/// Exponential backoff with full jitter: `delay(n)` is uniform in `[0, min(cap, base * 2^n)]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// Ceiling for the first retry (attempt 0); doubles with each further attempt.
    pub base: Duration,
    /// Largest ceiling ever used, however many attempts have been made.
    pub cap: Duration,
}

impl Backoff {
    /// Same as the struct literal; handy in `const` contexts.
    pub const fn new(base: Duration, cap: Duration) -> Self {
        Self { base, cap }
    }

    /// Upper bound of the delay before retry number `attempt` (0 = first retry):
    /// `min(cap, base * 2^attempt)`, saturating to `cap` instead of overflowing for large attempts.
    pub fn ceiling(&self, attempt: u32) -> Duration {
        2u32.checked_pow(attempt)
            .and_then(|factor| self.base.checked_mul(factor))
            .map_or(self.cap, |ceiling| ceiling.min(self.cap))
    }

    /// A uniformly random delay in `[0, ceiling(attempt)]`, at nanosecond resolution.
    pub fn delay(&self, attempt: u32, rng: &mut impl rand::Rng) -> Duration {
        // Ceilings beyond u64 nanoseconds (~584 years) are clamped; no real retry waits that long.
        let max = u64::try_from(self.ceiling(attempt).as_nanos()).unwrap_or(u64::MAX);
        Duration::from_nanos(rng.gen_range(0..=max))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    fn backoff() -> Backoff {
        Backoff {
            base: Duration::from_millis(100),
            cap: Duration::from_secs(10),
        }
    }

    #[test]
    fn ceiling_doubles_then_caps() {
        let b = backoff();
        let ceilings: Vec<u64> = (0..10).map(|n| b.ceiling(n).as_millis() as u64).collect();
        assert_eq!(
            ceilings,
            [100, 200, 400, 800, 1600, 3200, 6400, 10_000, 10_000, 10_000]
        );
    }

    #[test]
    fn ceiling_never_overflows() {
        let b = backoff();
        for attempt in [31, 32, 33, 63, 64, 65, 1000, u32::MAX] {
            assert_eq!(b.ceiling(attempt), b.cap, "attempt {attempt}");
        }
        let huge = Backoff {
            base: Duration::MAX,
            cap: Duration::MAX,
        };
        assert_eq!(huge.ceiling(0), Duration::MAX);
        assert_eq!(huge.ceiling(64), Duration::MAX);
        let mut rng = StdRng::seed_from_u64(1);
        let _ = huge.delay(64, &mut rng);
    }

    #[test]
    fn base_above_cap_is_capped() {
        let b = Backoff::new(Duration::from_secs(5), Duration::from_secs(1));
        assert_eq!(b.ceiling(0), Duration::from_secs(1));
    }

    #[test]
    fn delays_stay_within_bounds_and_vary() {
        let b = backoff();
        let mut rng = StdRng::seed_from_u64(42);
        for attempt in [0, 3, 7, 64] {
            let ceiling = b.ceiling(attempt);
            let delays: Vec<Duration> = (0..1000).map(|_| b.delay(attempt, &mut rng)).collect();
            assert!(delays.iter().all(|d| *d <= ceiling), "attempt {attempt}");
            assert!(
                delays.iter().any(|d| *d != delays[0]),
                "attempt {attempt}: all delays equal"
            );
            // Full jitter: a fair share lands in the lower half, unlike "equal jitter".
            let low = delays.iter().filter(|d| **d < ceiling / 2).count();
            assert!(
                (350..650).contains(&low),
                "attempt {attempt}: {low} of 1000 in lower half"
            );
        }
    }

    #[test]
    fn zero_ceiling_gives_zero_delay() {
        let b = Backoff::new(Duration::ZERO, Duration::from_secs(1));
        let mut rng = StdRng::seed_from_u64(7);
        assert_eq!(b.delay(5, &mut rng), Duration::ZERO);
    }
}
