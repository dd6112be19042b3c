//! Tiny real upstreams: an axum echo server with streaming endpoints, and a
//! hyper server that accepts a protocol upgrade; and the payloads and
//! checksums of the streaming cases.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::hash::{DefaultHasher, Hasher};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderName, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use bytes::Bytes;
use futures::StreamExt;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// A running echo upstream.
///
/// - `GET /download?bytes=N`: N bytes of [`payload_chunk`]s, streamed.
/// - `POST|PUT /upload`: reads the body as a stream and answers
///   `{"name", "bytes", "checksum"}` without holding it whole.
/// - anything else: `{"name", "method", "path", "query", "headers",
///   "body_bytes"}` where `headers` maps each name to its values. With
///   `?sleep_ms=N` it waits first; with `?hop_headers=1` it answers with
///   hop-by-hop headers that a proxy must not pass back.
#[derive(Clone, Debug)]
pub struct Upstream {
    /// Where it listens.
    pub addr: SocketAddr,
    hits: Arc<AtomicUsize>,
}

impl Upstream {
    /// Requests it has received so far (counted when they arrive).
    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

#[derive(Debug)]
struct EchoState {
    name: &'static str,
    hits: Arc<AtomicUsize>,
}

/// Starts an echo upstream answering as `name`.
pub async fn spawn_upstream(name: &'static str) -> Upstream {
    let hits = Arc::new(AtomicUsize::new(0));
    let state = Arc::new(EchoState {
        name,
        hits: Arc::clone(&hits),
    });
    let router = Router::new()
        .route("/download", get(download))
        .route("/upload", post(upload).put(upload))
        .fallback(echo)
        .with_state(state);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(listener, router).await.unwrap();
    });
    Upstream { addr, hits }
}

fn query_value<'q>(query: Option<&'q str>, key: &str) -> Option<&'q str> {
    query?
        .split('&')
        .filter_map(|pair| pair.split_once('=').or(Some((pair, ""))))
        .find(|(k, _)| *k == key)
        .map(|(_, v)| v)
}

async fn echo(State(state): State<Arc<EchoState>>, request: Request) -> Response {
    state.hits.fetch_add(1, Ordering::SeqCst);
    let (parts, body) = request.into_parts();
    let query = parts.uri.query();
    if let Some(ms) = query_value(query, "sleep_ms").and_then(|v| v.parse().ok()) {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    let body_bytes = axum::body::to_bytes(body, 16 * 1024 * 1024)
        .await
        .map_or(-1, |b| b.len() as i64);
    let mut headers: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (name, value) in &parts.headers {
        headers
            .entry(name.as_str().to_owned())
            .or_default()
            .push(String::from_utf8_lossy(value.as_bytes()).into_owned());
    }
    let mut response = Json(json!({
        "name": state.name,
        "method": parts.method.as_str(),
        "path": parts.uri.path(),
        "query": query,
        "headers": headers,
        "body_bytes": body_bytes,
    }))
    .into_response();
    if query_value(query, "hsts").is_some() {
        response.headers_mut().insert(
            HeaderName::from_static("strict-transport-security"),
            HeaderValue::from_static("max-age=60"),
        );
    }
    if query_value(query, "hop_headers").is_some() {
        let answer = response.headers_mut();
        for (name, value) in [
            ("connection", "X-Upstream-Hop"),
            ("x-upstream-hop", "1"),
            ("keep-alive", "timeout=5"),
            ("proxy-authenticate", "Basic realm=\"upstream\""),
            ("proxy-x-upstream", "1"),
            ("trailer", "X-Checksum"),
            ("te", "trailers"),
            ("x-upstream-kept", "yes"),
        ] {
            answer.insert(HeaderName::from_static(name), HeaderValue::from_static(value));
        }
    }
    response
}

async fn download(State(state): State<Arc<EchoState>>, request: Request) -> Response {
    state.hits.fetch_add(1, Ordering::SeqCst);
    let total: u64 = query_value(request.uri().query(), "bytes")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let chunks = total.div_ceil(CHUNK as u64);
    let stream =
        futures::stream::iter(0..chunks).map(move |index| Ok::<_, Infallible>(payload_chunk(index, total)));
    Body::from_stream(stream).into_response()
}

async fn upload(State(state): State<Arc<EchoState>>, request: Request) -> Response {
    state.hits.fetch_add(1, Ordering::SeqCst);
    let mut checksum = Checksum::default();
    let mut stream = request.into_body().into_data_stream();
    while let Some(chunk) = stream.next().await {
        match chunk {
            Ok(chunk) => checksum.update(&chunk),
            Err(error) => {
                return (
                    axum::http::StatusCode::BAD_REQUEST,
                    Json(json!({ "name": state.name, "error": error.to_string() })),
                )
                    .into_response()
            }
        }
    }
    let bytes = checksum.bytes();
    Json(json!({ "name": state.name, "bytes": bytes, "checksum": checksum.finish() })).into_response()
}

/// Starts a hyper upstream that answers a request carrying `Upgrade` as
/// [`echo_upgrade`] does.
pub async fn spawn_upgrade_upstream() -> Upstream {
    let hits = Arc::new(AtomicUsize::new(0));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let counter = Arc::clone(&hits);
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let counter = Arc::clone(&counter);
            tokio::spawn(async move {
                let service = service_fn(move |request: hyper::Request<hyper::body::Incoming>| {
                    counter.fetch_add(1, Ordering::SeqCst);
                    async move { Ok::<_, Infallible>(echo_upgrade(request)) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .with_upgrades()
                    .await;
            });
        }
    });
    Upstream { addr, hits }
}

/// Answers a request carrying `Upgrade` with `101 Switching Protocols`,
/// then, on the switched connection, writes `hello from upstream\n` and
/// echoes every byte it receives. Anything else gets a 426. The connection
/// must be served with upgrades on.
pub fn echo_upgrade(mut request: hyper::Request<hyper::body::Incoming>) -> hyper::Response<Full<Bytes>> {
    let Some(protocol) = request.headers().get(hyper::header::UPGRADE).cloned() else {
        let mut refused = hyper::Response::new(Full::new(Bytes::from_static(b"upgrade required")));
        *refused.status_mut() = hyper::StatusCode::UPGRADE_REQUIRED;
        return refused;
    };
    let on_upgrade = hyper::upgrade::on(&mut request);
    tokio::spawn(async move {
        let Ok(upgraded) = on_upgrade.await else {
            return;
        };
        let mut io = TokioIo::new(upgraded);
        if io.write_all(b"hello from upstream\n").await.is_err() {
            return;
        }
        let mut buffer = [0u8; 4096];
        loop {
            match io.read(&mut buffer).await {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    if io.write_all(&buffer[..n]).await.is_err() {
                        return;
                    }
                }
            }
        }
    });
    let mut switching = hyper::Response::new(Full::new(Bytes::new()));
    *switching.status_mut() = hyper::StatusCode::SWITCHING_PROTOCOLS;
    switching
        .headers_mut()
        .insert(hyper::header::CONNECTION, HeaderValue::from_static("upgrade"));
    switching.headers_mut().insert(hyper::header::UPGRADE, protocol);
    switching
}

/// An address nothing listens on (a port just released).
pub async fn closed_address() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    listener.local_addr().unwrap()
}

/// Size of the chunks payloads are generated in.
pub const CHUNK: usize = 64 * 1024;

/// Chunk `index` of a payload of `total` bytes: a fixed pseudo-random block
/// whose first eight bytes are the chunk's index, cut short at the end.
pub fn payload_chunk(index: u64, total: u64) -> Bytes {
    static TEMPLATE: OnceLock<Vec<u8>> = OnceLock::new();
    let template = TEMPLATE.get_or_init(|| {
        let mut state: u64 = 0x2545_f491_4f6c_dd1d;
        (0..CHUNK)
            .map(|_| {
                state = state.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
                (state >> 56) as u8
            })
            .collect()
    });
    let start = index * CHUNK as u64;
    let length = (total.saturating_sub(start)).min(CHUNK as u64) as usize;
    let mut chunk = template[..length].to_vec();
    let stamp = index.to_le_bytes();
    let stamped = length.min(8);
    chunk[..stamped].copy_from_slice(&stamp[..stamped]);
    Bytes::from(chunk)
}

/// A checksum that does not depend on how the bytes were split into
/// frames: bytes are hashed in whole [`CHUNK`]-sized blocks.
#[derive(Default)]
pub struct Checksum {
    hasher: DefaultHasher,
    block: Vec<u8>,
    bytes: u64,
}

impl Checksum {
    /// Adds bytes.
    pub fn update(&mut self, mut data: &[u8]) {
        self.bytes += data.len() as u64;
        while !data.is_empty() {
            let take = (CHUNK - self.block.len()).min(data.len());
            self.block.extend_from_slice(&data[..take]);
            data = &data[take..];
            if self.block.len() == CHUNK {
                self.hasher.write(&self.block);
                self.block.clear();
            }
        }
    }

    /// Bytes added so far.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// The checksum, as hex.
    pub fn finish(mut self) -> String {
        self.hasher.write(&self.block);
        self.hasher.write_u64(self.bytes);
        format!("{:016x}", self.hasher.finish())
    }
}

/// The checksum of the whole payload of `total` bytes.
pub fn payload_checksum(total: u64) -> String {
    let mut checksum = Checksum::default();
    for index in 0..total.div_ceil(CHUNK as u64) {
        checksum.update(&payload_chunk(index, total));
    }
    checksum.finish()
}
