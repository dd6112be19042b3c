//! Writing an answer on the fast path: the head encoded into the
//! connection's write buffer, the body streamed after it with the framing
//! HTTP/1.1 needs, and small bodies that are already at hand sent in the
//! same write as the head.

use std::time::SystemTime;

use bytes::Bytes;
use futures::FutureExt;
use http_body_util::BodyExt;
use hyper::header::{self, HeaderValue};
use hyper::{HeaderMap, Response, StatusCode};
use tokio::io::{AsyncWrite, AsyncWriteExt};

use crate::wire::body::ProxyBody;
use crate::wire::content_length::{self, Lists};

/// Body bytes gathered behind the head (or each other) before a write;
/// larger pieces are written as they come.
const GATHER: usize = 16 * 1024;

/// How the body is delimited on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    /// No body may follow (HEAD, 1xx, 204, 304).
    None,
    /// Exactly this many bytes.
    Length(u64),
    /// Chunked transfer coding: the length is not known in advance.
    Chunked,
}

/// Writes `response` to `io`; `out` is the connection's reusable write
/// buffer, `head_request` whether it answers a HEAD request, `close`
/// whether this is the connection's last answer.
///
/// Returns whether the answer went out whole and framed: only then can the
/// connection carry another one. A body that fails or ends early leaves
/// the framing broken, and the caller closes the connection so the client
/// sees a cut answer rather than a wrong one.
pub(super) async fn write<W: AsyncWrite + Unpin>(
    io: &mut W,
    out: &mut Vec<u8>,
    response: Response<ProxyBody>,
    head_request: bool,
    close: bool,
) -> std::io::Result<bool> {
    let (parts, mut body) = response.into_parts();
    let framing = encode_head(out, parts.status, &parts.headers, head_request, close, &body);
    let mut left = match framing {
        Framing::None => {
            io.write_all(out).await?;
            // A TLS session may hold back what it has encrypted until it is
            // flushed; for TCP this is free.
            io.flush().await?;
            return Ok(true);
        }
        Framing::Length(length) => length,
        Framing::Chunked => u64::MAX,
    };
    loop {
        // A frame ready now rides in the same write; only when the body
        // has to wait does what is gathered go out first.
        let frame = match body.frame().now_or_never() {
            Some(frame) => frame,
            None => {
                flush(io, out).await?;
                body.frame().await
            }
        };
        let data = match frame {
            None => break,
            Some(Err(error)) => {
                tracing::debug!(%error, "the answer's body failed; closing the client connection");
                flush(io, out).await?;
                return Ok(false);
            }
            Some(Ok(frame)) => match frame.into_data() {
                Ok(data) => data,
                // Trailers are not passed on (ARCHITECTURE.md, Decisions).
                Err(_) => continue,
            },
        };
        if data.is_empty() {
            continue;
        }
        if framing == Framing::Chunked {
            out.extend_from_slice(format!("{:x}\r\n", data.len()).as_bytes());
            put(io, out, data).await?;
            out.extend_from_slice(b"\r\n");
        } else {
            let len = data.len() as u64;
            if len > left {
                // More than the head announced: what fits goes out, and
                // the connection ends there.
                let fits = usize::try_from(left).unwrap_or(data.len());
                put(io, out, data.slice(..fits)).await?;
                flush(io, out).await?;
                return Ok(false);
            }
            left -= len;
            put(io, out, data).await?;
        }
    }
    let whole = match framing {
        Framing::Chunked => {
            out.extend_from_slice(b"0\r\n\r\n");
            true
        }
        _ => left == 0,
    };
    flush(io, out).await?;
    Ok(whole)
}

/// Appends `data` to the write buffer, or writes both if it is large.
async fn put<W: AsyncWrite + Unpin>(io: &mut W, out: &mut Vec<u8>, data: Bytes) -> std::io::Result<()> {
    if out.len() + data.len() <= GATHER {
        out.extend_from_slice(&data);
        return Ok(());
    }
    flush(io, out).await?;
    io.write_all(&data).await
}

/// Writes what is gathered and flushes it: the caller is about to wait
/// (for the body's next frame, or the next request), and a TLS session
/// sends what it has encrypted only when flushed.
async fn flush<W: AsyncWrite + Unpin>(io: &mut W, out: &mut Vec<u8>) -> std::io::Result<()> {
    if !out.is_empty() {
        io.write_all(out).await?;
        out.clear();
    }
    io.flush().await
}

/// Encodes the status line and headers into `out` and decides the framing.
fn encode_head(
    out: &mut Vec<u8>,
    status: StatusCode,
    headers: &HeaderMap,
    head_request: bool,
    close: bool,
    body: &ProxyBody,
) -> Framing {
    use hyper::body::Body as _;
    out.clear();
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(status.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(status.canonical_reason().unwrap_or("").as_bytes());
    out.extend_from_slice(b"\r\n");
    let bodiless_status =
        status.is_informational() || status == StatusCode::NO_CONTENT || status == StatusCode::NOT_MODIFIED;
    // A HEAD or 304 answer keeps the length the upstream gave: it is the
    // length a GET would have had. Anything with a body is framed here.
    let keep_length = head_request || status == StatusCode::NOT_MODIFIED;
    let framing = if head_request || bodiless_status {
        Framing::None
    } else {
        match declared_length(headers).or_else(|| body.size_hint().exact()) {
            Some(length) => Framing::Length(length),
            None => Framing::Chunked,
        }
    };
    for (name, value) in headers {
        // Connection-level headers are the facade's to write; the proxy has
        // removed the upstream's already.
        if name == header::CONNECTION
            || name == header::TRANSFER_ENCODING
            || (name == header::CONTENT_LENGTH && !keep_length)
        {
            continue;
        }
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    match framing {
        Framing::Length(length) => {
            out.extend_from_slice(b"content-length: ");
            out.extend_from_slice(itoa::Buffer::new().format(length).as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        Framing::Chunked => out.extend_from_slice(b"transfer-encoding: chunked\r\n"),
        Framing::None => {}
    }
    if close {
        out.extend_from_slice(b"connection: close\r\n");
    }
    if !headers.contains_key(header::DATE) {
        // As hyper's server does: an origin with a clock sends one.
        out.extend_from_slice(b"date: ");
        out.extend_from_slice(httpdate::fmt_http_date(SystemTime::now()).as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
    framing
}

/// The one `Content-Length` line of the answer, if it has exactly one
/// and it is valid; a list of identical values, as an upstream may send
/// and its head parser takes, is that value. Otherwise the body frames
/// the answer.
fn declared_length(headers: &HeaderMap) -> Option<u64> {
    let mut values = headers.get_all(header::CONTENT_LENGTH).iter();
    let value: &HeaderValue = values.next()?;
    if values.next().is_some() {
        return None;
    }
    content_length::parse(value.as_bytes(), Lists::Identical)
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::{Full, StreamBody};
    use hyper::body::Frame;

    fn boxed(
        body: impl hyper::body::Body<Data = Bytes, Error = std::io::Error> + Send + 'static,
    ) -> ProxyBody {
        body.map_err(|e| Box::new(e) as Box<dyn std::error::Error + Send + Sync>)
            .boxed_unsync()
    }

    fn full(text: &'static str) -> ProxyBody {
        boxed(Full::new(Bytes::from_static(text.as_bytes())).map_err(|never| match never {}))
    }

    fn streamed(pieces: Vec<Result<&'static str, &'static str>>) -> ProxyBody {
        let frames = pieces.into_iter().map(|piece| {
            piece
                .map(|text| Frame::data(Bytes::from_static(text.as_bytes())))
                .map_err(std::io::Error::other)
        });
        boxed(StreamBody::new(futures::stream::iter(frames)))
    }

    async fn written(response: Response<ProxyBody>, head_request: bool, close: bool) -> (String, bool) {
        let mut wire = Vec::new();
        let mut out = Vec::new();
        let whole = write(&mut wire, &mut out, response, head_request, close)
            .await
            .unwrap();
        (String::from_utf8(wire).unwrap(), whole)
    }

    fn without_date(text: &str) -> String {
        text.lines()
            .filter(|line| !line.starts_with("date: "))
            .collect::<Vec<_>>()
            .join("\n")
    }

    #[tokio::test]
    async fn frames_a_known_length_and_adds_a_date() {
        let mut response = Response::new(full("hello"));
        response
            .headers_mut()
            .insert("x-a", HeaderValue::from_static("1"));
        let (wire, whole) = written(response, false, false).await;
        assert!(whole);
        assert!(wire.contains("\r\ndate: "), "{wire}");
        assert_eq!(
            without_date(&wire),
            "HTTP/1.1 200 OK\nx-a: 1\ncontent-length: 5\n\nhello"
        );
    }

    #[tokio::test]
    async fn chunks_a_body_of_unknown_length_and_says_close() {
        let response = Response::new(streamed(vec![Ok("ab"), Ok(""), Ok("cde")]));
        let (wire, whole) = written(response, false, true).await;
        assert!(whole);
        assert!(
            wire.ends_with("\r\n\r\n2\r\nab\r\n3\r\ncde\r\n0\r\n\r\n"),
            "{wire}"
        );
        assert!(wire.contains("transfer-encoding: chunked\r\nconnection: close\r\n"));
    }

    #[tokio::test]
    async fn reports_a_body_shorter_or_longer_than_its_length() {
        let mut response = Response::new(streamed(vec![Ok("abc")]));
        response
            .headers_mut()
            .insert(header::CONTENT_LENGTH, HeaderValue::from_static("5"));
        let (wire, whole) = written(response, false, false).await;
        assert!(!whole);
        assert!(wire.ends_with("\r\n\r\nabc"));

        let mut response = Response::new(streamed(vec![Ok("abc"), Ok("def")]));
        response
            .headers_mut()
            .insert(header::CONTENT_LENGTH, HeaderValue::from_static("4"));
        let (wire, whole) = written(response, false, false).await;
        assert!(!whole);
        assert!(wire.ends_with("\r\n\r\nabcd"), "{wire}");
    }

    #[tokio::test]
    async fn frames_by_a_valid_declared_length_only() {
        // A sign is not a length: the body's own length frames the answer.
        let mut response = Response::new(full("hello"));
        response
            .headers_mut()
            .insert(header::CONTENT_LENGTH, HeaderValue::from_static("+3"));
        let (wire, whole) = written(response, false, false).await;
        assert!(whole);
        assert!(wire.contains("content-length: 5\r\n"), "{wire}");
        assert!(wire.ends_with("\r\n\r\nhello"), "{wire}");

        let mut response = Response::new(streamed(vec![Ok("abc"), Ok("de")]));
        response
            .headers_mut()
            .insert(header::CONTENT_LENGTH, HeaderValue::from_static("5, 5"));
        let (wire, whole) = written(response, false, false).await;
        assert!(whole);
        assert!(wire.contains("content-length: 5\r\n"), "{wire}");
        assert!(!wire.contains("transfer-encoding"), "{wire}");
    }

    #[tokio::test]
    async fn a_failing_body_breaks_the_chunked_framing() {
        let response = Response::new(streamed(vec![Ok("ab"), Err("upstream reset")]));
        let (wire, whole) = written(response, false, false).await;
        assert!(!whole);
        assert!(wire.ends_with("2\r\nab\r\n"), "no last chunk: {wire}");
    }

    #[tokio::test]
    async fn head_and_bodiless_answers_carry_no_body() {
        let mut response = Response::new(full(""));
        response
            .headers_mut()
            .insert(header::CONTENT_LENGTH, HeaderValue::from_static("42"));
        let (wire, whole) = written(response, true, false).await;
        assert!(whole);
        assert!(
            wire.contains("content-length: 42\r\n") && wire.ends_with("\r\n\r\n"),
            "{wire}"
        );

        for status in [StatusCode::NO_CONTENT, StatusCode::NOT_MODIFIED] {
            let mut response = Response::new(full(""));
            *response.status_mut() = status;
            let (wire, _) = written(response, false, false).await;
            assert!(
                !wire.contains("content-length") && !wire.contains("transfer-encoding"),
                "{wire}"
            );
            assert!(wire.starts_with(&format!("HTTP/1.1 {status}")));
        }
    }

    #[tokio::test]
    async fn drops_connection_headers_it_writes_itself() {
        let mut response = Response::new(full("x"));
        response
            .headers_mut()
            .insert(header::TRANSFER_ENCODING, HeaderValue::from_static("chunked"));
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("keep-alive"));
        response
            .headers_mut()
            .insert(header::DATE, HeaderValue::from_static("then"));
        let (wire, _) = written(response, false, false).await;
        assert_eq!(
            wire,
            "HTTP/1.1 200 OK\r\ndate: then\r\ncontent-length: 1\r\n\r\nx"
        );
    }
}
