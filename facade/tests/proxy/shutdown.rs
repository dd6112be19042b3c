//! Graceful shutdown: a request in flight when the shutdown begins still
//! gets its answer, while new connections are refused; idle connections
//! close as soon as the drain starts, and whatever is still running when
//! the grace period ends is cut.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;

use crate::helpers::{eventually, read_response, wait_until, Shop, WAIT_LIMIT};

/// The grace period of `Shop::config`.
const GRACE: Duration = Duration::from_secs(5);

/// Reads until the facade closes the connection; fails if it sends
/// anything or keeps it open past `WAIT_LIMIT`.
async fn expect_closed(stream: &mut TcpStream, what: &str) {
    let mut rest = Vec::new();
    let read = tokio::time::timeout(WAIT_LIMIT, stream.read_to_end(&mut rest))
        .await
        .unwrap_or_else(|_| panic!("{what}: the facade kept the connection open"));
    // A reset is a close too; what matters is that nothing more came.
    if read.is_ok() {
        assert!(
            rest.is_empty(),
            "{what}: unexpected bytes {:?}",
            String::from_utf8_lossy(&rest)
        );
    }
}

/// Waits for `running`, the task of a stopped facade, to end without an
/// error; fails saying `when` if it does not end within `WAIT_LIMIT`.
async fn assert_stops(running: JoinHandle<std::io::Result<()>>, when: &str) {
    tokio::time::timeout(WAIT_LIMIT, running)
        .await
        .unwrap_or_else(|_| panic!("the facade did not stop {when}"))
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn idle_connections_close_as_soon_as_the_drain_starts() {
    let (_store, _shop, mut facade) = Shop::start("").await;

    // One connection that served a request and is kept alive, one that
    // never sent anything.
    let mut served = TcpStream::connect(facade.proxy).await.unwrap();
    served
        .write_all(b"GET /orders/1 HTTP/1.1\r\nHost: shop\r\n\r\n")
        .await
        .unwrap();
    let (response, _) = read_response(&mut served).await;
    assert_eq!(response.status, 200);
    let mut silent = TcpStream::connect(facade.proxy).await.unwrap();

    let started = Instant::now();
    let running = facade.stop();
    expect_closed(&mut served, "the kept-alive connection").await;
    expect_closed(&mut silent, "the connection that sent nothing").await;
    assert_stops(running, "with only idle connections open").await;
    // Had the idle connections been waited for, the drain would have
    // taken the whole grace period.
    assert!(
        started.elapsed() < GRACE - Duration::from_secs(1),
        "stopping took {:?} with only idle connections open",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_request_still_running_when_the_grace_period_ends_is_cut() {
    let (_store, shop, mut facade) = Shop::start("").await;

    let mut slow = TcpStream::connect(facade.proxy).await.unwrap();
    slow.write_all(b"GET /orders/1?sleep_ms=60000 HTTP/1.1\r\nHost: shop\r\n\r\n")
        .await
        .unwrap();
    wait_until("the slow request to reach the upstream", || {
        shop.legacy.hits() == 1
    })
    .await;

    let started = Instant::now();
    let running = facade.stop();
    expect_closed(
        &mut slow,
        "the connection whose request outlived the grace period",
    )
    .await;
    assert_stops(running, "when the grace period ended").await;
    let took = started.elapsed();
    assert!(
        took >= GRACE - Duration::from_millis(100) && took < GRACE + Duration::from_secs(3),
        "the facade stopped after {took:?}, not at the end of its {GRACE:?} grace period"
    );
}

#[tokio::test]
async fn an_in_flight_request_completes_after_shutdown_begins() {
    let (_store, shop, mut facade) = Shop::start("").await;
    let proxy = facade.proxy;

    let client = facade.client.clone();
    let url = facade.url("/orders/1?sleep_ms=500");
    let started = Instant::now();
    let slow = tokio::spawn(async move {
        let response = client.get(url).send().await?;
        let status = response.status();
        let body: Value = response.json().await?;
        Ok::<_, reqwest::Error>((status, body))
    });
    wait_until("the slow request to reach the upstream", || {
        shop.legacy.hits() == 1
    })
    .await;

    let running = facade.stop();
    // New connections are refused while the slow request is still running.
    let every = Duration::from_millis(5);
    eventually("the proxy to refuse connections", WAIT_LIMIT, every, async || {
        let accepted = TcpStream::connect(proxy).await.is_ok();
        match accepted {
            true => Err("it still accepts connections after shutdown".to_owned()),
            false => Ok(()),
        }
    })
    .await;
    assert!(
        !slow.is_finished(),
        "the slow request ended before the listener closed"
    );

    let (status, body) = slow.await.unwrap().expect("the in-flight request failed");
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["name"], "legacy");
    assert!(started.elapsed() >= Duration::from_millis(500));
    assert_stops(running, "after draining").await;
    assert!(TcpStream::connect(proxy).await.is_err());
    assert_eq!(shop.legacy.hits(), 1);
}

#[tokio::test]
async fn connections_still_before_their_first_request_close_as_soon_as_the_drain_starts() {
    let mut front = crate::tls::TlsFront::start(&format!(
        "listen = \"127.0.0.1:0\"\nproxy_protocol = true\ngrace_seconds = {}",
        GRACE.as_secs()
    ))
    .await;
    // One that has not sent its PROXY header, one that sent it and has not
    // begun its TLS handshake.
    let mut before_header = TcpStream::connect(front.facade.proxy).await.unwrap();
    let mut before_handshake = TcpStream::connect(front.tls()).await.unwrap();
    before_handshake
        .write_all(b"PROXY TCP4 203.0.113.7 10.0.0.1 51234 443\r\n")
        .await
        .unwrap();

    let started = Instant::now();
    let running = front.facade.stop();
    expect_closed(&mut before_header, "the connection waiting for its PROXY header").await;
    expect_closed(
        &mut before_handshake,
        "the connection waiting for its TLS handshake",
    )
    .await;
    assert_stops(running, "with only connections that asked for nothing").await;
    assert!(
        started.elapsed() < GRACE - Duration::from_secs(1),
        "stopping took {:?}",
        started.elapsed()
    );
}
