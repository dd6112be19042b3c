//! Header rules of a proxy: hop-by-hop headers removed (RFC 9110 §7.6.1),
//! `X-Forwarded-*` added, ambiguous body framing refused, upgrades spotted.

use std::net::SocketAddr;

use hyper::header::{self, HeaderName, HeaderValue};
use hyper::{HeaderMap, StatusCode};

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
pub(crate) fn framing_error(headers: &HeaderMap) -> Option<(StatusCode, &'static str)> {
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
pub(crate) fn only_chunked(codings: &[&HeaderValue]) -> bool {
    codings
        .iter()
        .flat_map(|v| v.to_str().unwrap_or("?").split(','))
        .all(|coding| coding.trim().eq_ignore_ascii_case("chunked"))
}

pub(crate) fn content_length(headers: &HeaderMap) -> Option<u64> {
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
pub(crate) fn add_forwarded(headers: &mut HeaderMap, peer: SocketAddr, original_host: Option<HeaderValue>) {
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
