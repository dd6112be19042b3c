//! Forwarding a protocol upgrade (WebSocket and the like): the request goes
//! to the chosen backend once (an upgrade is never retried or sent to a
//! fallback), and after `101 Switching Protocols` the wire's tunnel joins
//! both connections ([`crate::wire::tunnel`]).

use std::sync::Arc;
use std::time::Instant;

use hyper::header::HeaderValue;
use hyper::{Request, Response, StatusCode, Uri};

use crate::flow::backend::Backend;
use crate::flow::metrics::UpstreamErrorKind;
use crate::flow::outgoing::Outgoing;
use crate::flow::state::ProxyState;
use crate::flow::trace::TraceHeader;
use crate::wire::body::{self, ProxyBody};
use crate::wire::client_body::ClientIncoming;
use crate::wire::correlation;
use crate::wire::error_response::{error_response, Fault};
use crate::wire::headers::strip_hop_by_hop;
use crate::wire::service::Peer;
use crate::wire::tunnel::{self, UpstreamSide};
use crate::wire::upstream::{AnswerWait, UpstreamError, UpstreamUpgrade};

/// Forwards an upgrade request for `protocol` to `backend`.
#[allow(clippy::too_many_arguments)]
#[tracing::instrument(level = "debug", name = "upgrade", skip_all, fields(capability = capability, backend = backend.label))]
pub(crate) async fn forward(
    state: &ProxyState,
    backend: &Arc<Backend>,
    capability: &'static str,
    peer: &Peer,
    mut request: Request<ClientIncoming>,
    uri: Uri,
    protocol: HeaderValue,
    original_host: Option<HeaderValue>,
    request_id: &HeaderValue,
    started: Instant,
) -> Response<ProxyBody> {
    let backend_label = backend.label;
    // Every way this can fail is counted and answered the same way.
    let refuse = |status: StatusCode, fault: Fault, error: Option<UpstreamErrorKind>, message: &str| {
        if let Some(kind) = error {
            state.metrics.upstream_error(backend_label, kind);
        }
        let elapsed = started.elapsed();
        state
            .metrics
            .request(capability, backend_label, status.as_u16(), elapsed);
        error_response(status, fault, message, request_id)
    };
    let client_upgrade = hyper::upgrade::on(&mut request);
    let (parts, _body) = request.into_parts();
    // Upgrades are not traced: the client's `traceparent` goes on as sent.
    let outgoing = Outgoing::new(
        parts,
        uri,
        peer,
        original_host,
        request_id,
        Some(protocol),
        TraceHeader::Keep,
    );
    let Some(picked) = backend.pick() else {
        return refuse(
            StatusCode::BAD_GATEWAY,
            Fault::Facade,
            None,
            "the backend has no instances",
        );
    };
    if picked.instance().client.is_http2() {
        // An HTTP/2 upstream takes WebSocket only as an extended CONNECT
        // (RFC 8441), which the facade does not translate to.
        return refuse(
            StatusCode::BAD_GATEWAY,
            Fault::Facade,
            None,
            &format!(
                "backend `{}` speaks HTTP/2, where the facade does not forward upgrades (WebSocket); route upgrades to a backend without protocol = \"h2\"",
                backend.name
            ),
        );
    }
    let via_hyper = picked.instance().client.is_hyper();
    let host = outgoing.host(backend, picked.instance());
    let wait = AnswerWait {
        answer_timeout: backend.request_timeout,
        interim: None,
    };
    let sent = tokio::time::timeout(
        backend.request_timeout,
        picked
            .instance()
            .client
            .send(&outgoing.head, host, body::empty(), wait),
    )
    .await;
    let mut response = match sent {
        Ok(Ok(response)) => response,
        Ok(Err(error)) => {
            tracing::warn!(request_id = request_id.to_str().unwrap_or("-"), backend = %backend.name, error = %error.error, "upgrade request failed");
            if let UpstreamError::Tls(reason) = &error.error {
                return refuse(
                    StatusCode::BAD_GATEWAY,
                    Fault::Upstream,
                    Some(UpstreamErrorKind::Tls),
                    &format!("TLS with backend `{}` failed: {reason}", backend.name),
                );
            }
            let kind = if error.error.is_connect() {
                UpstreamErrorKind::Connect
            } else {
                UpstreamErrorKind::Protocol
            };
            return refuse(
                StatusCode::BAD_GATEWAY,
                Fault::Upstream,
                Some(kind),
                "the backend is unreachable or closed the connection",
            );
        }
        Err(_) => {
            let message = format!(
                "backend `{}` did not answer within {:?}",
                backend.name, backend.request_timeout
            );
            return refuse(
                StatusCode::GATEWAY_TIMEOUT,
                Fault::Upstream,
                Some(UpstreamErrorKind::Timeout),
                &message,
            );
        }
    };
    drop(picked);
    let status = response.status();
    if status == StatusCode::SWITCHING_PROTOCOLS {
        let upstream_upgrade = if via_hyper {
            Some(UpstreamSide::Hyper(hyper::upgrade::on(&mut response)))
        } else {
            response
                .extensions_mut()
                .remove::<UpstreamUpgrade>()
                .and_then(|upgrade| upgrade.take())
                .map(|(socket, early)| UpstreamSide::Socket(socket, early))
        };
        let request_id_text = request_id.to_str().unwrap_or("-").to_owned();
        tunnel::spawn(client_upgrade, upstream_upgrade, request_id_text);
    } else {
        strip_hop_by_hop(response.headers_mut());
    }
    response
        .headers_mut()
        .insert(correlation::REQUEST_ID, request_id.clone());
    state
        .metrics
        .request(capability, backend_label, status.as_u16(), started.elapsed());
    response.map(body::boxed)
}
