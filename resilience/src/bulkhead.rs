//! A bulkhead: a hard cap on concurrent in-flight requests to one backend (the pattern from Nygard's
//! *Release It!*, as in Hystrix's semaphore isolation and Envoy's `max_requests`). When a backend slows
//! down, requests to it pile up; without a cap they would tie up every connection and task in the facade
//! and starve healthy routes too. The bulkhead never queues: a full bulkhead refuses at once, so the
//! caller can shed load (503) or fall back to the monolith.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore, TryAcquireError};

/// Caps concurrent requests to one backend; refuses immediately when full.
#[derive(Debug)]
pub struct Bulkhead {
    semaphore: Arc<Semaphore>,
    capacity: usize,
    rejected: AtomicU64,
}

/// One occupied slot of a [`Bulkhead`]; the slot is released when this is dropped. Owned (`'static`),
/// so it can travel with the request into a spawned task.
#[derive(Debug)]
#[must_use = "the slot is released as soon as the permit is dropped"]
pub struct BulkheadPermit {
    _permit: OwnedSemaphorePermit,
}

impl Bulkhead {
    /// A bulkhead admitting up to `max_concurrent` requests at once. 0 refuses everything; values above
    /// tokio's `Semaphore::MAX_PERMITS` are clamped to it (it would panic otherwise).
    pub fn new(max_concurrent: usize) -> Self {
        let capacity = max_concurrent.min(Semaphore::MAX_PERMITS);
        Self {
            semaphore: Arc::new(Semaphore::new(capacity)),
            capacity,
            rejected: AtomicU64::new(0),
        }
    }

    /// Takes a slot, or returns `None` at once when all are taken (never waits).
    pub fn try_enter(&self) -> Option<BulkheadPermit> {
        match Arc::clone(&self.semaphore).try_acquire_owned() {
            Ok(permit) => Some(BulkheadPermit { _permit: permit }),
            // The semaphore is never closed, but a closed one must refuse as well.
            Err(TryAcquireError::NoPermits | TryAcquireError::Closed) => {
                self.rejected.fetch_add(1, Ordering::Relaxed);
                None
            }
        }
    }

    /// Requests currently holding a slot.
    pub fn in_flight(&self) -> usize {
        self.capacity.saturating_sub(self.semaphore.available_permits())
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
    fn huge_capacity_is_clamped_not_a_panic() {
        let b = Bulkhead::new(usize::MAX);
        assert_eq!(b.capacity(), Semaphore::MAX_PERMITS);
        let _permit = b.try_enter().unwrap();
        assert_eq!(b.in_flight(), 1);
    }

    #[test]
    fn permit_outlives_borrow_and_moves_to_tasks() {
        let b = Arc::new(Bulkhead::new(1));
        let permit = b.try_enter().unwrap();
        let b2 = Arc::clone(&b);
        std::thread::spawn(move || {
            assert!(b2.try_enter().is_none());
            drop(permit);
        })
        .join()
        .unwrap();
        assert_eq!(b.in_flight(), 0);
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
