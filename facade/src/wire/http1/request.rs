//! Reading a request head on the fast path: parsed in place with
//! `httparse`, and accepted only when every detail of it is one the fast
//! path handles exactly. Anything else goes to hyper untouched.

use std::mem::MaybeUninit;

use bytes::BytesMut;
use hyper::header::{self, HeaderValue};
use hyper::{HeaderMap, Method, Request, Uri, Version};
use smallvec::SmallVec;

use crate::wire::content_length::{self, Lists};

/// Header lines the fast path reads; a head with more goes to hyper, which
/// allows up to 100 and answers 431 beyond.
const MAX_HEADERS: usize = 64;

/// The largest length hyper frames a request body by: it keeps the two
/// above for its own markers, and refuses a head that declares more (431).
/// The fast path leaves such a head to it, so that the answer is the same.
const MAX_BODY_LENGTH: u64 = u64::MAX - 2;

/// What the buffer holds.
// Not boxed: a `Parsed` is matched once, right where it is made, and a box
// would cost an allocation on every request of the hot path.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub(super) enum Parsed {
    /// Not all of the head yet.
    Partial,
    /// A plain request, its head taken out of the buffer.
    Plain(PlainRequest),
    /// A head the fast path leaves to hyper, which then serves the
    /// connection from its first unread byte: HTTP/2's preface, HTTP/1.0,
    /// a transfer coding, an upgrade, `Expect`, `CONNECT`, an absolute or `*` target,
    /// a head over the size limit, or anything malformed (hyper answers
    /// 400 or 431).
    Handoff,
    /// A head taken out of the buffer that `http` refuses although
    /// `httparse` accepted it; answered with 400, and the connection closed.
    Invalid(&'static str),
    /// A request line longer than the head limit by itself: answered with
    /// 414 (RFC 9112 §3), where a head too large for its header lines gets
    /// hyper's 431. The connection is closed.
    TargetTooLong,
}

/// A request the fast path serves.
#[derive(Debug)]
pub(super) struct PlainRequest {
    /// Method, target and headers; the body comes from the connection.
    pub request: Request<()>,
    /// The body's length: `Content-Length`, or 0 without one.
    pub body_length: u64,
    /// Whether the client asked to close the connection after this answer.
    pub close: bool,
}

/// Why a head's `Host` is refused (RFC 9112 §3.2 asks for a 400).
pub(crate) const BAD_HOST: &str =
    "an HTTP/1.1 request needs exactly one Host header holding a host and an optional port (RFC 9112 §3.2)";

/// Whether a `Host` value is a host and an optional port (RFC 3986's
/// reg-name, IP literal or IPv4 address): what else a value holds (a
/// user, a path, spaces) makes it no host. Empty is allowed, for a target
/// without an authority.
pub(crate) fn is_host(value: &[u8]) -> bool {
    value.iter().all(|&b| {
        b.is_ascii_alphanumeric()
            || matches!(
                b,
                b'-' | b'.'
                    | b'_'
                    | b'~'
                    | b'!'
                    | b'$'
                    | b'&'
                    | b'\''
                    | b'('
                    | b')'
                    | b'*'
                    | b'+'
                    | b','
                    | b';'
                    | b'='
                    | b':'
                    | b'['
                    | b']'
                    | b'%'
            )
    })
}

/// A head over the limit: 414 when its request line alone is (no line end
/// within the limit), hyper's 431 otherwise.
fn over_limit(buffer: &[u8], max_head: usize) -> Parsed {
    match memchr::memchr(b'\n', &buffer[..buffer.len().min(max_head)]) {
        None => Parsed::TargetTooLong,
        Some(_) => Parsed::Handoff,
    }
}

/// Takes the request head at the start of `buffer` if it is complete and
/// plain; `max_head` is the facade's head-size limit.
///
/// A head is plain when it is HTTP/1.1, not `CONNECT`, with an origin-form target (`/…`),
/// has no `Transfer-Encoding`, `Upgrade` or `Expect` header, no
/// `Connection: upgrade`, and at most one `Content-Length`, a single valid
/// value ([`content_length`]). Body framing is then unambiguous: the length, or none. Every
/// case where two parsers might disagree about where a request ends (the
/// ground request smuggling is built on) is hyper's to refuse.
pub(super) fn take_request(buffer: &mut BytesMut, max_head: usize) -> Parsed {
    let mut lines = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
    let mut parsed = httparse::Request::new(&mut []);
    let length = match httparse::ParserConfig::default().parse_request_with_uninit_headers(
        &mut parsed,
        buffer,
        &mut lines,
    ) {
        Ok(httparse::Status::Complete(length)) if length <= max_head => length,
        Ok(httparse::Status::Partial) if buffer.len() < max_head => return Parsed::Partial,
        Ok(_) => return over_limit(buffer, max_head),
        Err(_) => return Parsed::Handoff,
    };
    if parsed.version != Some(1) {
        return Parsed::Handoff;
    }
    let Some(Ok(method)) = parsed.method.map(|m| Method::from_bytes(m.as_bytes())) else {
        return Parsed::Handoff;
    };
    // hyper reads any CONNECT, whatever its target, as a tunnel after a
    // 2xx answer: not a request the fast path can frame.
    if method == Method::CONNECT {
        return Parsed::Handoff;
    }
    let Some(path) = parsed.path.filter(|p| p.starts_with('/')) else {
        return Parsed::Handoff;
    };
    let base = buffer.as_ptr() as usize;
    let target = (path.as_ptr() as usize - base, path.len());
    let mut body_length = None;
    let mut close = false;
    let mut hosts = 0;
    // On the stack for the usual few lines: a request need not allocate
    // for them.
    let mut fields: SmallVec<[_; 16]> = SmallVec::new();
    for line in parsed.headers.iter() {
        let Ok(name) = crate::wire::header_names::parse(line.name.as_bytes()) else {
            return Parsed::Handoff;
        };
        if name == header::TRANSFER_ENCODING || name == header::UPGRADE || name == header::EXPECT {
            return Parsed::Handoff;
        }
        if name == header::CONTENT_LENGTH {
            // One line with one value: a repeated line or a list, even of
            // equal lengths, is hyper's to read (it takes them).
            match (body_length, content_length::parse(line.value, Lists::Refused)) {
                (None, Some(length)) if length <= MAX_BODY_LENGTH => body_length = Some(length),
                _ => return Parsed::Handoff,
            }
        }
        if name == header::HOST {
            // RFC 9112 §3.2: exactly one, holding a host and a port.
            if hosts > 0 || !is_host(line.value) {
                return Parsed::Invalid(BAD_HOST);
            }
            hosts += 1;
        }
        if name == header::CONNECTION {
            for token in line.value.split(|&b| b == b',').map(<[u8]>::trim_ascii) {
                if token.eq_ignore_ascii_case(b"close") {
                    close = true;
                } else if token.eq_ignore_ascii_case(b"upgrade") {
                    return Parsed::Handoff;
                }
            }
        }
        let start = line.value.as_ptr() as usize - base;
        fields.push((name, start, line.value.len()));
    }
    let head = buffer.split_to(length).freeze();
    if hosts == 0 {
        return Parsed::Invalid(BAD_HOST);
    }
    // httparse has checked the target's and every value's bytes; what
    // `http` still refuses, hyper would answer with 400 too.
    let Ok(uri) = Uri::from_maybe_shared(head.slice(target.0..target.0 + target.1)) else {
        return Parsed::Invalid("the request target is invalid");
    };
    let mut headers = HeaderMap::with_capacity(fields.len());
    for (name, start, len) in fields {
        let Ok(value) = HeaderValue::from_maybe_shared(head.slice(start..start + len)) else {
            return Parsed::Invalid("a header value is invalid");
        };
        headers.append(name, value);
    }
    let mut request = Request::new(());
    *request.method_mut() = method;
    *request.uri_mut() = uri;
    *request.version_mut() = Version::HTTP_11;
    *request.headers_mut() = headers;
    Parsed::Plain(PlainRequest {
        request,
        body_length: body_length.unwrap_or(0),
        close,
    })
}

#[cfg(test)]
mod differential;

#[cfg(test)]
mod tests {
    use super::*;

    fn take(text: &str) -> (Parsed, BytesMut) {
        let mut buffer = BytesMut::from(text);
        let parsed = take_request(&mut buffer, 8192);
        (parsed, buffer)
    }

    fn plain(text: &str) -> (PlainRequest, BytesMut) {
        match take(text) {
            (Parsed::Plain(request), rest) => (request, rest),
            (other, _) => panic!("expected a plain request, got {other:?} for {text:?}"),
        }
    }

    fn handed_off(text: &str) -> bool {
        matches!(take(text).0, Parsed::Handoff)
    }

    #[test]
    fn takes_a_plain_request_and_leaves_what_follows() {
        let (plain, rest) =
            plain("GET /products/1?x=2 HTTP/1.1\r\nHost: shop\r\nX-Two: a\r\nX-Two: b\r\n\r\nPOST /next");
        assert_eq!(plain.request.method(), Method::GET);
        assert_eq!(plain.request.uri(), "/products/1?x=2");
        assert_eq!(plain.request.headers()["host"], "shop");
        assert_eq!(plain.request.headers().get_all("x-two").iter().count(), 2);
        assert_eq!(plain.body_length, 0);
        assert!(!plain.close);
        assert_eq!(&rest[..], b"POST /next");
    }

    #[test]
    fn reads_length_and_close() {
        let (plain, rest) =
            plain("POST /orders HTTP/1.1\r\nHost: shop\r\nContent-Length: 5\r\nConnection: keep-alive, Close\r\n\r\nhello");
        assert_eq!(plain.body_length, 5);
        assert!(plain.close);
        assert_eq!(&rest[..], b"hello");
    }

    #[test]
    fn waits_for_the_rest_of_a_head() {
        assert!(matches!(take("GET / HTTP/1.1\r\nHost: a").0, Parsed::Partial));
        assert!(matches!(take("").0, Parsed::Partial));
    }

    #[test]
    fn leaves_every_unusual_request_to_hyper() {
        for text in [
            "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
            "GET / HTTP/1.0\r\n\r\n",
            "GET http://elsewhere/ HTTP/1.1\r\n\r\n",
            "OPTIONS * HTTP/1.1\r\n\r\n",
            "CONNECT shop:443 HTTP/1.1\r\n\r\n",
            // Found by the differential test: hyper tunnels any CONNECT.
            "CONNECT / HTTP/1.1\r\nHost: shop\r\n\r\n",
            "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
            "POST / HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
            "POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n",
            "POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
            "POST / HTTP/1.1\r\nContent-Length: +5\r\n\r\n",
            "POST / HTTP/1.1\r\nContent-Length: 5, 5\r\n\r\n",
            "POST / HTTP/1.1\r\nContent-Length: \r\n\r\n",
            "POST / HTTP/1.1\r\nContent-Length: 99999999999999999999\r\n\r\n",
            "POST / HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n",
            "GET /chat HTTP/1.1\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
            "GET /chat HTTP/1.1\r\nUpgrade: websocket\r\n\r\n",
            "GET /chat HTTP/1.1\r\nConnection: upgrade\r\n\r\n",
            "GET / HTTP/1.1\r\nBad Name: x\r\n\r\n",
            "GET / HTTP/1.1\r\nX: a\rb\r\n\r\n",
            "GET / HTTP/1.1\r\n folded: x\r\n\r\n",
            "G(T / HTTP/1.1\r\n\r\n",
        ] {
            assert!(handed_off(text), "{text:?} should go to hyper");
        }
    }

    #[test]
    fn leaves_a_head_over_the_limit_to_hyper() {
        let big = format!("GET / HTTP/1.1\r\nX-Big: {}\r\n\r\n", "a".repeat(9000));
        assert!(handed_off(&big));
        // Incomplete, but already longer than the limit: hyper answers 431.
        assert!(handed_off(&big[..8500]));
        let many: String = (0..MAX_HEADERS + 1).map(|i| format!("X-{i}: v\r\n")).collect();
        assert!(handed_off(&format!("GET / HTTP/1.1\r\n{many}\r\n")));
    }

    #[test]
    fn reads_one_valid_length_and_leaves_the_rest_to_hyper() {
        let length = |value: &str| match take(&format!(
            "POST / HTTP/1.1\r\nHost: shop\r\nContent-Length: {value}\r\n\r\n"
        ))
        .0
        {
            Parsed::Plain(plain) => Some(plain.body_length),
            _ => None,
        };
        assert_eq!(length("0"), Some(0));
        assert_eq!(length("1048576"), Some(1_048_576));
        assert_eq!(length("007"), Some(7));
        assert_eq!(length("18446744073709551613"), Some(MAX_BODY_LENGTH));
        for value in [
            "-1",
            "+5",
            "1e3",
            "5, 5",
            "1,2",
            "18446744073709551614",
            "18446744073709551616",
        ] {
            assert_eq!(length(value), None, "{value:?} should go to hyper");
        }
    }

    #[test]
    fn refuses_a_head_without_exactly_one_valid_host() {
        for text in [
            "GET / HTTP/1.1\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: me@shop\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: shop/x\r\n\r\n",
        ] {
            assert!(matches!(take(text).0, Parsed::Invalid(BAD_HOST)), "{text:?}");
        }
        for host in ["shop.example:8080", "[::1]:80", "10.0.0.1", ""] {
            let text = format!("GET / HTTP/1.1\r\nHost: {host}\r\n\r\n");
            assert!(matches!(take(&text).0, Parsed::Plain(_)), "{text:?}");
        }
    }

    #[test]
    fn a_request_line_longer_than_the_limit_is_too_long_a_target() {
        let line = format!("GET /{} HTTP/1.1\r\nHost: shop\r\n\r\n", "a".repeat(9000));
        assert!(matches!(take(&line).0, Parsed::TargetTooLong));
        // Not all of it yet, but already past the limit without a line end.
        assert!(matches!(take(&line[..8500]).0, Parsed::TargetTooLong));
    }
}
