//! An upstream that fails on purpose: each test sets how it behaves (answer,
//! answer a 5xx, hang, answer slowly, reset mid-body), can kill it (port
//! closed, every connection dropped) and restart it on the same port. It
//! answers a small JSON document whose fields tests control, for the
//! shadow comparisons: a counter that changes on every call (noise), a
//! per-upstream timestamp and a price that a test can change.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::header::{HeaderValue, CONTENT_LENGTH, CONTENT_TYPE};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::json;
use tokio::net::{TcpListener, TcpSocket};
use tokio::task::{JoinHandle, JoinSet};
use tokio_util::sync::CancellationToken;

/// The header naming the upstream that answered.
pub const UPSTREAM_HEADER: &str = "x-upstream";

/// How a [`Controlled`] upstream answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Behavior {
    /// 200 with its JSON document.
    Answer,
    /// This status with a JSON error.
    Status(u16),
    /// Never answers (until killed).
    Hang,
    /// Its document after this delay.
    Slow(Duration),
    /// A head promising 1000 bytes, 100 of them, then a connection reset.
    ResetMidBody,
}

/// One request as the upstream received it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    /// Its method.
    pub method: String,
    /// Its path.
    pub path: String,
    /// Whether it was a shadow copy (`x-strangler-shadow`).
    pub shadow: bool,
    /// The length of its body.
    pub body_bytes: usize,
}

#[derive(Debug)]
struct Shared {
    name: &'static str,
    behavior: Mutex<Behavior>,
    hits: AtomicUsize,
    price_cents: AtomicI64,
    seen: Mutex<Vec<Seen>>,
}

struct Running {
    stop: CancellationToken,
    task: JoinHandle<()>,
}

/// A running (or killed) upstream whose behavior the test controls.
///
/// Its document: `{"path", "method", "served_at", "updated_at",
/// "price_cents", "body_bytes"}`, plus `"pad"` (that many `x`) with `?pad=N`. `served_at`
/// is its hit count, so it differs on every call; `updated_at` differs from
/// one upstream to the other; `price_cents` is 1299 until changed. The
/// header [`UPSTREAM_HEADER`] names it.
pub struct Controlled {
    /// Where it listens (and listens again after a restart).
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    running: Option<Running>,
}

impl Controlled {
    /// Starts an upstream named `name` that answers.
    pub async fn spawn(name: &'static str) -> Self {
        let shared = Arc::new(Shared {
            name,
            behavior: Mutex::new(Behavior::Answer),
            hits: AtomicUsize::new(0),
            price_cents: AtomicI64::new(1299),
            seen: Mutex::new(Vec::new()),
        });
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut upstream = Self {
            addr,
            shared,
            running: None,
        };
        upstream.serve(listener);
        upstream
    }

    /// Requests received so far (counted on arrival, shadow copies too).
    pub fn hits(&self) -> usize {
        self.shared.hits.load(Ordering::SeqCst)
    }

    /// Every request received so far, in order.
    pub fn requests(&self) -> Vec<Seen> {
        self.shared.seen.lock().unwrap().clone()
    }

    /// Changes how the next requests are answered.
    pub fn set(&self, behavior: Behavior) {
        *self.shared.behavior.lock().unwrap() = behavior;
    }

    /// Changes the `price_cents` of the next answers.
    pub fn set_price(&self, cents: i64) {
        self.shared.price_cents.store(cents, Ordering::SeqCst);
    }

    /// Closes the port and drops every connection, mid-request or idle;
    /// returns once nothing listens any more.
    pub async fn kill(&mut self) {
        let running = self.running.take().expect("the upstream is not running");
        running.stop.cancel();
        running.task.await.unwrap();
    }

    /// Listens again on the same port.
    pub async fn restart(&mut self) {
        assert!(self.running.is_none(), "the upstream is already running");
        let socket = TcpSocket::new_v4().unwrap();
        socket.set_reuseaddr(true).unwrap();
        socket
            .bind(self.addr)
            .unwrap_or_else(|error| panic!("rebinding {}: {error}", self.addr));
        let listener = socket.listen(1024).unwrap();
        self.serve(listener);
    }

    fn serve(&mut self, listener: TcpListener) {
        let stop = CancellationToken::new();
        let task = tokio::spawn(accept_loop(listener, Arc::clone(&self.shared), stop.clone()));
        self.running = Some(Running { stop, task });
    }
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>, stop: CancellationToken) {
    let mut connections = JoinSet::new();
    loop {
        let stream = tokio::select! {
            () = stop.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(_) => continue,
            },
        };
        if *shared.behavior.lock().unwrap() == Behavior::ResetMidBody {
            // Closing with a zero linger sends a reset, not a clean FIN.
            let _ = stream.set_zero_linger();
        }
        let shared = Arc::clone(&shared);
        let stop = stop.clone();
        connections.spawn(async move {
            let service = service_fn(move |request| answer(Arc::clone(&shared), request));
            let connection = http1::Builder::new().serve_connection(TokioIo::new(stream), service);
            tokio::select! {
                _ = connection => {}
                () = stop.cancelled() => {}
            }
        });
    }
    drop(listener);
    connections.shutdown().await;
}

type AnswerBody = BoxBody<Bytes, std::io::Error>;

fn json_response(status: StatusCode, name: &'static str, body: &serde_json::Value) -> Response<AnswerBody> {
    let mut response = Response::new(
        Full::new(Bytes::from(body.to_string()))
            .map_err(|never| match never {})
            .boxed(),
    );
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
        .headers_mut()
        .insert(UPSTREAM_HEADER, HeaderValue::from_static(name));
    response
}

async fn answer(shared: Arc<Shared>, request: Request<Incoming>) -> Result<Response<AnswerBody>, Infallible> {
    let served_at = shared.hits.fetch_add(1, Ordering::SeqCst) + 1;
    let (parts, body) = request.into_parts();
    let body_bytes = body.collect().await.map_or(0, |b| b.to_bytes().len());
    shared.seen.lock().unwrap().push(Seen {
        method: parts.method.to_string(),
        path: parts.uri.path().to_owned(),
        shadow: parts.headers.contains_key("x-strangler-shadow"),
        body_bytes,
    });
    let behavior = *shared.behavior.lock().unwrap();
    match behavior {
        Behavior::Answer => {}
        Behavior::Slow(delay) => tokio::time::sleep(delay).await,
        Behavior::Hang => std::future::pending::<()>().await,
        Behavior::Status(code) => {
            let status = StatusCode::from_u16(code).unwrap();
            let error = json!({ "error": format!("{} fails on purpose", shared.name) });
            return Ok(json_response(status, shared.name, &error));
        }
        Behavior::ResetMidBody => {
            let frames = futures::stream::iter([
                Ok(Frame::data(Bytes::from(vec![b'x'; 100]))),
                Err(std::io::Error::other("reset on purpose")),
            ])
            .then(|frame| async move {
                // The first frame goes out before the reset.
                tokio::time::sleep(Duration::from_millis(20)).await;
                frame
            });
            let mut response = Response::new(BodyExt::boxed(StreamBody::new(frames)));
            response
                .headers_mut()
                .insert(CONTENT_LENGTH, HeaderValue::from_static("1000"));
            response
                .headers_mut()
                .insert(UPSTREAM_HEADER, HeaderValue::from_static(shared.name));
            return Ok(response);
        }
    }
    let pad = parts
        .uri
        .query()
        .and_then(|q| q.split('&').find_map(|pair| pair.strip_prefix("pad=")))
        .and_then(|n| n.parse::<usize>().ok());
    let mut document = json!({
        "path": parts.uri.path(),
        "method": parts.method.as_str(),
        "served_at": served_at,
        "updated_at": format!("2026-01-01T00:00:00Z by {}", shared.name),
        "price_cents": shared.price_cents.load(Ordering::SeqCst),
        "body_bytes": body_bytes,
    });
    if let Some(pad) = pad {
        document["pad"] = json!("x".repeat(pad));
    }
    Ok(json_response(StatusCode::OK, shared.name, &document))
}
