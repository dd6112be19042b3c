//! Differential property tests of the upstream response-head parser
//! ([`take_response`]) against hyper's HTTP/1.1 client.
//!
//! The oracle is hyper's real client connection
//! (`hyper::client::conn::http1`, default settings) on an in-memory
//! `tokio::io::duplex` stream: it sends a request (`GET`, `HEAD` or
//! `POST`), the other end holds the generated answer followed by end of
//! file, and the response hyper returns (or its error) is recorded with its
//! whole body. Framing is told apart by the body: every answer is followed
//! by the same bytes, `5\r\nhello\r\n0\r\n\r\n`, which a chunked reading
//! decodes to `hello`, a length reading cuts to its length, a close-framed
//! reading takes whole, and an empty reading ignores.
//!
//! The fast path is read as its caller reads it: interim (1xx) heads other
//! than 101 are skipped, as hyper's client skips them, and the head after
//! them is compared. Checked, on generated and mutated answers:
//! - when the fast path takes a head, hyper returns a response with the
//!   same status and headers (less what `take_response` documents it drops:
//!   `Connection` lines of only `close`/`keep-alive`, `Keep-Alive`, and
//!   `Content-Length` beside `Transfer-Encoding` on an answer with a
//!   body; order compared within a
//!   name, as only that order has meaning) and the same framing;
//! - when hyper refuses an answer, the fast path refuses it too.
//!
//! Where the fast path refuses and hyper accepts (it is stricter, and a
//! refused answer becomes a 502), nothing is asserted.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http_body_util::{BodyExt, Empty};
use hyper::{Method, Request};
use hyper_util::rt::TokioIo;
use proptest::prelude::*;
use test_harness::properties::config;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{take_response, ResponseFraming};

/// What follows every generated head.
const TAIL: &[u8] = b"5\r\nhello\r\n0\r\n\r\n";

thread_local! {
    static RUNTIME: tokio::runtime::Runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .expect("a runtime for the oracle");
}

/// What hyper's client made of an answer.
#[derive(Debug)]
struct Seen {
    status: u16,
    headers: Vec<(String, Vec<u8>)>,
    /// The body, or `None` if reading it failed.
    body: Option<Vec<u8>>,
}

fn hyper_sees(input: &[u8], method: &Method) -> Option<Seen> {
    let (input, method) = (input.to_vec(), method.clone());
    RUNTIME.with(|runtime| {
        runtime.block_on(async move {
            let (client, mut server) = tokio::io::duplex(input.len() + 64 * 1024);
            // The answer goes out once the request is in: hyper's client
            // refuses an answer that comes before its request.
            let upstream = tokio::spawn(async move {
                let mut request = Vec::new();
                while !request.ends_with(b"\r\n\r\n") {
                    let mut byte = [0u8; 1];
                    if server.read_exact(&mut byte).await.is_err() {
                        break;
                    }
                    request.push(byte[0]);
                }
                server.write_all(&input).await.expect("duplex write");
                server.shutdown().await.expect("duplex shutdown");
                server
            });
            let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(client))
                .await
                .expect("handshake");
            let driver = tokio::spawn(connection);
            let request = Request::builder()
                .method(method)
                .uri("/")
                .header("host", "upstream")
                .body(Empty::<Bytes>::new())
                .expect("a request");
            let wait = Duration::from_secs(5);
            let response = tokio::time::timeout(wait, sender.send_request(request))
                .await
                .ok()?
                .ok()?;
            let status = response.status().as_u16();
            let headers = response
                .headers()
                .iter()
                .map(|(n, v)| (n.as_str().to_owned(), v.as_bytes().to_vec()))
                .collect();
            let body = tokio::time::timeout(wait, response.into_body().collect())
                .await
                .ok()
                .and_then(Result::ok)
                .map(|collected| collected.to_bytes().to_vec());
            driver.abort();
            upstream.abort();
            Some(Seen {
                status,
                headers,
                body,
            })
        })
    })
}

/// The body the fast path's framing gives for what follows the head, or
/// `None` where it would fail (a length longer than what is there).
fn body_by(framing: ResponseFraming, rest: &[u8]) -> Option<Vec<u8>> {
    match framing {
        ResponseFraming::Empty => Some(Vec::new()),
        ResponseFraming::Length(n) => usize::try_from(n)
            .ok()
            .and_then(|n| rest.get(..n))
            .map(<[u8]>::to_vec),
        ResponseFraming::Chunked => (rest == TAIL).then(|| b"hello".to_vec()),
        ResponseFraming::UntilClose => Some(rest.to_vec()),
    }
}

/// hyper's headers less those `take_response` documents it drops.
fn comparable(seen: &Seen, method: &Method) -> Vec<(String, Vec<u8>)> {
    let has_body = *method != Method::HEAD && !matches!(seen.status, 100..=199 | 204 | 304);
    let chunked_or_te = has_body && seen.headers.iter().any(|(n, _)| n == "transfer-encoding");
    seen.headers
        .iter()
        .filter(|(name, value)| {
            if seen.status == 101 {
                return true;
            }
            let only_options = value.split(|&b| b == b',').map(<[u8]>::trim_ascii).all(|token| {
                token.eq_ignore_ascii_case(b"close") || token.eq_ignore_ascii_case(b"keep-alive")
            });
            !(name == "connection" && only_options
                || name == "keep-alive"
                || name == "content-length" && chunked_or_te)
        })
        .cloned()
        .collect()
}

fn check(input: &[u8], method: &Method) -> Result<(), String> {
    compare(input, method)
        .map_err(|problem| format!("{problem}\n  {method} answered by: \"{}\"", input.escape_ascii()))
}

fn compare(input: &[u8], method: &Method) -> Result<(), String> {
    let mut buffer = BytesMut::from(input);
    let head = loop {
        match take_response(&mut buffer, method) {
            Ok(Some(head)) if head.response.status().is_informational() && head.response.status() != 101 => {
                if head.framing != ResponseFraming::Empty {
                    return Err("an interim head with a body".into());
                }
            }
            Ok(head) => break Ok(head),
            Err(error) => break Err(error),
        }
    };
    let seen = hyper_sees(input, method);
    match (head, seen) {
        (Ok(Some(head)), Some(seen)) => {
            let mine: Vec<(String, Vec<u8>)> = head
                .response
                .headers()
                .iter()
                .map(|(n, v)| (n.as_str().to_owned(), v.as_bytes().to_vec()))
                .collect();
            let mut theirs = comparable(&seen, method);
            // Order matters within a name, not across names (RFC 9110
            // §5.3); `HeaderMap::remove` moves other names about.
            let mut mine = mine;
            mine.sort_by(|a, b| a.0.cmp(&b.0));
            theirs.sort_by(|a, b| a.0.cmp(&b.0));
            if head.response.status().as_u16() != seen.status || mine != theirs {
                return Err(format!(
                    "heads differ: fast path {} {mine:?}, hyper {} {theirs:?}",
                    head.response.status(),
                    seen.status
                ));
            }
            let body = body_by(head.framing, &buffer);
            if seen.status != 101 && body != seen.body {
                return Err(format!(
                    "framing differs: fast path {:?} reads {:?}, hyper reads {:?}",
                    head.framing,
                    body.map(|b| b.escape_ascii().to_string()),
                    seen.body.map(|b| b.escape_ascii().to_string())
                ));
            }
            Ok(())
        }
        (Ok(Some(head)), None) => Err(format!("the fast path took a head hyper refuses: {head:?}")),
        // Not a whole head: hyper, at end of file, returns nothing either.
        (Ok(None), None) | (Err(_), None) => Ok(()),
        (Ok(None), Some(seen)) => Err(format!("partial, yet hyper returned {seen:?}")),
        // Stricter than hyper: the answer becomes a 502.
        (Err(_), Some(_)) => Ok(()),
    }
}

fn status_line() -> impl Strategy<Value = Vec<u8>> {
    let code = prop_oneof![
        6 => prop::sample::select(vec![200u16, 201, 204, 206, 301, 304, 400, 404, 500, 502]),
        2 => prop::sample::select(vec![100u16, 101, 102, 103, 199]),
        1 => 0..1000u16,
    ];
    let version = prop_oneof![8 => Just("HTTP/1.1"), 2 => Just("HTTP/1.0"), 1 => prop::sample::select(vec!["HTTP/2.0", "http/1.1", "HTTP/1.1 "])];
    let reason = prop::sample::select(vec![" OK", " Whatever", "", " ", " \u{e9}"]);
    (version, code, reason)
        .prop_map(|(version, code, reason)| format!("{version} {code}{reason}").into_bytes())
}

fn header() -> impl Strategy<Value = (String, String)> {
    let name = prop::sample::select(vec![
        "Content-Length",
        "content-length",
        "Transfer-Encoding",
        "Connection",
        "Keep-Alive",
        "Upgrade",
        "Content-Type",
        "Set-Cookie",
        "X-Served-By",
        "Trailer",
        "Date",
    ]);
    let value = prop::sample::select(vec![
        "0",
        "5",
        "3",
        "18",
        "100",
        "007",
        "+5",
        "-1",
        "5, 5",
        "5, 6",
        " 5 ",
        "",
        "chunked",
        "Chunked",
        "gzip, chunked",
        "chunked, gzip",
        "gzip",
        "identity",
        "close",
        "keep-alive",
        "Keep-Alive, close",
        "upgrade",
        "x-custom",
        "timeout=5",
        "websocket",
        "text/plain",
        "a=b",
    ]);
    (name, value).prop_map(|(n, v)| (n.to_owned(), v.to_owned()))
}

prop_compose! {
    /// An answer: perhaps interim heads, then a final head, then `TAIL`.
    fn answer()(
        interim in prop::collection::vec(prop::sample::select(vec![100u16, 102, 103]), 0..2),
        line in status_line(),
        headers in prop::collection::vec(header(), 0..6),
    ) -> Vec<u8> {
        let mut out = Vec::new();
        for code in interim {
            out.extend_from_slice(format!("HTTP/1.1 {code} Wait\r\n\r\n").as_bytes());
        }
        out.extend_from_slice(&line);
        out.extend_from_slice(b"\r\n");
        for (name, value) in headers {
            out.extend_from_slice(format!("{name}: {value}\r\n").as_bytes());
        }
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(TAIL);
        out
    }
}

fn method() -> impl Strategy<Value = Method> {
    prop::sample::select(vec![Method::GET, Method::GET, Method::HEAD, Method::POST])
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn generated_answers_agree_with_hyper(input in answer(), method in method()) {
        check(&input, &method).map_err(TestCaseError::fail)?;
    }

    #[test]
    fn mutated_answers_agree_with_hyper(
        input in answer(),
        method in method(),
        edits in prop::collection::vec((0.0..1.0f64, 0..3u8, prop::sample::select(b"\r\n\t :,0a\x00\x7f\x80".to_vec())), 1..4),
    ) {
        // The head is mutated, not `TAIL`, which tells the framings apart.
        let mut input = input[..input.len() - TAIL.len()].to_vec();
        for (at, op, byte) in edits {
            let i = ((input.len() as f64) * at) as usize;
            match op {
                0 => input.insert(i.min(input.len()), byte),
                1 if i < input.len() => { input.remove(i); }
                _ if i < input.len() => input[i] = byte,
                _ => {}
            }
        }
        input.extend_from_slice(TAIL);
        check(&input, &method).map_err(TestCaseError::fail)?;
    }
}

/// The oracle itself tells the framings apart.
#[test]
fn the_oracle_reads_each_framing() {
    let body = |head: &str, method: &Method| {
        hyper_sees(&[head.as_bytes(), TAIL].concat(), method)
            .and_then(|seen| seen.body)
            .expect("a body")
    };
    assert_eq!(
        body(
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
            &Method::GET
        ),
        b"hello"
    );
    assert_eq!(
        body("HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n", &Method::GET),
        b"5\r\n"
    );
    assert_eq!(body("HTTP/1.1 200 OK\r\n\r\n", &Method::GET), TAIL);
    assert_eq!(
        body("HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n", &Method::HEAD),
        b""
    );
}
