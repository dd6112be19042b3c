//! What the facade does differently for a gRPC call (`content-type:
//! application/grpc…`): its deadline (`grpc-timeout`) bounds the wait for
//! the answer as the backend's own timeout does, and when no backend
//! answers, the client gets a gRPC status it can act on rather than a JSON
//! error page: a trailers-only answer (HTTP 200, `grpc-status`,
//! `grpc-message`), as gRPC's HTTP/2 mapping says and as Envoy answers.

use std::time::Duration;

use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};
use hyper::{Response, StatusCode};

use crate::flow::dispatch::Failure;
use crate::wire::body::{self, ProxyBody};
use crate::wire::correlation;

/// `grpc-status`.
const GRPC_STATUS: HeaderName = HeaderName::from_static("grpc-status");
/// `grpc-message`.
const GRPC_MESSAGE: HeaderName = HeaderName::from_static("grpc-message");

/// A gRPC call, as far as the facade cares.
#[derive(Debug, Clone, Copy)]
pub(crate) struct GrpcCall {
    /// The client's deadline, from `grpc-timeout`.
    pub deadline: Option<Duration>,
}

/// The call `headers` describe, if they describe one.
pub(crate) fn call_of(headers: &HeaderMap) -> Option<GrpcCall> {
    let content_type = headers.get(header::CONTENT_TYPE)?.as_bytes();
    if !content_type.starts_with(b"application/grpc") {
        return None;
    }
    Some(GrpcCall {
        deadline: headers
            .get("grpc-timeout")
            .and_then(|value| parse_timeout(value.as_bytes())),
    })
}

/// A `grpc-timeout` value: at most eight digits and a unit (`H`, `M`, `S`,
/// `m`, `u`, `n`). Anything else is no deadline, as gRPC servers treat it.
pub(crate) fn parse_timeout(value: &[u8]) -> Option<Duration> {
    let (&unit, digits) = value.split_last()?;
    if digits.is_empty() || digits.len() > 8 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let amount: u64 = std::str::from_utf8(digits).ok()?.parse().ok()?;
    Some(match unit {
        b'H' => Duration::from_secs(amount * 3600),
        b'M' => Duration::from_secs(amount * 60),
        b'S' => Duration::from_secs(amount),
        b'm' => Duration::from_millis(amount),
        b'u' => Duration::from_micros(amount),
        b'n' => Duration::from_nanos(amount),
        _ => return None,
    })
}

/// The gRPC status code for a dispatch that got no answer: 4
/// (DEADLINE_EXCEEDED) for a timeout, 14 (UNAVAILABLE) when the backend
/// could not be reached or was refused by a guard, 13 (INTERNAL) when its
/// answer broke.
pub(crate) fn status_of(failure: &Failure) -> u8 {
    match failure {
        Failure::Timeout(_) => 4,
        Failure::Connect(_) | Failure::CircuitOpen { .. } | Failure::BulkheadFull | Failure::NoInstance => 14,
        Failure::Broken(_) | Failure::Status(_) => 13,
    }
}

/// A trailers-only gRPC answer with `code` and `message`.
pub(crate) fn failure_answer(code: u8, message: &str, request_id: &HeaderValue) -> Response<ProxyBody> {
    let mut response = Response::new(body::empty());
    *response.status_mut() = StatusCode::OK;
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
    headers.insert(GRPC_STATUS, HeaderValue::from(u16::from(code)));
    if let Ok(message) = HeaderValue::from_str(&percent_encode(message)) {
        headers.insert(GRPC_MESSAGE, message);
    }
    headers.insert(correlation::REQUEST_ID, request_id.clone());
    response
}

/// `grpc-message` is percent-encoded outside printable ASCII and `%`.
fn percent_encode(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    for byte in message.bytes() {
        if (0x20..=0x7e).contains(&byte) && byte != b'%' {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_grpc_timeouts_in_every_unit_and_refuses_the_rest() {
        assert_eq!(parse_timeout(b"100m"), Some(Duration::from_millis(100)));
        assert_eq!(parse_timeout(b"2S"), Some(Duration::from_secs(2)));
        assert_eq!(parse_timeout(b"1H"), Some(Duration::from_secs(3600)));
        assert_eq!(parse_timeout(b"5M"), Some(Duration::from_secs(300)));
        assert_eq!(parse_timeout(b"7u"), Some(Duration::from_micros(7)));
        assert_eq!(parse_timeout(b"9n"), Some(Duration::from_nanos(9)));
        for bad in [&b""[..], b"m", b"100", b"123456789m", b"1x", b"-1m", b"1.5S"] {
            assert_eq!(parse_timeout(bad), None, "{}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn only_grpc_content_types_are_calls() {
        let mut headers = HeaderMap::new();
        assert!(call_of(&headers).is_none());
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        assert!(call_of(&headers).is_none());
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/grpc+proto"),
        );
        headers.insert("grpc-timeout", HeaderValue::from_static("250m"));
        assert_eq!(
            call_of(&headers).unwrap().deadline,
            Some(Duration::from_millis(250))
        );
    }

    #[test]
    fn the_failure_answer_is_trailers_only_with_an_encoded_message() {
        let answer = failure_answer(14, "backend `x` is 100% down ✗", &HeaderValue::from_static("rid"));
        assert_eq!(answer.status(), StatusCode::OK);
        assert_eq!(answer.headers()["grpc-status"], "14");
        assert_eq!(
            answer.headers()["grpc-message"],
            "backend `x` is 100%25 down %E2%9C%97"
        );
        assert_eq!(answer.headers()["content-type"], "application/grpc");
    }
}
