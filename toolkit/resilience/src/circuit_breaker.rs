//! A circuit breaker in the classic three-state form (Nygard, *Release It!*; Fowler's "CircuitBreaker"):
//! **closed** lets requests through and counts consecutive failures; at the threshold it **opens** and
//! fails requests fast for `open_for`, giving the backend room to recover; then it goes **half-open** and
//! lets exactly one probe through, whose outcome closes it or re-opens it for another `open_for`.
//!
//! Every state change bumps a generation number and each [`Attempt`] remembers the generation it was
//! granted in (the technique used by `sony/gobreaker`), so an outcome that arrives after the breaker has
//! moved on, such as a slow success from before it opened, is ignored instead of closing it by mistake.
//!
//! **Ownership:** [`CircuitBreaker`] is a cheap-to-clone handle (an `Arc` inside; clones share one
//! breaker), and [`Attempt`] holds its own clone of that `Arc`. An attempt therefore borrows nothing and
//! can be held across `.await`s or moved into a spawned task.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// The externally visible state of a breaker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    /// Requests flow; consecutive failures are being counted.
    Closed,
    /// Requests are rejected without reaching the backend.
    Open,
    /// One probe request is deciding whether to close again.
    HalfOpen,
}

impl BreakerState {
    /// Stable lowercase name for metrics labels and logs: `"closed"`, `"open"` or `"half_open"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Closed => "closed",
            Self::Open => "open",
            Self::HalfOpen => "half_open",
        }
    }
}

/// Tuning of a [`CircuitBreaker`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerConfig {
    /// Consecutive failures (while closed) that open the breaker; 0 is treated as 1.
    pub failure_threshold: u32,
    /// How long the breaker stays open before a probe is allowed.
    pub open_for: Duration,
}

/// How many times the breaker entered each state, for metrics (monotonic counters).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TransitionCounts {
    /// Transitions into Open (from Closed, or from HalfOpen after a failed probe).
    pub opened: u64,
    /// Transitions from Open into HalfOpen (each one grants a probe).
    pub half_opened: u64,
    /// Transitions from HalfOpen back into Closed.
    pub closed: u64,
}

/// The breaker refused a request without contacting the backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("circuit breaker open; retry in {retry_in:?}")]
pub struct Rejected {
    /// A hint for `Retry-After`: when open, the time left until a probe may be sent; when half-open
    /// (a probe is already out), the full `open_for`, since that is the wait if the probe fails.
    pub retry_in: Duration,
    /// Refused because the one half-open probe is out, not because the breaker is open: the
    /// backend is being tried right now, and this refusal says nothing new about it.
    pub probing: bool,
}

#[derive(Debug, Clone, Copy)]
enum Phase {
    Closed { consecutive_failures: u32 },
    Open { since: Instant },
    HalfOpen,
}

#[derive(Debug)]
struct Core {
    phase: Phase,
    generation: u64,
    transitions: TransitionCounts,
    /// Latest instant any caller passed in; gives a dropped probe a sensible time to re-open at.
    last_seen: Instant,
}

#[derive(Debug)]
struct Shared {
    config: BreakerConfig,
    core: Mutex<Core>,
    /// The generation while the breaker is closed with no failure counted,
    /// else [`NOT_CLEAN`]. Written under the lock whenever the state
    /// changes; read without it, so that the usual case, a healthy backend,
    /// grants and reports attempts without taking the lock at all (it is on
    /// every proxied request's path, from every worker thread).
    clean: AtomicU64,
}

/// [`Shared::clean`] when the breaker is not closed-and-clean.
const NOT_CLEAN: u64 = u64::MAX;

/// A closed / open / half-open circuit breaker with a single half-open probe.
///
/// Clone it freely: clones are handles to the same breaker (an `Arc` inside). All methods take `&self`
/// and hold an internal lock only for a few instructions, never across an `.await`.
#[derive(Debug, Clone)]
pub struct CircuitBreaker {
    shared: Arc<Shared>,
}

impl CircuitBreaker {
    /// A new breaker, initially closed.
    pub fn new(config: BreakerConfig) -> Self {
        let config = BreakerConfig {
            failure_threshold: config.failure_threshold.max(1),
            ..config
        };
        let core = Core {
            phase: Phase::Closed {
                consecutive_failures: 0,
            },
            generation: 0,
            transitions: TransitionCounts::default(),
            last_seen: Instant::now(),
        };
        Self {
            shared: Arc::new(Shared {
                config,
                clean: AtomicU64::new(core.generation),
                core: Mutex::new(core),
            }),
        }
    }

    /// The configuration in effect (with `failure_threshold` already raised to at least 1).
    pub fn config(&self) -> BreakerConfig {
        self.shared.config
    }

    /// Asks to send one request.
    ///
    /// - Closed: `Ok(Attempt)`.
    /// - Open and `open_for` not yet elapsed: `Err(Rejected { retry_in })`.
    /// - Open and elapsed: moves to HalfOpen and this caller becomes *the* single probe: `Ok(Attempt)`.
    /// - HalfOpen (the probe is still out): `Err(Rejected)`.
    ///
    /// The returned [`Attempt`] owns a handle to the breaker; report its outcome with
    /// [`Attempt::success`] or [`Attempt::failure`].
    pub fn try_acquire(&self, now: Instant) -> Result<Attempt, Rejected> {
        let clean = self.shared.clean.load(Ordering::Acquire);
        if clean != NOT_CLEAN {
            return Ok(Attempt {
                breaker: Some(Arc::clone(&self.shared)),
                generation: clean,
                probe: false,
            });
        }
        let open_for = self.shared.config.open_for;
        let mut core = self.shared.lock(now);
        let probe = match core.phase {
            Phase::Closed { .. } => false,
            Phase::Open { since } => {
                let elapsed = now.saturating_duration_since(since);
                if elapsed < open_for {
                    return Err(Rejected {
                        retry_in: open_for - elapsed,
                        probing: false,
                    });
                }
                core.enter(Phase::HalfOpen);
                core.transitions.half_opened += 1;
                self.shared.publish(&core);
                true
            }
            Phase::HalfOpen => {
                return Err(Rejected {
                    retry_in: open_for,
                    probing: true,
                })
            }
        };
        Ok(Attempt {
            breaker: Some(Arc::clone(&self.shared)),
            generation: core.generation,
            probe,
        })
    }

    /// Ends an open period early, for a caller that has learned the backend may be back (a
    /// passing health check, a capability moved to the backend): the next [`try_acquire`]
    /// becomes the half-open probe, whose outcome closes or reopens the breaker as usual.
    /// Closed and half-open breakers are left as they are.
    ///
    /// [`try_acquire`]: Self::try_acquire
    pub fn expire_open(&self, now: Instant) {
        let open_for = self.shared.config.open_for;
        let mut core = self.shared.lock(now);
        if let Phase::Open { since } = core.phase {
            // An open period that started `open_for` ago has just elapsed. (Only on a clock too
            // young to go back that far does it stay as it is.)
            if let Some(elapsed) = now.checked_sub(open_for) {
                if elapsed < since {
                    core.phase = Phase::Open { since: elapsed };
                }
            }
        }
    }

    /// The current state. An Open breaker whose `open_for` has elapsed is still reported as Open: it only
    /// becomes HalfOpen when a caller actually takes the probe via [`try_acquire`](Self::try_acquire).
    pub fn state(&self, now: Instant) -> BreakerState {
        match self.shared.lock(now).phase {
            Phase::Closed { .. } => BreakerState::Closed,
            Phase::Open { .. } => BreakerState::Open,
            Phase::HalfOpen => BreakerState::HalfOpen,
        }
    }

    /// How many transitions of each kind happened so far.
    pub fn transitions(&self) -> TransitionCounts {
        self.shared
            .core
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .transitions
    }
}

impl Shared {
    fn lock(&self, now: Instant) -> MutexGuard<'_, Core> {
        let mut core = self.core.lock().unwrap_or_else(|e| e.into_inner());
        core.last_seen = core.last_seen.max(now);
        core
    }

    /// Records, for the lock-free path, whether the breaker is now closed
    /// with no failure counted. Called with the lock held, after any change.
    fn publish(&self, core: &Core) {
        let clean = match core.phase {
            Phase::Closed {
                consecutive_failures: 0,
            } => core.generation,
            _ => NOT_CLEAN,
        };
        self.clean.store(clean, Ordering::Release);
    }

    fn report(&self, generation: u64, succeeded: bool, now: Instant) {
        // Closed and clean in the attempt's own generation: a success
        // changes nothing, so it needs no lock. A failure in between makes
        // `clean` differ and takes the locked path.
        if succeeded && self.clean.load(Ordering::Acquire) == generation {
            return;
        }
        let mut core = self.lock(now);
        self.report_locked(&mut core, generation, succeeded, now);
        self.publish(&core);
    }

    fn report_locked(&self, core: &mut Core, generation: u64, succeeded: bool, now: Instant) {
        if core.generation != generation {
            // Granted in an earlier state: this outcome says nothing about the current one.
            return;
        }
        match (core.phase, succeeded) {
            (Phase::Closed { .. }, true) => {
                core.phase = Phase::Closed {
                    consecutive_failures: 0,
                }
            }
            (Phase::Closed { consecutive_failures }, false) => {
                let failures = consecutive_failures.saturating_add(1);
                if failures >= self.config.failure_threshold {
                    core.open(now);
                } else {
                    core.phase = Phase::Closed {
                        consecutive_failures: failures,
                    };
                }
            }
            (Phase::HalfOpen, true) => {
                core.enter(Phase::Closed {
                    consecutive_failures: 0,
                });
                core.transitions.closed += 1;
            }
            (Phase::HalfOpen, false) => core.open(now),
            // No attempt is ever granted while Open, and entering Open bumps the generation.
            (Phase::Open { .. }, _) => {}
        }
    }
}

impl Core {
    fn enter(&mut self, phase: Phase) {
        self.phase = phase;
        self.generation = self.generation.wrapping_add(1);
    }

    fn open(&mut self, now: Instant) {
        self.enter(Phase::Open { since: now });
        self.transitions.opened += 1;
    }
}

/// Permission to send one request through a [`CircuitBreaker`]. Report the outcome with
/// [`success`](Self::success) or [`failure`](Self::failure).
///
/// Dropping it unreported counts as a failure if it was the half-open probe (so a cancelled probe cannot
/// leave the breaker wedged half-open forever) and as nothing otherwise (a cancelled ordinary request
/// says nothing about the backend's health). Owns an `Arc` to the breaker: `Send`, `'static`, and safe
/// to hold across `.await`s.
#[derive(Debug)]
#[must_use = "report the outcome with success() or failure(); dropping a probe counts as a failure"]
pub struct Attempt {
    /// `None` once the outcome has been reported, so `Drop` knows there is nothing left to do.
    breaker: Option<Arc<Shared>>,
    generation: u64,
    probe: bool,
}

impl Attempt {
    /// Whether this is the half-open probe whose outcome decides if the breaker closes.
    pub fn is_probe(&self) -> bool {
        self.probe
    }

    /// The request succeeded: resets the consecutive-failure count, or closes the breaker if this was the
    /// probe. Ignored if the breaker changed state since this attempt was granted.
    pub fn success(mut self, now: Instant) {
        if let Some(breaker) = self.breaker.take() {
            breaker.report(self.generation, true, now);
        }
    }

    /// The request failed: counts towards `failure_threshold`, or re-opens the breaker for a fresh
    /// `open_for` if this was the probe. Ignored if the breaker changed state since this attempt was
    /// granted.
    pub fn failure(mut self, now: Instant) {
        if let Some(breaker) = self.breaker.take() {
            breaker.report(self.generation, false, now);
        }
    }
}

impl Drop for Attempt {
    fn drop(&mut self) {
        let Some(breaker) = self.breaker.take() else {
            return;
        };
        if self.probe {
            // Drop has no caller-supplied time. The real clock is right in production, where callers pass
            // `Instant::now()` too; the latest instant seen keeps the re-open time from going backwards
            // when callers use a synthetic clock ahead of the real one (as the tests do).
            let last_seen = breaker.core.lock().unwrap_or_else(|e| e.into_inner()).last_seen;
            breaker.report(self.generation, false, last_seen.max(Instant::now()));
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};
    use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

    const OPEN_FOR: Duration = Duration::from_secs(30);

    fn breaker() -> CircuitBreaker {
        CircuitBreaker::new(BreakerConfig {
            failure_threshold: 3,
            open_for: OPEN_FOR,
        })
    }

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    /// Opens `b` at `at` with three consecutive failures.
    fn trip(b: &CircuitBreaker, at: Instant) {
        for _ in 0..3 {
            b.try_acquire(at).unwrap().failure(at);
        }
        assert_eq!(b.state(at), BreakerState::Open);
    }

    #[test]
    fn state_names() {
        assert_eq!(BreakerState::Closed.as_str(), "closed");
        assert_eq!(BreakerState::Open.as_str(), "open");
        assert_eq!(BreakerState::HalfOpen.as_str(), "half_open");
    }

    #[test]
    fn threshold_consecutive_failures_open_it() {
        let base = Instant::now();
        let b = breaker();
        b.try_acquire(base).unwrap().failure(base);
        b.try_acquire(base).unwrap().failure(base);
        assert_eq!(b.state(base), BreakerState::Closed);
        // A success in between resets the count.
        b.try_acquire(base).unwrap().success(base);
        b.try_acquire(base).unwrap().failure(base);
        b.try_acquire(base).unwrap().failure(base);
        assert_eq!(b.state(base), BreakerState::Closed);
        b.try_acquire(base).unwrap().failure(base);
        assert_eq!(b.state(base), BreakerState::Open);
        assert_eq!(
            b.transitions(),
            TransitionCounts {
                opened: 1,
                half_opened: 0,
                closed: 0
            }
        );
    }

    #[test]
    fn an_attempt_granted_without_the_lock_still_resets_failures_counted_since() {
        let base = Instant::now();
        let b = breaker();
        // Granted while closed and clean: the lock-free path.
        let early = b.try_acquire(base).unwrap();
        b.try_acquire(base).unwrap().failure(base);
        b.try_acquire(base).unwrap().failure(base);
        early.success(base);
        b.try_acquire(base).unwrap().failure(base);
        b.try_acquire(base).unwrap().failure(base);
        assert_eq!(b.state(base), BreakerState::Closed, "the success reset the count");
        b.try_acquire(base).unwrap().failure(base);
        assert_eq!(b.state(base), BreakerState::Open);
        // Open, then closed again by a probe: clean again, in a new generation.
        let later = base + OPEN_FOR;
        b.try_acquire(later).unwrap().success(later);
        assert_eq!(b.state(later), BreakerState::Closed);
        b.try_acquire(later).unwrap().success(later);
        assert_eq!(b.transitions().closed, 1);
    }

    #[test]
    fn an_expired_open_period_makes_the_next_request_the_probe() {
        let base = Instant::now() + OPEN_FOR;
        let b = breaker();
        for _ in 0..3 {
            b.try_acquire(base).unwrap().failure(base);
        }
        assert!(b.try_acquire(base).is_err(), "open");
        b.expire_open(base);
        let probe = b.try_acquire(base).expect("the probe, at once");
        assert!(probe.is_probe());
        let refused = b.try_acquire(base).unwrap_err();
        assert!(refused.probing, "refused while the probe is out");
        probe.success(base);
        assert_eq!(b.state(base), BreakerState::Closed);
        // A closed breaker is left alone.
        b.expire_open(base);
        assert_eq!(b.state(base), BreakerState::Closed);
    }

    #[test]
    fn rejects_while_open_with_retry_hint() {
        let base = Instant::now();
        let b = breaker();
        trip(&b, base);
        assert_eq!(
            b.try_acquire(base).unwrap_err(),
            Rejected {
                retry_in: OPEN_FOR,
                probing: false
            }
        );
        let err = b.try_acquire(base + secs(20)).unwrap_err();
        assert_eq!(err.retry_in, secs(10));
        assert!(err.to_string().contains("open"));
        // Elapsed but nobody asked yet: still reported as Open.
        assert_eq!(b.state(base + secs(60)), BreakerState::Open);
    }

    #[test]
    fn exactly_one_probe_after_open_for() {
        let base = Instant::now();
        let b = breaker();
        trip(&b, base);
        let probe_time = base + OPEN_FOR;
        let probe = b.try_acquire(probe_time).unwrap();
        assert!(probe.is_probe());
        assert_eq!(b.state(probe_time), BreakerState::HalfOpen);
        assert_eq!(
            b.try_acquire(probe_time).unwrap_err(),
            Rejected {
                retry_in: OPEN_FOR,
                probing: true
            }
        );
        assert!(b.try_acquire(probe_time + secs(100)).is_err());
        drop(probe);
    }

    #[test]
    fn probe_success_closes_and_resets_count() {
        let base = Instant::now();
        let b = breaker();
        trip(&b, base);
        let t = base + OPEN_FOR;
        b.try_acquire(t).unwrap().success(t);
        assert_eq!(b.state(t), BreakerState::Closed);
        let normal = b.try_acquire(t).unwrap();
        assert!(!normal.is_probe());
        normal.success(t);
        // The count restarted from zero: two failures do not re-open it.
        b.try_acquire(t).unwrap().failure(t);
        b.try_acquire(t).unwrap().failure(t);
        assert_eq!(b.state(t), BreakerState::Closed);
        assert_eq!(
            b.transitions(),
            TransitionCounts {
                opened: 1,
                half_opened: 1,
                closed: 1
            }
        );
    }

    #[test]
    fn probe_failure_reopens_with_fresh_timer() {
        let base = Instant::now();
        let b = breaker();
        trip(&b, base);
        let probe_at = base + secs(40);
        let probe = b.try_acquire(probe_at).unwrap();
        let failed_at = probe_at + secs(5);
        probe.failure(failed_at);
        assert_eq!(b.state(failed_at), BreakerState::Open);
        // The timer restarts at the probe's failure, not at the original opening.
        assert_eq!(b.try_acquire(failed_at + secs(29)).unwrap_err().retry_in, secs(1));
        let second_probe = b.try_acquire(failed_at + OPEN_FOR).unwrap();
        assert!(second_probe.is_probe());
        assert_eq!(
            b.transitions(),
            TransitionCounts {
                opened: 2,
                half_opened: 2,
                closed: 0
            }
        );
    }

    #[test]
    fn dropped_probe_counts_as_failure() {
        let base = Instant::now();
        let b = breaker();
        trip(&b, base);
        let t = base + OPEN_FOR;
        drop(b.try_acquire(t).unwrap());
        assert_eq!(b.state(t), BreakerState::Open);
        assert_eq!(b.transitions().opened, 2);
        // Re-opened at the latest instant seen (t), so a full open_for must pass again.
        assert!(b.try_acquire(t + secs(29)).is_err());
        assert!(b.try_acquire(t + OPEN_FOR).unwrap().is_probe());
    }

    #[test]
    fn dropped_normal_attempt_counts_as_nothing() {
        let base = Instant::now();
        let b = breaker();
        b.try_acquire(base).unwrap().failure(base);
        b.try_acquire(base).unwrap().failure(base);
        for _ in 0..10 {
            drop(b.try_acquire(base).unwrap());
        }
        assert_eq!(b.state(base), BreakerState::Closed);
        b.try_acquire(base).unwrap().failure(base);
        assert_eq!(b.state(base), BreakerState::Open);
    }

    #[test]
    fn stale_outcomes_are_ignored() {
        let base = Instant::now();
        let b = breaker();
        let slow_ok = b.try_acquire(base).unwrap();
        let slow_fail = b.try_acquire(base).unwrap();
        trip(&b, base + secs(1));
        slow_ok.success(base + secs(2));
        assert_eq!(b.state(base + secs(2)), BreakerState::Open);
        // Still the probe's turn; a stale failure neither re-opens nor resets the timer.
        let t = base + secs(1) + OPEN_FOR;
        let probe = b.try_acquire(t).unwrap();
        slow_fail.failure(t);
        assert_eq!(b.state(t), BreakerState::HalfOpen);
        probe.success(t);
        assert_eq!(b.state(t), BreakerState::Closed);
        assert_eq!(
            b.transitions(),
            TransitionCounts {
                opened: 1,
                half_opened: 1,
                closed: 1
            }
        );
    }

    #[test]
    fn attempts_granted_before_close_do_not_count_after() {
        let base = Instant::now();
        let b = breaker();
        let old = (0..3).map(|_| b.try_acquire(base).unwrap()).collect::<Vec<_>>();
        trip(&b, base);
        let t = base + OPEN_FOR;
        b.try_acquire(t).unwrap().success(t);
        for a in old {
            a.failure(t);
        }
        assert_eq!(b.state(t), BreakerState::Closed);
    }

    #[test]
    fn zero_threshold_behaves_as_one() {
        let base = Instant::now();
        let b = CircuitBreaker::new(BreakerConfig {
            failure_threshold: 0,
            open_for: OPEN_FOR,
        });
        assert_eq!(b.config().failure_threshold, 1);
        b.try_acquire(base).unwrap().success(base);
        assert_eq!(b.state(base), BreakerState::Closed);
        b.try_acquire(base).unwrap().failure(base);
        assert_eq!(b.state(base), BreakerState::Open);
    }

    #[test]
    fn attempt_is_owned_and_sendable() {
        fn assert_send_sync_static<T: Send + Sync + 'static>(_: &T) {}
        let base = Instant::now();
        let b = breaker();
        let attempt = b.try_acquire(base).unwrap();
        assert_send_sync_static(&attempt);
        assert_send_sync_static(&b);
        let clone = b.clone();
        drop(b);
        std::thread::spawn(move || attempt.failure(base)).join().unwrap();
        assert_eq!(clone.state(base), BreakerState::Closed);
    }

    #[test]
    fn concurrent_hammering_keeps_invariants() {
        let base = Instant::now();
        let b = CircuitBreaker::new(BreakerConfig {
            failure_threshold: 5,
            open_for: Duration::from_millis(50),
        });
        let probes_out = AtomicUsize::new(0);
        let max_probes_out = AtomicUsize::new(0);
        let granted = AtomicU64::new(0);
        let rejected = AtomicU64::new(0);
        std::thread::scope(|scope| {
            for thread in 0..8u64 {
                let (b, probes_out, max_probes_out) = (&b, &probes_out, &max_probes_out);
                let (granted, rejected) = (&granted, &rejected);
                scope.spawn(move || {
                    let mut rng = StdRng::seed_from_u64(thread);
                    for i in 0..5_000u64 {
                        let now = base + Duration::from_millis(i);
                        match b.try_acquire(now) {
                            Ok(attempt) => {
                                granted.fetch_add(1, Ordering::Relaxed);
                                let probe = attempt.is_probe();
                                if probe {
                                    let out = probes_out.fetch_add(1, Ordering::SeqCst) + 1;
                                    max_probes_out.fetch_max(out, Ordering::SeqCst);
                                }
                                // Mostly failures, so the breaker cycles through every state many times.
                                let pick = rng.gen_range(0..10);
                                let outcome = |a: Attempt| match pick {
                                    0..=2 => a.success(now),
                                    3 => drop(a),
                                    _ => a.failure(now),
                                };
                                if probe {
                                    // Release the counter before reporting, while the breaker is
                                    // still half-open, so no second probe can be granted meanwhile.
                                    probes_out.fetch_sub(1, Ordering::SeqCst);
                                }
                                outcome(attempt);
                            }
                            Err(_) => {
                                rejected.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                    }
                });
            }
        });
        let t = b.transitions();
        let end = base + Duration::from_secs(10);
        assert_eq!(granted.into_inner() + rejected.into_inner(), 8 * 5_000);
        assert_eq!(
            max_probes_out.into_inner(),
            1,
            "never more than one probe at a time"
        );
        assert!(t.opened > 1 && t.half_opened > 0 && t.closed > 0, "{t:?}");
        // Every HalfOpen follows an Open; every Closed follows a HalfOpen.
        match b.state(end) {
            BreakerState::Open => assert_eq!(t.opened, t.half_opened + 1, "{t:?}"),
            BreakerState::Closed | BreakerState::HalfOpen => assert_eq!(t.opened, t.half_opened, "{t:?}"),
        }
        assert!(t.closed <= t.half_opened);
    }
}
