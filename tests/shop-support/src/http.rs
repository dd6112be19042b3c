//! One JSON request to an app under test: its status and body, how long it
//! took, and the correlation id the app generated.

use std::time::{Duration, Instant};

use axum::http::StatusCode;
use reqwest::RequestBuilder;
use serde_json::Value;
use service_runtime::request_id::REQUEST_ID_HEADER;
use test_harness::http_client;

/// An HTTP status and JSON body.
pub type Answer = (StatusCode, Value);

/// Sends a request and reads the JSON answer (panics when it is not JSON).
pub async fn send(request: RequestBuilder) -> Answer {
    let response = request.send().await.expect("sending a request");
    let status = response.status();
    let body: Value = response.json().await.expect("a JSON body");
    (status, body)
}

/// Sends a request, asserts that the answer came in under `within`, and
/// returns it with the time it took.
pub async fn send_within(request: RequestBuilder, within: Duration) -> (Answer, Duration) {
    let started = Instant::now();
    let answer = send(request).await;
    let elapsed = started.elapsed();
    assert!(
        elapsed < within,
        "answered after {elapsed:?}, expected within {within:?}: {answer:?}"
    );
    (answer, elapsed)
}

/// `GET url`.
pub async fn get(url: &str) -> Answer {
    send(http_client().get(url)).await
}

/// `PUT url` with a JSON body.
pub async fn put_json(url: &str, body: &Value) -> Answer {
    send(http_client().put(url).json(body)).await
}

/// Sends a request that carries no `X-Request-Id` and returns the one the
/// app generated and echoed.
pub async fn generated_request_id(request: RequestBuilder) -> String {
    let response = request.send().await.expect("a response");
    response.headers()[REQUEST_ID_HEADER.as_str()]
        .to_str()
        .expect("an ASCII id")
        .to_owned()
}
