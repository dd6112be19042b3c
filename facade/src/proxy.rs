//! Forwarding one request: decide, rewrite headers, stream the bodies both
//! ways, pass upgrades (WebSocket) through, and map failures to answers
//! that say which side failed.
//!
//! Only this module (and the listener in `server`) knows hyper. Bodies are
//! streamed, never buffered: a request body goes upstream as the client
//! sends it, within the size limit; a response body goes back as the
//! upstream sends it.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use arc_swap::ArcSwap;
use bytes::Bytes;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Body;
use hyper::header::{self, HeaderName, HeaderValue};
use hyper::{HeaderMap, Request, Response, StatusCode, Uri};
use serde_json::json;
use tokio::sync::mpsc;

use crate::backend::Backend;
use crate::capability_state::CapabilityState;
use crate::client_body::{BodyCopy, BodySent, ClientBody, ClientBodyError, ClientIncoming};
use crate::config::Limits;
use crate::correlation;
use crate::dispatch::{dispatch, Failure, Outgoing, Plan, RequestBody};
use crate::headers::{content_length, framing_error, only_chunked, strip_hop_by_hop, wants_upgrade};
use crate::metrics::{Metrics, UpstreamErrorKind};
use crate::path;
use crate::rollback::{self, RollbackRequest};
use crate::routing::{host_of, RouteTable, ShadowCopy, Target};
use crate::shadow::capture::{self, CapturingBody, PendingShadow};
use crate::shadow::{Shadower, SkipReason};
use crate::upgrade;
use crate::upstream::UpstreamError;

/// How long a client may pause between two pieces of its request body.
const CLIENT_BODY_IDLE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// Largest request body kept to be sent again (a retry or a fallback);
/// larger bodies are sent once.
const REPLAY_LIMIT: usize = 1024 * 1024;

/// The header that marks a non-idempotent request as safe to repeat.
const IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static("idempotency-key");

/// The answer's header naming the side that served it: `legacy` or `service`.
pub const SERVED_BY: HeaderName = HeaderName::from_static("x-strangler-served-by");

/// The answer's header saying the monolith served it because the service
/// failed, and how: `connect`, `timeout`, `status`, `circuit_open`, …
pub const FALLBACK: HeaderName = HeaderName::from_static("x-strangler-fallback");

/// Body type of responses the facade sends to clients.
pub type ProxyBody = UnsyncBoxBody<Bytes, Box<dyn std::error::Error + Send + Sync>>;

/// The client connection a request arrived on.
#[derive(Debug, Clone)]
pub struct Peer {
    /// The client's address.
    pub addr: SocketAddr,
    /// Its IP address as `X-Forwarded-For` carries it, made once per
    /// connection rather than once per request.
    pub ip: HeaderValue,
}

impl Peer {
    /// The peer at `addr`.
    pub fn new(addr: SocketAddr) -> Self {
        Self {
            addr,
            ip: crate::headers::peer_ip_value(addr),
        }
    }
}

/// The state every proxied request reads.
#[derive(Debug)]
pub struct ProxyState {
    /// The routing table in force; swapped whole on a change.
    pub table: ArcSwap<RouteTable>,
    /// Backends by name (foldhash: the names are the operator's, and one
    /// is looked up for every request).
    pub backends: foldhash::HashMap<String, Arc<Backend>>,
    /// Per-capability policy and runtime state, by capability index.
    pub capabilities: Vec<CapabilityState>,
    /// Request size limits.
    pub limits: Limits,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// Whether to log one line per request.
    pub access_log: bool,
    /// The shadow queue.
    pub shadower: Arc<Shadower>,
    /// Where breached error budgets ask for a rollback.
    pub rollbacks: mpsc::Sender<RollbackRequest>,
}

/// Who caused a failure: decides the status and the error metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fault {
    /// The client sent something the facade refuses.
    Client,
    /// The upstream failed.
    Upstream,
    /// The facade itself has no answer (no route).
    Facade,
}

impl Fault {
    fn as_str(self) -> &'static str {
        match self {
            Fault::Client => "client",
            Fault::Upstream => "upstream",
            Fault::Facade => "facade",
        }
    }
}

pub(crate) fn error_response(
    status: StatusCode,
    fault: Fault,
    message: &str,
    request_id: &HeaderValue,
) -> Response<ProxyBody> {
    let body = json!({
        "error": message,
        "source": fault.as_str(),
        "request_id": request_id.to_str().unwrap_or("-"),
    });
    let mut response = Response::new(full(body.to_string()));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
        .headers_mut()
        .insert(correlation::REQUEST_ID, request_id.clone());
    response
}

fn full(text: String) -> ProxyBody {
    Full::new(Bytes::from(text))
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// Serves one request.
pub async fn handle(
    state: &ProxyState,
    peer: &Peer,
    request: Request<ClientIncoming>,
) -> Result<Response<ProxyBody>, std::convert::Infallible> {
    let started = Instant::now();
    let request_id = correlation::request_id(request.headers());

    // Refusals before routing are counted under capability and backend "-".
    let refuse = |status: StatusCode, message: &str| {
        state
            .metrics
            .request("-", "-", status.as_u16(), started.elapsed());
        Ok(error_response(status, Fault::Client, message, &request_id))
    };
    if let Some((status, problem)) = framing_error(request.headers()) {
        return refuse(status, problem);
    }
    if content_length(request.headers()).is_some_and(|n| n > state.limits.max_body_bytes) {
        let message = format!(
            "the request body exceeds the limit of {} bytes",
            state.limits.max_body_bytes
        );
        return refuse(StatusCode::PAYLOAD_TOO_LARGE, &message);
    }
    let normalized = match path::normalize(request.uri().path()) {
        Ok(path) => path,
        Err(error) => return refuse(StatusCode::BAD_REQUEST, &error.to_string()),
    };
    let original_host = request.headers().get(header::HOST).cloned().or_else(|| {
        request
            .uri()
            .authority()
            .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
    });
    let host = host_of(original_host.as_ref());

    let table = state.table.load();
    let decision = table.decide(
        request.method(),
        host.as_deref(),
        &normalized,
        request.headers(),
        peer.addr.ip(),
    );
    let capability_state = decision.capability_index.and_then(|i| state.capabilities.get(i));
    let capability = capability_state.map_or("-", |c| c.name);
    let Some(backend) = decision.backend.and_then(|name| state.backends.get(name)) else {
        let response = error_response(
            StatusCode::NOT_FOUND,
            Fault::Facade,
            "no route matches this request and no default backend is configured",
            &request_id,
        );
        state.metrics.request(capability, "-", 404, started.elapsed());
        return Ok(response);
    };
    let fallback = decision.fallback.and_then(|name| state.backends.get(name));

    // The usual target needs no normalizing: it goes upstream as it came.
    let uri = match request.uri().path_and_query() {
        Some(target) if target.path() == normalized => Ok(Uri::from(target.clone())),
        _ => Backend::uri(&match request.uri().query() {
            Some(query) => format!("{normalized}?{query}"),
            None => normalized.clone(),
        }),
    };
    let Ok(uri) = uri else {
        return refuse(StatusCode::BAD_REQUEST, "the request target is invalid");
    };
    if let Some(protocol) = wants_upgrade(request.headers()) {
        return Ok(upgrade::forward(
            state,
            backend,
            capability,
            peer,
            request,
            uri,
            protocol,
            original_host,
            &request_id,
            started,
        )
        .await);
    }

    let repeatable = request.method().is_idempotent() || request.headers().contains_key(&IDEMPOTENCY_KEY);
    let (parts, incoming) = request.into_parts();
    let outgoing = Outgoing::new(parts, uri, &peer.ip, original_host, &request_id, None);

    // What the request body must be kept for: sending it again (a retry, a
    // fallback) and a shadow copy. Each has its cap; a body over it is sent
    // once and not shadowed.
    // Copies beyond the shadow rate are not made at all: no capture, no job.
    let shadowing = matches!(decision.shadow, ShadowCopy::To(_))
        && capability_state.is_some_and(|c| state.shadower.admit(c.name));
    let shadow_cap = match capability_state {
        Some(c) if shadowing => Some(c.policy.shadow.max_body_bytes),
        _ => None,
    };
    if let (ShadowCopy::RefusedUnsafeMethod, Some(c)) = (decision.shadow, capability_state) {
        state.shadower.skipped(c.name, SkipReason::UnsafeMethod);
    }
    let resend_cap =
        (repeatable && (backend.resilience.retries > 0 || fallback.is_some())).then_some(REPLAY_LIMIT);
    let mut body = if incoming.is_end_stream() {
        RequestBody::empty()
    } else {
        let copy = shadow_cap.max(resend_cap).map(BodyCopy::new);
        let sent = BodySent::new();
        let client_body = ClientBody::new(
            incoming,
            state.limits.max_body_bytes,
            CLIENT_BODY_IDLE_TIMEOUT,
            Arc::clone(&sent),
            copy.clone(),
        )
        .map_err(|e| Box::new(e) as Box<dyn std::error::Error + Send + Sync>)
        .boxed_unsync();
        RequestBody::streaming(client_body, sent, copy)
    };
    let request_copy = body.copy();

    let plan = Plan {
        primary: backend,
        fallback,
        repeatable,
        capability,
    };
    let dispatched = dispatch(&plan, &outgoing, &mut body, &state.metrics).await;
    drop(body);

    // The error budget counts the service's own answers in canary and
    // service stages; a failure there may roll the capability back.
    if let (Some(Target::Service), Some(stage), Some(index)) =
        (decision.target, decision.stage, decision.capability_index)
    {
        if stage.has_fallback() {
            rollback::record(state, index, stage, dispatched.primary_failed);
        }
    }

    let served_by = dispatched.backend;
    let backend_label = served_by.label;
    let side = match dispatched.fallback_from {
        Some(_) => Target::Legacy,
        None => decision.target.unwrap_or(Target::Legacy),
    };
    let mut response = match dispatched.result {
        Ok(response) => response,
        Err(Failure::Status(response)) => *response,
        Err(failure) => {
            let (status, fault, message) = failure_answer(&failure, served_by);
            tracing::warn!(
                request_id = request_id.to_str().unwrap_or("-"),
                backend = %served_by.name,
                fault = fault.as_str(),
                failure = failure.reason(),
                error = %failure_detail(&failure),
                "upstream call failed"
            );
            state
                .metrics
                .request(capability, backend_label, status.as_u16(), started.elapsed());
            let mut response = error_response(status, fault, &message, &request_id);
            mark_side(
                response.headers_mut(),
                decision.capability.is_some(),
                side,
                dispatched.fallback_from,
            );
            return Ok(response);
        }
    };
    let codings: Vec<&HeaderValue> = response
        .headers()
        .get_all(header::TRANSFER_ENCODING)
        .iter()
        .collect();
    if !only_chunked(&codings) {
        // hyper removed only the chunking; passing the rest on unlabelled
        // would corrupt the body.
        state
            .metrics
            .upstream_error(backend_label, UpstreamErrorKind::Protocol);
        state
            .metrics
            .request(capability, backend_label, 502, started.elapsed());
        return Ok(error_response(
            StatusCode::BAD_GATEWAY,
            Fault::Upstream,
            "the backend answered with a transfer coding other than chunked",
            &request_id,
        ));
    }
    strip_hop_by_hop(response.headers_mut());
    response
        .headers_mut()
        .insert(correlation::REQUEST_ID, request_id.clone());
    mark_side(
        response.headers_mut(),
        decision.capability.is_some(),
        side,
        dispatched.fallback_from,
    );
    let status = response.status();
    state
        .metrics
        .request(capability, backend_label, status.as_u16(), started.elapsed());
    if state.access_log {
        tracing::info!(
            request_id = request_id.to_str().unwrap_or("-"),
            method = %outgoing.method,
            target = %outgoing.uri,
            capability,
            backend = %served_by.name,
            status = status.as_u16(),
            fallback = dispatched.fallback_from.unwrap_or("-"),
            elapsed_ms = started.elapsed().as_secs_f64() * 1000.0,
            "proxied"
        );
    }

    // Shadow: the monolith answered; its answer is copied as it streams and
    // the job offered once the client has it all.
    if let (true, Some(c), Some(index), None) = (
        shadowing,
        capability_state,
        decision.capability_index,
        dispatched.fallback_from,
    ) {
        let pending = PendingShadow {
            shadower: Arc::clone(&state.shadower),
            capability: index,
            name: c.name,
            method: outgoing.method,
            uri: outgoing.uri,
            path: normalized,
            head: outgoing.head,
            original_host: outgoing.original_host,
            request_body: request_copy,
            cap: c.policy.shadow.max_body_bytes,
            request_id: request_id.to_str().unwrap_or("-").to_owned(),
        };
        let (parts, body) = response.into_parts();
        let mut capturing = CapturingBody::new(body, parts.status.as_u16(), parts.headers.clone(), pending);
        capture::finish_if_empty(&mut capturing);
        return Ok(Response::from_parts(
            parts,
            capturing
                .map_err(|e| Box::new(e) as Box<dyn std::error::Error + Send + Sync>)
                .boxed_unsync(),
        ));
    }
    Ok(response.map(|body| {
        body.map_err(|e| Box::new(e) as Box<dyn std::error::Error + Send + Sync>)
            .boxed_unsync()
    }))
}

/// Says on the answer which side served it, and why when it was the
/// fallback.
fn mark_side(headers: &mut HeaderMap, routed: bool, side: Target, fallback_from: Option<&'static str>) {
    if !routed {
        return;
    }
    headers.insert(SERVED_BY, HeaderValue::from_static(side.as_str()));
    if let Some(reason) = fallback_from {
        headers.insert(FALLBACK, HeaderValue::from_static(reason));
    }
}

/// The status, fault and message for a dispatch that got no answer.
fn failure_answer(failure: &Failure, backend: &Backend) -> (StatusCode, Fault, String) {
    match failure {
        Failure::Timeout(limit) => (
            StatusCode::GATEWAY_TIMEOUT,
            Fault::Upstream,
            format!("backend `{}` did not answer within {limit:?}", backend.name),
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
        Failure::CircuitOpen => (
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

fn failure_detail(failure: &Failure) -> String {
    match failure {
        Failure::Connect(error) | Failure::Broken(error) => error_chain(error),
        other => other.reason().to_owned(),
    }
}

/// Whether a failed upstream call failed because of the client's body.
pub(crate) fn is_client_fault(error: &UpstreamError) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(cause) = source {
        if cause.downcast_ref::<ClientBodyError>().is_some() {
            return true;
        }
        source = cause.source();
    }
    false
}

/// Maps a failed upstream call to the answer and to whose fault it was: a
/// failure of the client's body is the client's (413, 408, 400); a refused
/// connection is a 502; anything else that broke on the way is a 502 too.
fn classify(error: &UpstreamError) -> (StatusCode, Fault, UpstreamErrorKind, String) {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(cause) = source {
        if let Some(body_error) = cause.downcast_ref::<ClientBodyError>() {
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
        source = cause.source();
    }
    if error.is_connect() {
        (
            StatusCode::BAD_GATEWAY,
            Fault::Upstream,
            UpstreamErrorKind::Connect,
            "the backend is unreachable".to_owned(),
        )
    } else {
        (
            StatusCode::BAD_GATEWAY,
            Fault::Upstream,
            UpstreamErrorKind::Protocol,
            "the backend closed the connection or answered something unreadable".to_owned(),
        )
    }
}

fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    crate::error_chain::error_chain(error)
}
