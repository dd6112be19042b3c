//! How client connections learn that the facade is stopping.
//!
//! A connection checks for shutdown every time its task runs, which is
//! several times per request. A `CancellationToken` does that under two
//! shared locks (its own state, then its `Notify`'s waiter list), and with
//! every connection taking them on every worker thread, those locks were
//! among the facade's busiest cache lines. Here the check is one atomic
//! load of a word that only changes at shutdown, so it stays in every
//! core's cache; each connection registers its waker in a slot of its own,
//! and the shared registry is locked only when a connection opens, when
//! it closes, and at shutdown.
//!
//! Invariant: a connection registers its waker before it reads the phase,
//! and shutdown sets the phase before it wakes the registered wakers; so a
//! connection either sees the new phase or is woken to see it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::task::Context;

use futures::task::AtomicWaker;

/// Where the facade is in its life, as connections see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Phase {
    /// Serving.
    Running = 0,
    /// Draining: idle connections close, busy ones finish their request.
    Stopping = 1,
    /// The grace period is over: every connection closes now.
    Halted = 2,
}

/// The shutdown signal every client connection of one listener shares.
#[derive(Debug, Default)]
pub(crate) struct Shutdown {
    phase: AtomicU8,
    next_id: AtomicU64,
    wakers: Mutex<HashMap<u64, Arc<AtomicWaker>>>,
}

impl Shutdown {
    /// A signal in the running phase.
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// The current phase.
    pub fn phase(&self) -> Phase {
        match self.phase.load(Ordering::SeqCst) {
            0 => Phase::Running,
            1 => Phase::Stopping,
            _ => Phase::Halted,
        }
    }

    /// Moves to `phase` (never back) and wakes every connection.
    pub fn enter(&self, phase: Phase) {
        self.phase.fetch_max(phase as u8, Ordering::SeqCst);
        let wakers: Vec<Arc<AtomicWaker>> = self
            .wakers
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .values()
            .cloned()
            .collect();
        for waker in wakers {
            waker.wake();
        }
    }

    /// Registers one connection; dropping the watch deregisters it.
    pub fn watch(self: &Arc<Self>) -> Watch {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let waker = Arc::new(AtomicWaker::new());
        self.wakers
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .insert(id, Arc::clone(&waker));
        Watch {
            shutdown: Arc::clone(self),
            id,
            waker,
        }
    }
}

/// One connection's registration with the [`Shutdown`] signal.
#[derive(Debug)]
pub(crate) struct Watch {
    shutdown: Arc<Shutdown>,
    id: u64,
    waker: Arc<AtomicWaker>,
}

impl Watch {
    /// The current phase, with the task behind `cx` woken when it changes.
    pub fn poll_phase(&self, cx: &Context<'_>) -> Phase {
        self.waker.register(cx.waker());
        self.shutdown.phase()
    }

    /// The current phase, without registering for a change.
    pub fn phase(&self) -> Phase {
        self.shutdown.phase()
    }

    /// Returns once the drain has started (or the facade has halted).
    pub async fn draining(&self) {
        std::future::poll_fn(|cx| match self.poll_phase(cx) {
            Phase::Running => std::task::Poll::Pending,
            Phase::Stopping | Phase::Halted => std::task::Poll::Ready(()),
        })
        .await;
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        self.shutdown
            .wakers
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .remove(&self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::future::poll_fn;
    use std::task::Poll;

    #[tokio::test]
    async fn a_waiting_connection_is_woken_by_each_phase() {
        let shutdown = Shutdown::new();
        let watch = shutdown.watch();
        let waiter = tokio::spawn(async move {
            poll_fn(|cx| match watch.poll_phase(cx) {
                Phase::Running => Poll::Pending,
                phase => Poll::Ready(phase),
            })
            .await
        });
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        shutdown.enter(Phase::Stopping);
        assert_eq!(waiter.await.ok(), Some(Phase::Stopping));
    }

    #[test]
    fn phases_only_move_forward_and_watches_deregister() {
        let shutdown = Shutdown::new();
        let watch = shutdown.watch();
        assert_eq!(watch.phase(), Phase::Running);
        shutdown.enter(Phase::Halted);
        shutdown.enter(Phase::Stopping);
        assert_eq!(watch.phase(), Phase::Halted);
        assert_eq!(shutdown.wakers.lock().map(|w| w.len()).ok(), Some(1));
        drop(watch);
        assert_eq!(shutdown.wakers.lock().map(|w| w.len()).ok(), Some(0));
    }
}
