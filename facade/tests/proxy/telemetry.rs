//! OpenTelemetry traces of proxied requests, checked on a real OTLP/HTTP
//! receiver that decodes what the facade exports: the client's trace
//! continued, the upstream told which span is its parent, attempts with
//! their retry numbers and breaker states (an open breaker's refusal
//! included), the fallback, the shadow comparison in a linked
//! trace; and with tracing off (or a trace not kept), nothing exported and
//! the client's `traceparent` (or none) passed on as before.

use std::time::Duration;

use reqwest::Method;
use test_harness::otlp::{OtlpReceiver, ReceivedSpan};
use toolkit_telemetry::{Pipeline, Sampling, TraceSettings};

use crate::helpers::{
    sqlite_store, start_facade_traced, Behavior, Cutover, Settings, Shop, TestFacade, CAPABILITY,
};

const CLIENT_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CLIENT_SPAN: &str = "00f067aa0ba902b7";

fn client_traceparent(flags: &str) -> String {
    format!("00-{CLIENT_TRACE}-{CLIENT_SPAN}-{flags}")
}

/// A pipeline to `receiver` that exports every 50 ms, with `sampling`.
fn pipeline(receiver: &OtlpReceiver, sampling: Sampling) -> Pipeline {
    let settings = TraceSettings {
        schedule_delay: Some(Duration::from_millis(50)),
        sampling,
        ..TraceSettings::new(receiver.traces_url(), "facade-under-test")
    };
    Pipeline::start(&settings).unwrap()
}

/// Shuts the pipeline down off the test's runtime: it waits for the last
/// export, which the receiver on this runtime must answer.
async fn finish(pipeline: Pipeline) {
    tokio::task::spawn_blocking(move || pipeline.shutdown())
        .await
        .unwrap();
}

/// The shop behind a facade whose spans go to `pipeline` (or nowhere).
async fn traced_shop(pipeline: Option<&Pipeline>) -> (test_harness::TestDatabase, Shop, TestFacade) {
    let store = sqlite_store();
    let shop = Shop::spawn().await;
    let sink = pipeline.map(|p| p.span_sink("strangler-facade"));
    let facade = start_facade_traced(&shop.config(""), store.url(), |_| {}, sink).await;
    (store, shop, facade)
}

/// `GET path` with `traceparent`; the `traceparent` the upstream received.
async fn upstream_traceparent(facade: &TestFacade, path: &str, traceparent: Option<&str>) -> Option<String> {
    let mut request = facade.client.get(facade.url(path));
    if let Some(traceparent) = traceparent {
        request = request.header("traceparent", traceparent);
    }
    let response = request.send().await.unwrap();
    assert_eq!(response.status(), 200);
    let echo: serde_json::Value = response.json().await.unwrap();
    let values = echo["headers"]["traceparent"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(
        values.len() <= 1,
        "more than one traceparent went upstream: {values:?}"
    );
    values.first().and_then(|v| v.as_str()).map(str::to_owned)
}

fn named<'s>(spans: &'s [ReceivedSpan], name: &str) -> Vec<&'s ReceivedSpan> {
    spans.iter().filter(|span| span.name == name).collect()
}

#[tokio::test]
async fn a_clients_trace_is_continued_and_the_upstream_sees_the_attempts_span_as_parent() {
    let receiver = OtlpReceiver::start().await;
    let pipeline = pipeline(&receiver, Sampling::default());
    let (_store, _shop, facade) = traced_shop(Some(&pipeline)).await;

    let sent = upstream_traceparent(&facade, "/products/7", Some(&client_traceparent("01")))
        .await
        .expect("the upstream got a traceparent");
    let parts: Vec<&str> = sent.split('-').collect();
    assert_eq!(parts.len(), 4, "{sent}");
    assert_eq!(
        (parts[0], parts[1], parts[3]),
        ("00", CLIENT_TRACE, "01"),
        "{sent}"
    );
    assert_ne!(
        parts[2], CLIENT_SPAN,
        "the upstream's parent must be the facade's span"
    );

    let spans = receiver
        .wait_for("the request's and the attempt's spans", |spans| {
            spans.iter().any(|s| s.kind == 2) && spans.iter().any(|s| s.name == "upstream attempt")
        })
        .await;
    let server = spans.iter().find(|s| s.kind == 2).unwrap();
    assert_eq!(server.service, "facade-under-test");
    assert_eq!(server.scope, "strangler-facade");
    assert_eq!(server.name, "GET /products/{id}");
    assert_eq!(server.trace_id, CLIENT_TRACE);
    assert_eq!(server.parent_span_id, CLIENT_SPAN);
    assert_eq!(server.attribute("strangler.capability"), Some("catalog"));
    assert_eq!(server.attribute("strangler.stage"), Some("service"));
    assert_eq!(server.attribute("strangler.side"), Some("service"));
    assert_eq!(server.attribute("strangler.served_by"), Some("catalog"));
    assert_eq!(server.attribute("http.route"), Some("/products/{id}"));
    assert_eq!(server.attribute("url.path"), Some("/products/7"));
    assert_eq!(server.attribute("http.response.status_code"), Some("200"));

    let attempt = named(&spans, "upstream attempt")[0];
    assert_eq!(attempt.kind, 3, "a client span");
    assert_eq!(attempt.trace_id, CLIENT_TRACE);
    assert_eq!(attempt.parent_span_id, server.span_id);
    assert_eq!(
        attempt.span_id, parts[2],
        "the upstream's parent is the attempt's span"
    );
    assert_eq!(attempt.attribute("strangler.retry"), Some("0"));
    assert_eq!(attempt.attribute("strangler.breaker"), Some("closed"));
    assert_eq!(attempt.attribute("strangler.backend"), Some("catalog"));
    finish(pipeline).await;
}

#[tokio::test]
async fn a_retry_and_the_fallback_get_attempt_spans_with_their_numbers() {
    let receiver = OtlpReceiver::start().await;
    let pipeline = pipeline(&receiver, Sampling::default());
    let store = sqlite_store();
    let cutover = Cutover::spawn().await;
    let settings = Settings {
        initial: "service",
        service: "retries = 1\nretry_budget = 1.0\nretry_backoff_ms = 1\nbreaker_failures = 100",
        ..Settings::default()
    };
    let sink = Some(pipeline.span_sink("strangler-facade"));
    let facade = start_facade_traced(&cutover.config(&settings), store.url(), |_| {}, sink).await;
    cutover.service.set(Behavior::Status(503));

    let answer = facade.send(Method::GET, "/orders/1", &[]).await;
    assert_eq!(answer.upstream.as_deref(), Some("legacy"), "{answer:?}");

    let spans = receiver
        .wait_for("two attempts, the fallback's and the request's span", |spans| {
            named(spans, "upstream attempt").len() == 2
                && named(spans, "fallback attempt").len() == 1
                && spans.iter().any(|s| s.kind == 2)
        })
        .await;
    let server = spans.iter().find(|s| s.kind == 2).unwrap();
    assert_eq!(server.attribute("strangler.capability"), Some(CAPABILITY));
    assert_eq!(server.attribute("strangler.fallback"), Some("status"));
    assert_eq!(server.attribute("strangler.served_by"), Some("legacy"));
    let mut retries: Vec<&str> = named(&spans, "upstream attempt")
        .iter()
        .map(|attempt| {
            assert_eq!(attempt.parent_span_id, server.span_id);
            assert_eq!(attempt.attribute("strangler.backend"), Some("service"));
            assert_eq!(attempt.attribute("http.response.status_code"), Some("503"));
            assert_eq!(attempt.status_code, 2, "a failed attempt is an error");
            attempt.attribute("strangler.retry").unwrap()
        })
        .collect();
    retries.sort_unstable();
    assert_eq!(retries, ["0", "1"]);
    let fallback = named(&spans, "fallback attempt")[0];
    assert_eq!(fallback.parent_span_id, server.span_id);
    assert_eq!(fallback.attribute("strangler.backend"), Some("legacy"));
    assert_eq!(fallback.attribute("strangler.fallback"), Some("true"));
    assert_eq!(fallback.attribute("http.response.status_code"), Some("200"));
    finish(pipeline).await;
}

/// With the service's breaker open, the attempt the breaker refuses still
/// gets a span: nothing was sent, so no status, but the breaker's state
/// (`open`) and the refusal (`circuit_open`) as its error; then the
/// fallback's attempt.
#[tokio::test]
async fn an_attempt_refused_by_an_open_breaker_says_so() {
    let receiver = OtlpReceiver::start().await;
    let pipeline = pipeline(&receiver, Sampling::default());
    let store = sqlite_store();
    let cutover = Cutover::spawn().await;
    let settings = Settings {
        initial: "service",
        capability: "[capabilities.orders.rollback]\nenabled = false",
        service: "retries = 0\nbreaker_failures = 1\nbreaker_open_ms = 60000",
        ..Settings::default()
    };
    let sink = Some(pipeline.span_sink("strangler-facade"));
    let facade = start_facade_traced(&cutover.config(&settings), store.url(), |_| {}, sink).await;
    // One failure opens the breaker for a minute.
    cutover.service.set(Behavior::Status(500));
    let answer = facade.get("/orders/1").await;
    assert_eq!(answer.upstream.as_deref(), Some("legacy"), "{answer:?}");
    assert_eq!(facade.breaker_of("service").await, "open");

    let traceparent = client_traceparent("01");
    let answer = facade
        .send(Method::GET, "/orders/1", &[("traceparent", &traceparent)])
        .await;
    assert_eq!(answer.upstream.as_deref(), Some("legacy"), "{answer:?}");

    let in_trace = |spans: &[ReceivedSpan], name: &str| {
        spans
            .iter()
            .filter(|s| s.trace_id == CLIENT_TRACE && s.name == name)
            .count()
    };
    let spans = receiver
        .wait_for(
            "the refused attempt's, the fallback's and the request's span",
            |spans| {
                in_trace(spans, "upstream attempt") == 1
                    && in_trace(spans, "fallback attempt") == 1
                    && spans.iter().any(|s| s.trace_id == CLIENT_TRACE && s.kind == 2)
            },
        )
        .await;
    let server = spans
        .iter()
        .find(|s| s.trace_id == CLIENT_TRACE && s.kind == 2)
        .unwrap();
    assert_eq!(server.attribute("strangler.fallback"), Some("circuit_open"));
    let refused = spans
        .iter()
        .find(|s| s.trace_id == CLIENT_TRACE && s.name == "upstream attempt")
        .unwrap();
    assert_eq!(refused.parent_span_id, server.span_id);
    assert_eq!(refused.attribute("strangler.backend"), Some("service"));
    assert_eq!(refused.attribute("strangler.breaker"), Some("open"));
    assert_eq!(refused.attribute("error.type"), Some("circuit_open"));
    assert_eq!(
        refused.attribute("http.response.status_code"),
        None,
        "nothing was sent"
    );
    assert_eq!(refused.status_code, 2, "a refused attempt is an error");
    let fallback = spans
        .iter()
        .find(|s| s.trace_id == CLIENT_TRACE && s.name == "fallback attempt")
        .unwrap();
    assert_eq!(fallback.attribute("strangler.backend"), Some("legacy"));
    assert_eq!(fallback.attribute("strangler.breaker"), Some("closed"));
    finish(pipeline).await;
}

#[tokio::test]
async fn a_shadow_copy_is_compared_in_a_linked_span() {
    let receiver = OtlpReceiver::start().await;
    let pipeline = pipeline(&receiver, Sampling::default());
    let store = sqlite_store();
    let cutover = Cutover::spawn().await;
    let settings = Settings {
        initial: "shadow",
        ..Settings::default()
    };
    let sink = Some(pipeline.span_sink("strangler-facade"));
    let facade = start_facade_traced(&cutover.config(&settings), store.url(), |_| {}, sink).await;

    let traceparent = client_traceparent("01");
    let answer = facade
        .send(Method::GET, "/orders/1", &[("traceparent", &traceparent)])
        .await;
    assert_eq!(answer.upstream.as_deref(), Some("legacy"), "{answer:?}");

    let spans = receiver
        .wait_for("the request's span and the shadow comparison's", |spans| {
            spans.iter().any(|s| s.kind == 2) && !named(spans, "shadow comparison").is_empty()
        })
        .await;
    let server = spans.iter().find(|s| s.kind == 2).unwrap();
    assert_eq!(server.attribute("strangler.stage"), Some("shadow"));
    assert_eq!(server.attribute("strangler.shadow"), Some("true"));
    let shadow = named(&spans, "shadow comparison")[0];
    assert_ne!(
        shadow.trace_id, CLIENT_TRACE,
        "the comparison has a trace of its own"
    );
    assert_eq!(shadow.parent_span_id, "", "a root span");
    assert_eq!(shadow.links, [(CLIENT_TRACE.to_owned(), server.span_id.clone())]);
    assert_eq!(shadow.attribute("strangler.shadow"), Some("true"));
    assert_eq!(shadow.attribute("strangler.capability"), Some(CAPABILITY));
    // The two upstreams' documents differ (`updated_at`), so: a mismatch,
    // with the fields that differed.
    assert_eq!(shadow.attribute("strangler.shadow.result"), Some("mismatch"));
    assert!(
        shadow
            .attribute("strangler.shadow.fields")
            .is_some_and(|fields| fields.contains("updated_at")),
        "{shadow:?}"
    );
    assert_eq!(shadow.attribute("strangler.shadow.service_status"), Some("200"));
    finish(pipeline).await;
}

#[tokio::test]
async fn without_an_endpoint_nothing_is_exported_and_traceparent_passes_unchanged() {
    let receiver = OtlpReceiver::start().await;
    // The environment of a facade without OTEL_EXPORTER_OTLP_ENDPOINT.
    let settings = TraceSettings::from_lookup("strangler-facade", |name| {
        (name == "OTEL_SERVICE_NAME").then(|| "unused".to_owned())
    })
    .unwrap();
    assert!(settings.is_none());
    let (_store, _shop, facade) = traced_shop(None).await;

    let traceparent = client_traceparent("01");
    let sent = upstream_traceparent(&facade, "/products/7", Some(&traceparent)).await;
    assert_eq!(sent.as_deref(), Some(traceparent.as_str()));
    assert_eq!(upstream_traceparent(&facade, "/products/7", None).await, None);
    // No pipeline exists, so nothing can arrive later either.
    assert_eq!(receiver.requests(), 0);
}

#[tokio::test]
async fn a_trace_not_kept_exports_nothing_and_passes_traceparent_unchanged() {
    let receiver = OtlpReceiver::start().await;
    let never = Sampling::from_variables(Some("parentbased_always_off"), None).unwrap();
    let pipeline = pipeline(&receiver, never);
    let (_store, _shop, facade) = traced_shop(Some(&pipeline)).await;

    // A client's trace it did not keep goes on untouched.
    let unsampled = client_traceparent("00");
    let sent = upstream_traceparent(&facade, "/products/7", Some(&unsampled)).await;
    assert_eq!(sent.as_deref(), Some(unsampled.as_str()));
    // A new trace not kept is not announced: the upstream decides alone.
    assert_eq!(upstream_traceparent(&facade, "/products/7", None).await, None);

    finish(pipeline).await;
    assert_eq!(receiver.span_count(), 0);
}
