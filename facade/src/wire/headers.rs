//! Header rules of a proxy: hop-by-hop headers removed (RFC 9110 §7.6.1),
//! `X-Forwarded-*` added, ambiguous body framing refused, upgrades spotted.

use std::net::SocketAddr;

use hyper::header::{self, HeaderName, HeaderValue};
use hyper::{HeaderMap, StatusCode};

use crate::wire::content_length::{self, Lists};

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

/// `X-Forwarded-For`.
pub(crate) const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
/// `X-Forwarded-Proto`.
pub(crate) const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
/// `X-Forwarded-Host`.
pub(crate) const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
/// The client certificate the facade verified, for upstreams (mutual TLS).
pub(crate) const X_FORWARDED_CLIENT_CERT: HeaderName = HeaderName::from_static("x-forwarded-client-cert");

/// Whether `name` describes one connection rather than the message (the
/// fields a `Connection` header lists aside).
pub(crate) fn is_hop_by_hop(name: &HeaderName) -> bool {
    HOP_BY_HOP.contains(name) || name.as_str().starts_with("proxy-")
}

/// Removes hop-by-hop headers, including those the `Connection` header
/// names, and any `Proxy-*` header.
///
/// This runs twice on every proxied request (once each way), so the
/// common case, no such header at all, is one scan over the names without
/// a lookup or an allocation.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let is_hop = is_hop_by_hop;
    if !headers.keys().any(is_hop) {
        return;
    }
    // `Connection` usually lists only options (`keep-alive`, `close`) or
    // headers removed anyway; other names it lists are collected.
    let listed: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|token| {
            !token.eq_ignore_ascii_case("close")
                && !HOP_BY_HOP
                    .iter()
                    .any(|hop| token.eq_ignore_ascii_case(hop.as_str()))
        })
        .filter_map(|token| HeaderName::from_bytes(token.as_bytes()).ok())
        .filter(|name| !is_hop(name))
        .collect();
    for name in listed {
        headers.remove(name);
    }
    while let Some(name) = headers.keys().find(|name| is_hop(name)).cloned() {
        headers.remove(name);
    }
}

/// Whether the request asks to switch protocols (WebSocket and the like).
pub(crate) fn wants_upgrade(headers: &HeaderMap) -> Option<HeaderValue> {
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

/// Why a request's body framing is refused: the status and the message.
pub(crate) type FramingError = (StatusCode, &'static str);

/// The request body's declared length (`None` without a `Content-Length`),
/// or why its framing is refused: the facade forwards only a body it can
/// pass on exactly.
///
/// hyper parses the head first: it answers differing or invalid
/// `Content-Length` values with 400 itself, and for `Content-Length`
/// together with `Transfer-Encoding` it lets `Transfer-Encoding` win, drops
/// the length and closes the connection after the answer (RFC 9112 §6.1),
/// so the upstream only ever sees one framing. This check is the second
/// line: it refuses both headers if they still arrive together, differing
/// or invalid lengths (as hyper would, with 400), and any transfer coding
/// but `chunked` with 501, because the facade removes the chunking and
/// would otherwise hand the upstream coded bytes as plain ones. A list of
/// identical lengths (`5, 5`), which hyper takes, is read as that length.
pub(crate) fn request_length(headers: &HeaderMap) -> Result<Option<u64>, FramingError> {
    let mut lengths = headers.get_all(header::CONTENT_LENGTH).iter();
    let first = lengths.next();
    // Most requests have no body, or one plain length: nothing else to
    // look at.
    if lengths.next().is_some() || headers.contains_key(header::TRANSFER_ENCODING) {
        let lengths: Vec<&HeaderValue> = headers.get_all(header::CONTENT_LENGTH).iter().collect();
        let codings: Vec<&HeaderValue> = headers.get_all(header::TRANSFER_ENCODING).iter().collect();
        if !lengths.is_empty() && !codings.is_empty() {
            return Err((
                StatusCode::BAD_REQUEST,
                "the request has both Content-Length and Transfer-Encoding; send one",
            ));
        }
        if lengths.windows(2).any(|pair| pair[0] != pair[1]) {
            return Err((
                StatusCode::BAD_REQUEST,
                "the request has differing Content-Length headers",
            ));
        }
        if !only_chunked(&codings) {
            return Err((
                StatusCode::NOT_IMPLEMENTED,
                "the facade only forwards the `chunked` transfer coding; send the body with Content-Encoding instead",
            ));
        }
    }
    match first {
        None => Ok(None),
        Some(value) => content_length::parse(value.as_bytes(), Lists::Identical)
            .map(Some)
            .ok_or((
                StatusCode::BAD_REQUEST,
                "the request has an invalid Content-Length",
            )),
    }
}

/// Whether every listed transfer coding is `chunked` (or there is none).
pub(crate) fn only_chunked(codings: &[&HeaderValue]) -> bool {
    codings
        .iter()
        .flat_map(|v| v.to_str().unwrap_or("?").split(','))
        .all(|coding| coding.trim().eq_ignore_ascii_case("chunked"))
}

/// The `X-Forwarded-For` value to send on: every earlier hop the client's
/// headers list (as one list or several headers), then the client's own
/// address (`peer_ip`, its text form). Without earlier hops that is the
/// peer's value itself, without a copy.
pub(crate) fn forwarded_for(headers: &HeaderMap, peer_ip: &HeaderValue) -> HeaderValue {
    if !headers.contains_key(&X_FORWARDED_FOR) {
        return peer_ip.clone();
    }
    let mut list = Vec::new();
    for value in headers.get_all(&X_FORWARDED_FOR) {
        list.extend_from_slice(value.as_bytes());
        list.extend_from_slice(b", ");
    }
    list.extend_from_slice(peer_ip.as_bytes());
    // Made of valid header values and ", ": valid too.
    HeaderValue::from_bytes(&list).unwrap_or_else(|_| peer_ip.clone())
}

/// The text form of a client's address, as `X-Forwarded-For` carries it;
/// made once per client connection.
pub(crate) fn peer_ip_value(peer: SocketAddr) -> HeaderValue {
    HeaderValue::from_str(&peer.ip().to_string()).unwrap_or_else(|_| HeaderValue::from_static("unknown"))
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
        assert_eq!(request_length(&headers), Ok(None));
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from_static("5"));
        assert_eq!(request_length(&headers), Ok(Some(5)));
        headers.insert(header::TRANSFER_ENCODING, HeaderValue::from_static("chunked"));
        assert!(request_length(&headers).is_err());
        let mut headers = HeaderMap::new();
        headers.insert(
            header::TRANSFER_ENCODING,
            HeaderValue::from_static("gzip, chunked"),
        );
        assert_eq!(
            request_length(&headers).map_err(|(s, _)| s),
            Err(StatusCode::NOT_IMPLEMENTED)
        );
        headers.insert(header::TRANSFER_ENCODING, HeaderValue::from_static("Chunked"));
        assert_eq!(request_length(&headers), Ok(None));
        let mut headers = HeaderMap::new();
        headers.append(header::CONTENT_LENGTH, HeaderValue::from_static("5"));
        headers.append(header::CONTENT_LENGTH, HeaderValue::from_static("6"));
        assert!(request_length(&headers).is_err());
    }

    #[test]
    fn reads_the_declared_length_as_hyper_does() {
        let length = |values: &[&'static str]| {
            let mut headers = HeaderMap::new();
            for value in values {
                headers.append(header::CONTENT_LENGTH, HeaderValue::from_static(value));
            }
            request_length(&headers).map_err(|(status, _)| status)
        };
        assert_eq!(length(&["5", "5"]), Ok(Some(5)));
        assert_eq!(length(&["5, 5"]), Ok(Some(5)));
        assert_eq!(length(&["0"]), Ok(Some(0)));
        // `str::parse` takes a sign; hyper and the RFC do not.
        assert_eq!(length(&["+5"]), Err(StatusCode::BAD_REQUEST));
        assert_eq!(length(&["-1"]), Err(StatusCode::BAD_REQUEST));
        assert_eq!(length(&["5, 6"]), Err(StatusCode::BAD_REQUEST));
        assert_eq!(length(&["99999999999999999999"]), Err(StatusCode::BAD_REQUEST));
    }

    #[test]
    fn appends_to_x_forwarded_for() {
        let peer = peer_ip_value("127.0.0.2:5000".parse().unwrap());
        let mut headers = HeaderMap::new();
        assert_eq!(forwarded_for(&headers, &peer), "127.0.0.2");
        headers.insert("x-forwarded-for", HeaderValue::from_static("10.0.0.1"));
        headers.append("x-forwarded-for", HeaderValue::from_static("10.0.0.9"));
        assert_eq!(forwarded_for(&headers, &peer), "10.0.0.1, 10.0.0.9, 127.0.0.2");
        assert_eq!(
            forwarded_for(&HeaderMap::new(), &peer_ip_value("[::1]:80".parse().unwrap())),
            "::1"
        );
    }
}
