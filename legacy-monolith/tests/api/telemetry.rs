//! The monolith's request spans, exported over OTLP/HTTP by its binary to a
//! real receiver started by the test: each request's span continues the
//! caller's trace, and its JSON log lines carry the trace's ids.

use shop_test_support::AppProcess;
use test_harness::otlp::OtlpReceiver;

const MONOLITH_BINARY: &str = env!("CARGO_BIN_EXE_legacy-monolith");
const CLIENT_TRACE: &str = "0af7651916cd43dd8448eb211c80319c";
const CLIENT_SPAN: &str = "b7ad6b7169203331";

#[tokio::test]
async fn a_request_span_continues_the_callers_trace() {
    let receiver = OtlpReceiver::start().await;
    let database = test_harness::TestDatabase::sqlite();
    let endpoint = receiver.base_url();
    let app = AppProcess::start_with_env(
        MONOLITH_BINARY,
        &[
            "--listen",
            "127.0.0.1:0",
            "--database-url",
            database.url().expose(),
            "--seed",
            "--log-format",
            "json",
        ],
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint),
            ("OTEL_BSP_SCHEDULE_DELAY", "50"),
            ("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment=test"),
        ],
    )
    .await;

    let response = test_harness::http_client()
        .get(format!("{}/products/1", app.url))
        .header("traceparent", format!("00-{CLIENT_TRACE}-{CLIENT_SPAN}-01"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);

    let spans = receiver
        .wait_for("the request's span", |spans| {
            spans.iter().any(|span| span.name == "GET /products/{id}")
        })
        .await;
    let span = spans
        .iter()
        .find(|span| span.name == "GET /products/{id}")
        .unwrap();
    assert_eq!(span.service, "legacy-monolith");
    assert_eq!(span.kind, 2, "a server span");
    assert_eq!(span.trace_id, CLIENT_TRACE);
    assert_eq!(span.parent_span_id, CLIENT_SPAN);
    assert_eq!(span.attribute("http.route"), Some("/products/{id}"));
    assert_eq!(span.attribute("http.response.status_code"), Some("200"));

    let logged = app.logged();
    let finished = logged
        .iter()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .find(|line| {
            line["message"] == "finished processing request" && line["span"]["path"] == "/products/1"
        })
        .unwrap_or_else(|| panic!("no answer logged in {logged:#?}"));
    assert_eq!(finished["trace_id"], CLIENT_TRACE, "{finished}");
    assert_eq!(finished["span_id"], span.span_id.as_str(), "{finished}");
    app.kill().await;
}
