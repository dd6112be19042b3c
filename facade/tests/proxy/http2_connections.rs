//! HTTP/2 client connections end when they sit idle: with no stream open
//! for `http2_idle_timeout_seconds` the facade sends GOAWAY and closes
//! them, while a request still being answered, or an answer still being
//! read, keeps the connection open however long it takes.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http2::SendRequest;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;

use test_harness::TestDatabase;

use crate::helpers::{
    legacy_only_config, spawn_upstream, sqlite_store, start_facade, TestFacade, Upstream, WAIT_LIMIT,
};

/// The limit the tests configure.
const IDLE: Duration = Duration::from_secs(1);

/// A facade closing HTTP/2 connections idle for [`IDLE`], and what it needs
/// kept alive.
async fn facade() -> (TestDatabase, Upstream, TestFacade) {
    let store = sqlite_store();
    let upstream = spawn_upstream("legacy").await;
    let config = legacy_only_config(upstream.addr).replacen(
        "[facade]\n",
        &format!("[facade]\nhttp2_idle_timeout_seconds = {}\n", IDLE.as_secs()),
        1,
    );
    let facade = start_facade(&config, store.url()).await;
    (store, upstream, facade)
}

/// An HTTP/2 (prior knowledge) connection to the facade: its sender, and
/// the connection's task, which ends when the facade closes it.
async fn connect(facade: &TestFacade) -> (SendRequest<Empty<Bytes>>, JoinHandle<Result<(), hyper::Error>>) {
    let stream = TcpStream::connect(facade.proxy).await.unwrap();
    let (sender, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .unwrap();
    (sender, tokio::spawn(connection))
}

async fn get(
    sender: &mut SendRequest<Empty<Bytes>>,
    path: &str,
) -> Result<hyper::Response<hyper::body::Incoming>, String> {
    let request = hyper::Request::get(format!("http://shop{path}"))
        .body(Empty::new())
        .unwrap();
    tokio::time::timeout(WAIT_LIMIT, sender.send_request(request))
        .await
        .map_err(|_| "no answer in time".to_owned())?
        .map_err(|e| e.to_string())
}

/// Waits for the facade to close the connection; how long that took.
async fn closed(connection: JoinHandle<Result<(), hyper::Error>>) -> Duration {
    let started = tokio::time::Instant::now();
    let ended = tokio::time::timeout(WAIT_LIMIT, connection)
        .await
        .expect("the facade kept an idle HTTP/2 connection open");
    assert!(matches!(ended, Ok(Ok(()))), "{ended:?}");
    started.elapsed()
}

#[tokio::test]
async fn an_idle_http2_connection_is_closed_with_goaway() {
    let (_store, _upstream, facade) = facade().await;
    let (mut sender, connection) = connect(&facade).await;
    let answer = get(&mut sender, "/orders").await.unwrap();
    assert_eq!(answer.status(), 200);
    answer.into_body().collect().await.unwrap();
    let waited = closed(connection).await;
    // Not before its time: the last stream ended just now.
    assert!(waited >= IDLE / 2, "closed after {waited:?}");
    // A connection that never opened a stream is closed too.
    let (_sender, connection) = connect(&facade).await;
    closed(connection).await;
}

#[tokio::test]
async fn a_request_still_being_answered_keeps_the_connection_open() {
    let (_store, _upstream, facade) = facade().await;
    let (mut sender, connection) = connect(&facade).await;
    let mut slow_sender = sender.clone();
    let slow = tokio::spawn(async move {
        get(&mut slow_sender, "/slow?sleep_ms=2500")
            .await
            .map(|a| a.status())
    });
    // Past the limit while the slow request is in flight: a new stream is
    // still taken.
    tokio::time::sleep(IDLE + IDLE / 2).await;
    let answer = get(&mut sender, "/orders").await.unwrap();
    assert_eq!(answer.status(), 200);
    assert_eq!(slow.await.unwrap(), Ok(hyper::StatusCode::OK));
    closed(connection).await;
}

#[tokio::test]
async fn an_answer_still_being_read_keeps_the_connection_open() {
    let (_store, _upstream, facade) = facade().await;
    let (mut sender, connection) = connect(&facade).await;
    // 64 MB: far more than flow control lets through unread.
    let download = get(&mut sender, "/download?bytes=67108864").await.unwrap();
    assert_eq!(download.status(), 200);
    let mut body = download.into_body();
    let first = body.frame().await.unwrap().unwrap();
    assert!(first.is_data());
    // The client stops reading for longer than the limit: the answer is
    // still in flight, so the connection stays.
    tokio::time::sleep(IDLE * 2).await;
    let answer = get(&mut sender, "/orders").await.unwrap();
    assert_eq!(answer.status(), 200);
    drop(body);
    closed(connection).await;
}
