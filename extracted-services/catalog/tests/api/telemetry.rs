//! The catalog service's traces, from its binary, exported over OTLP/HTTP
//! to a real receiver started by the test: a request's span named and
//! sampled as the standard `OTEL_*` variables say, and the call it makes to
//! the monolith's inventory carrying a `traceparent` whose parent is the
//! service's own span, so the monolith's span joins the same trace.

use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::http::{HeaderMap, Uri};
use axum::routing::get;
use axum::{Json, Router};
use shop_api::StockLevel;
use shop_test_support::AppProcess;
use test_harness::otlp::OtlpReceiver;
use test_harness::Database;

use crate::helpers::{insert_product, sample_product, STUB_STOCK};

const CATALOG_BINARY: &str = env!("CARGO_BIN_EXE_catalog-service");

/// The `traceparent` of every inventory call, in order (`None` when absent).
type Seen = Arc<Mutex<Vec<Option<String>>>>;

/// A stand-in for the monolith's `GET /inventory` that keeps the
/// `traceparent` of each call; its base URL.
async fn inventory_stub(seen: Seen) -> String {
    async fn inventory(State(seen): State<Seen>, headers: HeaderMap, uri: Uri) -> Json<Vec<StockLevel>> {
        let traceparent = headers
            .get("traceparent")
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned);
        seen.lock().unwrap().push(traceparent);
        let ids = uri
            .query()
            .and_then(|query| query.strip_prefix("product_ids="))
            .unwrap_or_default();
        Json(
            ids.split(',')
                .filter_map(|id| id.parse().ok())
                .map(|product_id| StockLevel {
                    product_id,
                    stock: STUB_STOCK,
                })
                .collect(),
        )
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let app = Router::new().route("/inventory", get(inventory)).with_state(seen);
    tokio::spawn(async move { axum::serve(listener, app).await });
    url
}

/// A root request with `OTEL_TRACES_SAMPLER=traceidratio` at 1 is kept:
/// its span is exported under the default service name with the
/// resource's attributes, and the monolith is told that the catalog's span
/// making the call (the inventory client's, a child of the request's) is
/// its parent.
#[tokio::test]
async fn the_inventory_call_names_the_services_span_as_its_parent() {
    let receiver = OtlpReceiver::start().await;
    let seen = Seen::default();
    let monolith = inventory_stub(Arc::clone(&seen)).await;
    let database = test_harness::TestDatabase::sqlite();
    let endpoint = receiver.base_url();
    let app = AppProcess::start_with_env(
        CATALOG_BINARY,
        &[
            "--listen",
            "127.0.0.1:0",
            "--database-url",
            database.url().expose(),
            "--monolith-url",
            &monolith,
            "--log-format",
            "json",
        ],
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
            ("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment=test"),
            ("OTEL_TRACES_SAMPLER", "traceidratio"),
            ("OTEL_TRACES_SAMPLER_ARG", "1"),
            ("OTEL_BSP_SCHEDULE_DELAY", "50"),
        ],
    )
    .await;
    // The service migrated its database as it started.
    let db = Database::open(database.url()).await.unwrap();
    insert_product(&db, &sample_product(1)).await;
    db.close().await;

    let response = test_harness::http_client()
        .get(format!("{}/products/1", app.url))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);

    let spans = receiver
        .wait_for("the request's span and the inventory call's", |spans| {
            spans.iter().any(|span| span.name == "GET /products/{id}")
                && spans.iter().any(|span| span.name == "stock_levels")
        })
        .await;
    let request = spans
        .iter()
        .find(|span| span.name == "GET /products/{id}")
        .unwrap();
    assert_eq!(request.service, "catalog-service");
    assert_eq!(request.resource_attribute("deployment.environment"), Some("test"));
    assert_eq!(request.kind, 2, "a server span");
    assert_eq!(request.parent_span_id, "", "a root span: no caller's trace");
    assert_eq!(request.attribute("http.response.status_code"), Some("200"));
    // The inventory client's own span (`#[instrument]`), inside the request's.
    let call = spans.iter().find(|span| span.name == "stock_levels").unwrap();
    assert_eq!(call.trace_id, request.trace_id);
    assert_eq!(call.parent_span_id, request.span_id);

    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 1, "one inventory call: {seen:?}");
    let traceparent = seen[0]
        .as_deref()
        .expect("the inventory call carried a traceparent");
    assert_eq!(
        traceparent,
        format!("00-{}-{}-01", call.trace_id, call.span_id),
        "the monolith's parent is the catalog's span that made the call"
    );
    app.kill().await;
}
