//! Passing a protocol upgrade (WebSocket and the like) through: the request
//! goes to the chosen backend once (an upgrade is never retried or sent to a
//! fallback), and after `101 Switching Protocols` both connections are
//! joined byte for byte until either side closes.

use std::sync::Arc;
use std::time::Instant;

use crate::client_body::ClientIncoming;
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::header::HeaderValue;
use hyper::{Request, Response, StatusCode, Uri};
use hyper_util::rt::TokioIo;
use tokio::io::AsyncWriteExt;

use crate::backend::Backend;
use crate::correlation;
use crate::dispatch::Outgoing;
use crate::headers::strip_hop_by_hop;
use crate::metrics::UpstreamErrorKind;
use crate::proxy::{error_response, Fault, Peer, ProxyBody, ProxyState};
use crate::upstream::UpstreamUpgrade;

/// Forwards an upgrade request for `protocol` to `backend`.
#[allow(clippy::too_many_arguments)]
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
    let client_upgrade = hyper::upgrade::on(&mut request);
    let (parts, _body) = request.into_parts();
    let outgoing = Outgoing::new(parts, uri, &peer.ip, original_host, request_id, Some(protocol));
    let Some(picked) = backend.pick() else {
        state
            .metrics
            .request(capability, backend_label, 502, started.elapsed());
        return error_response(
            StatusCode::BAD_GATEWAY,
            Fault::Facade,
            "the backend has no instances",
            request_id,
        );
    };
    let body = Empty::<Bytes>::new()
        .map_err(|never| match never {})
        .boxed_unsync();
    let host = outgoing.host(backend, picked.instance());
    let sent = tokio::time::timeout(
        backend.request_timeout,
        picked.instance().pool.send(&outgoing.head, host, body),
    )
    .await;
    let mut response = match sent {
        Ok(Ok(response)) => response,
        Ok(Err(error)) => {
            let kind = if error.error.is_connect() {
                UpstreamErrorKind::Connect
            } else {
                UpstreamErrorKind::Protocol
            };
            state.metrics.upstream_error(backend_label, kind);
            state
                .metrics
                .request(capability, backend_label, 502, started.elapsed());
            tracing::warn!(request_id = request_id.to_str().unwrap_or("-"), backend = %backend.name, error = %error.error, "upgrade request failed");
            return error_response(
                StatusCode::BAD_GATEWAY,
                Fault::Upstream,
                "the backend is unreachable or closed the connection",
                request_id,
            );
        }
        Err(_) => {
            state
                .metrics
                .upstream_error(backend_label, UpstreamErrorKind::Timeout);
            state
                .metrics
                .request(capability, backend_label, 504, started.elapsed());
            return error_response(
                StatusCode::GATEWAY_TIMEOUT,
                Fault::Upstream,
                &format!(
                    "backend `{}` did not answer within {:?}",
                    backend.name, backend.request_timeout
                ),
                request_id,
            );
        }
    };
    drop(picked);
    let status = response.status();
    if status == StatusCode::SWITCHING_PROTOCOLS {
        let upstream_upgrade = response
            .extensions_mut()
            .remove::<UpstreamUpgrade>()
            .and_then(|upgrade| upgrade.take());
        let request_id_text = request_id.to_str().unwrap_or("-").to_owned();
        tokio::spawn(async move {
            let Some((mut upstream, early)) = upstream_upgrade else {
                tracing::warn!(request_id = %request_id_text, "protocol upgrade failed: the upstream connection is gone");
                return;
            };
            match client_upgrade.await {
                Ok(client) => {
                    let mut client = TokioIo::new(client);
                    // Bytes the upstream sent right after its 101 go first.
                    if !early.is_empty() {
                        if let Err(error) = client.write_all(&early).await {
                            tracing::debug!(request_id = %request_id_text, %error, "upgraded connection ended");
                            return;
                        }
                    }
                    if let Err(error) = tokio::io::copy_bidirectional(&mut client, &mut upstream).await {
                        tracing::debug!(request_id = %request_id_text, %error, "upgraded connection ended");
                    }
                }
                Err(error) => {
                    tracing::warn!(request_id = %request_id_text, %error, "protocol upgrade failed")
                }
            }
        });
    } else {
        strip_hop_by_hop(response.headers_mut());
    }
    response
        .headers_mut()
        .insert(correlation::REQUEST_ID, request_id.clone());
    state
        .metrics
        .request(capability, backend_label, status.as_u16(), started.elapsed());
    response.map(|body| {
        body.map_err(|e| Box::new(e) as Box<dyn std::error::Error + Send + Sync>)
            .boxed_unsync()
    })
}
