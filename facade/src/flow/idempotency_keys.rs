//! Where each recent `Idempotency-Key` went, so that a client repeating a
//! keyed write reaches the backend that saw the key first.
//!
//! Each backend deduplicates on the keys it has seen, and the monolith and
//! a service each keep their own. A client repeats a keyed order when its
//! answer was lost (a crash, a timeout); if the repeat reaches the other
//! side, that side places the order again. Within one request the dispatch
//! never sends a keyed write elsewhere once it may have reached a backend;
//! this carries the same rule across the client's repeats: past an open
//! breaker, whose fallback would otherwise send the repeat to the
//! monolith (the chaos soak caught that: one order placed on both sides),
//! and past a flip of the stage between the two attempts.
//!
//! Kept in memory, per facade process, for [`REMEMBER_FOR`] and at most
//! [`CAPACITY`] keys (the oldest go first), each as its SHA-256: bounded
//! (a few MB) whatever clients send, however long their keys.
//! A repeat that reaches another replica, or this one after a restart, is
//! routed as a fresh request.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hyper::header::{HeaderName, HeaderValue};
use hyper::{HeaderMap, Method};

use crate::decision::routing::Target;
use crate::flow::backend::Backend;
use crate::flow::dispatch::Dispatched;

/// The header that marks a non-idempotent request as safe to repeat.
pub(crate) const IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static("idempotency-key");

/// How long a key is remembered: longer than any client keeps retrying one
/// request, as long as common APIs keep keys (a day).
pub const REMEMBER_FOR: Duration = Duration::from_secs(24 * 60 * 60);

/// Keys remembered at most, over all capabilities (about 150 bytes each).
pub const CAPACITY: usize = 50_000;

/// Where a key went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Pinned {
    /// The side it went to.
    pub side: Target,
    /// The backend's name.
    pub backend: String,
}

impl Pinned {
    /// Where a dispatch sent its request: the fallback if it answered,
    /// else the primary on the decision's side.
    pub fn of(dispatched: &Dispatched<'_>, target: Option<Target>) -> Self {
        let side = match dispatched.fallback_from {
            Some(_) => Target::Legacy,
            None => target.unwrap_or(Target::Legacy),
        };
        Self {
            side,
            backend: dispatched.backend.name.clone(),
        }
    }
}

/// The capability and key of a keyed write (a method that is not
/// idempotent, with an `Idempotency-Key`) on a capability's route; `None`
/// for any other request, at the cost of one comparison for a `GET`.
#[inline]
pub(crate) fn keyed_write(
    method: &Method,
    headers: &HeaderMap,
    capability: Option<usize>,
) -> Option<(usize, HeaderValue)> {
    if method.is_idempotent() {
        return None;
    }
    Some((capability?, headers.get(IDEMPOTENCY_KEY)?.clone()))
}

impl KeyAffinity {
    /// The backend (of `backends`) and side `key` went to first, if it is
    /// remembered.
    pub fn first_place<'s>(
        &self,
        backends: &'s foldhash::HashMap<String, Arc<Backend>>,
        capability: usize,
        key: &HeaderValue,
    ) -> Option<(&'s Arc<Backend>, Target)> {
        let first = self.get(capability, key.as_bytes(), Instant::now())?;
        let backend = backends.get(&first.backend)?;
        Some((backend, first.side))
    }
}

/// A capability's index and the SHA-256 of a key.
type Key = (usize, [u8; 32]);

fn key_of(capability: usize, key: &[u8]) -> Key {
    use sha2::Digest;
    (capability, sha2::Sha256::digest(key).into())
}

/// Recent keys and where each went.
#[derive(Debug, Default)]
pub(crate) struct KeyAffinity {
    inner: Mutex<Remembered>,
}

#[derive(Debug, Default)]
struct Remembered {
    /// Each key's place and when it was remembered.
    by_key: HashMap<Key, (Pinned, Instant)>,
    /// Keys in the order they were remembered, to forget the oldest; an
    /// entry whose time differs from `by_key`'s was remembered again since.
    order: VecDeque<(Key, Instant)>,
}

impl KeyAffinity {
    /// Where `key` went for the capability at `capability`, if it is
    /// remembered.
    pub fn get(&self, capability: usize, key: &[u8], now: Instant) -> Option<Pinned> {
        let inner = self
            .inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let (pinned, at) = inner.by_key.get(&key_of(capability, key))?;
        (now.saturating_duration_since(*at) < REMEMBER_FOR).then(|| pinned.clone())
    }

    /// Remembers that `key` went to `pinned`, and forgets what is too old
    /// or over [`CAPACITY`].
    pub fn remember(&self, capability: usize, key: &[u8], pinned: Pinned, now: Instant) {
        let mut inner = self
            .inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let key = key_of(capability, key);
        inner.order.push_back((key, now));
        inner.by_key.insert(key, (pinned, now));
        while let Some((oldest, at)) = inner.order.front() {
            let stale = now.saturating_duration_since(*at) >= REMEMBER_FOR || inner.order.len() > CAPACITY;
            if !stale {
                break;
            }
            let (oldest, at) = (*oldest, *at);
            inner.order.pop_front();
            if inner
                .by_key
                .get(&oldest)
                .is_some_and(|(_, current)| *current == at)
            {
                inner.by_key.remove(&oldest);
            }
        }
    }

    /// Keys remembered now.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .by_key
            .len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn to(backend: &str, side: Target) -> Pinned {
        Pinned {
            side,
            backend: backend.to_owned(),
        }
    }

    #[test]
    fn a_key_is_remembered_per_capability_and_the_latest_place_wins() {
        let keys = KeyAffinity::default();
        let now = Instant::now();
        keys.remember(0, b"order-1", to("orders", Target::Service), now);
        assert_eq!(keys.get(0, b"order-1", now), Some(to("orders", Target::Service)));
        assert_eq!(keys.get(1, b"order-1", now), None, "another capability's key");
        assert_eq!(keys.get(0, b"order-2", now), None);
        keys.remember(0, b"order-1", to("legacy", Target::Legacy), now);
        assert_eq!(keys.get(0, b"order-1", now), Some(to("legacy", Target::Legacy)));
        assert_eq!(keys.len(), 1);
        // Kept as a digest: a key as long as a header may be is found too.
        let long = vec![b'k'; 64 * 1024];
        keys.remember(0, &long, to("orders", Target::Service), now);
        assert_eq!(keys.get(0, &long, now), Some(to("orders", Target::Service)));
        assert_eq!(keys.get(0, &long[1..], now), None);
    }

    #[test]
    fn a_key_is_forgotten_after_a_day_and_the_oldest_beyond_capacity() {
        let keys = KeyAffinity::default();
        let start = Instant::now();
        keys.remember(0, b"old", to("orders", Target::Service), start);
        let later = start + REMEMBER_FOR;
        assert_eq!(keys.get(0, b"old", later), None);
        // Re-remembered keys keep their newest time: the older entry in the
        // queue does not take them away.
        keys.remember(0, b"kept", to("orders", Target::Service), start);
        keys.remember(0, b"kept", to("orders", Target::Service), later);
        keys.remember(0, b"new", to("orders", Target::Service), later);
        assert_eq!(keys.get(0, b"kept", later), Some(to("orders", Target::Service)));
        assert_eq!(keys.len(), 2, "the day-old key is gone");

        for n in 0..CAPACITY + 10 {
            keys.remember(1, n.to_string().as_bytes(), to("orders", Target::Service), later);
        }
        assert!(keys.len() <= CAPACITY, "{} keys", keys.len());
        assert_eq!(keys.get(1, b"0", later), None, "the oldest went first");
        let last = (CAPACITY + 9).to_string();
        assert!(keys.get(1, last.as_bytes(), later).is_some());
    }
}
