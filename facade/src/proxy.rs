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
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper::header::{self, HeaderName, HeaderValue};
use hyper::{HeaderMap, Request, Response, StatusCode, Version};
use hyper_util::rt::TokioIo;
use serde_json::json;

use crate::backend::Backend;
use crate::client_body::{ClientBody, ClientBodyError};
use crate::config::{HostHeader, Limits};
use crate::correlation;
use crate::metrics::{Metrics, UpstreamErrorKind};
use crate::path;
use crate::routing::{host_of, RouteTable};
use crate::upstream::UpstreamError;

/// How long a client may pause between two pieces of its request body.
const CLIENT_BODY_IDLE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// Body type of responses the facade sends to clients.
pub type ProxyBody = UnsyncBoxBody<Bytes, Box<dyn std::error::Error + Send + Sync>>;

/// The state every proxied request reads.
#[derive(Debug)]
pub struct ProxyState {
    /// The routing table in force; swapped whole on a change.
    pub table: ArcSwap<RouteTable>,
    /// Backends by name.
    pub backends: std::collections::HashMap<String, Arc<Backend>>,
    /// Request size limits.
    pub limits: Limits,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// Whether to log one line per request.
    pub access_log: bool,
}

/// Who caused a failure: decides the status and the error metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
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

fn error_response(
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
    response.headers_mut().insert(
        HeaderName::from_static(correlation::REQUEST_ID),
        request_id.clone(),
    );
    response
}

fn full(text: String) -> ProxyBody {
    Full::new(Bytes::from(text))
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// Headers that describe one connection, not the message (RFC 9110 §7.6.1).
const HOP_BY_HOP: [HeaderName; 8] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

/// Removes hop-by-hop headers, including those the `Connection` header
/// names, and any `Proxy-*` header.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|token| HeaderName::from_bytes(token.trim().as_bytes()).ok())
        .collect();
    for name in named.iter().chain(HOP_BY_HOP.iter()) {
        headers.remove(name);
    }
    let proxy: Vec<HeaderName> = headers
        .keys()
        .filter(|name| name.as_str().starts_with("proxy-"))
        .cloned()
        .collect();
    for name in proxy {
        headers.remove(name);
    }
}

/// Whether the request asks to switch protocols (WebSocket and the like).
fn wants_upgrade(headers: &HeaderMap) -> Option<HeaderValue> {
    let connection_upgrade = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|token| token.trim().eq_ignore_ascii_case("upgrade"));
    if connection_upgrade {
        headers.get(header::UPGRADE).cloned()
    } else {
        None
    }
}

/// Refuses requests whose body framing the facade cannot pass on exactly.
///
/// hyper parses the head first: it answers differing `Content-Length`
/// values with 400 itself, and for `Content-Length` together with
/// `Transfer-Encoding` it lets `Transfer-Encoding` win, drops the length and
/// closes the connection after the answer (RFC 9112 §6.1), so the upstream
/// only ever sees one framing. This check is the second line: it refuses
/// both headers if they still arrive together, and refuses any transfer
/// coding but `chunked` with 501, because the facade removes the chunking
/// and would otherwise hand the upstream coded bytes as plain ones.
fn framing_error(headers: &HeaderMap) -> Option<(StatusCode, &'static str)> {
    let lengths: Vec<&HeaderValue> = headers.get_all(header::CONTENT_LENGTH).iter().collect();
    let codings: Vec<&HeaderValue> = headers.get_all(header::TRANSFER_ENCODING).iter().collect();
    if !lengths.is_empty() && !codings.is_empty() {
        return Some((
            StatusCode::BAD_REQUEST,
            "the request has both Content-Length and Transfer-Encoding; send one",
        ));
    }
    if lengths.windows(2).any(|pair| pair[0] != pair[1]) {
        return Some((
            StatusCode::BAD_REQUEST,
            "the request has differing Content-Length headers",
        ));
    }
    if !only_chunked(&codings) {
        return Some((
            StatusCode::NOT_IMPLEMENTED,
            "the facade only forwards the `chunked` transfer coding; send the body with Content-Encoding instead",
        ));
    }
    None
}

/// Whether every listed transfer coding is `chunked` (or there is none).
fn only_chunked(codings: &[&HeaderValue]) -> bool {
    codings
        .iter()
        .flat_map(|v| v.to_str().unwrap_or("?").split(','))
        .all(|coding| coding.trim().eq_ignore_ascii_case("chunked"))
}

fn content_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// Appends the client's address to `X-Forwarded-For` and sets the other
/// `X-Forwarded-*` headers from what the client sent.
fn add_forwarded(headers: &mut HeaderMap, peer: SocketAddr, original_host: Option<HeaderValue>) {
    // Every earlier hop counts, whether it came as one list or several headers.
    let mut forwarded_for = String::new();
    for value in headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
    {
        forwarded_for.push_str(value);
        forwarded_for.push_str(", ");
    }
    forwarded_for.push_str(&peer.ip().to_string());
    if let Ok(value) = HeaderValue::from_str(&forwarded_for) {
        headers.insert("x-forwarded-for", value);
    }
    headers.insert("x-forwarded-proto", HeaderValue::from_static("http"));
    if let Some(host) = original_host {
        headers.insert("x-forwarded-host", host);
    }
}

/// Serves one request.
pub async fn handle(
    state: Arc<ProxyState>,
    peer: SocketAddr,
    mut request: Request<Incoming>,
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
    let decision = table.decide(request.method(), host.as_deref(), &normalized, request.headers());
    let capability = state.metrics.name(decision.capability.unwrap_or("-"));
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
    let backend_label = state.metrics.name(&backend.name);
    let Some(picked) = backend.pick() else {
        let response = error_response(
            StatusCode::BAD_GATEWAY,
            Fault::Facade,
            "the backend has no instances",
            &request_id,
        );
        state
            .metrics
            .request(capability, backend_label, 502, started.elapsed());
        return Ok(response);
    };

    let path_and_query = match request.uri().query() {
        Some(query) => format!("{normalized}?{query}"),
        None => normalized,
    };
    let uri = match Backend::uri(&path_and_query) {
        Ok(uri) => uri,
        Err(_) => {
            return Ok(error_response(
                StatusCode::BAD_REQUEST,
                Fault::Client,
                "the request target is invalid",
                &request_id,
            ));
        }
    };
    let upgrade = wants_upgrade(request.headers());
    let client_upgrade = upgrade.as_ref().map(|_| hyper::upgrade::on(&mut request));

    let (mut parts, body) = request.into_parts();
    strip_hop_by_hop(&mut parts.headers);
    if let Some(protocol) = &upgrade {
        parts
            .headers
            .insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        parts.headers.insert(header::UPGRADE, protocol.clone());
    }
    add_forwarded(&mut parts.headers, peer, original_host.clone());
    match backend.host_header {
        HostHeader::Preserve => {
            // HTTP/1.1 needs a Host: without one from the client (HTTP/1.0,
            // or HTTP/2's :authority), the instance's is used.
            let host =
                original_host.or_else(|| HeaderValue::from_str(picked.instance().authority.as_str()).ok());
            if let Some(host) = host {
                parts.headers.insert(header::HOST, host);
            }
        }
        HostHeader::Rewrite => {
            if let Ok(value) = HeaderValue::from_str(picked.instance().authority.as_str()) {
                parts.headers.insert(header::HOST, value);
            }
        }
    }
    parts.headers.insert(
        HeaderName::from_static(correlation::REQUEST_ID),
        request_id.clone(),
    );
    parts.uri = uri;
    parts.version = Version::HTTP_11;
    let method = parts.method.clone();
    let (body_sent, body_finished) = tokio::sync::oneshot::channel();
    let upstream_body = if upgrade.is_some() {
        let _ = body_sent.send(());
        Empty::<Bytes>::new()
            .map_err(|never| match never {})
            .boxed_unsync()
    } else {
        ClientBody::new(
            body,
            state.limits.max_body_bytes,
            CLIENT_BODY_IDLE_TIMEOUT,
            body_sent,
        )
        .map_err(|e| Box::new(e) as Box<dyn std::error::Error + Send + Sync>)
        .boxed_unsync()
    };
    let upstream_request = Request::from_parts(parts, upstream_body);

    // The upstream's clock starts once the whole body is sent: a slow client
    // upload is not the upstream being slow.
    let request_timeout = backend.request_timeout;
    let upstream_deadline = async move {
        let _ = body_finished.await;
        tokio::time::sleep(request_timeout).await;
    };
    let sent = tokio::select! {
        result = picked.instance().pool.send(upstream_request) => Some(result),
        () = upstream_deadline => None,
    };
    let mut response = match sent {
        Some(Ok(response)) => response,
        Some(Err(error)) => {
            let (status, fault, kind, message) = classify(&error);
            if fault == Fault::Upstream {
                state.metrics.upstream_error(backend_label, kind);
            }
            tracing::warn!(
                request_id = request_id.to_str().unwrap_or("-"),
                backend = %backend.name,
                instance = %picked.instance().authority,
                fault = fault.as_str(),
                error = %error_chain(&error),
                "upstream call failed"
            );
            state
                .metrics
                .request(capability, backend_label, status.as_u16(), started.elapsed());
            return Ok(error_response(status, fault, &message, &request_id));
        }
        None => {
            state
                .metrics
                .upstream_error(backend_label, UpstreamErrorKind::Timeout);
            tracing::warn!(
                request_id = request_id.to_str().unwrap_or("-"),
                backend = %backend.name,
                timeout_ms = request_timeout.as_millis() as u64,
                "upstream did not answer in time"
            );
            state
                .metrics
                .request(capability, backend_label, 504, started.elapsed());
            let message = format!(
                "backend `{}` did not answer within {:?}",
                backend.name, request_timeout
            );
            return Ok(error_response(
                StatusCode::GATEWAY_TIMEOUT,
                Fault::Upstream,
                &message,
                &request_id,
            ));
        }
    };
    let status = response.status();
    if status == StatusCode::SWITCHING_PROTOCOLS {
        if let Some(client_upgrade) = client_upgrade {
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
        }
    } else {
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
    }
    response.headers_mut().insert(
        HeaderName::from_static(correlation::REQUEST_ID),
        request_id.clone(),
    );
    state
        .metrics
        .request(capability, backend_label, status.as_u16(), started.elapsed());
    if state.access_log {
        tracing::info!(
            request_id = request_id.to_str().unwrap_or("-"),
            %method,
            path = %path_and_query,
            capability,
            backend = %backend.name,
            status = status.as_u16(),
            elapsed_ms = started.elapsed().as_secs_f64() * 1000.0,
            "proxied"
        );
    }
    drop(picked);
    Ok(response.map(|body| {
        body.map_err(|e| Box::new(e) as Box<dyn std::error::Error + Send + Sync>)
            .boxed_unsync()
    }))
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
    service_runtime::api_error::error_chain(error)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_hop_by_hop_and_connection_named_headers() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, X-Secret-Hop"),
        );
        headers.insert("x-secret-hop", HeaderValue::from_static("1"));
        headers.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        headers.insert(header::TE, HeaderValue::from_static("trailers"));
        headers.insert("proxy-connection", HeaderValue::from_static("keep-alive"));
        headers.insert("x-kept", HeaderValue::from_static("yes"));
        strip_hop_by_hop(&mut headers);
        assert_eq!(headers.len(), 1, "{headers:?}");
        assert!(headers.contains_key("x-kept"));
    }

    #[test]
    fn refuses_ambiguous_framing() {
        let mut headers = HeaderMap::new();
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from_static("5"));
        assert_eq!(framing_error(&headers), None);
        headers.insert(header::TRANSFER_ENCODING, HeaderValue::from_static("chunked"));
        assert!(framing_error(&headers).is_some());
        let mut headers = HeaderMap::new();
        headers.insert(
            header::TRANSFER_ENCODING,
            HeaderValue::from_static("gzip, chunked"),
        );
        assert_eq!(
            framing_error(&headers).map(|(s, _)| s),
            Some(StatusCode::NOT_IMPLEMENTED)
        );
        headers.insert(header::TRANSFER_ENCODING, HeaderValue::from_static("Chunked"));
        assert_eq!(framing_error(&headers), None);
        let mut headers = HeaderMap::new();
        headers.append(header::CONTENT_LENGTH, HeaderValue::from_static("5"));
        headers.append(header::CONTENT_LENGTH, HeaderValue::from_static("6"));
        assert!(framing_error(&headers).is_some());
    }

    #[test]
    fn appends_to_x_forwarded_for() {
        let mut headers = HeaderMap::new();
        headers.insert("x-forwarded-for", HeaderValue::from_static("10.0.0.1"));
        add_forwarded(
            &mut headers,
            "127.0.0.2:5000".parse().unwrap(),
            Some(HeaderValue::from_static("shop.example")),
        );
        assert_eq!(headers["x-forwarded-for"], "10.0.0.1, 127.0.0.2");
        assert_eq!(headers["x-forwarded-host"], "shop.example");
        assert_eq!(headers["x-forwarded-proto"], "http");
    }
}
