//! Serving one request, in four steps:
//!
//! 1. [`refuse`] what the facade will not forward, before routing: a body
//!    whose framing could be read two ways, a declared body over the
//!    limit, a path that does not normalize safely;
//! 2. [`route`] it: the pure decision over the table in force, and the
//!    backends it names;
//! 3. [`forward`] it: make the request as upstreams get it, keeping of its
//!    body what a retry, the fallback or a shadow copy needs, and send it
//!    with the backend's safety net ([`dispatch`]);
//! 4. [`finish`] the answer: count it, say which side served it, and copy
//!    the monolith's answer for the shadow comparison as it streams.
//!
//! Bodies are streamed, never buffered: a request body goes upstream as the
//! client sends it, within the size limit; an answer goes back as the
//! upstream sends it.
//!
//! This is the hot path, tuned against nginx: the steps borrow the request
//! and the state, copy nothing they can borrow, and take no lock. Each step
//! has a debug span with `skip_all`; with the default filter (info) a span
//! costs a check of its level, its fields are never evaluated, and an async
//! step's future is awaited as it is, not wrapped.
//!
//! [`dispatch`]: crate::flow::dispatch

use std::borrow::Cow;
use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use hyper::body::Body;
use hyper::header::{self, HeaderValue};
use hyper::{Request, Response, StatusCode, Uri, Version};

use crate::decision::path;
use crate::decision::routing::{host_of, Decision, RouteTable, ShadowCopy, Target};
use crate::flow::answer::{failure_answer, failure_detail, log_access, mark_side, unforwardable_coding};
use crate::flow::backend::Backend;
use crate::flow::capability_state::CapabilityState;
use crate::flow::dispatch::{
    dispatch, Dispatched, Failure, FallbackCause, Plan, PrimaryOutcome, RequestBody,
};
use crate::flow::exchange::{Exchange, Refusal};
use crate::flow::grpc::{self, GrpcCall};
use crate::flow::idempotency_keys::{self, IDEMPOTENCY_KEY};
use crate::flow::outgoing::Outgoing;
use crate::flow::rollback;
use crate::flow::shadow::capture::{self, CapturingBody, PendingShadow};
use crate::flow::shadow::SkipReason;
use crate::flow::state::ProxyState;
use crate::flow::trace::Trace;
use crate::flow::upgrade;
use crate::wire::body::{self, ProxyBody};
use crate::wire::client_body::{BodyCopy, BodySent, ClientBody, ClientIncoming};
use crate::wire::correlation;
use crate::wire::error_response::error_response;
use crate::wire::headers::{request_length, strip_hop_by_hop, wants_upgrade};
use crate::wire::http1;
use crate::wire::proxy_protocol::ProxyHeaderFailure;
use crate::wire::service::{Handler, Peer};
use crate::wire::tls::server::HandshakeFailure;
use crate::wire::upstream::UpstreamBody;

/// How long a client may pause between two pieces of its request body.
const CLIENT_BODY_IDLE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// Largest request body kept to be sent again (a retry or a fallback);
/// larger bodies are sent once.
const REPLAY_LIMIT: usize = 1024 * 1024;

impl Handler for ProxyState {
    #[inline]
    fn handle(
        &self,
        peer: &Peer,
        request: Request<ClientIncoming>,
    ) -> impl Future<Output = Response<ProxyBody>> + Send {
        handle(self, peer, request)
    }

    fn tls_handshake_failed(&self, failure: HandshakeFailure) {
        self.metrics.tls_handshake_failed(failure);
    }

    fn proxy_header_refused(&self, failure: ProxyHeaderFailure) {
        self.metrics.proxy_header_refused(failure);
    }
}

/// Where [`route`] sends a request.
struct Routed<'s, 't> {
    /// The decision, which the steps after forwarding read too (the error
    /// budget, the side, the shadow copy).
    decision: Decision<'t>,
    /// The capability's runtime state, when a route matched.
    capability: Option<&'s CapabilityState>,
    /// The capability's metric label, `-` without one.
    label: &'static str,
    /// The backend that gets the request.
    backend: &'s Arc<Backend>,
    /// The backend that answers when it fails, if the stage allows.
    fallback: Option<&'s Arc<Backend>>,
}

/// The request's target and `Host` as they go upstream; forwarding takes
/// them.
struct Upstream {
    uri: Uri,
    original_host: Option<HeaderValue>,
}

/// A request ready to go upstream, as [`forward`] makes it.
struct Forwarding {
    /// The request as upstreams get it.
    outgoing: Outgoing,
    /// Its body, with what sending it again needs.
    body: RequestBody,
    /// An idempotent method.
    idempotent: bool,
    /// Not idempotent, but with an `Idempotency-Key`.
    keyed: bool,
    /// Whether a shadow copy was admitted.
    shadowing: bool,
    /// The request body's copy, if one was kept.
    request_copy: Option<Arc<BodyCopy>>,
    /// Set for a gRPC call.
    grpc: Option<GrpcCall>,
}

/// What the dispatch got back, with what [`finish`] needs of the request.
struct Forwarded<'s> {
    dispatched: Dispatched<'s>,
    /// The request as upstreams got it: for the access log and the shadow
    /// copy.
    outgoing: Outgoing,
    /// Whether a shadow copy was admitted.
    shadowing: bool,
    /// The request body's copy, if one was kept.
    request_copy: Option<Arc<BodyCopy>>,
    /// Set for a gRPC call: a failure is answered in gRPC's terms.
    grpc: Option<GrpcCall>,
}

/// Serves one request: refuse, route, forward, finish. An upgrade is
/// forwarded on its own path ([`upgrade::forward`]), which finishes it too.
pub(crate) async fn handle(
    state: &ProxyState,
    peer: &Peer,
    request: Request<ClientIncoming>,
) -> Response<ProxyBody> {
    let x = Exchange {
        state,
        peer,
        client: if state.trusted_proxies.is_empty() {
            peer.addr.ip()
        } else {
            state.trusted_proxies.client(peer.addr.ip(), request.headers())
        },
        started: Instant::now(),
        request_id: correlation::request_id(request.headers()),
        trace: Trace::begin(state.tracing.as_ref(), &request),
    };
    let path::Normalized {
        path: normalized,
        dot_segments_removed,
    } = match refuse(&x, &request) {
        Ok(normalized) => normalized,
        Err(refusal) => return x.refused(refusal),
    };
    // A request sees one table from start to end, even if it is swapped
    // meanwhile.
    let table = state.table.load();
    let (mut routed, upstream) = match route(&x, &table, &request, &normalized, dot_segments_removed) {
        Ok(routed) => routed,
        Err(refusal) => return x.refused(refusal),
    };
    // A repeated keyed write goes where its key went first, with no
    // fallback: the other side would act on it again.
    let keyed = idempotency_keys::keyed_write(
        request.method(),
        request.headers(),
        routed.decision.capability_index,
    );
    if let Some((backend, side)) = keyed
        .as_ref()
        .and_then(|(capability, key)| (state.idempotency_keys).first_place(&state.backends, *capability, key))
    {
        routed.backend = backend;
        routed.fallback = None;
        routed.decision.target = Some(side);
        routed.decision.fallback = None;
    }
    if let Some(protocol) = wants_upgrade(request.headers()) {
        return upgrade::forward(
            state,
            routed.backend,
            routed.label,
            peer,
            request,
            upstream.uri,
            protocol,
            upstream.original_host,
            &x.request_id,
            x.started,
        )
        .await;
    }
    let mut forwarding = forward(&x, &routed, upstream, request);
    // Awaited here, not inside `forward`: the dispatch's state is most of a
    // request's, and one more layer of future would copy all of it again.
    let plan = Plan {
        primary: routed.backend,
        fallback: routed.fallback,
        idempotent: forwarding.idempotent,
        keyed: forwarding.keyed,
        capability: routed.label,
        interim: peer.interim.as_ref(),
        deadline: forwarding.grpc.and_then(|call| call.deadline),
        trace: x.traced(),
    };
    let dispatched = dispatch(&plan, &forwarding.outgoing, &mut forwarding.body, &state.metrics).await;
    drop(forwarding.body);
    if let Some((capability, key)) = keyed {
        let first = idempotency_keys::Pinned::of(&dispatched, routed.decision.target);
        (state.idempotency_keys).remember(capability, key.as_bytes(), first, std::time::Instant::now());
    }
    let forwarded = Forwarded {
        dispatched,
        outgoing: forwarding.outgoing,
        shadowing: forwarding.shadowing,
        request_copy: forwarding.request_copy,
        grpc: forwarding.grpc,
    };
    finish(&x, &routed, forwarded, normalized)
}

/// Refuses, before routing, what the facade will not forward; returns the
/// normalized path otherwise. Framing is checked first: a request whose
/// body could be read two ways is refused whatever its path.
#[inline]
#[tracing::instrument(level = "debug", skip_all, fields(request_id = x.request_id()))]
fn refuse(x: &Exchange<'_>, request: &Request<ClientIncoming>) -> Result<path::Normalized, Refusal> {
    // The fast path checked `Host` as it parsed the head; hyper does not.
    if request.version() == Version::HTTP_11 && !matches!(request.body(), ClientIncoming::Fast(_)) {
        host_field(request.headers())
            .map_err(|problem| Refusal::Client(StatusCode::BAD_REQUEST, Cow::Borrowed(problem)))?;
    }
    let limit = x.state.limits.max_body_bytes;
    match request_length(request.headers()) {
        Err((status, problem)) => return Err(Refusal::Client(status, Cow::Borrowed(problem))),
        Ok(Some(length)) if length > limit => {
            let message = format!("the request body exceeds the limit of {limit} bytes");
            return Err(Refusal::Client(
                StatusCode::PAYLOAD_TOO_LARGE,
                Cow::Owned(message),
            ));
        }
        Ok(_) => {}
    }
    path::normalize_for_routing(request.uri().path())
        .map_err(|error| Refusal::Client(StatusCode::BAD_REQUEST, Cow::Owned(error.to_string())))
}

/// Checks an HTTP/1.1 request's `Host` as RFC 9112 §3.2 asks of a server:
/// exactly one field, holding a host and an optional port (or nothing, for
/// a target without an authority). Otherwise the request is a 400.
fn host_field(headers: &hyper::HeaderMap) -> Result<(), &'static str> {
    let mut hosts = headers.get_all(header::HOST).iter();
    match (hosts.next(), hosts.next()) {
        (Some(host), None) if http1::is_host(host.as_bytes()) => Ok(()),
        _ => Err(http1::BAD_HOST),
    }
}

/// Decides where the request goes, finds the backends the decision names,
/// and makes the target it goes upstream with.
#[inline]
#[tracing::instrument(level = "debug", skip_all, fields(path = normalized))]
fn route<'s, 't>(
    x: &Exchange<'s>,
    table: &'t RouteTable,
    request: &Request<ClientIncoming>,
    normalized: &str,
    dot_segments_removed: bool,
) -> Result<(Routed<'s, 't>, Upstream), Refusal> {
    let state = x.state;
    // An absolute-form target names the host, and a proxy uses it instead
    // of `Host` (RFC 9112 §3.2.2); HTTP/2's `:authority` arrives there too.
    let original_host = match request.uri().authority() {
        Some(authority) => HeaderValue::from_str(authority.as_str()).ok(),
        None => request.headers().get(header::HOST).cloned(),
    };
    let host = host_of(original_host.as_ref());
    let decision = table.decide(
        request.method(),
        host.as_deref(),
        normalized,
        request.headers(),
        x.client,
    );
    let capability = decision.capability_index.and_then(|i| state.capabilities.get(i));
    let label = capability.map_or("-", |c| c.name);
    let Some(backend) = decision.backend.and_then(|name| state.backends.get(name)) else {
        return Err(Refusal::NoRoute { capability: label });
    };
    let fallback = decision.fallback.and_then(|name| state.backends.get(name));
    // The target goes upstream as the client sent it, unless a dot segment
    // had to be removed: the upstream then gets the path the facade routed.
    let uri = match request.uri().path_and_query() {
        Some(target) if !dot_segments_removed => Ok(Uri::from(target.clone())),
        _ => Backend::uri(&match request.uri().query() {
            Some(query) => format!("{normalized}?{query}"),
            None => normalized.to_owned(),
        }),
    };
    let Ok(uri) = uri else {
        let message = Cow::Borrowed("the request target is invalid");
        return Err(Refusal::Client(StatusCode::BAD_REQUEST, message));
    };
    let routed = Routed {
        decision,
        capability,
        label,
        backend,
        fallback,
    };
    Ok((routed, Upstream { uri, original_host }))
}

/// Makes the request as upstreams get it, and its body with a copy only as
/// large as what needs one: sending it again (a retry, the fallback), or
/// the shadow copy, each with its cap. Copies beyond the shadow rate are
/// not made at all: no capture, no job. The caller sends it with the
/// backend's safety net ([`dispatch`]).
#[inline]
#[tracing::instrument(
    level = "debug",
    skip_all,
    fields(request_id = x.request_id(), capability = routed.label, backend = routed.backend.label)
)]
fn forward(
    x: &Exchange<'_>,
    routed: &Routed<'_, '_>,
    upstream: Upstream,
    request: Request<ClientIncoming>,
) -> Forwarding {
    let state = x.state;
    let idempotent = request.method().is_idempotent();
    let keyed = !idempotent && request.headers().contains_key(&IDEMPOTENCY_KEY);
    // Worth a copy of the body only if some backend may get it again.
    let repeatable = idempotent
        || (keyed
            && (routed.backend.honours_idempotency_key
                || routed
                    .fallback
                    .is_some_and(|fallback| fallback.honours_idempotency_key)));
    let (parts, incoming) = request.into_parts();
    let grpc = grpc::call_of(&parts.headers);
    let outgoing = Outgoing::new(
        parts,
        upstream.uri,
        x.peer,
        upstream.original_host,
        &x.request_id,
        None,
        x.trace.header(),
    );
    let shadowing = matches!(routed.decision.shadow, ShadowCopy::To(_))
        && routed.capability.is_some_and(|c| state.shadower.admit(c.name));
    let shadow_cap = match routed.capability {
        Some(c) if shadowing => Some(c.policy.shadow.max_body_bytes),
        _ => None,
    };
    if let (ShadowCopy::RefusedUnsafeMethod, Some(c)) = (routed.decision.shadow, routed.capability) {
        state.shadower.skipped(c.name, SkipReason::UnsafeMethod);
    }
    let resend_cap = (repeatable && (routed.backend.resilience.retries > 0 || routed.fallback.is_some()))
        .then_some(REPLAY_LIMIT);
    let body = if incoming.is_end_stream() {
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
        );
        RequestBody::streaming(body::boxed(client_body), sent, copy)
    };
    let request_copy = body.copy();
    Forwarding {
        outgoing,
        body,
        idempotent,
        keyed,
        shadowing,
        request_copy,
        grpc,
    }
}

/// Makes the client's answer of what forwarding got back: counts it (the
/// error budget, the metrics, the access log), marks the side that served
/// it, and, when shadowing, copies the monolith's answer as it streams.
#[inline]
#[tracing::instrument(level = "debug", skip_all, fields(request_id = x.request_id()))]
fn finish(
    x: &Exchange<'_>,
    routed: &Routed<'_, '_>,
    forwarded: Forwarded<'_>,
    normalized: String,
) -> Response<ProxyBody> {
    let state = x.state;
    let decision = &routed.decision;
    let Forwarded {
        dispatched,
        outgoing,
        shadowing,
        request_copy,
        grpc,
    } = forwarded;
    // The error budget counts the service's own answers in canary and
    // service stages; a failure there may roll the capability back.
    if let (Some(Target::Service), Some(stage), Some(index)) =
        (decision.target, decision.stage, decision.capability_index)
    {
        let failed = match dispatched.primary {
            PrimaryOutcome::Answered => Some(false),
            PrimaryOutcome::Failed => Some(true),
            PrimaryOutcome::NotTried => None,
        };
        if let (true, Some(failed)) = (stage.has_fallback(), failed) {
            rollback::record(&state.capabilities, &state.rollbacks, index, stage, failed);
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
            return failed(
                x,
                routed,
                &failure,
                served_by,
                side,
                dispatched.fallback_from,
                grpc.is_some(),
            )
        }
    };
    if let Some(refused) = unforwardable_coding(
        &state.metrics,
        routed.label,
        backend_label,
        x.started,
        &x.request_id,
        &response,
    ) {
        x.span_ended(
            &routed.decision,
            refused.status(),
            served_by,
            dispatched.fallback_from,
            false,
            None,
        );
        return refused;
    }
    strip_hop_by_hop(response.headers_mut());
    response
        .headers_mut()
        .insert(correlation::REQUEST_ID, x.request_id.clone());
    mark_side(
        response.headers_mut(),
        decision.capability.is_some(),
        side,
        dispatched.fallback_from,
    );
    let status = response.status();
    state
        .metrics
        .request(routed.label, backend_label, status.as_u16(), x.started.elapsed());
    x.span_ended(
        &routed.decision,
        status,
        served_by,
        dispatched.fallback_from,
        shadowing,
        None,
    );
    if state.access_log {
        log_access(
            x.log_ids(),
            routed.label,
            &outgoing,
            served_by,
            status,
            dispatched.fallback_from,
            x.started,
        );
    }
    // Shadow: the monolith answered; its answer is copied as it streams and
    // the job offered once the client has it all.
    if let (true, Some(capability), Some(index), None) = (
        shadowing,
        routed.capability,
        decision.capability_index,
        dispatched.fallback_from,
    ) {
        return captured(x, capability, index, outgoing, normalized, request_copy, response);
    }
    response.map(body::boxed)
}

/// The answer when no upstream answered: a status that says whose fault it
/// was, and the failure logged with its causes.
fn failed(
    x: &Exchange<'_>,
    routed: &Routed<'_, '_>,
    failure: &Failure,
    served_by: &Backend,
    side: Target,
    fallback_from: Option<FallbackCause>,
    grpc_call: bool,
) -> Response<ProxyBody> {
    let (status, fault, message) = failure_answer(failure, served_by);
    let ids = x.log_ids();
    tracing::warn!(
        request_id = ids.request_id,
        trace_id = ids.trace.map(|(trace, _)| display(trace)),
        span_id = ids.trace.and_then(|(_, span)| span).map(display),
        client = %ids.client,
        backend = %served_by.name,
        fault = fault.as_str(),
        failure = failure.reason(),
        error = %failure_detail(failure),
        "upstream call failed"
    );
    x.state.metrics.request(
        routed.label,
        served_by.label,
        status.as_u16(),
        x.started.elapsed(),
    );
    let mut response = if grpc_call {
        grpc::failure_answer(grpc::status_of(failure), &message, &x.request_id)
    } else {
        error_response(status, fault, &message, &x.request_id)
    };
    mark_side(
        response.headers_mut(),
        routed.decision.capability.is_some(),
        side,
        fallback_from,
    );
    x.span_ended(
        &routed.decision,
        status,
        served_by,
        fallback_from,
        false,
        Some(failure.reason()),
    );
    response
}

/// The monolith's answer with a copy kept as it streams for the shadow
/// comparison of capability `index`; the job is offered once the client has
/// had the answer in full. `path` is the normalized path, for samples.
fn captured(
    x: &Exchange<'_>,
    capability: &CapabilityState,
    index: usize,
    outgoing: Outgoing,
    path: String,
    request_copy: Option<Arc<BodyCopy>>,
    response: Response<UpstreamBody>,
) -> Response<ProxyBody> {
    let pending = PendingShadow {
        shadower: Arc::clone(&x.state.shadower),
        capability: index,
        name: capability.name,
        method: outgoing.method,
        uri: outgoing.uri,
        path,
        head: outgoing.head,
        original_host: outgoing.original_host,
        request_body: request_copy,
        cap: capability.policy.shadow.max_body_bytes,
        request_id: x.request_id().to_owned(),
        link: x.trace.link(),
    };
    let (parts, upstream_body) = response.into_parts();
    let mut capturing = CapturingBody::new(
        upstream_body,
        parts.status.as_u16(),
        parts.headers.clone(),
        pending,
    );
    capture::finish_if_empty(&mut capturing);
    Response::from_parts(parts, body::boxed(capturing))
}
