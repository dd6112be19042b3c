//! When the monolith is down, slow or wrong: fast JSON errors naming the
//! inventory dependency, nothing changed locally; and correlation ids
//! travel to the monolith.

use std::time::Duration;

use axum::http::StatusCode;
use serde_json::{json, Value};
use service_runtime::request_id::REQUEST_ID_HEADER;
use shop_test_support::http::{generated_request_id, send_within};
use shop_test_support::upstreams::{closed_port_url, SeenRequest, SilentUpstream};
use test_harness::{http_client, snapshot, Engine};

use crate::helpers::{
    get, insert_product, put_json, sample_product, send, spawn_app, spawn_catalog, stub_monolith, STUB_STOCK,
    UPSTREAM_TIMEOUT,
};

/// Sends `request`, asserts it failed with `status` naming the inventory
/// dependency and `failure` within `within`.
async fn assert_dependency_error(
    request: reqwest::RequestBuilder,
    status: StatusCode,
    failure: &str,
    within: Duration,
) -> (Value, Duration) {
    let ((answered, body), elapsed) = send_within(request, within).await;
    assert_eq!(answered, status, "{body}");
    assert_eq!(body["detail"]["dependency"], "inventory", "{body}");
    assert_eq!(body["detail"]["failure"], failure, "{body}");
    let message = body["error"].as_str().expect("an error message");
    assert!(
        message.contains("inventory") && message.contains("monolith"),
        "{message}"
    );
    (body, elapsed)
}

/// Sends `request` to a catalog whose monolith refuses connections: a 503
/// naming the unreachable inventory, and since a refused connection is
/// immediate, well within the upstream timeout.
async fn assert_unreachable(request: reqwest::RequestBuilder) {
    assert_dependency_error(
        request,
        StatusCode::SERVICE_UNAVAILABLE,
        "unreachable",
        UPSTREAM_TIMEOUT,
    )
    .await;
}

async fn monolith_stopped_answers_503_quickly(engine: Engine) {
    let Some(mut app) = spawn_app(engine).await else {
        return;
    };
    let client = http_client();
    let (status, _) = get(&format!("{}/products/1", app.catalog.url)).await;
    assert_eq!(status, StatusCode::OK, "while the monolith is up");

    app.monolith.stop().await;

    let catalog_before = snapshot(&app.catalog.db, &["products"]).await;
    let product = format!("{}/products/1", app.catalog.url);
    let requests = [
        client.get(format!("{}/products", app.catalog.url)),
        client.get(&product),
        client.put(&product).json(&json!({ "stock": 1 })),
        client.put(&product).json(&json!({ "price_cents": 1 })),
        client
            .put(&product)
            .json(&json!({ "price_cents": 1, "stock": 1 })),
    ];
    for request in requests {
        assert_unreachable(request).await;
    }
    assert_eq!(
        snapshot(&app.catalog.db, &["products"]).await,
        catalog_before,
        "a failed stock call leaves the catalog unchanged"
    );
    let (status, health) = get(&format!("{}/health", app.catalog.url)).await;
    assert_eq!(
        (status, health),
        (StatusCode::OK, json!({ "status": "ok", "database": "ok" })),
        "the service's health is its own database, not the monolith"
    );
}

async fn unreachable_monolith_fails_only_what_needs_stock(engine: Engine) {
    let Some(catalog) = spawn_catalog(engine, &closed_port_url(), UPSTREAM_TIMEOUT).await else {
        return;
    };
    insert_product(&catalog.db, &sample_product(1)).await;
    let client = http_client();
    for path in ["/products", "/products/1"] {
        assert_unreachable(client.get(format!("{}{path}", catalog.url))).await;
    }
    // Answers that hold no product need no stock, so no monolith.
    let (status, body) = get(&format!("{}/products/2", catalog.url)).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    let (status, body) = put_json(&format!("{}/products/2", catalog.url), &json!({ "stock": 1 })).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    let (status, body) = get(&format!("{}/products?cursor=1", catalog.url)).await;
    assert_eq!(
        (status, body),
        (StatusCode::OK, json!({ "items": [], "next_cursor": null }))
    );
}

async fn silent_monolith_times_out_with_503(engine: Engine) {
    // Connections are accepted and then no answer ever comes.
    let silent = SilentUpstream::spawn().await;
    let timeout = Duration::from_millis(300);
    let Some(catalog) = spawn_catalog(engine, &silent.url, timeout).await else {
        return;
    };
    insert_product(&catalog.db, &sample_product(1)).await;
    let before = snapshot(&catalog.db, &["products"]).await;
    let client = http_client();
    let product = format!("{}/products/1", catalog.url);
    let requests = [
        client.get(format!("{}/products", catalog.url)),
        client.get(&product),
        client
            .put(&product)
            .json(&json!({ "price_cents": 5, "stock": 5 })),
    ];
    for request in requests {
        let (_, elapsed) = assert_dependency_error(
            request,
            StatusCode::SERVICE_UNAVAILABLE,
            "timed_out",
            Duration::from_secs(5),
        )
        .await;
        assert!(elapsed >= timeout, "gave up before the timeout");
    }
    assert!(silent.accepted() >= 1, "the service did connect");
    assert_eq!(snapshot(&catalog.db, &["products"]).await, before);
}

async fn unexpected_monolith_answers_are_502_or_503(engine: Engine) {
    for (upstream, expected, failure) in [
        (
            StatusCode::INTERNAL_SERVER_ERROR,
            StatusCode::BAD_GATEWAY,
            "unexpected_answer",
        ),
        (
            StatusCode::NOT_FOUND,
            StatusCode::BAD_GATEWAY,
            "unexpected_answer",
        ),
        (
            StatusCode::SERVICE_UNAVAILABLE,
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
        ),
    ] {
        let stub = stub_monolith(upstream).await;
        let Some(catalog) = spawn_catalog(engine, &stub.url, UPSTREAM_TIMEOUT).await else {
            return;
        };
        insert_product(&catalog.db, &sample_product(1)).await;
        let before = snapshot(&catalog.db, &["products"]).await;
        let client = http_client();
        let product = format!("{}/products/1", catalog.url);
        for request in [
            client.get(&product),
            client
                .put(&product)
                .json(&json!({ "price_cents": 5, "stock": 5 })),
        ] {
            let (body, _) = assert_dependency_error(request, expected, failure, UPSTREAM_TIMEOUT).await;
            assert_eq!(body["detail"]["upstream_status"], upstream.as_u16(), "{body}");
        }
        assert_eq!(snapshot(&catalog.db, &["products"]).await, before);
    }
}

async fn request_ids_travel_to_the_monolith(engine: Engine) {
    let stub = stub_monolith(StatusCode::OK).await;
    let Some(catalog) = spawn_catalog(engine, &stub.url, UPSTREAM_TIMEOUT).await else {
        return;
    };
    for id in 1..=3 {
        insert_product(&catalog.db, &sample_product(id)).await;
    }
    let client = http_client();

    let (status, page) = send(
        client
            .get(format!("{}/products", catalog.url))
            .header(REQUEST_ID_HEADER, "req-list"),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert!(
        page["items"]
            .as_array()
            .expect("items")
            .iter()
            .all(|p| p["stock"] == STUB_STOCK),
        "{page}"
    );
    let (status, _) = send(
        client
            .put(format!("{}/products/2", catalog.url))
            .header(REQUEST_ID_HEADER, "req-put")
            .json(&json!({ "stock": 9 })),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let generated = generated_request_id(client.get(format!("{}/products/3", catalog.url))).await;

    let seen = |method: &str, target: &str, request_id: &str, body: Value| SeenRequest {
        method: method.to_owned(),
        target: target.to_owned(),
        request_id: Some(request_id.to_owned()),
        body,
    };
    assert_eq!(
        stub.seen(),
        [
            seen("GET", "/inventory?product_ids=1,2,3", "req-list", Value::Null),
            seen("PUT", "/inventory/2", "req-put", json!({ "stock": 9 })),
            seen("GET", "/inventory?product_ids=3", &generated, Value::Null),
        ],
        "one batched call per request, each carrying the request's id"
    );
}

test_harness::on_each_engine!(
    monolith_stopped_answers_503_quickly,
    unreachable_monolith_fails_only_what_needs_stock,
    silent_monolith_times_out_with_503,
    unexpected_monolith_answers_are_502_or_503,
    request_ids_travel_to_the_monolith,
);
