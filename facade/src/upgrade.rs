//! Passing a protocol upgrade (WebSocket and the like) through: the request
//! goes to the chosen backend once (an upgrade is never retried or sent to a
//! fallback), and after `101 Switching Protocols` both connections are
//! joined byte for byte until either side closes.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper::header::{HeaderName, HeaderValue};
use hyper::{Request, Response, StatusCode, Uri};
use hyper_util::rt::TokioIo;

use crate::backend::Backend;
use crate::correlation;
use crate::dispatch::Outgoing;
use crate::headers::strip_hop_by_hop;
use crate::metrics::UpstreamErrorKind;
use crate::proxy::{error_response, Fault, ProxyBody, ProxyState};

/// Forwards an upgrade request for `protocol` to `backend`.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn forward(
    state: &ProxyState,
    backend: &Arc<Backend>,
    capability: &'static str,
    peer: SocketAddr,
    mut request: Request<Incoming>,
    uri: Uri,
    protocol: HeaderValue,
    original_host: Option<HeaderValue>,
    request_id: &HeaderValue,
    started: Instant,
) -> Response<ProxyBody> {
    let backend_label = state.metrics.name(&backend.name);
    let client_upgrade = hyper::upgrade::on(&mut request);
    let (parts, _body) = request.into_parts();
    let outgoing = Outgoing::new(parts, uri, peer, original_host, request_id, Some(protocol));
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
    let upstream_request = outgoing.request(backend, picked.instance().authority.as_str(), body);
    let sent = tokio::time::timeout(
        backend.request_timeout,
        picked.instance().pool.send(upstream_request),
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
        let upstream_upgrade = hyper::upgrade::on(&mut response);
        let request_id_text = request_id.to_str().unwrap_or("-").to_owned();
        tokio::spawn(async move {
            match tokio::try_join!(client_upgrade, upstream_upgrade) {
                Ok((client, upstream)) => {
                    let mut client = TokioIo::new(client);
                    let mut upstream = TokioIo::new(upstream);
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
    response.headers_mut().insert(
        HeaderName::from_static(correlation::REQUEST_ID),
        request_id.clone(),
    );
    state
        .metrics
        .request(capability, backend_label, status.as_u16(), started.elapsed());
    response.map(|body| {
        body.map_err(|e| Box::new(e) as Box<dyn std::error::Error + Send + Sync>)
            .boxed_unsync()
    })
}
