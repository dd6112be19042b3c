//! A bulkhead: a hard cap on concurrent in-flight requests to one backend (the pattern from Nygard's
//! *Release It!*, as in Hystrix's semaphore isolation and Envoy's `max_requests`). When a backend slows
//! down, requests to it pile up; without a cap they would tie up every connection and task in the facade
//! and starve healthy routes too. The bulkhead never queues: a full bulkhead refuses at once, so the
//! caller can shed load (503) or fall back to the monolith.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

/// Caps concurrent requests to one backend; refuses immediately when full.
///
/// A plain counter rather than a semaphore: the bulkhead never waits, so it
/// needs no waiter list, and every request enters and leaves it, so its
/// cost is two atomic additions (a semaphore's release also takes a lock).
#[derive(Debug)]
pub struct Bulkhead {
    in_flight: AtomicUsize,
    capacity: usize,
    rejected: AtomicU64,
}

/// One occupied slot of a [`Bulkhead`]; the slot is released when this is dropped.
#[derive(Debug)]
#[must_use = "the slot is released as soon as the permit is dropped"]
pub struct BulkheadPermit<'a> {
    bulkhead: &'a Bulkhead,
}

impl Bulkhead {
    /// A bulkhead admitting up to `max_concurrent` requests at once. 0 refuses everything.
    pub fn new(max_concurrent: usize) -> Self {
        Self {
            in_flight: AtomicUsize::new(0),
            capacity: max_concurrent,
            rejected: AtomicU64::new(0),
        }
    }

    /// Takes a slot, or returns `None` at once when all are taken (never waits).
    pub fn try_enter(&self) -> Option<BulkheadPermit<'_>> {
        let taken = self
            .in_flight
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.capacity).then_some(n + 1)
            });
        if taken.is_ok() {
            return Some(BulkheadPermit { bulkhead: self });
        }
        self.rejected.fetch_add(1, Ordering::Relaxed);
        None
    }

    /// Requests currently holding a slot.
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Acquire)
    }

    /// Maximum concurrent requests.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Refusals so far (monotonic counter, for metrics).
    pub fn rejected(&self) -> u64 {
        self.rejected.load(Ordering::Relaxed)
    }
}

impl Drop for BulkheadPermit<'_> {
    fn drop(&mut self) {
        self.bulkhead.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    #[test]
    fn capacity_is_enforced_and_released_on_drop() {
        let b = Bulkhead::new(2);
        assert_eq!((b.capacity(), b.in_flight(), b.rejected()), (2, 0, 0));
        let first = b.try_enter().unwrap();
        let second = b.try_enter().unwrap();
        assert_eq!(b.in_flight(), 2);
        assert!(b.try_enter().is_none());
        assert!(b.try_enter().is_none());
        assert_eq!(b.rejected(), 2);
        drop(first);
        assert_eq!(b.in_flight(), 1);
        let third = b.try_enter().unwrap();
        assert!(b.try_enter().is_none());
        drop((second, third));
        assert_eq!(b.in_flight(), 0);
        assert_eq!(b.rejected(), 3);
    }

    #[test]
    fn zero_capacity_refuses_everything() {
        let b = Bulkhead::new(0);
        assert!(b.try_enter().is_none());
        assert_eq!((b.in_flight(), b.rejected()), (0, 1));
    }

    #[test]
    fn huge_capacity_is_not_a_panic() {
        let b = Bulkhead::new(usize::MAX);
        assert_eq!(b.capacity(), usize::MAX);
        let _permit = b.try_enter().unwrap();
        assert_eq!(b.in_flight(), 1);
    }

    #[test]
    fn permit_moves_to_another_thread() {
        let b = Bulkhead::new(1);
        let permit = b.try_enter().unwrap();
        std::thread::scope(|scope| {
            scope.spawn(|| {
                assert!(b.try_enter().is_none());
                drop(permit);
            });
        });
        assert_eq!(b.in_flight(), 0);
        assert!(b.try_enter().is_some());
    }

    #[test]
    fn concurrent_hammering_keeps_counts_consistent() {
        const THREADS: usize = 8;
        const ROUNDS: usize = 5_000;
        let b = Bulkhead::new(3);
        let holding = AtomicUsize::new(0);
        let admitted = AtomicUsize::new(0);
        let refused = AtomicUsize::new(0);
        std::thread::scope(|scope| {
            for _ in 0..THREADS {
                scope.spawn(|| {
                    for _ in 0..ROUNDS {
                        if let Some(permit) = b.try_enter() {
                            admitted.fetch_add(1, Ordering::Relaxed);
                            let now_holding = holding.fetch_add(1, Ordering::SeqCst) + 1;
                            assert!(now_holding <= 3, "{now_holding} slots held at once");
                            assert!(b.in_flight() <= 3);
                            std::thread::yield_now();
                            holding.fetch_sub(1, Ordering::SeqCst);
                            drop(permit);
                        } else {
                            refused.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                });
            }
        });
        assert_eq!(
            admitted.into_inner() + refused.load(Ordering::Relaxed),
            THREADS * ROUNDS
        );
        assert_eq!(b.rejected(), refused.into_inner() as u64);
        assert_eq!(b.in_flight(), 0);
    }
}
