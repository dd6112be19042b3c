//! A real OTLP/HTTP trace receiver for tests: an HTTP server on port 0 that
//! takes `POST /v1/traces`, decodes each `ExportTraceServiceRequest` with
//! prost and opentelemetry-proto's generated types, and keeps the spans
//! for the test to check ids, parents, links, attributes and the resource's
//! attributes.
//!
//! [`OtlpReceiver::wait_for`] polls the spans until a condition holds or a
//! deadline passes, never sleeping a fixed time. [`OtlpReceiver::counting`]
//! keeps only counts, for a benchmark's sink.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::post;
use axum::Router;
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue};
use prost::Message;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// How long [`OtlpReceiver::wait_for`] waits.
pub const WAIT_LIMIT: Duration = Duration::from_secs(15);

/// A span as the receiver got it, ids in lower-case hex.
#[derive(Debug, Clone, PartialEq)]
pub struct ReceivedSpan {
    /// The resource's `service.name`.
    pub service: String,
    /// Every attribute of the span's resource (`service.name` included),
    /// each value as text, so tests can check `OTEL_RESOURCE_ATTRIBUTES`.
    pub resource: BTreeMap<String, String>,
    /// The instrumentation scope's name.
    pub scope: String,
    /// The span's name.
    pub name: String,
    /// 32 hex digits.
    pub trace_id: String,
    /// 16 hex digits.
    pub span_id: String,
    /// 16 hex digits, or empty for a root span.
    pub parent_span_id: String,
    /// OTLP's span kind: 1 internal, 2 server, 3 client.
    pub kind: i32,
    /// Attributes, each value as text (arrays as their items joined by
    /// commas).
    pub attributes: BTreeMap<String, String>,
    /// The linked spans' (trace id, span id).
    pub links: Vec<(String, String)>,
    /// OTLP's status code: 0 unset, 1 ok, 2 error.
    pub status_code: i32,
}

impl ReceivedSpan {
    /// The attribute `key` as text.
    pub fn attribute(&self, key: &str) -> Option<&str> {
        self.attributes.get(key).map(String::as_str)
    }

    /// The resource attribute `key` as text.
    pub fn resource_attribute(&self, key: &str) -> Option<&str> {
        self.resource.get(key).map(String::as_str)
    }
}

#[derive(Default)]
struct Received {
    keep: bool,
    spans: Mutex<Vec<ReceivedSpan>>,
    span_count: AtomicUsize,
    requests: AtomicUsize,
}

/// The receiver; dropping it stops the server.
pub struct OtlpReceiver {
    addr: SocketAddr,
    received: Arc<Received>,
    server: JoinHandle<()>,
}

impl OtlpReceiver {
    /// Starts a receiver that keeps every span, on `127.0.0.1:0`.
    pub async fn start() -> Self {
        Self::serve("127.0.0.1:0".parse().unwrap(), true).await
    }

    /// Starts a receiver on `addr` that only counts requests and spans.
    pub async fn counting(addr: SocketAddr) -> Self {
        Self::serve(addr, false).await
    }

    async fn serve(addr: SocketAddr, keep: bool) -> Self {
        let listener = TcpListener::bind(addr).await.expect("binding the OTLP receiver");
        let addr = listener.local_addr().expect("the OTLP receiver's address");
        let received = Arc::new(Received {
            keep,
            ..Received::default()
        });
        let app = Router::new()
            .route("/v1/traces", post(export))
            .with_state(Arc::clone(&received));
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self {
            addr,
            received,
            server,
        }
    }

    /// The URL for `OTEL_EXPORTER_OTLP_ENDPOINT` (the exporter adds
    /// `/v1/traces`).
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The full traces URL, for `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`.
    pub fn traces_url(&self) -> String {
        format!("http://{}/v1/traces", self.addr)
    }

    /// Every span received so far.
    pub fn spans(&self) -> Vec<ReceivedSpan> {
        self.received.spans.lock().expect("the span list").clone()
    }

    /// How many export requests arrived.
    pub fn requests(&self) -> usize {
        self.received.requests.load(Ordering::Relaxed)
    }

    /// How many spans arrived.
    pub fn span_count(&self) -> usize {
        self.received.span_count.load(Ordering::Relaxed)
    }

    /// Polls the spans until `done` holds for them, and returns them;
    /// panics with `what` and the spans so far after [`WAIT_LIMIT`].
    pub async fn wait_for(&self, what: &str, done: impl Fn(&[ReceivedSpan]) -> bool) -> Vec<ReceivedSpan> {
        let deadline = Instant::now() + WAIT_LIMIT;
        loop {
            let spans = self.spans();
            if done(&spans) {
                return spans;
            }
            assert!(
                Instant::now() < deadline,
                "timed out after {WAIT_LIMIT:?} waiting for {what}; received {spans:#?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for OtlpReceiver {
    fn drop(&mut self) {
        self.server.abort();
    }
}

async fn export(State(received): State<Arc<Received>>, body: Bytes) -> impl IntoResponse {
    let request = match ExportTraceServiceRequest::decode(body) {
        Ok(request) => request,
        Err(error) => return (StatusCode::BAD_REQUEST, error.to_string()).into_response(),
    };
    received.requests.fetch_add(1, Ordering::Relaxed);
    let answer = ExportTraceServiceResponse::default().encode_to_vec();
    let answer = ([(header::CONTENT_TYPE, "application/x-protobuf")], answer);
    if !received.keep {
        // A benchmark's sink: counting is all, and it must stay cheap.
        let count = request
            .resource_spans
            .iter()
            .flat_map(|resource_spans| &resource_spans.scope_spans)
            .map(|scope_spans| scope_spans.spans.len())
            .sum();
        received.span_count.fetch_add(count, Ordering::Relaxed);
        return answer.into_response();
    }
    let mut spans = Vec::new();
    for resource_spans in request.resource_spans {
        let resource = resource_spans
            .resource
            .as_ref()
            .map(|resource| attributes(&resource.attributes))
            .unwrap_or_default();
        let service = resource.get("service.name").cloned().unwrap_or_default();
        for scope_spans in resource_spans.scope_spans {
            let scope = scope_spans.scope.map(|scope| scope.name).unwrap_or_default();
            for span in scope_spans.spans {
                spans.push(ReceivedSpan {
                    service: service.clone(),
                    resource: resource.clone(),
                    scope: scope.clone(),
                    name: span.name,
                    trace_id: hex(&span.trace_id),
                    span_id: hex(&span.span_id),
                    parent_span_id: hex(&span.parent_span_id),
                    kind: span.kind,
                    attributes: attributes(&span.attributes),
                    links: span
                        .links
                        .iter()
                        .map(|link| (hex(&link.trace_id), hex(&link.span_id)))
                        .collect(),
                    status_code: span.status.map_or(0, |status| status.code),
                });
            }
        }
    }
    received.span_count.fetch_add(spans.len(), Ordering::Relaxed);
    received.spans.lock().expect("the span list").extend(spans);
    answer.into_response()
}

fn attributes(pairs: &[KeyValue]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|kv| (kv.key.clone(), text(kv.value.as_ref())))
        .collect()
}

fn text(value: Option<&AnyValue>) -> String {
    match value.and_then(|v| v.value.as_ref()) {
        Some(Value::StringValue(s)) => s.clone(),
        Some(Value::BoolValue(b)) => b.to_string(),
        Some(Value::IntValue(i)) => i.to_string(),
        Some(Value::DoubleValue(d)) => d.to_string(),
        Some(Value::ArrayValue(array)) => array
            .values
            .iter()
            .map(|item| text(Some(item)))
            .collect::<Vec<_>>()
            .join(","),
        Some(other) => format!("{other:?}"),
        None => String::new(),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
