//! What the client is told besides the upstream's answer: which side served
//! it, and, when no upstream answered, a status that says whose fault that
//! was (pingora's error source: the status and the metric differ for the
//! client, the upstream and the facade).

use std::time::Instant;

use hyper::header::{self, HeaderName, HeaderValue};
use hyper::{HeaderMap, Response, StatusCode};

use crate::decision::routing::Target;
use crate::flow::backend::Backend;
use crate::flow::dispatch::{Failure, FallbackCause};
use crate::flow::error_chain::error_chain;
use crate::flow::metrics::{Metrics, UpstreamErrorKind};
use crate::flow::outgoing::Outgoing;
use crate::flow::trace::LogIds;
use crate::wire::body::ProxyBody;
use crate::wire::client_body::ClientBodyError;
use crate::wire::error_response::{error_response, Fault};
use crate::wire::headers::only_chunked;
use crate::wire::upstream::{UpstreamBody, UpstreamError};

/// The answer's header naming the side that served it: `legacy` or `service`.
pub const SERVED_BY: HeaderName = HeaderName::from_static("x-strangler-served-by");

/// The answer's header saying the monolith served it because the service
/// failed, and how: `connect`, `timeout`, `status`, `circuit_open`, …; the
/// first failure, which caused the others, and the last when it differs
/// (`connect, then circuit_open`).
pub const FALLBACK: HeaderName = HeaderName::from_static("x-strangler-fallback");

/// Says on the answer which side served it, and why when it was the
/// fallback. Only routed requests are marked: without a capability there
/// is no side to speak of.
pub(crate) fn mark_side(
    headers: &mut HeaderMap,
    routed: bool,
    side: Target,
    fallback_from: Option<FallbackCause>,
) {
    if !routed {
        return;
    }
    headers.insert(SERVED_BY, HeaderValue::from_static(side.as_str()));
    if let Some(cause) = fallback_from {
        headers.insert(FALLBACK, cause.header_value());
    }
}

/// The status, fault and message for a dispatch that got no answer.
pub(crate) fn failure_answer(failure: &Failure, backend: &Backend) -> (StatusCode, Fault, String) {
    match failure {
        Failure::Timeout(limit) => (
            StatusCode::GATEWAY_TIMEOUT,
            Fault::Upstream,
            format!("backend `{}` did not answer within {limit:?}", backend.name),
        ),
        Failure::Connect(UpstreamError::Tls(reason)) | Failure::Broken(UpstreamError::Tls(reason)) => (
            StatusCode::BAD_GATEWAY,
            Fault::Upstream,
            format!("TLS with backend `{}` failed: {reason}", backend.name),
        ),
        Failure::Connect(_) => (
            StatusCode::BAD_GATEWAY,
            Fault::Upstream,
            "the backend is unreachable".to_owned(),
        ),
        Failure::Broken(error) => {
            let (status, fault, _, message) = classify(error);
            (status, fault, message)
        }
        Failure::CircuitOpen { .. } => (
            StatusCode::SERVICE_UNAVAILABLE,
            Fault::Facade,
            format!(
                "backend `{}` is failing; its circuit breaker is open",
                backend.name
            ),
        ),
        Failure::BulkheadFull => (
            StatusCode::SERVICE_UNAVAILABLE,
            Fault::Facade,
            format!(
                "backend `{}` has {} requests in flight, its limit",
                backend.name,
                backend.bulkhead.capacity()
            ),
        ),
        Failure::NoInstance => (
            StatusCode::BAD_GATEWAY,
            Fault::Facade,
            "the backend has no instances".to_owned(),
        ),
        Failure::Status(response) => (
            response.status(),
            Fault::Upstream,
            "the backend failed".to_owned(),
        ),
    }
}

/// The failure with all its causes, for the log line.
pub(crate) fn failure_detail(failure: &Failure) -> String {
    match failure {
        Failure::Connect(error) | Failure::Broken(error) => error_chain(error),
        other => other.reason().to_owned(),
    }
}

/// Maps a failed upstream call to the answer and to whose fault it was: a
/// failure of the client's body is the client's (413, 408, 400); a refused
/// connection is a 502; anything else that broke on the way is a 502 too.
fn classify(error: &UpstreamError) -> (StatusCode, Fault, UpstreamErrorKind, String) {
    if let Some(body_error) = ClientBodyError::find(error) {
        let status = match body_error {
            ClientBodyError::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ClientBodyError::Stalled => StatusCode::REQUEST_TIMEOUT,
            ClientBodyError::Aborted => StatusCode::BAD_REQUEST,
        };
        return (
            status,
            Fault::Client,
            UpstreamErrorKind::Protocol,
            body_error.to_string(),
        );
    }
    if error.is_connect() {
        (
            StatusCode::BAD_GATEWAY,
            Fault::Upstream,
            UpstreamErrorKind::Connect,
            "the backend is unreachable".to_owned(),
        )
    } else {
        // A head the facade will not pass on says why; other breaks do not
        // tell more than this.
        let message = match error {
            UpstreamError::Head(head) => head.to_string(),
            _ => "the backend closed the connection or answered something unreadable".to_owned(),
        };
        (
            StatusCode::BAD_GATEWAY,
            Fault::Upstream,
            UpstreamErrorKind::Protocol,
            message,
        )
    }
}

/// A 502 for an answer with a transfer coding other than `chunked`, counted
/// under `capability` and `backend`: the upstream client removed only the
/// chunking, and passing the rest on unlabelled would corrupt the body.
pub(crate) fn unforwardable_coding(
    metrics: &Metrics,
    capability: &'static str,
    backend: &'static str,
    started: Instant,
    request_id: &HeaderValue,
    response: &Response<UpstreamBody>,
) -> Option<Response<ProxyBody>> {
    let codings: Vec<&HeaderValue> = response
        .headers()
        .get_all(header::TRANSFER_ENCODING)
        .iter()
        .collect();
    if only_chunked(&codings) {
        return None;
    }
    metrics.upstream_error(backend, UpstreamErrorKind::Protocol);
    metrics.request(capability, backend, 502, started.elapsed());
    Some(error_response(
        StatusCode::BAD_GATEWAY,
        Fault::Upstream,
        "the backend answered with a transfer coding other than chunked",
        request_id,
    ))
}

/// The access log's line for an answered request (with the trace's ids
/// when it is kept, the client's trace id alone when it is not).
pub(crate) fn log_access(
    ids: LogIds<'_>,
    capability: &'static str,
    outgoing: &Outgoing,
    served_by: &Backend,
    status: StatusCode,
    fallback_from: Option<FallbackCause>,
    started: Instant,
) {
    tracing::info!(
        request_id = ids.request_id,
        trace_id = ids.trace.map(|(trace, _)| display(trace)),
        span_id = ids.trace.and_then(|(_, span)| span).map(display),
        client = %ids.client,
        tls = ids.tls,
        method = %outgoing.method,
        target = %outgoing.uri,
        capability,
        backend = %served_by.name,
        status = status.as_u16(),
        fallback = fallback_from.map_or("-", |cause| cause.first),
        elapsed_ms = started.elapsed().as_secs_f64() * 1000.0,
        "proxied"
    );
}
