//! Graceful shutdown: a request in flight when the shutdown begins still
//! gets its answer, while new connections are refused.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::Value;
use tokio::net::TcpStream;

use crate::helpers::{sqlite_store, start_facade, wait_until, Shop, WAIT_LIMIT};

#[tokio::test]
async fn an_in_flight_request_completes_after_shutdown_begins() {
    let store = sqlite_store();
    let shop = Shop::spawn().await;
    let mut facade = start_facade(&shop.config(""), store.url()).await;
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
    let deadline = Instant::now() + WAIT_LIMIT;
    while TcpStream::connect(proxy).await.is_ok() {
        assert!(
            Instant::now() < deadline,
            "the proxy still accepts connections after shutdown"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(
        !slow.is_finished(),
        "the slow request ended before the listener closed"
    );

    let (status, body) = slow.await.unwrap().expect("the in-flight request failed");
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["name"], "legacy");
    assert!(started.elapsed() >= Duration::from_millis(500));
    tokio::time::timeout(WAIT_LIMIT, running)
        .await
        .expect("the facade did not stop after draining")
        .unwrap()
        .unwrap();
    assert!(TcpStream::connect(proxy).await.is_err());
    assert_eq!(shop.legacy.hits(), 1);
}
