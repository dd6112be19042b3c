//! The PROXY protocol on the proxy listeners (`proxy_protocol = true`):
//! the client a TCP balancer names in its v1 or v2 header is the client
//! the upstream hears of, over plain HTTP and TLS, for every request of the
//! connection; a `LOCAL` header keeps the connection's address; a
//! connection without a header, with a broken one or with one that never
//! ends is closed unanswered and counted.

use std::net::SocketAddr;
use std::time::Duration;

use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use crate::helpers::tls::{get, send_on};
use crate::helpers::{metric_value, read_response, read_response_after, TestFacade};
use crate::tls::TlsFront;

/// A v2 header: `command` 1 (PROXY) or 0 (LOCAL), from `source` to port 443.
fn v2(command: u8, source: SocketAddr) -> Vec<u8> {
    let mut header = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    header.push(0x20 | command);
    let mut addresses = Vec::new();
    match source {
        SocketAddr::V4(v4) => {
            header.push(0x11);
            addresses.extend_from_slice(&v4.ip().octets());
            addresses.extend_from_slice(&[10, 0, 0, 1]);
        }
        SocketAddr::V6(v6) => {
            header.push(0x21);
            addresses.extend_from_slice(&v6.ip().octets());
            addresses.extend_from_slice(&std::net::Ipv6Addr::LOCALHOST.octets());
        }
    }
    addresses.extend_from_slice(&source.port().to_be_bytes());
    addresses.extend_from_slice(&443u16.to_be_bytes());
    header.extend_from_slice(&u16::try_from(addresses.len()).unwrap().to_be_bytes());
    header.extend_from_slice(&addresses);
    header
}

/// A facade with plain and TLS listeners that expect the header (and
/// `extra` in `[facade]`).
async fn behind_a_balancer(extra: &str) -> TlsFront {
    TlsFront::start(&format!(
        "listen = \"127.0.0.1:0\"\nproxy_protocol = true\n{extra}"
    ))
    .await
}

/// The `X-Forwarded-For` the upstream received, from its echo.
fn forwarded_for(echo: &serde_json::Value) -> String {
    echo["headers"]["x-forwarded-for"]
        .as_array()
        .map(|values| {
            values
                .iter()
                .filter_map(|v| v.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_default()
}

const REQUEST: &[u8] = b"GET /orders HTTP/1.1\r\nHost: shop.test\r\n\r\n";

/// Sends `header` then two requests on one plain connection; the
/// `X-Forwarded-For` each reached the upstream with.
async fn plain_pair(facade: &TestFacade, header: &[u8]) -> [String; 2] {
    let mut stream = TcpStream::connect(facade.proxy).await.unwrap();
    stream.write_all(header).await.unwrap();
    stream.write_all(REQUEST).await.unwrap();
    let (first, rest) = read_response(&mut stream).await;
    assert_eq!(first.status, 200, "{first:?}");
    stream.write_all(REQUEST).await.unwrap();
    let (second, _) = read_response_after(&mut stream, rest).await;
    assert_eq!(second.status, 200, "{second:?}");
    [forwarded_for(&first.json()), forwarded_for(&second.json())]
}

async fn refused(facade: &TestFacade, reason: &str) -> f64 {
    metric_value(
        &facade.metrics().await,
        "strangler_facade_proxy_protocol_refused_total",
        &[("reason", reason)],
    )
}

/// Writes `bytes` and says whether the facade then closed the connection
/// without answering.
async fn closed_unanswered(facade: &TestFacade, bytes: &[u8]) -> bool {
    let mut stream = TcpStream::connect(facade.proxy).await.unwrap();
    stream.write_all(bytes).await.unwrap();
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer)).await;
    matches!(read, Ok(Ok(0)) | Ok(Err(_)))
}

#[tokio::test]
async fn the_client_the_header_names_is_the_one_the_upstream_hears_of_for_every_request() {
    let front = behind_a_balancer("").await;
    let facade = &front.facade;

    let v1 = b"PROXY TCP4 203.0.113.7 10.0.0.1 51234 80\r\n";
    assert_eq!(plain_pair(facade, v1).await, ["203.0.113.7", "203.0.113.7"]);
    let six = v2(1, "[2001:db8::7]:40000".parse().unwrap());
    assert_eq!(plain_pair(facade, &six).await, ["2001:db8::7", "2001:db8::7"]);
    // The balancer's own health check: the connection's address stands.
    let local = v2(0, "198.51.100.9:1".parse().unwrap());
    assert_eq!(plain_pair(facade, &local).await, ["127.0.0.1", "127.0.0.1"]);
    // An earlier hop the client sent stays in front of the one named.
    let mut stream = TcpStream::connect(facade.proxy).await.unwrap();
    stream.write_all(v1).await.unwrap();
    stream
        .write_all(b"GET /orders HTTP/1.1\r\nHost: shop.test\r\nX-Forwarded-For: 192.0.2.1\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let (answer, _) = read_response(&mut stream).await;
    assert_eq!(forwarded_for(&answer.json()), "192.0.2.1, 203.0.113.7");
    for reason in ["missing", "malformed", "too_long", "timeout", "closed"] {
        assert_eq!(refused(facade, reason).await, 0.0, "{reason}");
    }
}

#[tokio::test]
async fn over_tls_the_header_comes_before_the_handshake() {
    let front = behind_a_balancer("").await;
    let (facade, pki) = (&front.facade, &front.pki);
    for alpn in [&b"http/1.1"[..], b"h2"] {
        let mut tcp = TcpStream::connect(facade.tls.unwrap()).await.unwrap();
        tcp.write_all(&v2(1, "198.51.100.9:40000".parse().unwrap()))
            .await
            .unwrap();
        let config = pki.client_config(&[alpn]);
        let name = ServerName::try_from("shop.test").unwrap();
        let tls = TlsConnector::from(config).connect(name, tcp).await.unwrap();
        let h2 = alpn == b"h2";
        let request = if h2 {
            hyper::Request::get("https://shop.test/orders")
                .body(http_body_util::Full::new(bytes::Bytes::new()))
                .unwrap()
        } else {
            get("/orders", "shop.test")
        };
        let seen = send_on(TokioIo::new(tls), h2, request).await.unwrap();
        let echo: serde_json::Value = serde_json::from_slice(&seen.body).unwrap();
        assert_eq!(forwarded_for(&echo), "198.51.100.9", "over {alpn:?}");
    }
}

#[tokio::test]
async fn a_header_that_arrives_in_parts_is_waited_for() {
    let front = behind_a_balancer("").await;
    let facade = &front.facade;
    let mut stream = TcpStream::connect(facade.proxy).await.unwrap();
    stream.set_nodelay(true).unwrap();
    stream.write_all(b"PROXY TCP4 203.0.").await.unwrap();
    // A slow sender, not a wait for the facade: the facade must be
    // peeking at the first part by the time the rest arrives.
    tokio::time::sleep(Duration::from_millis(30)).await;
    stream
        .write_all(b"113.7 10.0.0.1 51234 80\r\nGET /orders HTTP/1.1\r\nHost: shop.test\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let (answer, _) = read_response(&mut stream).await;
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(forwarded_for(&answer.json()), "203.0.113.7");
}

#[tokio::test]
async fn a_connection_without_a_valid_header_is_closed_unanswered_and_counted() {
    let front = behind_a_balancer("header_read_timeout_ms = 300").await;
    let facade = &front.facade;

    // A client that reached the port past the balancer.
    assert!(closed_unanswered(facade, b"GET /orders HTTP/1.1\r\nHost: shop.test\r\n\r\n").await);
    assert_eq!(refused(facade, "missing").await, 1.0);
    assert!(closed_unanswered(facade, b"PROXY TCP4 not-an-address 10.0.0.1 1 2\r\n").await);
    assert_eq!(refused(facade, "malformed").await, 1.0);
    // A header that never ends: closed after the header read timeout.
    assert!(closed_unanswered(facade, b"PROXY TCP4 203.0.113.7").await);
    assert_eq!(refused(facade, "timeout").await, 1.0);
    // A TLS client without a header is refused the same way.
    let mut tcp = TcpStream::connect(facade.tls.unwrap()).await.unwrap();
    tcp.write_all(b"\x16\x03\x01\x00\x05hello").await.unwrap();
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), tcp.read_to_end(&mut answer)).await;
    assert!(matches!(read, Ok(Ok(0)) | Ok(Err(_))), "{read:?} {answer:?}");
    assert_eq!(refused(facade, "missing").await, 2.0);
}
