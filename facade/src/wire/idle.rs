//! When a connection served by hyper has sat idle long enough to close:
//! nothing in flight on it (no request being answered, no answer's body
//! still streaming) for the limit. hyper closes neither an idle HTTP/2
//! connection nor, between requests, an HTTP/1.1 one it was handed; left
//! open, clients that went away without a word (a phone that lost its
//! network) would hold descriptors until `max_connections` turned
//! everyone away.
//!
//! The connection counts what is in flight: a request holds an
//! [`InFlight`] from when hyper hands it over until its answer's body
//! ([`TrackedBody`]) is dropped, at its end or when the client resets the
//! stream. [`Activity::idle_for`] wakes at most once per limit to look.

use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use hyper::body::{Body, Frame, SizeHint};
use tokio::time::Instant;

use crate::wire::body::ProxyBody;

/// What is in flight on one connection, and since when nothing has been.
#[derive(Debug, Clone)]
pub(crate) struct Activity(Arc<Counts>);

#[derive(Debug)]
struct Counts {
    /// Requests in flight.
    open: AtomicUsize,
    /// When one last started or ended, in milliseconds from `epoch`.
    last_change_ms: AtomicU64,
    epoch: Instant,
}

impl Counts {
    fn stamp(&self) {
        let now = u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_change_ms.store(now, Ordering::Relaxed);
    }
}

/// One request in flight; dropping it ends it.
#[derive(Debug)]
pub(crate) struct InFlight(Arc<Counts>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.stamp();
        self.0.open.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Activity {
    /// A connection with nothing in flight yet.
    pub(crate) fn new() -> Self {
        Self(Arc::new(Counts {
            open: AtomicUsize::new(0),
            last_change_ms: AtomicU64::new(0),
            epoch: Instant::now(),
        }))
    }

    /// Counts a request in flight until the result is dropped.
    pub(crate) fn start(&self) -> InFlight {
        self.0.open.fetch_add(1, Ordering::Relaxed);
        self.0.stamp();
        InFlight(Arc::clone(&self.0))
    }

    /// Returns once nothing has been in flight for `limit`.
    pub(crate) async fn idle_for(&self, limit: Duration) {
        loop {
            let since = Duration::from_millis(self.0.last_change_ms.load(Ordering::Relaxed));
            let quiet_until = self.0.epoch + since + limit;
            let now = Instant::now();
            let wake = if self.0.open.load(Ordering::Relaxed) > 0 {
                // In flight: look again a limit later.
                now + limit
            } else if now >= quiet_until {
                return;
            } else {
                quiet_until
            };
            tokio::time::sleep_until(wake).await;
        }
    }
}

/// An answer's body that keeps its request in flight until it is dropped.
pub(crate) struct TrackedBody {
    body: ProxyBody,
    _in_flight: InFlight,
}

impl TrackedBody {
    /// `body`, keeping `in_flight` until it is dropped.
    pub(crate) fn new(body: ProxyBody, in_flight: InFlight) -> Self {
        Self {
            body,
            _in_flight: in_flight,
        }
    }
}

impl Body for TrackedBody {
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn idle_within(activity: &Activity, limit: Duration, within: Duration) -> bool {
        tokio::time::timeout(within, activity.idle_for(limit))
            .await
            .is_ok()
    }

    #[tokio::test(start_paused = true)]
    async fn a_connection_is_idle_a_limit_after_its_last_request_ended() {
        let activity = Activity::new();
        let limit = Duration::from_secs(10);
        let request = activity.start();
        // In flight for three limits: never idle meanwhile.
        assert!(!idle_within(&activity, limit, limit * 3).await);
        drop(request);
        assert!(!idle_within(&activity, limit, limit / 2).await);
        assert!(idle_within(&activity, limit, limit).await);
    }

    #[tokio::test(start_paused = true)]
    async fn a_body_still_streaming_keeps_the_request_in_flight() {
        let activity = Activity::new();
        let limit = Duration::from_secs(10);
        let body = TrackedBody::new(crate::wire::body::full("answer"), activity.start());
        assert_eq!(body.size_hint().exact(), Some(6));
        assert!(!idle_within(&activity, limit, limit * 2).await);
        drop(body);
        assert!(idle_within(&activity, limit, limit + Duration::from_millis(5)).await);
    }
}
