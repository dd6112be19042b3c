//! Upstreams that fail on purpose, for the cases where the monolith is down,
//! silent or says something unexpected: a closed port, a server that never
//! answers, and a stub that records every request and answers as told.

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use serde_json::{json, Value};
use service_runtime::request_id::REQUEST_ID_HEADER;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::any_port;

/// The base URL of a port nothing listens on: bound, then released.
pub fn closed_port_url() -> String {
    let listener = std::net::TcpListener::bind(any_port()).expect("binding a port");
    let addr = listener.local_addr().expect("a local address");
    drop(listener);
    format!("http://{addr}")
}

/// Binds a free port and returns the listener with its base URL.
async fn bind_any_port(what: &str) -> (TcpListener, String) {
    let listener = TcpListener::bind(any_port())
        .await
        .unwrap_or_else(|e| panic!("binding the {what}: {e}"));
    let addr = listener
        .local_addr()
        .unwrap_or_else(|e| panic!("the {what}'s address: {e}"));
    (listener, format!("http://{addr}"))
}

/// An upstream that accepts connections, holds them open and never answers
/// a byte. Dropping it closes them.
pub struct SilentUpstream {
    /// Its base URL.
    pub url: String,
    accepted: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

impl SilentUpstream {
    /// Listens on a free port and accepts in the background.
    pub async fn spawn() -> Self {
        let (listener, url) = bind_any_port("silent upstream").await;
        let accepted = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&accepted);
        let task = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((socket, _)) = listener.accept().await {
                counter.fetch_add(1, Ordering::SeqCst);
                held.push(socket);
            }
        });
        Self { url, accepted, task }
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

impl Drop for SilentUpstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A request a [`StubUpstream`] received.
#[derive(Debug, Clone, PartialEq)]
pub struct SeenRequest {
    /// Its method, for example `POST`.
    pub method: String,
    /// Its path and query, for example `/inventory?product_ids=1,2`.
    pub target: String,
    /// Its `X-Request-Id`, if any.
    pub request_id: Option<String>,
    /// Its JSON body; a string when it was not JSON, `null` when empty.
    pub body: Value,
}

impl SeenRequest {
    /// `METHOD target`, for example `POST /payments`.
    pub fn call(&self) -> String {
        format!("{} {}", self.method, self.target)
    }

    /// The target's path segments, for matching: `/a/b?x=1` is `["a", "b"]`.
    pub fn segments(&self) -> Vec<&str> {
        let path = self
            .target
            .split_once('?')
            .map_or(self.target.as_str(), |(path, _)| path);
        path.trim_start_matches('/').split('/').collect()
    }

    /// The value of query parameter `name`, if the target has one.
    pub fn query(&self, name: &str) -> Option<&str> {
        let (_, query) = self.target.split_once('?')?;
        query
            .split('&')
            .filter_map(|pair| pair.split_once('='))
            .find_map(|(key, value)| (key == name).then_some(value))
    }
}

/// An answer the way the shop's apps refuse: `status` with a JSON body
/// `{ "error": message, "detail": null }`.
pub fn refusal(status: StatusCode, message: &str) -> Response {
    (status, Json(json!({ "error": message, "detail": null }))).into_response()
}

/// A stand-in for an upstream: records every request it receives, in order,
/// and answers each with what its `answer` function makes of it.
pub struct StubUpstream {
    /// Its base URL.
    pub url: String,
    seen: Arc<Mutex<Vec<SeenRequest>>>,
}

impl StubUpstream {
    /// Serves on a free port; requests queue in the listen backlog until the
    /// spawned server first runs, so no readiness wait is needed.
    pub async fn spawn<A, F>(answer: A) -> Self
    where
        A: Fn(SeenRequest) -> F + Clone + Send + Sync + 'static,
        F: Future<Output = Response> + Send + 'static,
    {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = Arc::clone(&seen);
        let handler = move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
            let request = SeenRequest {
                method: method.to_string(),
                target: uri
                    .path_and_query()
                    .map_or_else(|| uri.path().to_owned(), ToString::to_string),
                request_id: headers
                    .get(REQUEST_ID_HEADER)
                    .map(|value| value.to_str().expect("an ASCII request id").to_owned()),
                body: json_or_text(&body),
            };
            log.lock().expect("the stub's log").push(request.clone());
            answer(request)
        };
        let router = Router::new().fallback(handler);
        let (listener, url) = bind_any_port("stub upstream").await;
        tokio::spawn(async move { axum::serve(listener, router).await });
        Self { url, seen }
    }

    /// Every request received so far, in order.
    pub fn seen(&self) -> Vec<SeenRequest> {
        self.seen.lock().expect("the stub's log").clone()
    }

    /// [`SeenRequest::call`] of every request received so far, in order.
    pub fn calls(&self) -> Vec<String> {
        self.seen().iter().map(SeenRequest::call).collect()
    }
}

/// A body as JSON when it parses, as text when it does not, `null` when empty.
fn json_or_text(body: &[u8]) -> Value {
    if body.is_empty() {
        return Value::Null;
    }
    serde_json::from_slice(body).unwrap_or_else(|_| Value::String(String::from_utf8_lossy(body).into_owned()))
}
