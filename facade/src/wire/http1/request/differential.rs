//! Differential property tests of the fast path's request-head parser
//! ([`take_request`]) against hyper's own HTTP/1.1 server.
//!
//! The oracle is hyper's real server connection
//! (`hyper::server::conn::http1`, configured as the facade configures the
//! one it hands connections to: `max_buf_size` 8192, no timer) run on an
//! in-memory `tokio::io::duplex` stream. It is fed the same bytes followed
//! by end of file, and its service records the first request it is handed.
//! hyper "accepts" a head when it calls the service, and "refuses" it when
//! it does not (it answers 400 or 431, or closes). The flow then applies
//! one rule of its own to what hyper accepts: RFC 9112 §3.2's exactly one
//! valid `Host` (`handle.rs`, `host_field`), which the fast path applies
//! as it parses; the oracle applies it too.
//!
//! Checked, on generated heads and on byte-level mutations of them:
//! - `Plain`: hyper accepts, with the same method, target, version,
//!   headers (names, values, order) and body framing (its body's exact
//!   size hint equals the fast path's `Content-Length` or 0), treats the
//!   request as no upgrade, and the facade's `Host` rule passes;
//! - `Invalid`: hyper refuses, or the facade's `Host` rule refuses what
//!   hyper accepted;
//! - `TargetTooLong`: hyper refuses (its 431 where the fast path says 414);
//! - `Partial`: hyper, seeing end of file there, dispatches nothing;
//! - `Handoff`: anything (hyper decides);
//! - a `Plain` head leaves exactly the bytes after it in the buffer.

use std::sync::{Arc, Mutex};

use bytes::{Bytes, BytesMut};
use http_body_util::Empty;
use hyper::body::{Body, Incoming};
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use proptest::prelude::*;
use test_harness::properties::config;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{is_host, take_request, Parsed, BAD_HOST};

/// The head limit both sides use here: hyper's smallest buffer, which the
/// facade's handoff builder also never goes below.
const MAX_HEAD: usize = 8192;

/// What hyper's server was handed as the first request, if anything.
#[derive(Debug, Clone)]
struct Seen {
    method: hyper::Method,
    uri: String,
    version: hyper::Version,
    headers: Vec<(String, Vec<u8>)>,
    exact_length: Option<u64>,
    upgrade: bool,
}

thread_local! {
    static RUNTIME: tokio::runtime::Runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .expect("a runtime for the oracle");
}

/// Runs hyper's HTTP/1.1 server over `input` and returns the first request
/// it dispatched. The runtime's clock is paused, so a connection that
/// waits for nothing ends at once (the timeout) instead of hanging.
fn hyper_sees(input: &[u8]) -> Option<Seen> {
    let seen: Arc<Mutex<Option<Seen>>> = Arc::default();
    let record = Arc::clone(&seen);
    let input = input.to_vec();
    RUNTIME.with(|runtime| {
        runtime.block_on(async move {
            let (mut client, server) = tokio::io::duplex(input.len() + 64 * 1024);
            client.write_all(&input).await.expect("duplex write");
            client.shutdown().await.expect("duplex shutdown");
            let service = service_fn(move |request: Request<Incoming>| {
                let mut slot = record.lock().expect("oracle lock");
                if slot.is_none() {
                    *slot = Some(Seen {
                        method: request.method().clone(),
                        uri: request.uri().to_string(),
                        version: request.version(),
                        headers: request
                            .headers()
                            .iter()
                            .map(|(n, v)| (n.as_str().to_owned(), v.as_bytes().to_vec()))
                            .collect(),
                        exact_length: request.body().size_hint().exact(),
                        upgrade: request.extensions().get::<hyper::upgrade::OnUpgrade>().is_some(),
                    });
                }
                async { Ok::<_, std::convert::Infallible>(Response::new(Empty::<Bytes>::new())) }
            });
            let connection = hyper::server::conn::http1::Builder::new()
                .max_buf_size(MAX_HEAD)
                .serve_connection(TokioIo::new(server), service)
                .with_upgrades();
            let _ = tokio::time::timeout(std::time::Duration::from_secs(5), connection).await;
            let mut out = Vec::new();
            let _ =
                tokio::time::timeout(std::time::Duration::from_secs(1), client.read_to_end(&mut out)).await;
        })
    });
    let taken = seen.lock().expect("oracle lock").take();
    taken
}

/// The flow's `Host` rule for what hyper serves (`handle.rs`, `host_field`).
fn host_rule_passes(seen: &Seen) -> bool {
    if seen.version != hyper::Version::HTTP_11 {
        return true;
    }
    let mut hosts = seen.headers.iter().filter(|(n, _)| n == "host");
    matches!((hosts.next(), hosts.next()), (Some((_, v)), None) if is_host(v))
}

/// Checks one input; `Err` describes a disagreement, and the input.
fn check(input: &[u8]) -> Result<(), String> {
    compare(input).map_err(|problem| format!("{problem}\n  input: \"{}\"", input.escape_ascii()))
}

fn compare(input: &[u8]) -> Result<(), String> {
    let mut buffer = BytesMut::from(input);
    let parsed = take_request(&mut buffer, MAX_HEAD);
    let oracle = hyper_sees(input);
    match (&parsed, &oracle) {
        (Parsed::Handoff, _) => Ok(()),
        (Parsed::Plain(plain), Some(seen)) => {
            let request = &plain.request;
            let headers: Vec<(String, Vec<u8>)> = request
                .headers()
                .iter()
                .map(|(n, v)| (n.as_str().to_owned(), v.as_bytes().to_vec()))
                .collect();
            let mine = (
                request.method(),
                request.uri().to_string(),
                request.version(),
                &headers,
            );
            let theirs = (&seen.method, seen.uri.clone(), seen.version, &seen.headers);
            if mine != theirs {
                return Err(format!("heads differ: fast path {mine:?}, hyper {theirs:?}"));
            }
            if seen.exact_length != Some(plain.body_length) {
                return Err(format!(
                    "framing differs: fast path length {}, hyper {:?}",
                    plain.body_length, seen.exact_length
                ));
            }
            if seen.upgrade {
                return Err("hyper treats the request as an upgrade (a tunnel after the answer)".into());
            }
            if !host_rule_passes(seen) {
                return Err("the fast path accepted a Host the flow refuses".into());
            }
            let head_length = input.len() - buffer.len();
            if buffer[..] != input[head_length..] {
                return Err("the bytes after the head were not left in the buffer".into());
            }
            Ok(())
        }
        (Parsed::Plain(_), None) => Err("the fast path accepted a head hyper refuses".into()),
        (Parsed::Invalid(problem), Some(seen)) => {
            if *problem == BAD_HOST && !host_rule_passes(seen) {
                Ok(())
            } else {
                Err(format!(
                    "the fast path refused ({problem}) a head hyper accepts: {seen:?}"
                ))
            }
        }
        (Parsed::Invalid(_), None) | (Parsed::TargetTooLong, None) => Ok(()),
        (Parsed::TargetTooLong, Some(seen)) => Err(format!("414 for a head hyper accepts: {seen:?}")),
        (Parsed::Partial, None) => Ok(()),
        (Parsed::Partial, Some(seen)) => Err(format!("partial, yet hyper dispatched {seen:?}")),
    }
}

fn method() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        8 => prop::sample::select(vec!["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"]).prop_map(|m| m.as_bytes().to_vec()),
        1 => prop::sample::select(vec!["CONNECT", "TRACE", "PRI", "get", "M-SEARCH", "G(T", "", "GET\t", "X"]).prop_map(|m| m.as_bytes().to_vec()),
        1 => prop::collection::vec(prop::sample::select(b"AZaz09!#$%&'*+-.^_`|~(@ \x7f\x80".to_vec()), 1..6),
    ]
}

fn target() -> impl Strategy<Value = Vec<u8>> {
    let piece = prop_oneof![
        24 => "[a-z0-9]{1,6}".prop_map(String::into_bytes),
        4 => prop::sample::select(vec!["/", "//", ".", "..", "%2e", "%2F", "%", "%zz", "?", "?a=b&c", "#f", ";p", "~", "*", ":", "@"]).prop_map(|s| s.as_bytes().to_vec()),
        1 => prop::collection::vec(prop::sample::select(b"\"<>\\^`{|} \t\x00\x7f\x80\xff\xc3\xa9[]".to_vec()), 1..3),
    ];
    let rest = prop::collection::vec(piece, 0..8).prop_map(|pieces| pieces.concat());
    prop_oneof![
        8 => rest.clone().prop_map(|r| [b"/".as_slice(), &r].concat()),
        1 => prop::sample::select(vec!["*", "http://shop/x", "shop:443", "", "//x"]).prop_map(|s| s.as_bytes().to_vec()),
        1 => rest,
    ]
}

fn version() -> impl Strategy<Value = &'static [u8]> {
    prop_oneof![
        12 => Just(b"HTTP/1.1".as_slice()),
        1 => prop::sample::select(vec![b"HTTP/1.0".as_slice(), b"HTTP/2.0", b"HTTP/1.2", b"http/1.1", b"HTTP/1.1 ", b"HTTP/1", b""]),
    ]
}

fn header() -> impl Strategy<Value = (Vec<u8>, Vec<u8>)> {
    let name = prop_oneof![
        10 => prop::sample::select(vec![
            "Host", "host", "Content-Length", "content-length", "Transfer-Encoding", "Connection",
            "Upgrade", "Expect", "Accept", "X-Request-Id", "Cookie", "TE", "Keep-Alive", "Trailer",
        ]).prop_map(|n| n.as_bytes().to_vec()),
        1 => "[A-Za-z0-9!#$%&'*+.^_`|~-]{1,12}".prop_map(String::into_bytes),
        1 => prop::sample::select(vec!["", "Bad Name", "X:Y", "Host ", " Host", "X\x00", "\u{e9}"]).prop_map(|n| n.as_bytes().to_vec()),
    ];
    let value = prop_oneof![
        10 => "[ -~]{0,16}".prop_map(String::into_bytes),
        4 => prop::sample::select(vec![
            "0", "5", "007", "+5", "-1", "5, 5", "5,6", " 5 ", "1e3", "18446744073709551613",
            "18446744073709551614", "99999999999999999999", "chunked", "gzip, chunked", "close",
            "keep-alive, close", "upgrade", "Upgrade", "100-continue", "websocket", "shop",
            "shop:8080", "[::1]:80", "me@shop", "shop/x", "a b", "",
        ]).prop_map(|v| v.as_bytes().to_vec()),
        1 => prop::collection::vec(prop::sample::select(b"\t \x00\x01\x7f\x80\xff\r\n,;=\"a5".to_vec()), 0..6),
    ];
    (name, value)
}

/// A header line a well-behaved client sends.
fn clean_header() -> impl Strategy<Value = (Vec<u8>, Vec<u8>)> {
    prop_oneof![
        4 => (prop::sample::select(vec!["Accept", "user-agent", "X-Request-Id", "Cookie", "Accept-Encoding"]), "[ -~]{0,24}")
            .prop_map(|(n, v)| (n.as_bytes().to_vec(), v.into_bytes())),
        1 => "[0-9]{1,6}".prop_map(|v| (b"Content-Length".to_vec(), v.into_bytes())),
        1 => prop::sample::select(vec!["close", "keep-alive", "Keep-Alive, close", "te"]).prop_map(|v| (b"Connection".to_vec(), v.as_bytes().to_vec())),
    ]
}

prop_compose! {
    /// A request head (and a few bytes after it) as a client might send it,
    /// valid more often than not.
    fn head()(
        method in method(),
        target in target(),
        version in version(),
        headers in prop_oneof![
            prop::collection::vec(header(), 0..6),
            prop::collection::vec(clean_header(), 0..6),
        ],
        host in prop::option::weighted(0.8, prop::sample::select(vec!["shop", "shop.example:8080", "10.0.0.1"])),
        bare_lf in prop::bool::weighted(0.05),
        tail in prop::collection::vec(any::<u8>(), 0..12),
    ) -> Vec<u8> {
        let eol: &[u8] = if bare_lf { b"\n" } else { b"\r\n" };
        let mut out = [method.as_slice(), b" ", &target, b" ", version, eol].concat();
        if let Some(host) = host {
            out.extend_from_slice(b"Host: ");
            out.extend_from_slice(host.as_bytes());
            out.extend_from_slice(eol);
        }
        for (name, value) in headers {
            out.extend_from_slice(&name);
            out.extend_from_slice(b": ");
            out.extend_from_slice(&value);
            out.extend_from_slice(eol);
        }
        out.extend_from_slice(eol);
        out.extend_from_slice(&tail);
        out
    }
}

/// One edit of a head: (where, as a share of its length; what).
fn mutation() -> impl Strategy<Value = (f64, u8, u8)> {
    let byte = prop_oneof![
        3 => prop::sample::select(b"\r\n\t :,/%.?#@\x00\x7f\x80\xff0a".to_vec()),
        1 => any::<u8>(),
    ];
    (0.0..1.0f64, 0..4u8, byte)
}

fn mutate(mut input: Vec<u8>, edits: &[(f64, u8, u8)]) -> Vec<u8> {
    for &(at, op, byte) in edits {
        let i = ((input.len() as f64) * at) as usize;
        match op {
            0 => input.insert(i.min(input.len()), byte),
            1 if i < input.len() => {
                input.remove(i);
            }
            2 if i < input.len() => input[i] = byte,
            _ => {
                // Repeat a short stretch: duplicated lines and separators.
                let end = (i + 1 + usize::from(byte % 24)).min(input.len());
                let stretch = input[i.min(end)..end].to_vec();
                input.splice(end..end, stretch);
            }
        }
    }
    input
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn generated_heads_agree_with_hyper(input in head()) {
        check(&input).map_err(TestCaseError::fail)?;
    }

    #[test]
    fn mutated_heads_agree_with_hyper(input in head(), edits in prop::collection::vec(mutation(), 1..4)) {
        check(&mutate(input, &edits)).map_err(TestCaseError::fail)?;
    }

    #[test]
    fn every_prefix_of_a_head_waits_or_agrees(input in head(), cut in 0.0..1.0f64) {
        let cut = ((input.len() as f64) * cut) as usize;
        check(&input[..cut]).map_err(TestCaseError::fail)?;
    }

    #[test]
    fn long_heads_near_the_limit_agree(input in head(), pad in 7000..9500usize, in_target in any::<bool>()) {
        // Pad the target or add a long header line, around the limit.
        let mut padded = input;
        let at = if in_target {
            padded.iter().position(|&b| b == b' ').map_or(0, |i| i + 2)
        } else {
            padded.iter().position(|&b| b == b'\n').map_or(0, |i| i + 1)
        };
        let fill: Vec<u8> = if in_target { vec![b'a'; pad] } else { [b"X-Pad: ".as_slice(), &vec![b'a'; pad], b"\r\n"].concat() };
        padded.splice(at.min(padded.len())..at.min(padded.len()), fill);
        check(&padded).map_err(TestCaseError::fail)?;
    }
}

/// The oracle itself: hyper accepts a plain head and refuses a broken one.
#[test]
fn the_oracle_tells_accepted_from_refused() {
    assert!(hyper_sees(b"GET / HTTP/1.1\r\nHost: shop\r\n\r\n").is_some());
    assert!(hyper_sees(b"GET / HTTP/1.1\r\nBad Name: x\r\n\r\n").is_none());
    assert!(hyper_sees(b"GET / HTTP/1.1\r\nHost: shop\r\n").is_none());
    let seen = hyper_sees(b"POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc").expect("accepted");
    assert_eq!(seen.exact_length, Some(3));
}
