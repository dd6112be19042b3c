//! The two heads of an upstream exchange: the request head the facade
//! writes and the response head it reads, with the framing (RFC 9112 §6.3)
//! that says where the response body ends and whether the connection may
//! carry another request.

use bytes::{BufMut, Bytes, BytesMut};
use hyper::header::{self, HeaderName, HeaderValue};
use hyper::{HeaderMap, Method, Response, StatusCode, Version};
use smallvec::SmallVec;

use crate::wire::content_length::{self, Lists};

/// The most header lines a response head may have.
const MAX_HEADERS: usize = 128;

/// The largest response head accepted.
pub(super) const MAX_HEAD_BYTES: usize = 64 * 1024;

/// How the request body is framed on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum RequestFraming {
    /// No body.
    Empty,
    /// `Content-Length` bytes, as the client declared them.
    Length,
    /// `Transfer-Encoding: chunked`, for a body of unknown length.
    Chunked,
}

/// A request head encoded once and shared by every attempt (a retry, a
/// fallback, a shadow copy): the request line and the header lines, all
/// but `Host` and the body's framing, which each attempt adds.
#[derive(Debug, Clone)]
pub struct RequestHead {
    method: Method,
    lines: Bytes,
    has_length: bool,
    upgrade: bool,
}

impl RequestHead {
    /// Encodes `method`, `target` (origin form) and `headers`, leaving out
    /// the headers named in `skip` and adding `extra` after the others.
    pub fn new(
        method: &Method,
        target: &str,
        headers: &HeaderMap,
        skip: &[&HeaderName],
        extra: &[(&HeaderName, &HeaderValue)],
    ) -> Self {
        // The facade's own lines (`extra`) are counted too: one more than
        // the slack holds (a `traceparent`) would grow the buffer again.
        let mut out = BytesMut::with_capacity(128 + target.len() + (headers.len() + extra.len()) * 48);
        out.put_slice(method.as_str().as_bytes());
        out.put_u8(b' ');
        out.put_slice(target.as_bytes());
        out.put_slice(b" HTTP/1.1\r\n");
        for (name, value) in headers {
            if !skip.contains(&name) {
                put_line(&mut out, name, value);
            }
        }
        for (name, value) in extra {
            put_line(&mut out, name, value);
        }
        Self {
            method: method.clone(),
            lines: out.freeze(),
            has_length: headers.contains_key(header::CONTENT_LENGTH)
                && !skip.contains(&&header::CONTENT_LENGTH),
            upgrade: extra.iter().any(|(name, _)| **name == header::UPGRADE)
                || (headers.contains_key(header::UPGRADE) && !skip.contains(&&header::UPGRADE)),
        }
    }

    /// The same head with one more header line.
    pub fn with_header(&self, name: &HeaderName, value: &HeaderValue) -> Self {
        let mut out = BytesMut::with_capacity(self.lines.len() + 64);
        out.put_slice(&self.lines);
        put_line(&mut out, name, value);
        Self {
            method: self.method.clone(),
            lines: out.freeze(),
            has_length: self.has_length,
            upgrade: self.upgrade || *name == header::UPGRADE,
        }
    }

    /// The request line and header lines with the blank line that ends a
    /// head, for a client that takes the head apart again (hyper's).
    pub(super) fn lines_with_end(&self) -> Vec<u8> {
        let mut all = Vec::with_capacity(self.lines.len() + 2);
        all.extend_from_slice(&self.lines);
        all.extend_from_slice(b"\r\n");
        all
    }

    /// The method.
    pub fn method(&self) -> &Method {
        &self.method
    }

    /// Whether the request asks to switch protocols, the one case where a
    /// `101` answer is expected.
    pub(crate) fn asks_upgrade(&self) -> bool {
        self.upgrade
    }

    /// The framing a body gets: what the client declared if it declared a
    /// length, else an exact length the body knows, else chunks.
    pub(super) fn framing(&self, empty: bool, length: Option<u64>) -> RequestFraming {
        if empty {
            RequestFraming::Empty
        } else if self.has_length || length.is_some() {
            RequestFraming::Length
        } else {
            RequestFraming::Chunked
        }
    }

    /// Writes the whole head for one attempt into `out`: the shared lines,
    /// `Host`, and the framing header the body needs.
    pub(super) fn write(
        &self,
        out: &mut BytesMut,
        host: &HeaderValue,
        framing: RequestFraming,
        length: Option<u64>,
    ) {
        out.reserve(self.lines.len() + host.len() + 48);
        out.put_slice(&self.lines);
        put_line(out, &header::HOST, host);
        match framing {
            RequestFraming::Chunked => out.put_slice(b"transfer-encoding: chunked\r\n"),
            RequestFraming::Length if !self.has_length => {
                if let Some(length) = length {
                    out.put_slice(b"content-length: ");
                    out.put_slice(length.to_string().as_bytes());
                    out.put_slice(b"\r\n");
                }
            }
            // A request that may carry a body says it carries none, so the
            // upstream does not wait for one.
            RequestFraming::Empty
                if matches!(self.method, Method::POST | Method::PUT | Method::PATCH) && !self.has_length =>
            {
                out.put_slice(b"content-length: 0\r\n");
            }
            _ => {}
        }
        out.put_slice(b"\r\n");
    }
}

fn put_line(out: &mut BytesMut, name: &HeaderName, value: &HeaderValue) {
    out.put_slice(name.as_str().as_bytes());
    out.put_slice(b": ");
    out.put_slice(value.as_bytes());
    out.put_slice(b"\r\n");
}

/// Why a response head could not be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HeadError {
    /// Not a valid HTTP/1.x response head.
    #[error("the backend's response head is malformed ({0})")]
    Malformed(&'static str),
    /// A `101 Switching Protocols` to a request that asked for no upgrade.
    #[error("the backend switched protocols although the request asked for no upgrade")]
    UnsolicitedUpgrade,
    /// Larger than [`MAX_HEAD_BYTES`] or with too many header lines.
    #[error("the backend's response head is too large")]
    TooLarge,
    /// `Content-Length` values that differ or do not parse.
    #[error("the backend's response has an invalid or ambiguous Content-Length")]
    BadLength,
}

/// Where the response body ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ResponseFraming {
    /// No body (HEAD, 1xx, 204, 304).
    Empty,
    /// This many bytes.
    Length(u64),
    /// Chunked transfer coding.
    Chunked,
    /// Until the upstream closes the connection.
    UntilClose,
}

/// A parsed response head.
#[derive(Debug)]
pub(super) struct ResponseHead {
    /// Status, headers (hop-by-hop ones included: the proxy decides), and
    /// version HTTP/1.1.
    pub response: Response<()>,
    /// Where its body ends.
    pub framing: ResponseFraming,
    /// Whether the connection may carry another request afterwards.
    pub reusable: bool,
}

/// Takes a complete response head off the front of `buffer` and parses it
/// for a request with `method`: `Ok(None)` while more bytes are needed.
/// Header values share the head's memory; the head is parsed once.
///
/// `Connection: keep-alive` / `close` and `Keep-Alive` are read here (they
/// decide whether the connection is reused) and not put in the headers, as
/// the proxy would only strip them again; a `Connection` header naming other
/// headers is kept for the proxy's hop-by-hop rules. A `101` keeps all its
/// headers: the client needs them for the upgrade.
pub(super) fn take_response(
    buffer: &mut BytesMut,
    method: &Method,
) -> Result<Option<ResponseHead>, HeadError> {
    let mut lines = [const { std::mem::MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
    let mut parsed = httparse::Response::new(&mut []);
    let length = match httparse::ParserConfig::default().parse_response_with_uninit_headers(
        &mut parsed,
        buffer,
        &mut lines,
    ) {
        Ok(httparse::Status::Complete(length)) => length,
        Ok(httparse::Status::Partial) if buffer.len() >= MAX_HEAD_BYTES => return Err(HeadError::TooLarge),
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => return Err(HeadError::TooLarge),
        Err(_) => return Err(HeadError::Malformed("not an HTTP/1.x response")),
    };
    let code = parsed.code.ok_or(HeadError::Malformed("no status"))?;
    let status = StatusCode::from_u16(code).map_err(|_| HeadError::Malformed("invalid status"))?;
    let http10 = parsed.version == Some(0);
    let upgrade = status == StatusCode::SWITCHING_PROTOCOLS;
    let (mut close, mut keep) = (false, false);
    // Content-Length values, read as the lines go by: the one length they
    // all agree on, or an error.
    let mut declared: Option<Result<u64, HeadError>> = None;
    let base = buffer.as_ptr() as usize;
    // On the stack for the usual few lines: a request need not allocate
    // for them.
    let mut fields: SmallVec<[_; 16]> = SmallVec::new();
    for line in parsed.headers.iter() {
        let name = crate::wire::header_names::parse(line.name.as_bytes())
            .map_err(|_| HeadError::Malformed("invalid header name"))?;
        if name == header::CONNECTION {
            let mut only_options = true;
            for token in line.value.split(|&b| b == b',').map(<[u8]>::trim_ascii) {
                if token.eq_ignore_ascii_case(b"close") {
                    close = true;
                } else if token.eq_ignore_ascii_case(b"keep-alive") {
                    keep = true;
                } else {
                    only_options = false;
                }
            }
            if only_options && !upgrade {
                continue;
            }
        }
        if name.as_str() == "keep-alive" && !upgrade {
            continue;
        }
        if name == header::CONTENT_LENGTH {
            declared = Some(match (declared, parse_length(line.value)) {
                (None | Some(Ok(_)), Err(error)) | (Some(Err(error)), _) => Err(error),
                (Some(Ok(known)), Ok(parsed)) if known != parsed => Err(HeadError::BadLength),
                (_, Ok(parsed)) => Ok(parsed),
            });
        }
        let start = line.value.as_ptr() as usize - base;
        fields.push((name, start, start + line.value.len()));
    }
    let head = buffer.split_to(length).freeze();
    let mut headers = HeaderMap::with_capacity(fields.len());
    for (name, start, end) in fields {
        let value = HeaderValue::from_maybe_shared(head.slice(start..end))
            .map_err(|_| HeadError::Malformed("invalid header value"))?;
        headers.append(name, value);
    }

    let mut reusable = !close && (!http10 || keep);
    let no_body = *method == Method::HEAD
        || status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED;
    let framing = if no_body {
        ResponseFraming::Empty
    } else if headers.contains_key(header::TRANSFER_ENCODING) {
        // RFC 9112 §6.1: Transfer-Encoding in an HTTP/1.0 message means
        // faulty framing (hyper's client refuses it too).
        if http10 {
            return Err(HeadError::Malformed(
                "an HTTP/1.0 response with Transfer-Encoding",
            ));
        }
        // Transfer-Encoding wins over Content-Length, which is dropped so
        // that nothing downstream frames by it; a message carrying both is
        // suspect, and its connection is not reused (RFC 9112 §6.3).
        if headers.remove(header::CONTENT_LENGTH).is_some() {
            reusable = false;
        }
        if last_coding_is_chunked(&headers) {
            ResponseFraming::Chunked
        } else {
            reusable = false;
            ResponseFraming::UntilClose
        }
    } else if let Some(declared) = declared {
        ResponseFraming::Length(declared?)
    } else {
        reusable = false;
        ResponseFraming::UntilClose
    };
    let mut response = Response::new(());
    *response.status_mut() = status;
    *response.version_mut() = Version::HTTP_11;
    *response.headers_mut() = headers;
    Ok(Some(ResponseHead {
        response,
        framing,
        reusable,
    }))
}

fn last_coding_is_chunked(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::TRANSFER_ENCODING)
        .iter()
        .next_back()
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.rsplit(',').next())
        .is_some_and(|coding| coding.trim().eq_ignore_ascii_case("chunked"))
}

/// The length in one `Content-Length` line. A list of equal values (`5, 5`,
/// as some servers send after merging) is read as that value: an upstream's
/// answer is framed as exactly as a client's request, and the one rule for
/// both is in [`content_length`].
fn parse_length(value: &[u8]) -> Result<u64, HeadError> {
    content_length::parse(value, Lists::Identical).ok_or(HeadError::BadLength)
}

#[cfg(test)]
mod differential;

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str, method: Method) -> Result<ResponseHead, HeadError> {
        let mut buffer = BytesMut::from(text.as_bytes());
        let head = take_response(&mut buffer, &method)?.expect("complete head");
        assert!(buffer.is_empty(), "the whole head is taken");
        Ok(head)
    }

    #[test]
    fn frames_by_length_chunks_or_close() {
        let head = parse("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", Method::GET).unwrap();
        assert_eq!(head.framing, ResponseFraming::Length(5));
        assert!(head.reusable);
        let head = parse(
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
            Method::GET,
        )
        .unwrap();
        assert_eq!(head.framing, ResponseFraming::Chunked);
        let head = parse("HTTP/1.1 200 OK\r\n\r\n", Method::GET).unwrap();
        assert_eq!(head.framing, ResponseFraming::UntilClose);
        assert!(!head.reusable);
        let head = parse("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", Method::HEAD).unwrap();
        assert_eq!(head.framing, ResponseFraming::Empty);
        let head = parse(
            "HTTP/1.1 304 Not Modified\r\nContent-Length: 5\r\n\r\n",
            Method::GET,
        )
        .unwrap();
        assert_eq!(head.framing, ResponseFraming::Empty);
    }

    #[test]
    fn transfer_encoding_wins_and_spoils_the_connection() {
        let head = parse(
            "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
            Method::GET,
        )
        .unwrap();
        assert_eq!(head.framing, ResponseFraming::Chunked);
        assert!(!head.reusable);
        assert!(!head.response.headers().contains_key(header::CONTENT_LENGTH));
        let head = parse("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n", Method::GET).unwrap();
        assert_eq!(head.framing, ResponseFraming::UntilClose);
    }

    #[test]
    fn refuses_differing_lengths_and_garbage() {
        assert_eq!(
            parse(
                "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
                Method::GET
            )
            .unwrap_err(),
            HeadError::BadLength
        );
        for bad in ["+5", "-1", "5 5", "", "5, 6", "18446744073709551616"] {
            assert_eq!(
                parse(
                    &format!("HTTP/1.1 200 OK\r\nContent-Length: {bad}\r\n\r\n"),
                    Method::GET
                )
                .unwrap_err(),
                HeadError::BadLength,
                "{bad:?}"
            );
        }
        let list = parse("HTTP/1.1 200 OK\r\nContent-Length: 5, 5\r\n\r\n", Method::GET).unwrap();
        assert_eq!(list.framing, ResponseFraming::Length(5));
        let same = parse(
            "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n",
            Method::GET,
        )
        .unwrap();
        assert_eq!(same.framing, ResponseFraming::Length(5));
        assert!(take_response(&mut BytesMut::from(&b"SSH-2.0-OpenSSH\r\n\r\n"[..]), &Method::GET).is_err());
        // Found by the differential test: an HTTP/1.0 answer with a
        // transfer coding was read chunked (or to its close).
        for coding in ["chunked", "gzip"] {
            let text = format!("HTTP/1.0 200 OK\r\nTransfer-Encoding: {coding}\r\n\r\n");
            assert!(
                matches!(parse(&text, Method::GET), Err(HeadError::Malformed(_))),
                "{coding}"
            );
        }
        let mut partial = BytesMut::from(&b"HTTP/1.1 200 OK\r\nA: b\r\n"[..]);
        assert!(take_response(&mut partial, &Method::GET).unwrap().is_none());
        assert_eq!(
            &partial[..],
            b"HTTP/1.1 200 OK\r\nA: b\r\n",
            "a partial head stays in the buffer"
        );
    }

    #[test]
    fn connection_close_and_http10_are_not_reused() {
        let head = parse(
            "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n",
            Method::GET,
        )
        .unwrap();
        assert!(!head.reusable);
        assert!(!head.response.headers().contains_key(header::CONNECTION));
        let head = parse(
            "HTTP/1.1 200 OK\r\nConnection: keep-alive, x-hop\r\nKeep-Alive: timeout=5\r\nContent-Length: 0\r\n\r\n",
            Method::GET,
        )
        .unwrap();
        assert!(head.reusable);
        assert!(
            head.response.headers().contains_key(header::CONNECTION),
            "names another header"
        );
        assert!(!head.response.headers().contains_key("keep-alive"));
        let head = parse(
            "HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n",
            Method::GET,
        )
        .unwrap();
        assert_eq!(head.response.headers()["connection"], "upgrade");
        let head = parse("HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n", Method::GET).unwrap();
        assert!(!head.reusable);
        let head = parse(
            "HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n",
            Method::GET,
        )
        .unwrap();
        assert!(head.reusable);
    }

    #[test]
    fn encodes_the_request_head_with_its_framing() {
        let mut headers = HeaderMap::new();
        headers.insert(header::ACCEPT, HeaderValue::from_static("*/*"));
        headers.insert(header::HOST, HeaderValue::from_static("client.example"));
        let request_id = HeaderName::from_static("x-request-id");
        let id = HeaderValue::from_static("abc");
        let head = RequestHead::new(
            &Method::POST,
            "/orders?x=1",
            &headers,
            &[&header::HOST],
            &[(&request_id, &id)],
        );
        let host = HeaderValue::from_static("shop");
        let mut out = BytesMut::new();
        head.write(&mut out, &host, head.framing(true, None), None);
        assert_eq!(
            &out[..],
            &b"POST /orders?x=1 HTTP/1.1\r\naccept: */*\r\nx-request-id: abc\r\nhost: shop\r\ncontent-length: 0\r\n\r\n"[..]
        );
        let mut out = BytesMut::new();
        head.write(&mut out, &host, head.framing(false, None), None);
        assert!(out.ends_with(b"transfer-encoding: chunked\r\n\r\n"));
        let mut out = BytesMut::new();
        head.write(&mut out, &host, head.framing(false, Some(12)), Some(12));
        assert!(out.ends_with(b"content-length: 12\r\n\r\n"));
        let shadow = head.with_header(
            &HeaderName::from_static("x-shadow"),
            &HeaderValue::from_static("1"),
        );
        let mut out = BytesMut::new();
        shadow.write(&mut out, &host, RequestFraming::Empty, None);
        assert!(out.windows(13).any(|w| w == b"x-shadow: 1\r\n"));
    }
}
