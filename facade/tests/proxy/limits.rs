//! Requests the facade must refuse (ambiguous framing, bodies and heads over
//! the limits) and upstreams that fail (unreachable, too slow), each with
//! the status and the side that failed.

use std::convert::Infallible;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use reqwest::{Method, StatusCode};
use test_harness::TestDatabase;

use crate::helpers::{
    closed_address, eventually, raw_request, read_response, spawn_upstream, sqlite_store, start_facade,
    RawResponse, Shop, TestFacade, Upstream,
};

/// The shop with small limits: bodies up to 1 KiB, heads up to 8 KiB.
const SMALL_LIMITS: &str = "max_body_bytes = 1024\nmax_header_bytes = 8192";

/// Sends `POST /orders` with the header lines `framing` and then `body`,
/// as they are, through `facade`.
async fn post_orders(facade: &TestFacade, framing: &str, body: &str) -> RawResponse {
    let request =
        format!("POST /orders HTTP/1.1\r\nHost: shop.example\r\n{framing}Connection: close\r\n\r\n{body}");
    raw_request(facade.proxy, request.as_bytes()).await
}

/// `POST /upload` of `length` times `byte`, its length declared.
fn declared_upload(length: usize, byte: u8) -> Vec<u8> {
    let mut request = format!(
        "POST /upload HTTP/1.1\r\nHost: shop.example\r\nContent-Length: {length}\r\nConnection: close\r\n\r\n"
    )
    .into_bytes();
    request.resize(request.len() + length, byte);
    request
}

/// `POST /upload` of `chunks` chunks of 256 bytes, so that its size shows
/// only while it streams.
fn chunked_upload(chunks: usize) -> Vec<u8> {
    let mut request =
        b"POST /upload HTTP/1.1\r\nHost: shop.example\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
            .to_vec();
    for _ in 0..chunks {
        request.extend_from_slice(b"100\r\n");
        request.extend_from_slice(&[b'y'; 256]);
        request.extend_from_slice(b"\r\n");
    }
    request.extend_from_slice(b"0\r\n\r\n");
    request
}

/// Checks that the facade refused the client's request with `status`.
fn assert_refused_as_the_clients(response: &RawResponse, status: u16) {
    assert_eq!(response.status, status, "{response:?}");
    assert_eq!(response.json()["source"], "client", "{response:?}");
}

#[tokio::test]
async fn both_content_length_and_transfer_encoding_never_reach_an_upstream_together() {
    let (_store, _shop, facade) = Shop::start("").await;

    // hyper parses the head before the facade sees it: Transfer-Encoding
    // wins and Content-Length is dropped, as RFC 9112 §6.1 allows instead of
    // a 400, and the connection is closed after the answer. What must hold:
    // the upstream gets one unambiguous framing and exactly the chunked body.
    for request in [
        "POST /orders HTTP/1.1\r\nHost: shop.example\r\nContent-Length: 5\r\n\
         Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        "POST /orders HTTP/1.1\r\nHost: shop.example\r\nTransfer-Encoding: chunked\r\n\
         Content-Length: 5\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    ] {
        let response = raw_request(facade.proxy, request.as_bytes()).await;
        assert_eq!(response.status, 200, "{response:?}");
        let echo = response.json();
        let headers = &echo["headers"];
        assert!(
            headers.get("content-length").is_none() || headers.get("transfer-encoding").is_none(),
            "the upstream got both framings: {echo}"
        );
        assert_eq!(echo["body_bytes"], 5, "{echo}");
        assert!(
            response
                .headers
                .iter()
                .any(|(name, value)| name == "connection" && value.eq_ignore_ascii_case("close")),
            "the connection must close after an ambiguously framed request: {response:?}"
        );
    }
}

#[tokio::test]
async fn a_transfer_coding_other_than_chunked_is_not_dropped_on_the_way() {
    let (_store, shop, facade) = Shop::start("").await;

    // The client says the body is gzip-coded, then chunked. The facade only
    // removes the chunking: it must refuse the request (RFC 9112 §6.1
    // suggests 501) or let the upstream know the body is still gzip-coded.
    let before = shop.hits();
    let response = post_orders(
        &facade,
        "Transfer-Encoding: gzip, chunked\r\n",
        "5\r\nhello\r\n0\r\n\r\n",
    )
    .await;
    if response.status == 200 {
        let echo = response.json();
        let codings = echo["headers"]["transfer-encoding"].to_string();
        assert!(
            codings.contains("gzip"),
            "the upstream got the gzip-coded body as plain bytes (transfer-encoding {codings}): {echo}"
        );
    } else {
        assert!(matches!(response.status, 400 | 501), "{response:?}");
        assert_eq!(shop.hits(), before, "a refused request was forwarded");
    }
}

#[tokio::test]
async fn differing_content_lengths_are_refused_unforwarded() {
    let (_store, shop, facade) = Shop::start("").await;

    let before = shop.hits();
    let response = post_orders(&facade, "Content-Length: 5\r\nContent-Length: 6\r\n", "hello!").await;
    assert_eq!(response.status, 400, "{response:?}");
    assert_eq!(
        shop.hits(),
        before,
        "differing Content-Length headers were forwarded"
    );

    // Repeating the same length is not ambiguous.
    let response = post_orders(&facade, "Content-Length: 5\r\nContent-Length: 5\r\n", "hello").await;
    assert_eq!(response.status, 200, "{response:?}");
    assert_eq!(response.json()["body_bytes"], 5);
}

#[tokio::test]
async fn bodies_over_the_limit_get_413() {
    let (_store, shop, facade) = Shop::start(SMALL_LIMITS).await;

    // Declared too large: refused at once, never forwarded.
    let before = shop.hits();
    let response = raw_request(facade.proxy, &declared_upload(2048, b'x')).await;
    assert_refused_as_the_clients(&response, 413);
    assert_eq!(shop.hits(), before, "a body declared too large was forwarded");

    // Chunked, so the size shows only while streaming: still a 413.
    let response = raw_request(facade.proxy, &chunked_upload(8)).await;
    assert_refused_as_the_clients(&response, 413);

    // At the limit, both ways, the body goes through whole.
    for (way, request) in [
        ("declared", declared_upload(1024, b'z')),
        ("chunked", chunked_upload(4)),
    ] {
        let response = raw_request(facade.proxy, &request).await;
        assert_eq!(response.status, 200, "{way}: {response:?}");
        assert_eq!(response.json()["bytes"], 1024, "{way}: {response:?}");
    }
}

#[tokio::test]
async fn a_body_over_the_limit_is_not_counted_as_an_upstream_error() {
    let (_store, _shop, facade) = Shop::start(SMALL_LIMITS).await;

    let response = raw_request(facade.proxy, &chunked_upload(8)).await;
    assert_refused_as_the_clients(&response, 413);

    let metrics = facade.metrics().await;
    let upstream_errors: Vec<&str> = metrics
        .lines()
        .filter(|line| line.starts_with("strangler_facade_upstream_errors_total"))
        .collect();
    assert!(
        upstream_errors.is_empty(),
        "the client's oversized body was counted as an upstream failure: {upstream_errors:?}"
    );
}

#[tokio::test]
async fn a_head_over_the_limit_gets_431() {
    let (_store, shop, facade) = Shop::start(SMALL_LIMITS).await;
    let with_header_of = |bytes: usize| {
        let big = "a".repeat(bytes);
        format!("GET /orders/1 HTTP/1.1\r\nHost: shop.example\r\nX-Big: {big}\r\nConnection: close\r\n\r\n")
    };

    let before = shop.hits();
    let response = raw_request(facade.proxy, with_header_of(10 * 1024).as_bytes()).await;
    assert_eq!(response.status, 431, "{response:?}");
    assert_eq!(shop.hits(), before);

    // A head within the limit is served.
    let response = raw_request(facade.proxy, with_header_of(4 * 1024).as_bytes()).await;
    assert_eq!(response.status, 200, "{response:?}");
}

/// A facade with a `slow` capability (`/slow/*`, 300 ms request timeout)
/// and a `dead` one (`/dead/*`, nothing listening), on a fresh store.
async fn start_failing() -> (TestDatabase, TestFacade) {
    let store = sqlite_store();
    let (legacy, slow) = (spawn_upstream("legacy").await, spawn_upstream("slow").await);
    let facade = start_facade(&failing_config(&legacy, &slow).await, store.url()).await;
    (store, facade)
}

async fn failing_config(legacy: &Upstream, slow: &Upstream) -> String {
    let dead = closed_address().await;
    let (legacy, slow) = (legacy.addr, slow.addr);
    format!(
        r#"
[facade]
default_backend = "legacy"

[backends.legacy]
urls = ["http://{legacy}"]

[backends.slow]
urls = ["http://{slow}"]
request_timeout_ms = 300

[backends.dead]
urls = ["http://{dead}"]
connect_timeout_ms = 500

[capabilities.slow]
legacy = "slow"
service = "legacy"

[capabilities.dead]
legacy = "dead"
service = "legacy"

[[routes]]
capability = "slow"
path = "/slow/*"

[[routes]]
capability = "dead"
path = "/dead/*"
"#
    )
}

#[tokio::test]
async fn an_unreachable_upstream_is_a_502_from_the_upstream() {
    let (_store, facade) = start_failing().await;

    let response = facade.client.get(facade.url("/dead/x")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::BAD_GATEWAY);
    assert_eq!(response.headers()["content-type"], "application/json");
    assert!(response.headers().contains_key("x-request-id"));
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["source"], "upstream", "{body}");
    assert!(body["error"].is_string(), "{body}");
    // The facade itself is fine: other routes still work.
    assert_eq!(facade.side(Method::GET, "/alive").await, "legacy");
}

#[tokio::test]
async fn a_slow_client_upload_is_not_blamed_on_the_upstream() {
    let (_store, facade) = start_failing().await;

    // The client takes about 600 ms to send its body; the upstream answers
    // as soon as it has it. The 300 ms limit is on the upstream's answer.
    let frames = futures::stream::iter(0..10).then(|_| async {
        tokio::time::sleep(std::time::Duration::from_millis(60)).await;
        Ok::<_, Infallible>(Frame::data(Bytes::from_static(b"0123456789")))
    });
    let client: Client<_, BoxBody<Bytes, Infallible>> = Client::builder(TokioExecutor::new()).build_http();
    let upload = hyper::Request::post(facade.url("/slow/upload"))
        .body(BodyExt::boxed(StreamBody::new(frames)))
        .unwrap();
    let response = client.request(upload).await.unwrap();
    let status = response.status();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(
        status,
        200,
        "a slow client's upload to a fast upstream was answered: {}",
        String::from_utf8_lossy(&body)
    );
    let echo: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(echo["body_bytes"], 100);
}

#[tokio::test]
async fn a_slow_upstream_is_a_504() {
    let (_store, facade) = start_failing().await;

    assert_eq!(facade.side(Method::GET, "/slow/x?sleep_ms=50").await, "slow");
    let started = std::time::Instant::now();
    let (status, body) = facade.call(Method::GET, "/slow/x?sleep_ms=5000").await;
    let elapsed = started.elapsed();
    assert_eq!(status, StatusCode::GATEWAY_TIMEOUT, "{body}");
    assert_eq!(body["source"], "upstream", "{body}");
    assert!(body["error"].as_str().unwrap().contains("slow"), "{body}");
    assert!(
        elapsed >= std::time::Duration::from_millis(250) && elapsed < std::time::Duration::from_secs(3),
        "answered after {elapsed:?}, expected about 300 ms"
    );
}

/// Beyond `max_connections` open client connections, a new one is answered
/// 503 and closed at once; when one closes, the next is served again.
#[tokio::test]
async fn connections_over_the_limit_get_a_503_and_are_closed() {
    let (_store, _shop, facade) = Shop::start("max_connections = 2").await;
    let first = tokio::net::TcpStream::connect(facade.proxy).await.unwrap();
    let mut second = tokio::net::TcpStream::connect(facade.proxy).await.unwrap();
    // Served: the second connection answers a request.
    tokio::io::AsyncWriteExt::write_all(&mut second, b"GET /products/1 HTTP/1.1\r\nHost: shop\r\n\r\n")
        .await
        .unwrap();
    let (served, _) = read_response(&mut second).await;
    assert_eq!(served.status, 200, "{served:?}");

    let refused = raw_request(facade.proxy, b"GET /products/1 HTTP/1.1\r\nHost: shop\r\n\r\n").await;
    assert_eq!(refused.status, 503, "{refused:?}");
    assert_eq!(refused.header("retry-after"), Some("1"));
    assert!(
        refused.json()["error"]
            .as_str()
            .unwrap()
            .contains("too many open connections"),
        "{refused:?}"
    );

    drop(first);
    let (within, every) = (Duration::from_secs(5), Duration::from_millis(10));
    eventually("a connection to be served again", within, every, async || {
        let answer = raw_request(
            facade.proxy,
            b"GET /products/1 HTTP/1.1\r\nHost: shop\r\nConnection: close\r\n\r\n",
        )
        .await;
        match answer.status {
            200 => Ok(()),
            other => Err(format!("still {other}")),
        }
    })
    .await;
}

/// A client trickling its request head a byte at a time (slowloris) is
/// dropped once `header_read_timeout_ms` has passed since the connection
/// started waiting for the head, however steadily the bytes come; a client
/// that sends its head in time on the same settings is served.
#[tokio::test]
async fn a_client_trickling_its_head_is_dropped_at_the_head_timeout() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let (_store, _shop, facade) = Shop::start("header_read_timeout_ms = 400").await;
    let served = raw_request(facade.proxy, b"GET /products/1 HTTP/1.1\r\nHost: shop\r\n\r\n").await;
    assert_eq!(served.status, 200, "{served:?}");

    let mut trickle = tokio::net::TcpStream::connect(facade.proxy).await.unwrap();
    let started = std::time::Instant::now();
    let head = b"GET /products/1 HTTP/1.1\r\nHost: shop\r\nX-Slow: "
        .iter()
        .chain(b"a".repeat(1000).iter())
        .copied()
        .collect::<Vec<u8>>();
    let mut closed_after = None;
    for byte in head {
        // One byte every 20 ms: the head would take 20 s to arrive whole.
        if trickle.write_all(&[byte]).await.is_err() {
            closed_after = Some(started.elapsed());
            break;
        }
        let mut answer = [0u8; 512];
        match tokio::time::timeout(Duration::from_millis(20), trickle.read(&mut answer)).await {
            // Closed by the facade (or reset): the client was dropped.
            Ok(Ok(0) | Err(_)) => {
                closed_after = Some(started.elapsed());
                break;
            }
            Ok(Ok(n)) => panic!(
                "answered a head that never ended: {:?}",
                String::from_utf8_lossy(&answer[..n])
            ),
            Err(_) => {}
        }
    }
    let closed_after = closed_after.expect("the trickling client was never dropped");
    assert!(
        closed_after >= Duration::from_millis(350) && closed_after < Duration::from_secs(5),
        "dropped after {closed_after:?}, expected about 400 ms"
    );
}

#[tokio::test]
async fn the_head_limit_is_the_same_over_http2() {
    let (_store, shop, facade) = Shop::start("max_header_bytes = 65536").await;
    let stream = tokio::net::TcpStream::connect(facade.proxy).await.unwrap();
    let (mut sender, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), hyper_util::rt::TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(connection);
    let with_header_of = |bytes: usize| {
        hyper::Request::get("http://shop.example/orders/1")
            .header("x-big", "a".repeat(bytes))
            .body(http_body_util::Empty::<Bytes>::new())
            .unwrap()
    };
    // Over HTTP/1.1 a 40 KiB header is within the limit; so over HTTP/2,
    // beyond HTTP/2's own default of 16 KiB.
    let response = raw_request(
        facade.proxy,
        format!(
            "GET /orders/1 HTTP/1.1\r\nHost: shop.example\r\nX-Big: {}\r\nConnection: close\r\n\r\n",
            "a".repeat(40 * 1024)
        )
        .as_bytes(),
    )
    .await;
    assert_eq!(response.status, 200, "{response:?}");
    let response = sender.send_request(with_header_of(40 * 1024)).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);

    let before = shop.hits();
    let response = sender.send_request(with_header_of(70 * 1024)).await.unwrap();
    assert_eq!(response.status(), StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
    assert_eq!(shop.hits(), before);
}
