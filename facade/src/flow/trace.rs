//! Traces of proxied requests, recorded without `tracing` spans.
//!
//! The request path avoids `tracing` spans for speed (ARCHITECTURE.md), so
//! its OpenTelemetry spans are built by hand. Sampling is decided once, as
//! a request arrives ([`Trace::begin`]), from the client's `traceparent`
//! and the configured sampler:
//!
//! - tracing off, or a trace that is not kept: nothing more is done, and
//!   the client's `traceparent` (if any) goes upstream unchanged. A new
//!   trace that is not kept is not announced upstream either: writing a
//!   `traceparent` with the sampled flag clear costs about 3% of a
//!   request's instructions (callgrind), for services that would otherwise
//!   decide for themselves;
//! - tracing on, a client's trace that is not kept: as above, but the
//!   request's log lines carry the client's `trace_id` (and no `span_id`:
//!   the facade recorded no span), so that they still join the client's
//!   trace wherever it was kept. The header was parsed for the sampling
//!   decision anyway, so this costs nothing more. With tracing off the
//!   header is not read at all, and log lines carry no trace ids;
//! - a kept trace: the request gets a span id, each attempt one more, and
//!   each attempt's upstream gets a `traceparent` naming its attempt's span
//!   as parent. The spans' data is built once each step has ended and
//!   handed to the batch processor ([`SpanSink`]), which exports on a
//!   thread of its own. Nothing is held across an await but a box.
//!
//! Spans: the request (server, child of the client's span) with the route
//! decision (capability, stage, side) as attributes; each attempt (client)
//! with its retry number and the breaker's state; the fallback's attempt;
//! and the shadow comparison, in a trace of its own linked to the request's
//! span (it happens after the client's answer and is not part of it).

use std::borrow::Cow;
use std::time::SystemTime;

use hyper::header::{HeaderName, HeaderValue};
use hyper::{Method, Request};
use toolkit_telemetry::opentelemetry::trace::{
    Link, SpanContext, SpanId, SpanKind, Status, TraceFlags, TraceId, TraceState,
};
use toolkit_telemetry::opentelemetry::KeyValue;
use toolkit_telemetry::opentelemetry_sdk::trace::{SpanData, SpanEvents, SpanLinks};
use toolkit_telemetry::{SpanSink, TraceParent};

use crate::decision::routing::Target;
use crate::decision::stage::Stage;
use crate::wire::upstream::RequestHead;

/// The W3C trace context header.
pub(crate) const TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");

/// What one request does about tracing, decided as it arrives.
pub(crate) enum Trace {
    /// Tracing is off, or a new trace is not kept.
    Off,
    /// Tracing is on and the client's trace, with this id, is not kept:
    /// only the log lines name it.
    NotKept(TraceId),
    /// A kept trace.
    Sampled(Box<Sampled>),
}

/// A kept request: its ids, and what its span reports of the request.
pub(crate) struct Sampled {
    trace_id: TraceId,
    span_id: SpanId,
    /// The client's span, when the client sent a `traceparent`.
    parent: Option<SpanId>,
    started: SystemTime,
    method: Method,
    path: String,
}

/// How the request's head carries the trace upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TraceHeader {
    /// As the client sent it.
    Keep,
    /// Without the client's: each attempt adds its own.
    Replace,
}

/// A kept request's span, and where it goes.
#[derive(Clone, Copy)]
pub(crate) struct Traced<'a> {
    sink: &'a SpanSink,
    request: &'a Sampled,
}

/// The ids a request's log lines carry: its correlation id, and its
/// trace's and span's when the trace is kept, so that logs and traces join.
pub(crate) struct LogIds<'a> {
    /// The correlation id.
    pub request_id: &'a str,
    /// The trace id, and the request's span id when the facade kept the
    /// trace (a client's trace it did not keep has only the trace id).
    pub trace: Option<(TraceId, Option<SpanId>)>,
    /// The client's address (the one a PROXY protocol header named, if
    /// any).
    pub client: std::net::IpAddr,
    /// Whether the client came over TLS.
    pub tls: bool,
}

/// The request's span, as a shadow copy links to it.
#[derive(Debug, Clone, Copy)]
pub struct SpanLink {
    trace_id: TraceId,
    span_id: SpanId,
}

impl Trace {
    /// Decides for `request`; `sink` is `None` when tracing is off.
    #[inline]
    pub(crate) fn begin<B>(sink: Option<&SpanSink>, request: &Request<B>) -> Self {
        match sink {
            None => Trace::Off,
            Some(sink) => decide(sink, request),
        }
    }

    /// How the head carries the trace upstream.
    pub(crate) fn header(&self) -> TraceHeader {
        match self {
            Trace::Off | Trace::NotKept(_) => TraceHeader::Keep,
            Trace::Sampled(_) => TraceHeader::Replace,
        }
    }

    /// The kept request, with where its spans go.
    pub(crate) fn traced<'a>(&'a self, sink: Option<&'a SpanSink>) -> Option<Traced<'a>> {
        match (self, sink) {
            (Trace::Sampled(request), Some(sink)) => Some(Traced { sink, request }),
            _ => None,
        }
    }

    /// What a shadow copy of a kept request links to.
    pub(crate) fn link(&self) -> Option<SpanLink> {
        match self {
            Trace::Sampled(request) => Some(SpanLink {
                trace_id: request.trace_id,
                span_id: request.span_id,
            }),
            _ => None,
        }
    }

    /// The trace and span ids for the request's log lines: both when the
    /// trace is kept; the client's trace id alone when it is not.
    pub(crate) fn log_ids(&self) -> Option<(TraceId, Option<SpanId>)> {
        match self {
            Trace::Off => None,
            Trace::NotKept(trace_id) => Some((*trace_id, None)),
            Trace::Sampled(request) => Some((request.trace_id, Some(request.span_id))),
        }
    }
}

// Out of line: with tracing off, `handle` keeps only the check.
#[inline(never)]
fn decide<B>(sink: &SpanSink, request: &Request<B>) -> Trace {
    let parent = request
        .headers()
        .get(&TRACEPARENT)
        .and_then(|value| TraceParent::parse(value.as_bytes()));
    let trace_id = parent.map_or_else(nonzero_u128, |parent| parent.trace_id);
    if !sink.sampling().sample(parent.map(|p| p.sampled), trace_id) {
        // A client's trace goes on without the facade; its id, already
        // parsed, still labels the log lines.
        return match parent {
            Some(_) => Trace::NotKept(TraceId::from(trace_id)),
            None => Trace::Off,
        };
    }
    Trace::Sampled(Box::new(Sampled {
        trace_id: TraceId::from(trace_id),
        span_id: SpanId::from(nonzero_u64()),
        parent: parent.map(|p| SpanId::from(p.parent_id)),
        started: SystemTime::now(),
        method: request.method().clone(),
        path: request.uri().path().to_owned(),
    }))
}

/// How a request ended, for its span.
pub(crate) struct Ended<'a> {
    /// The status the client got.
    pub status: u16,
    /// The matched route's pattern.
    pub route: Option<&'a str>,
    /// The capability, the stage it was at and the side the decision chose.
    pub decision: Option<(&'a str, Option<Stage>, Option<Target>)>,
    /// The backend whose answer (or failure) the client got.
    pub served_by: Option<&'a str>,
    /// Why the primary failed (its first failure), when the fallback
    /// answered.
    pub fallback: Option<&'static str>,
    /// Whether a shadow copy was admitted.
    pub shadow: bool,
    /// The failure, when no upstream answered.
    pub error: Option<&'static str>,
}

/// How an attempt ended, for its span.
pub(crate) struct AttemptEnd<'a> {
    /// The backend tried.
    pub backend: &'a str,
    /// The breaker's state as the attempt went (or was refused).
    pub breaker: &'static str,
    /// The answer's status, if any.
    pub status: Option<u16>,
    /// The failure's short name, if it failed.
    pub failure: Option<&'static str>,
}

/// An attempt under way: its span id, start, and the head that names it.
pub(crate) struct AttemptStart {
    span_id: SpanId,
    started: SystemTime,
    /// The request's head with this attempt's `traceparent`.
    pub head: RequestHead,
}

/// One attempt of a kept request.
#[derive(Clone, Copy)]
pub(crate) struct AttemptSpan<'a> {
    /// The request.
    pub traced: Traced<'a>,
    /// 0 for the first try, 1 for the first retry, …
    pub retry: u32,
    /// The attempt is the fallback's.
    pub fallback: bool,
}

impl Traced<'_> {
    /// The request's span, ended now.
    pub(crate) fn request_ended(&self, ended: Ended<'_>) {
        let request = self.request;
        let name = match ended.route {
            Some(route) => format!("{} {route}", request.method),
            None => request.method.to_string(),
        };
        let mut attributes = vec![
            KeyValue::new("http.request.method", request.method.to_string()),
            KeyValue::new("url.path", request.path.clone()),
            KeyValue::new("http.response.status_code", i64::from(ended.status)),
        ];
        if let Some(route) = ended.route {
            attributes.push(KeyValue::new("http.route", route.to_owned()));
        }
        if let Some((capability, stage, side)) = ended.decision {
            attributes.push(KeyValue::new("strangler.capability", capability.to_owned()));
            if let Some(stage) = stage {
                attributes.push(KeyValue::new("strangler.stage", stage.to_string()));
            }
            if let Some(side) = side {
                attributes.push(KeyValue::new("strangler.side", side.as_str()));
            }
        }
        if let Some(backend) = ended.served_by {
            attributes.push(KeyValue::new("strangler.served_by", backend.to_owned()));
        }
        if let Some(cause) = ended.fallback {
            attributes.push(KeyValue::new("strangler.fallback", cause));
        }
        if ended.shadow {
            attributes.push(KeyValue::new("strangler.shadow", true));
        }
        if let Some(error) = ended.error {
            attributes.push(KeyValue::new("error.type", error));
        }
        let context = sampled(request.trace_id, request.span_id);
        let mut span = data(
            self.sink,
            context,
            request
                .parent
                .map_or((SpanId::INVALID, false), |parent| (parent, true)),
            SpanKind::Server,
            Cow::Owned(name),
            (request.started, SystemTime::now()),
            attributes,
        );
        if ended.status >= 500 {
            span.status = Status::error(ended.error.unwrap_or("server error"));
        }
        self.sink.record(span);
    }
}

impl AttemptSpan<'_> {
    /// Starts an attempt: its span id, and `head` with a `traceparent`
    /// that names it.
    pub(crate) fn start(&self, head: &RequestHead) -> Box<AttemptStart> {
        let span_id = nonzero_u64();
        let parent = TraceParent {
            trace_id: u128::from_be_bytes(self.traced.request.trace_id.to_bytes()),
            parent_id: span_id,
            sampled: true,
        };
        let head = match HeaderValue::from_bytes(&parent.encode()) {
            Ok(value) => head.with_header(&TRACEPARENT, &value),
            Err(_) => head.clone(),
        };
        Box::new(AttemptStart {
            span_id: SpanId::from(span_id),
            started: SystemTime::now(),
            head,
        })
    }

    /// Ends a started attempt.
    pub(crate) fn ended(&self, start: &AttemptStart, end: AttemptEnd<'_>) {
        self.record(start.span_id, start.started, end);
    }

    /// An attempt the bulkhead or the breaker refused: nothing was sent.
    pub(crate) fn refused(&self, end: AttemptEnd<'_>) {
        self.record(SpanId::from(nonzero_u64()), SystemTime::now(), end);
    }

    fn record(&self, span_id: SpanId, started: SystemTime, end: AttemptEnd<'_>) {
        let request = self.traced.request;
        let mut attributes = vec![
            KeyValue::new("http.request.method", request.method.to_string()),
            KeyValue::new("strangler.backend", end.backend.to_owned()),
            KeyValue::new("strangler.retry", i64::from(self.retry)),
            KeyValue::new("strangler.breaker", end.breaker),
        ];
        if self.fallback {
            attributes.push(KeyValue::new("strangler.fallback", true));
        }
        if let Some(status) = end.status {
            attributes.push(KeyValue::new("http.response.status_code", i64::from(status)));
        }
        if let Some(failure) = end.failure {
            attributes.push(KeyValue::new("error.type", failure));
        }
        let name = if self.fallback {
            "fallback attempt"
        } else {
            "upstream attempt"
        };
        let mut span = data(
            self.traced.sink,
            sampled(request.trace_id, span_id),
            (request.span_id, false),
            SpanKind::Client,
            Cow::Borrowed(name),
            (started, SystemTime::now()),
            attributes,
        );
        if let Some(failure) = end.failure {
            span.status = Status::error(failure);
        }
        self.traced.sink.record(span);
    }
}

/// A shadow comparison under way, in a trace of its own.
pub(crate) struct ShadowSpan {
    context: SpanContext,
    link: SpanLink,
    started: SystemTime,
}

impl ShadowSpan {
    /// Starts the comparison's span for a copy of the request `link`.
    pub(crate) fn start(link: SpanLink) -> Self {
        Self {
            context: sampled(TraceId::from(nonzero_u128()), SpanId::from(nonzero_u64())),
            link,
            started: SystemTime::now(),
        }
    }

    /// The `traceparent` the copies carry: the comparison is their parent.
    pub(crate) fn traceparent(&self) -> Option<HeaderValue> {
        let parent = TraceParent {
            trace_id: u128::from_be_bytes(self.context.trace_id().to_bytes()),
            parent_id: u64::from_be_bytes(self.context.span_id().to_bytes()),
            sampled: true,
        };
        HeaderValue::from_bytes(&parent.encode()).ok()
    }

    /// Ends it with the comparison's `outcome` (`match`, `mismatch`,
    /// `skipped`) and attributes.
    pub(crate) fn ended(self, sink: &SpanSink, outcome: &'static str, mut attributes: Vec<KeyValue>) {
        attributes.push(KeyValue::new("strangler.shadow", true));
        attributes.push(KeyValue::new("strangler.shadow.result", outcome));
        let mut span = data(
            sink,
            self.context,
            (SpanId::INVALID, false),
            SpanKind::Internal,
            Cow::Borrowed("shadow comparison"),
            (self.started, SystemTime::now()),
            attributes,
        );
        let linked = sampled(self.link.trace_id, self.link.span_id);
        let attributes = vec![KeyValue::new("strangler.link", "shadowed request")];
        span.links.links.push(Link::new(linked, attributes, 0));
        sink.record(span);
    }
}

fn sampled(trace_id: TraceId, span_id: SpanId) -> SpanContext {
    SpanContext::new(trace_id, span_id, TraceFlags::SAMPLED, false, TraceState::NONE)
}

/// A finished span's data: `parent` is the parent's id (invalid for a
/// root) and whether it is the client's.
fn data(
    sink: &SpanSink,
    context: SpanContext,
    parent: (SpanId, bool),
    kind: SpanKind,
    name: Cow<'static, str>,
    (start_time, end_time): (SystemTime, SystemTime),
    attributes: Vec<KeyValue>,
) -> SpanData {
    SpanData {
        span_context: context,
        parent_span_id: parent.0,
        parent_span_is_remote: parent.1,
        span_kind: kind,
        name,
        start_time,
        // A clock stepped back mid-request still gives a span, not a
        // negative one.
        end_time: end_time.max(start_time),
        attributes,
        dropped_attributes_count: 0,
        events: SpanEvents::default(),
        links: SpanLinks::default(),
        status: Status::Unset,
        instrumentation_scope: sink.scope().clone(),
    }
}

/// Random ids are never zero, which W3C and OpenTelemetry call invalid.
fn nonzero_u128() -> u128 {
    rand::random::<u128>().max(1)
}

fn nonzero_u64() -> u64 {
    rand::random::<u64>().max(1)
}
