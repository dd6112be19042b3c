//! The client side of the facade's connections: plain HTTP/1.1 requests on
//! the facade's own connection (pipelined, with bodies, HEAD, `Connection:
//! close`), and the hand-over to hyper for everything else on the same
//! connection (HTTP/1.0, chunked bodies, malformed heads), and HTTP/2.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use test_harness::TestDatabase;

use crate::helpers::{
    legacy_only_config, read_response, read_response_after, spawn_upstream, sqlite_store, start_facade,
    RawResponse, TestFacade, Upstream, WAIT_LIMIT,
};

/// A facade with every route on one echoing upstream, and its store.
struct LegacyStack {
    _store: TestDatabase,
    upstream: Upstream,
    facade: TestFacade,
}

impl LegacyStack {
    async fn start() -> Self {
        let store = sqlite_store();
        let upstream = spawn_upstream("legacy").await;
        let facade = start_facade(&legacy_only_config(upstream.addr), store.url()).await;
        Self {
            _store: store,
            upstream,
            facade,
        }
    }

    /// Opens a connection to the facade and writes `bytes` on it.
    async fn send(&self, bytes: &[u8]) -> TcpStream {
        let mut stream = TcpStream::connect(self.facade.proxy).await.unwrap();
        stream.write_all(bytes).await.unwrap();
        stream
    }
}

/// Reads `N` answers off `stream`, in order; nothing may follow them.
async fn read_answers<const N: usize>(stream: &mut TcpStream) -> [RawResponse; N] {
    read_answers_after(stream, Vec::new()).await
}

/// [`read_answers`], the first of which may have begun in `read`, bytes
/// already taken off the stream.
async fn read_answers_after<const N: usize>(stream: &mut TcpStream, read: Vec<u8>) -> [RawResponse; N] {
    let mut answers = Vec::new();
    let mut leftover = read;
    for _ in 0..N {
        let (answer, rest) = read_response_after(stream, leftover).await;
        answers.push(answer);
        leftover = rest;
    }
    assert!(leftover.is_empty(), "bytes after the last answer: {leftover:?}");
    answers.try_into().unwrap()
}

/// Waits for the facade to close `stream`, and returns what came before.
async fn read_to_close(stream: &mut TcpStream) -> Vec<u8> {
    let mut rest = Vec::new();
    tokio::time::timeout(WAIT_LIMIT, stream.read_to_end(&mut rest))
        .await
        .expect("the facade did not close the connection")
        .expect("the connection failed instead of closing");
    rest
}

#[tokio::test]
async fn pipelined_requests_with_and_without_bodies_are_answered_in_order() {
    let stack = LegacyStack::start().await;
    // All three in one write: the body of the second ends where the third
    // request begins, inside the same read.
    let mut stream = stack
        .send(
            b"GET /first HTTP/1.1\r\nHost: shop\r\n\r\n\
              POST /second HTTP/1.1\r\nHost: shop\r\nContent-Length: 11\r\n\r\nhello world\
              GET /third?x=1 HTTP/1.1\r\nHost: shop\r\n\r\n",
        )
        .await;
    let answers: [RawResponse; 3] = read_answers(&mut stream).await;
    let bodies: Vec<Value> = answers.iter().map(RawResponse::json).collect();
    assert_eq!(
        answers.iter().map(|a| a.status).collect::<Vec<_>>(),
        [200, 200, 200]
    );
    assert_eq!(bodies[0]["path"], "/first");
    assert_eq!(bodies[1]["path"], "/second");
    assert_eq!(bodies[1]["method"], "POST");
    assert_eq!(bodies[1]["body_bytes"], 11);
    assert_eq!(bodies[2]["path"], "/third");
    assert_eq!(bodies[2]["query"], "x=1");
    assert_eq!(stack.upstream.hits(), 3);
    for answer in &answers {
        assert!(answer.header("x-request-id").is_some(), "{answer:?}");
        assert!(answer.header("date").is_some(), "{answer:?}");
    }

    // A body sent in pieces, its head first.
    stream
        .write_all(b"PUT /upload HTTP/1.1\r\nHost: shop\r\nContent-Length: 10\r\n\r\n01234")
        .await
        .unwrap();
    stream.flush().await.unwrap();
    stream.write_all(b"56789").await.unwrap();
    let [answer] = read_answers(&mut stream).await;
    assert_eq!(answer.status, 200, "{answer:?}");
}

#[tokio::test]
async fn head_answers_carry_no_body_and_the_connection_goes_on() {
    let stack = LegacyStack::start().await;
    let mut stream = stack
        .send(b"HEAD /products/1 HTTP/1.1\r\nHost: shop\r\n\r\nGET /after HTTP/1.1\r\nHost: shop\r\n\r\n")
        .await;
    // The HEAD answer's head is followed directly by the GET's answer.
    let mut buffer = Vec::new();
    let head_end = loop {
        if let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            break end + 4;
        }
        let mut chunk = [0u8; 4096];
        let n = tokio::time::timeout(WAIT_LIMIT, stream.read(&mut chunk))
            .await
            .unwrap()
            .unwrap();
        assert!(n > 0, "closed before the HEAD answer");
        buffer.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buffer[..head_end]).to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(
        head.contains("content-length: "),
        "HEAD keeps the GET's length: {head}"
    );
    let [after] = read_answers_after(&mut stream, buffer.split_off(head_end)).await;
    assert_eq!(after.status, 200);
    assert_eq!(after.json()["path"], "/after");
}

#[tokio::test]
async fn connection_close_is_honoured_and_said() {
    let stack = LegacyStack::start().await;
    let mut stream = stack
        .send(b"GET /bye HTTP/1.1\r\nHost: shop\r\nConnection: close\r\n\r\nGET /never HTTP/1.1\r\n\r\n")
        .await;
    let (answer, leftover) = read_response(&mut stream).await;
    assert_eq!(answer.status, 200);
    assert_eq!(answer.header("connection"), Some("close"));
    let rest = read_to_close(&mut stream).await;
    assert!(
        leftover.is_empty() && rest.is_empty(),
        "nothing after the last answer"
    );
    assert_eq!(
        stack.upstream.hits(),
        1,
        "the request after `close` was not served"
    );
}

#[tokio::test]
async fn unusual_requests_go_to_hyper_on_the_same_connection() {
    let stack = LegacyStack::start().await;
    // Plain, then chunked (hyper's), then plain again (still hyper's).
    let mut stream = stack.send(b"GET /plain HTTP/1.1\r\nHost: shop\r\n\r\n\
              POST /chunked HTTP/1.1\r\nHost: shop\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n\
              GET /later HTTP/1.1\r\nHost: shop\r\n\r\n").await;
    let answers: [RawResponse; 3] = read_answers(&mut stream).await;
    let bodies: Vec<Value> = answers.iter().map(RawResponse::json).collect();
    assert_eq!(bodies[0]["path"], "/plain");
    assert_eq!(bodies[1]["path"], "/chunked");
    assert_eq!(bodies[1]["body_bytes"], 5);
    assert_eq!(bodies[2]["path"], "/later");

    // HTTP/1.0 is hyper's from the first request.
    let mut stream = stack.send(b"GET /old HTTP/1.0\r\nHost: shop\r\n\r\n").await;
    let (answer, _) = read_response(&mut stream).await;
    assert_eq!(answer.status, 200);
    assert_eq!(answer.json()["path"], "/old");

    // A malformed head after a plain request gets hyper's 400, and nothing
    // reaches the stack.upstream.
    let hits = stack.upstream.hits();
    let mut stream = stack
        .send(b"GET /fine HTTP/1.1\r\nHost: shop\r\n\r\nGET /bad HTTP/1.1\r\nBad Header: x\r\n\r\n")
        .await;
    let (first, leftover) = read_response(&mut stream).await;
    assert_eq!(first.status, 200);
    let (second, _) = read_response_after(&mut stream, leftover).await;
    assert_eq!(second.status, 400, "{second:?}");
    assert_eq!(stack.upstream.hits(), hits + 1);
}

#[tokio::test]
async fn http2_with_prior_knowledge_is_served() {
    let stack = LegacyStack::start().await;
    let stream = TcpStream::connect(stack.facade.proxy).await.unwrap();
    let (mut sender, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .expect("no HTTP/2 handshake");
    tokio::spawn(connection);
    for path in ["/h2/one", "/h2/two"] {
        let request = hyper::Request::post(format!("http://shop{path}"))
            .body(Full::new(Bytes::from_static(b"abc")))
            .unwrap();
        let response = tokio::time::timeout(WAIT_LIMIT, sender.send_request(request))
            .await
            .unwrap()
            .expect("the HTTP/2 request failed");
        assert_eq!(response.status(), 200);
        assert_eq!(response.version(), hyper::Version::HTTP_2);
        let body = response.into_body().collect().await.unwrap().to_bytes();
        let body: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(body["path"], path);
        assert_eq!(body["body_bytes"], 3);
    }
}

#[tokio::test]
async fn a_client_that_stops_mid_body_is_not_forwarded_as_complete() {
    let stack = LegacyStack::start().await;
    let mut stream = stack
        .send(b"POST /cut HTTP/1.1\r\nHost: shop\r\nContent-Length: 100\r\n\r\nonly part")
        .await;
    stream.shutdown().await.unwrap();
    // The broken upload is the client's fault: a 400, never a complete
    // request upstream, and the connection ends.
    let rest = read_to_close(&mut stream).await;
    let text = String::from_utf8_lossy(&rest);
    assert!(text.starts_with("HTTP/1.1 400"), "{text}");
    assert!(text.contains("\"source\":\"client\""), "{text}");
}

/// A connection carries `max_requests_per_connection` requests at most: the
/// last answer says `Connection: close` and the facade closes it, on its own
/// HTTP/1.1 path and after a hand-over to hyper alike.
#[tokio::test]
async fn a_connection_carries_at_most_its_request_limit() {
    let store = sqlite_store();
    let upstream = spawn_upstream("legacy").await;
    let config = legacy_only_config(upstream.addr).replace(
        "access_log = false",
        "access_log = false\nmax_requests_per_connection = 3",
    );
    let facade = start_facade(&config, store.url()).await;
    let heads = [
        // All on the facade's own path.
        &b"GET /1 HTTP/1.1\r\nHost: shop\r\n\r\nGET /2 HTTP/1.1\r\nHost: shop\r\n\r\nGET /3 HTTP/1.1\r\nHost: shop\r\n\r\n"[..],
        // The second, chunked, hands the connection to hyper, which serves
        // the third and counts on from the first.
        &b"GET /1 HTTP/1.1\r\nHost: shop\r\n\r\nPOST /2 HTTP/1.1\r\nHost: shop\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\nGET /3 HTTP/1.1\r\nHost: shop\r\n\r\n"[..],
    ];
    for (case, requests) in heads.into_iter().enumerate() {
        let mut stream = TcpStream::connect(facade.proxy).await.unwrap();
        stream.write_all(requests).await.unwrap();
        let answers: [RawResponse; 3] = read_answers(&mut stream).await;
        assert!(
            answers.iter().all(|a| a.status == 200),
            "case {case}: {answers:?}"
        );
        assert_eq!(answers[1].header("connection"), None, "case {case}: {answers:?}");
        assert_eq!(
            answers[2].header("connection"),
            Some("close"),
            "case {case}: {answers:?}"
        );
        let after = read_to_close(&mut stream).await;
        assert!(after.is_empty(), "case {case}: {after:?}");
    }
}
