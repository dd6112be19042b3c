//! Header names as the facade parses them off the wire, the common ones
//! recognised before the general parser runs.
//!
//! `HeaderName::from_bytes` lower-cases a name into a scratch buffer and
//! then matches it against every standard header: about a hundred and
//! twenty instructions a name under callgrind, and each request and each
//! answer bring a handful. Nearly every name on the wire is one of a few
//! dozen, spelled in canonical or lower case; comparing the raw bytes with
//! those two spellings, among the names of the same length, costs a tenth
//! of that. Anything else goes to `from_bytes`, so what this returns is
//! always what `from_bytes` would.

use hyper::header::{self, HeaderName, InvalidHeaderName};

/// The header name `raw` spells; the same as `HeaderName::from_bytes`.
pub(crate) fn parse(raw: &[u8]) -> Result<HeaderName, InvalidHeaderName> {
    let known = match raw.len() {
        3 => match raw {
            b"Age" | b"age" => Some(header::AGE),
            b"Via" | b"via" => Some(header::VIA),
            _ => None,
        },
        4 => match raw {
            b"Host" | b"host" => Some(header::HOST),
            b"Date" | b"date" => Some(header::DATE),
            b"ETag" | b"etag" | b"Etag" => Some(header::ETAG),
            b"Vary" | b"vary" => Some(header::VARY),
            _ => None,
        },
        6 => match raw {
            b"Accept" | b"accept" => Some(header::ACCEPT),
            b"Server" | b"server" => Some(header::SERVER),
            b"Cookie" | b"cookie" => Some(header::COOKIE),
            b"Origin" | b"origin" => Some(header::ORIGIN),
            b"Pragma" | b"pragma" => Some(header::PRAGMA),
            _ => None,
        },
        7 => match raw {
            b"Referer" | b"referer" => Some(header::REFERER),
            b"Expires" | b"expires" => Some(header::EXPIRES),
            _ => None,
        },
        8 => match raw {
            b"Location" | b"location" => Some(header::LOCATION),
            _ => None,
        },
        10 => match raw {
            b"Connection" | b"connection" => Some(header::CONNECTION),
            b"User-Agent" | b"user-agent" => Some(header::USER_AGENT),
            b"Set-Cookie" | b"set-cookie" => Some(header::SET_COOKIE),
            b"Keep-Alive" | b"keep-alive" => Some(HeaderName::from_static("keep-alive")),
            _ => None,
        },
        12 => match raw {
            b"Content-Type" | b"content-type" => Some(header::CONTENT_TYPE),
            b"X-Request-Id" | b"x-request-id" | b"X-Request-ID" => {
                Some(HeaderName::from_static("x-request-id"))
            }
            _ => None,
        },
        13 => match raw {
            b"Cache-Control" | b"cache-control" => Some(header::CACHE_CONTROL),
            b"Authorization" | b"authorization" => Some(header::AUTHORIZATION),
            b"Last-Modified" | b"last-modified" => Some(header::LAST_MODIFIED),
            b"Accept-Ranges" | b"accept-ranges" => Some(header::ACCEPT_RANGES),
            b"If-None-Match" | b"if-none-match" => Some(header::IF_NONE_MATCH),
            _ => None,
        },
        14 => match raw {
            b"Content-Length" | b"content-length" => Some(header::CONTENT_LENGTH),
            _ => None,
        },
        15 => match raw {
            b"Accept-Encoding" | b"accept-encoding" => Some(header::ACCEPT_ENCODING),
            b"Accept-Language" | b"accept-language" => Some(header::ACCEPT_LANGUAGE),
            b"X-Forwarded-For" | b"x-forwarded-for" => Some(HeaderName::from_static("x-forwarded-for")),
            _ => None,
        },
        16 => match raw {
            b"Content-Encoding" | b"content-encoding" => Some(header::CONTENT_ENCODING),
            _ => None,
        },
        17 => match raw {
            b"Transfer-Encoding" | b"transfer-encoding" => Some(header::TRANSFER_ENCODING),
            _ => None,
        },
        _ => None,
    };
    match known {
        Some(name) => Ok(name),
        None => HeaderName::from_bytes(raw),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agrees_with_the_general_parser() {
        let names: &[&[u8]] = &[
            b"Age",
            b"age",
            b"Via",
            b"Host",
            b"host",
            b"Date",
            b"ETag",
            b"Etag",
            b"etag",
            b"Vary",
            b"Accept",
            b"Server",
            b"Cookie",
            b"Origin",
            b"Pragma",
            b"Referer",
            b"Expires",
            b"Location",
            b"Connection",
            b"User-Agent",
            b"Set-Cookie",
            b"Keep-Alive",
            b"Content-Type",
            b"X-Request-Id",
            b"X-Request-ID",
            b"x-request-id",
            b"Cache-Control",
            b"Authorization",
            b"Last-Modified",
            b"Accept-Ranges",
            b"If-None-Match",
            b"Content-Length",
            b"content-length",
            b"Accept-Encoding",
            b"Accept-Language",
            b"X-Forwarded-For",
            b"Content-Encoding",
            b"Transfer-Encoding",
            // Not in the table: other spellings and other names.
            b"HOST",
            b"hOsT",
            b"Content-length",
            b"X-Custom",
            b"traceparent",
            b"a",
            b"Idempotency-Key",
            b"Upgrade",
            b"TE",
        ];
        for raw in names {
            let expected = HeaderName::from_bytes(raw).unwrap_or_else(|e| panic!("{raw:?}: {e}"));
            assert_eq!(
                parse(raw).ok(),
                Some(expected),
                "{}",
                String::from_utf8_lossy(raw)
            );
        }
    }

    #[test]
    fn refuses_what_the_general_parser_refuses() {
        for raw in [&b""[..], b"Bad Name", b"Host:", b"\x00", b"Content-Type\r"] {
            assert!(HeaderName::from_bytes(raw).is_err());
            assert!(parse(raw).is_err(), "{raw:?}");
        }
    }
}
