//! What every client can rely on whatever the endpoint: `/health`, JSON
//! errors for unknown routes and methods, and the `X-Request-Id` header.

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use test_harness::Engine;

use crate::helpers::{error_body, json_body, order_body, spawn_app, Refusal, Request, POOR, RICH};

async fn health_reports_the_database(engine: Engine) {
    let Some(app) = spawn_app(engine).await else {
        return;
    };
    let body = json_body(app.get("/health").await, StatusCode::OK).await;
    assert_eq!(body, json!({ "status": "ok", "database": "ok" }));
}

async fn unknown_routes_are_404_json(engine: Engine) {
    let Some(app) = spawn_app(engine).await else {
        return;
    };
    app.load_fixture().await;
    for (method, path) in [
        (Method::GET, "/"),
        (Method::GET, "/no-such-endpoint"),
        (Method::GET, "/products/1/reviews"),
        (Method::POST, "/inventory/reservations/saga-1"),
        (Method::GET, "/internal/orders"),
        (Method::DELETE, "/nothing/here"),
    ] {
        let response = app.send_raw(method.clone(), path, None, "").await;
        let body = error_body(response, StatusCode::NOT_FOUND).await;
        assert_eq!(
            body,
            json!({ "error": "no such endpoint", "detail": null }),
            "{method} {path}"
        );
    }
}

async fn wrong_methods_are_405_json(engine: Engine) {
    let Some(app) = spawn_app(engine).await else {
        return;
    };
    app.load_fixture().await;
    for (method, path) in [
        (Method::DELETE, "/products/1"),
        (Method::POST, "/products"),
        (Method::GET, "/orders"),
        (Method::PUT, "/orders/1"),
        (Method::GET, "/orders/1/cancel"),
        (Method::POST, "/customers/1"),
        (Method::GET, "/payments"),
        (Method::GET, "/inventory/reservations"),
        (Method::GET, "/internal/orders/1"),
        (Method::POST, "/health"),
    ] {
        let response = app.send_raw(method.clone(), path, None, "").await;
        let body = error_body(response, StatusCode::METHOD_NOT_ALLOWED).await;
        assert_eq!(
            body,
            json!({ "error": "this endpoint does not support that method", "detail": null }),
            "{method} {path}"
        );
    }
}

/// One request per kind of failure: each answers a JSON body with a string
/// `error` (checked by `error_body`) and changes nothing.
async fn every_error_is_json_with_an_error_string(engine: Engine) {
    let Some(app) = spawn_app(engine).await else {
        return;
    };
    app.load_fixture().await;
    app.set_stock(3, 0).await;

    let place = |body: Value| Request::post_json("/orders", body);
    let raw_order = |content_type, text: &str| Request::raw(Method::POST, "/orders", content_type, text);
    app.assert_refusals([
        Refusal::new(
            "a malformed id",
            Request::get("/orders/abc"),
            StatusCode::BAD_REQUEST,
        ),
        Refusal::new(
            "a bad query",
            Request::get("/products?limit=0"),
            StatusCode::BAD_REQUEST,
        ),
        Refusal::new(
            "malformed JSON",
            raw_order(Some("application/json"), "{"),
            StatusCode::BAD_REQUEST,
        ),
        Refusal::new(
            "no content type",
            raw_order(None, "{}"),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
        ),
        Refusal::new(
            "a body of the wrong shape",
            place(json!({})),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        Refusal::new(
            "a broken business rule",
            place(order_body(RICH, &[])),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        Refusal::new(
            "too little stock",
            place(order_body(RICH, &[(3, 1)])),
            StatusCode::CONFLICT,
        ),
        Refusal::new(
            "a declined payment",
            place(order_body(POOR, &[(4, 1)])),
            StatusCode::PAYMENT_REQUIRED,
        ),
        Refusal::new(
            "an unknown customer",
            Request::get("/customers/999"),
            StatusCode::NOT_FOUND,
        ),
        Refusal::new(
            "an unknown payment",
            Request::post_empty("/payments/nope/refund"),
            StatusCode::NOT_FOUND,
        ),
        Refusal::new(
            "an unsupported method",
            Request::raw(Method::PATCH, "/products/1", None, ""),
            StatusCode::METHOD_NOT_ALLOWED,
        ),
    ])
    .await;
}

async fn a_request_id_is_echoed(engine: Engine) {
    let Some(app) = spawn_app(engine).await else {
        return;
    };
    app.load_fixture().await;
    for path in ["/products/1", "/products/999", "/no-such-endpoint"] {
        let response = app
            .client
            .get(app.url(path))
            .header("X-Request-Id", "test-correlation-42")
            .send()
            .await
            .expect("a request");
        assert_eq!(
            response
                .headers()
                .get("x-request-id")
                .and_then(|v| v.to_str().ok()),
            Some("test-correlation-42"),
            "{path}"
        );
    }
    let response = app
        .client
        .post(app.url("/orders"))
        .header("X-Request-Id", "order-attempt-7")
        .json(&order_body(RICH, &[(1, 1)]))
        .send()
        .await
        .expect("a request");
    assert_eq!(response.status(), StatusCode::CREATED);
    assert_eq!(
        response
            .headers()
            .get("x-request-id")
            .and_then(|v| v.to_str().ok()),
        Some("order-attempt-7")
    );
}

fn is_uuid(text: &str) -> bool {
    let groups: Vec<&str> = text.split('-').collect();
    groups.iter().map(|g| g.len()).eq([8, 4, 4, 4, 12])
        && groups.iter().all(|g| g.chars().all(|c| c.is_ascii_hexdigit()))
}

async fn a_request_id_is_generated_when_absent(engine: Engine) {
    let Some(app) = spawn_app(engine).await else {
        return;
    };
    let mut ids = Vec::new();
    for path in ["/health", "/health", "/no-such-endpoint"] {
        let response = app.get(path).await;
        let id = response
            .headers()
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_else(|| panic!("{path} answered without an X-Request-Id"))
            .to_owned();
        assert!(is_uuid(&id), "{path}: `{id}` is not a UUID");
        ids.push(id);
    }
    assert_ne!(ids[0], ids[1], "each request gets its own id");
    assert_ne!(ids[1], ids[2]);
}

test_harness::on_each_engine!(
    health_reports_the_database,
    unknown_routes_are_404_json,
    wrong_methods_are_405_json,
    every_error_is_json_with_an_error_string,
    a_request_id_is_echoed,
    a_request_id_is_generated_when_absent,
);
