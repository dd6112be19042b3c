//! Sending one request to its backend with the safety net its stage and
//! backend call for: a bulkhead and a circuit breaker in front of every
//! attempt, retries with exponential backoff and full jitter under a retry
//! budget, and the monolith as the fallback when the service fails.
//!
//! A request is sent again only when that is safe: when none of its bytes
//! reached the failed backend (no connection, breaker open, bulkhead full,
//! or hyper handed it back unsent), or when its method is idempotent. A
//! write with an `Idempotency-Key` is also retried on the same backend when
//! that backend deduplicates on the key (`honours_idempotency_key`), but
//! never sent to the fallback: the key is known only to the backend that
//! saw it. A body is sent again from
//! a bounded copy kept while it streamed; a body larger than the copy's cap
//! is sent once.

use std::sync::Arc;
use std::time::Duration;

use hyper::header::HeaderValue;
use hyper::Response;
use tokio::time::Instant;

use crate::flow::backend::Backend;
use crate::flow::metrics::{Metrics, UpstreamErrorKind};
use crate::flow::outgoing::Outgoing;
use crate::flow::trace::{AttemptEnd, AttemptSpan, Traced};
use crate::wire::body::{self, ProxyBody};
use crate::wire::client_body::{BodyCopy, BodySent, ClientBodyError};
use crate::wire::interim::InterimSink;
use crate::wire::upstream::{AnswerWait, RequestHead, SendError, UpstreamBody, UpstreamError};

/// The request body, with what it takes to send it more than once.
pub(crate) struct RequestBody {
    /// The client's body, not yet (or not really) sent.
    first: Option<ProxyBody>,
    /// Its copy, for sending it again once the first has gone.
    copy: Option<Arc<BodyCopy>>,
    /// When the client's body has gone; `None` when there is nothing to
    /// wait for (no body, or one sent from the copy).
    sent: Option<Arc<BodySent>>,
    empty: bool,
}

impl RequestBody {
    /// No body at all.
    pub fn empty() -> Self {
        Self {
            first: None,
            copy: None,
            sent: None,
            empty: true,
        }
    }

    /// The client's streaming body; `copy` (if any) is filled as it streams.
    pub fn streaming(body: ProxyBody, sent: Arc<BodySent>, copy: Option<Arc<BodyCopy>>) -> Self {
        Self {
            first: Some(body),
            copy,
            sent: Some(sent),
            empty: false,
        }
    }

    /// The copy kept of the body, if any.
    pub fn copy(&self) -> Option<Arc<BodyCopy>> {
        self.copy.clone()
    }

    /// The body for the next attempt, and the signal that it was sent.
    fn next(&mut self) -> Option<(ProxyBody, Option<Arc<BodySent>>)> {
        if self.empty {
            return Some((body::empty(), None));
        }
        if let Some(body) = self.first.take() {
            return Some((body, self.sent.clone()));
        }
        let bytes = self.copy.as_ref()?.bytes()?;
        Some((body::full(bytes), None))
    }

    /// Whether another attempt could be sent a body.
    fn can_send_again(&self) -> bool {
        self.empty || self.first.is_some() || self.copy.as_ref().is_some_and(|c| c.bytes().is_some())
    }
}

/// Why an attempt (or a whole dispatch) failed.
#[derive(Debug)]
pub(crate) enum Failure {
    /// No connection could be made, or the request came back unsent:
    /// nothing reached the backend.
    Connect(UpstreamError),
    /// No response head in time.
    Timeout(Duration),
    /// The connection broke, or the answer was unreadable (may include a
    /// failure of the client's own body, found in the error's sources).
    Broken(UpstreamError),
    /// The backend answered with a 5xx.
    Status(Box<Response<UpstreamBody>>),
    /// The circuit breaker is open: nothing was sent.
    CircuitOpen {
        /// Refused while the breaker's one half-open probe was out: the
        /// backend was being tried, and this says nothing new about it.
        probing: bool,
    },
    /// The bulkhead is full: nothing was sent.
    BulkheadFull,
    /// The backend has no instances.
    NoInstance,
}

impl Failure {
    /// The short name used in metrics and the fallback header.
    pub fn reason(&self) -> &'static str {
        match self {
            Failure::Connect(_) => "connect",
            Failure::Timeout(_) => "timeout",
            Failure::Broken(_) => "broken",
            Failure::Status(_) => "status",
            Failure::CircuitOpen { .. } => "circuit_open",
            Failure::BulkheadFull => "bulkhead_full",
            Failure::NoInstance => "no_instance",
        }
    }

    /// Whether no byte of the request reached the backend.
    fn nothing_sent(&self) -> bool {
        matches!(
            self,
            Failure::Connect(_) | Failure::CircuitOpen { .. } | Failure::BulkheadFull | Failure::NoInstance
        )
    }
}

/// Why the primary failed, when the fallback answered: the first failure,
/// which caused it, and the last, which gave up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FallbackCause {
    /// The first attempt's failure (`connect`, `timeout`, …).
    pub first: &'static str,
    /// The last attempt's, often a consequence of the first
    /// (`circuit_open` once the failures opened the breaker).
    pub last: &'static str,
}

impl FallbackCause {
    /// The `x-strangler-fallback` value: the cause, and the last failure
    /// after it when that was another (`connect, then circuit_open`).
    pub(crate) fn header_value(self) -> HeaderValue {
        if self.first == self.last {
            HeaderValue::from_static(self.first)
        } else {
            let text = format!("{}, then {}", self.first, self.last);
            // Both are fixed lower-case names: always a valid value.
            HeaderValue::from_str(&text).unwrap_or_else(|_| HeaderValue::from_static(self.first))
        }
    }
}

/// How the primary backend did with one request, as the error budget
/// counts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PrimaryOutcome {
    /// It answered (anything but a 5xx).
    Answered,
    /// It failed, or its open breaker refused the request.
    Failed,
    /// Its breaker refused the request while its one half-open probe was
    /// out: the backend is being tried right now, so the refusal is not
    /// counted (after a recovery, a burst of such refusals would roll the
    /// capability back on a failure the service no longer has).
    NotTried,
}

/// What the client gets.
pub(crate) struct Dispatched<'a> {
    /// The backend whose answer (or failure) this is.
    pub backend: &'a Arc<Backend>,
    /// Its answer, or why there is none.
    pub result: Result<Response<UpstreamBody>, Failure>,
    /// Set when the fallback answered: why the primary failed.
    pub fallback_from: Option<FallbackCause>,
    /// How the primary backend did, for its capability's error budget.
    pub primary: PrimaryOutcome,
}

/// Where a request may go.
pub(crate) struct Plan<'a> {
    /// The backend the route decision chose.
    pub primary: &'a Arc<Backend>,
    /// The monolith, when the stage allows falling back to it.
    pub fallback: Option<&'a Arc<Backend>>,
    /// An idempotent method: may be repeated to any backend.
    pub idempotent: bool,
    /// A non-idempotent request with an `Idempotency-Key`: may be repeated
    /// only to a backend that honours the key (`honours_idempotency_key`).
    pub keyed: bool,
    /// The capability's metric label.
    pub capability: &'static str,
    /// Where the upstream's interim answers go, if the client can take
    /// them.
    pub interim: Option<&'a Arc<InterimSink>>,
    /// The client's own deadline (a gRPC call's `grpc-timeout`): no attempt
    /// waits past it.
    pub deadline: Option<Duration>,
    /// The request's span, when its trace is kept: each attempt gets one.
    pub trace: Option<Traced<'a>>,
}

impl Plan<'_> {
    /// Whether the request may go to `backend` after an attempt that may
    /// have reached a backend: an idempotent method may, and a keyed one
    /// only where the backend deduplicates on the key, so that a request
    /// the first backend acted on but did not answer is not acted on twice.
    pub(crate) fn may_repeat(&self, backend: &Backend) -> bool {
        self.idempotent || (self.keyed && backend.honours_idempotency_key)
    }

    /// Whether the request may go to the fallback after it may have
    /// reached the primary: only an idempotent method may. An
    /// `Idempotency-Key` is remembered by the backend that saw it, so the
    /// monolith cannot know that the service already acted on it: replaying
    /// a keyed order there would place it twice (the chaos soak did, and
    /// charged the customer twice). The client, which has the key, repeats
    /// it to the facade, and the capability's backend deduplicates it.
    pub(crate) fn may_send_elsewhere(&self) -> bool {
        self.idempotent
    }
}

/// Sends the request per `plan`.
pub(crate) async fn dispatch<'a>(
    plan: &Plan<'a>,
    outgoing: &Outgoing,
    body: &mut RequestBody,
    metrics: &Metrics,
) -> Dispatched<'a> {
    let primary = plan.primary;
    let started = Instant::now();
    let policy = primary.resilience;
    primary.retry_budget.record_request(started.into_std());
    let label = primary.label;
    let mut retry = 0;
    // The first failure is the cause; later ones (a breaker the failures
    // opened, a budget they used up) are consequences.
    let mut first_reason = None;
    let mut untried = false;
    // Whether any attempt may have reached the primary: what may go to the
    // fallback depends on that, not on how the last attempt failed (a
    // retry the breaker refused sent nothing, but the attempt before it
    // may have placed the order).
    let mut reached = false;
    let failure = loop {
        // The total bounds all attempts together: a retry gets what is left
        // of it. (The first attempt's clock starts once the client's body is
        // sent, so a slow upload does not eat into it.)
        let left = match retry {
            0 => policy.total_timeout,
            _ => policy.total_timeout.saturating_sub(started.elapsed()),
        };
        let timeout = within(plan.deadline, started, primary.request_timeout.min(left));
        let span = plan.trace.map(|traced| AttemptSpan {
            traced,
            retry,
            fallback: false,
        });
        let wait = AnswerWait {
            answer_timeout: timeout,
            interim: plan.interim,
        };
        let failure = match guarded_attempt(primary, outgoing, body, metrics, wait, span).await {
            Ok(response) => {
                return Dispatched {
                    backend: primary,
                    result: Ok(response),
                    fallback_from: None,
                    primary: PrimaryOutcome::Answered,
                }
            }
            Err(failure) => failure,
        };
        if first_reason.is_none() {
            first_reason = Some(failure.reason());
            untried = matches!(failure, Failure::CircuitOpen { probing: true });
        }
        reached |= !failure.nothing_sent();
        let again = (plan.may_repeat(primary) || failure.nothing_sent()) && body.can_send_again();
        if !again || retry >= policy.retries || failure.nothing_sent_by_guard() {
            break failure;
        }
        let delay = policy.backoff.delay(retry, &mut rand::thread_rng());
        if started.elapsed() + delay >= policy.total_timeout {
            break failure;
        }
        if !primary.retry_budget.try_retry(Instant::now().into_std()) {
            metrics.refused(label, "retry_budget");
            break failure;
        }
        metrics.retry(label);
        tokio::time::sleep(delay).await;
        retry += 1;
    };
    let outcome = if untried {
        PrimaryOutcome::NotTried
    } else {
        PrimaryOutcome::Failed
    };
    if let Some(fallback) = plan.fallback {
        if (plan.may_send_elsewhere() || !reached) && body.can_send_again() {
            let reason = FallbackCause {
                first: first_reason.unwrap_or(failure.reason()),
                last: failure.reason(),
            };
            metrics.fallback(plan.capability, reason.first);
            // The failed answer is dropped unread: its connection closes.
            drop(failure);
            let span = plan.trace.map(|traced| AttemptSpan {
                traced,
                retry: 0,
                fallback: true,
            });
            let wait = AnswerWait {
                answer_timeout: within(plan.deadline, started, fallback.request_timeout),
                interim: plan.interim,
            };
            let result = guarded_attempt(fallback, outgoing, body, metrics, wait, span).await;
            return Dispatched {
                backend: fallback,
                result,
                fallback_from: Some(reason),
                primary: outcome,
            };
        }
    }
    Dispatched {
        backend: primary,
        result: Err(failure),
        fallback_from: None,
        primary: outcome,
    }
}

/// `timeout`, cut to what is left of the client's `deadline` counted from
/// `started`.
fn within(deadline: Option<Duration>, started: Instant, timeout: Duration) -> Duration {
    match deadline {
        Some(deadline) => timeout.min(deadline.saturating_sub(started.elapsed())),
        None => timeout,
    }
}

impl Failure {
    /// Refusals by the facade's own guards: retrying at once would be
    /// refused again, so they go straight to the fallback (or the client).
    fn nothing_sent_by_guard(&self) -> bool {
        matches!(
            self,
            Failure::CircuitOpen { .. } | Failure::BulkheadFull | Failure::NoInstance
        )
    }
}

/// One attempt behind the backend's bulkhead and circuit breaker, with
/// `wait`'s timeout for the response head, and its span when the request
/// is traced. A 5xx answer is returned as a failure (carrying the answer).
async fn guarded_attempt(
    backend: &Arc<Backend>,
    outgoing: &Outgoing,
    body: &mut RequestBody,
    metrics: &Metrics,
    wait: AnswerWait<'_>,
    span: Option<AttemptSpan<'_>>,
) -> Result<Response<UpstreamBody>, Failure> {
    let label = backend.label;
    let refused = |breaker, failure: &Failure| {
        if let Some(span) = span {
            span.refused(AttemptEnd {
                backend: &backend.name,
                breaker,
                status: None,
                failure: Some(failure.reason()),
            });
        }
    };
    let Some(_slot) = backend.bulkhead.try_enter() else {
        metrics.refused(label, "bulkhead_full");
        let breaker = span.map_or("closed", |_| {
            backend.breaker.state(Instant::now().into_std()).as_str()
        });
        refused(breaker, &Failure::BulkheadFull);
        return Err(Failure::BulkheadFull);
    };
    let permit = match backend.breaker.try_acquire(Instant::now().into_std()) {
        Ok(permit) => permit,
        Err(rejected) => {
            metrics.refused(label, "circuit_open");
            let failure = Failure::CircuitOpen {
                probing: rejected.probing,
            };
            refused(if rejected.probing { "half_open" } else { "open" }, &failure);
            return Err(failure);
        }
    };
    let Some((upstream_body, sent)) = body.next() else {
        // Nothing left to send: the caller checked, so this is a bug
        // guard, reported as the backend being unreachable.
        permit.success(Instant::now().into_std());
        return Err(Failure::NoInstance);
    };
    // A traced attempt's head names the attempt's span as the upstream's
    // parent; it is boxed, so an untraced request carries a pointer more.
    let started = span.map(|span| span.start(&outgoing.head));
    let head = started.as_ref().map_or(&outgoing.head, |started| &started.head);
    let result = attempt(backend, outgoing, head, upstream_body, sent, body, wait).await;
    if let (Some(span), Some(started)) = (span, started) {
        let (status, failure) = match &result {
            Ok(response) => (Some(response.status().as_u16()), None),
            Err(Failure::Status(response)) => (Some(response.status().as_u16()), Some("status")),
            Err(failure) => (None, Some(failure.reason())),
        };
        let breaker = if permit.is_probe() { "half_open" } else { "closed" };
        span.ended(
            &started,
            AttemptEnd {
                backend: &backend.name,
                breaker,
                status,
                failure,
            },
        );
    }
    let now = Instant::now().into_std();
    match &result {
        Ok(_) => permit.success(now),
        Err(Failure::Broken(error)) if is_client_fault(error) => permit.success(now),
        Err(_) => permit.failure(now),
    }
    if let Err(failure) = &result {
        let kind = match failure {
            Failure::Connect(UpstreamError::Tls(_)) | Failure::Broken(UpstreamError::Tls(_)) => {
                Some(UpstreamErrorKind::Tls)
            }
            Failure::Connect(_) => Some(UpstreamErrorKind::Connect),
            Failure::Timeout(_) => Some(UpstreamErrorKind::Timeout),
            Failure::Broken(error) if !is_client_fault(error) => Some(UpstreamErrorKind::Protocol),
            _ => None,
        };
        if let Some(kind) = kind {
            metrics.upstream_error(label, kind);
        }
    }
    result
}

/// Whether a failed upstream call failed because of the client's body: then
/// the backend is not to blame, and its breaker and error count are spared.
fn is_client_fault(error: &UpstreamError) -> bool {
    ClientBodyError::find(error).is_some()
}

/// One attempt at one instance with `head` (the request's, or a traced
/// attempt's own), `wait`'s timeout for its response head. An unsent body
/// is put back into `body`.
///
/// Not wrapped in a `tracing` span, which would move the whole exchange's
/// state once more per attempt; a debug event says how each attempt ended,
/// and a traced attempt's OpenTelemetry span is built after it, from
/// times taken around it.
async fn attempt(
    backend: &Backend,
    outgoing: &Outgoing,
    head: &RequestHead,
    upstream_body: ProxyBody,
    sent: Option<Arc<BodySent>>,
    body: &mut RequestBody,
    wait: AnswerWait<'_>,
) -> Result<Response<UpstreamBody>, Failure> {
    let timeout = wait.answer_timeout;
    let Some(picked) = backend.pick() else {
        return Err(Failure::NoInstance);
    };
    let instance = picked.instance();
    let host = outgoing.host(backend, instance);
    // The upstream's clock starts once the whole body is sent: a slow client
    // upload is not the upstream being slow.
    let deadline = async move {
        if let Some(sent) = sent {
            sent.wait().await;
        }
        tokio::time::sleep(timeout).await;
    };
    let result = tokio::select! {
        result = instance.client.send(head, host, upstream_body, wait) => result,
        () = deadline => return Err(Failure::Timeout(timeout)),
    };
    drop(picked);
    tracing::debug!(
        backend = backend.label,
        status = result.as_ref().map_or(0, |r| r.status().as_u16()),
        "upstream attempt"
    );
    match result {
        Ok(response) if response.status().is_server_error() => Err(Failure::Status(Box::new(response))),
        Ok(response) => Ok(response),
        Err(SendError {
            error: UpstreamError::AnswerTimeout(limit),
            ..
        }) => Err(Failure::Timeout(limit)),
        Err(error) => {
            // Handed back unsent (no connection, or a pooled one that had
            // closed): nothing reached the backend.
            if let Some(unsent) = error.unsent {
                body.first = Some(unsent);
                return Err(Failure::Connect(error.error));
            }
            Err(Failure::Broken(error.error))
        }
    }
}
