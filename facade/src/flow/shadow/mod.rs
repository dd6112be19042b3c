//! Shadow traffic: while a capability is in `shadow`, the monolith answers
//! the client and a copy of the request goes to the service, off the hot
//! path, and the two answers are compared.
//!
//! - [`capture`]: the monolith's answer is copied (up to a cap) as it
//!   streams to the client; when it has been sent in full, a job is offered
//!   to the bounded queue. A full queue drops the copy and counts it: the
//!   client's answer never waits for shadowing.
//! - [`worker`]: jobs are sent to the service (and, to learn noise, once
//!   more to the monolith), with a cap on copies in flight, then compared
//!   with `response_diff`.
//! - [`recorder`]: outcomes are counted in memory and flushed to the store
//!   every second: per ten-second bucket, the fields that differed, learned
//!   noise and a bounded sample of diffs.
//! - [`store`]: those tables, read by `strangler routes diff` and the gate.

pub mod capture;
pub mod recorder;
pub mod store;
pub mod worker;

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use hyper::header::HeaderValue;
use hyper::{Method, Uri};
use response_diff::Captured;
use tokio::sync::mpsc;

use crate::flow::metrics::Metrics;
use crate::flow::trace::SpanLink;
use crate::wire::upstream::RequestHead;
use recorder::Recorder;

/// Why a request was not shadowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SkipReason {
    /// A request or response body over the cap.
    BodyTooLarge,
    /// A non-idempotent method, and the service may write to shared state.
    UnsafeMethod,
    /// The monolith's answer did not arrive whole (client gone, error).
    Incomplete,
}

impl SkipReason {
    /// Name for logs.
    pub fn as_str(self) -> &'static str {
        match self {
            SkipReason::BodyTooLarge => "body_too_large",
            SkipReason::UnsafeMethod => "unsafe_method",
            SkipReason::Incomplete => "incomplete",
        }
    }
}

/// One request to replay against the service, with the monolith's answer.
#[derive(Debug)]
pub struct ShadowJob {
    /// The capability's index in the route table.
    pub capability: usize,
    /// Its name, interned.
    pub name: &'static str,
    /// The request's method.
    pub method: Method,
    /// Its origin-form target.
    pub uri: Uri,
    /// Its path, normalized, for samples (no query: it may hold secrets).
    pub path: String,
    /// Its head as sent upstream, without `Host`.
    pub head: RequestHead,
    /// The client's `Host`.
    pub original_host: Option<HeaderValue>,
    /// Its body.
    pub body: Bytes,
    /// The monolith's answer.
    pub legacy: Captured,
    /// The correlation id.
    pub request_id: String,
    /// The request's span, when its trace was kept: the comparison's span
    /// links to it.
    pub link: Option<SpanLink>,
}

/// The entry to shadowing: a rate limit, a bounded queue and the counters.
#[derive(Debug)]
pub struct Shadower {
    queue: mpsc::Sender<ShadowJob>,
    /// Where outcomes are counted.
    pub recorder: Arc<Recorder>,
    metrics: Arc<Metrics>,
    rate: RateLimit,
}

/// At most `limit` copies per wall-clock second, over all capabilities.
///
/// Shadowing costs the facade's host a second upstream call and a
/// comparison per copy; without a limit a busy facade would spend as much on
/// copies as on its clients. A fixed one-second window on two atomics keeps
/// the check off any lock.
#[derive(Debug)]
struct RateLimit {
    limit: u32,
    second: AtomicU64,
    used: AtomicU32,
}

impl RateLimit {
    fn admit(&self) -> bool {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let second = self.second.load(Ordering::Relaxed);
        if second != now
            && self
                .second
                .compare_exchange(second, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            self.used.store(0, Ordering::Relaxed);
        }
        self.used.fetch_add(1, Ordering::Relaxed) < self.limit
    }
}

impl Shadower {
    /// A shadower whose queue holds `capacity` jobs and that admits at most
    /// `per_second` copies a second; the receiver goes to [`worker::run`].
    pub fn new(
        capacity: usize,
        per_second: u32,
        recorder: Arc<Recorder>,
        metrics: Arc<Metrics>,
    ) -> (Arc<Self>, mpsc::Receiver<ShadowJob>) {
        let (queue, jobs) = mpsc::channel(capacity.max(1));
        (
            Arc::new(Self {
                queue,
                recorder,
                metrics,
                rate: RateLimit {
                    limit: per_second,
                    second: AtomicU64::new(0),
                    used: AtomicU32::new(0),
                },
            }),
            jobs,
        )
    }

    /// Whether a request of capability `name` may be copied now; counts
    /// those over the rate as `sampled_out` (in metrics only: they are not
    /// evidence either way).
    pub fn admit(&self, name: &'static str) -> bool {
        let admitted = self.rate.admit();
        if !admitted {
            self.metrics.shadow(name, "sampled_out");
        }
        admitted
    }

    /// Queues a job, or drops and counts it when the queue is full. Never
    /// waits.
    pub fn offer(&self, job: ShadowJob) {
        let name = job.name;
        if self.queue.try_send(job).is_err() {
            self.metrics.shadow(name, "dropped");
            self.recorder.dropped(name);
        }
    }

    /// Counts a request that was not shadowed.
    pub fn skipped(&self, name: &'static str, reason: SkipReason) {
        tracing::debug!(
            capability = name,
            reason = reason.as_str(),
            "request not shadowed"
        );
        self.metrics.shadow(name, "skipped");
        self.recorder.skipped(name);
    }
}
