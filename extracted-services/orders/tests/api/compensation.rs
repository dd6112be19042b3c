//! When the monolith says no: the client gets the monolith's answer, every
//! completed saga step is undone, and the order is left `failed` (invisible).
//! Requests the service rejects itself write nothing anywhere.

use axum::http::StatusCode;
use serde_json::{json, Value};
use test_harness::{http_client, snapshot, Engine};

use crate::helpers::{
    all_stock, count, dual_write_stats, execute, get, id_of, order_lines, payment, place, place_ok,
    reference, reservation, send, service_order, spawn_app, stats, Answer, TestApp, DUAL_WRITE_ON, FIRST_ID,
    MONOLITH_TABLES, SEEDED_ORDERS, SERVICE_TABLES, STOCK,
};

/// Places an order the monolith refuses at `step`: the client gets
/// `expected`, the monolith's answer as is, and the order is compensated.
async fn assert_refused_at(
    app: &TestApp,
    customer_id: i64,
    lines: &[(i64, i64)],
    step: &str,
    expected: Answer,
) {
    let answer = place(&app.orders.url, customer_id, lines).await;
    assert_eq!(answer, expected, "the monolith's refusal, passed on as is");
    let message = expected.1["error"].as_str().expect("an error message");
    assert_failed(app, FIRST_ID, step, message).await;
}

/// Asserts that order `id` was compensated: `failed` with a reason naming
/// the step and the monolith's message, and invisible through the API.
async fn assert_failed(app: &TestApp, id: i64, step: &str, message: &str) {
    let row = service_order(&app.orders.db, id)
        .await
        .expect("the order row is kept");
    assert_eq!(row.state, "failed");
    let reason = row.failure_reason.expect("a failure reason");
    assert!(reason.starts_with(&format!("{step}: ")), "{reason}");
    assert!(reason.contains(message), "{reason}");
    assert_eq!(
        get(&format!("{}/orders/{id}", app.orders.url)).await,
        (
            StatusCode::NOT_FOUND,
            json!({ "error": format!("order {id} does not exist"), "detail": null })
        )
    );
    let (status, page) = get(&format!(
        "{}/customers/{}/orders",
        app.orders.url, row.customer_id
    ))
    .await;
    assert_eq!(
        (status, &page["items"]),
        (StatusCode::OK, &json!([])),
        "not listed either"
    );
}

async fn insufficient_stock_is_a_conflict_and_takes_nothing(engine: Engine) {
    let Some(app) = spawn_app(engine, DUAL_WRITE_ON).await else {
        return;
    };
    execute(
        &app.monolith.db,
        "UPDATE inventory SET stock = 1 WHERE product_id = 4",
        &[],
    )
    .await;
    let monolith_before = snapshot(&app.monolith.db, MONOLITH_TABLES).await;

    // The first line could be served: the monolith must not keep it.
    let refusal = json!({
        "error": "line 1: insufficient stock for product 4: 3 requested, 1 available",
        "detail": { "line": 1, "product_id": 4, "requested": 3, "available": 1 },
    });
    assert_refused_at(
        &app,
        1,
        &[(2, 2), (4, 3)],
        "stock reservation",
        (StatusCode::CONFLICT, refusal),
    )
    .await;
    let row = service_order(&app.orders.db, FIRST_ID).await.expect("the row");
    assert_eq!(row.total_cents, 0, "no prices were ever reserved");
    assert_eq!(
        order_lines(&app.orders.db, FIRST_ID).await,
        [(1, 2, 2, 0), (2, 4, 3, 0)]
    );

    assert_eq!(snapshot(&app.monolith.db, MONOLITH_TABLES).await, monolith_before);
    assert_eq!(payment(&app.monolith.db, &reference(FIRST_ID)).await, None);
    assert_eq!(reservation(&app.monolith.db, &reference(FIRST_ID)).await, None);
    assert_eq!(all_stock(&app.monolith.db).await, [STOCK, STOCK, STOCK, 1, STOCK]);
    assert_eq!(dual_write_stats(&app.orders.url).await, stats(true, 0.0, 0, 0, 0));
}

async fn declined_payment_releases_the_stock(engine: Engine) {
    let Some(app) = spawn_app(engine, DUAL_WRITE_ON).await else {
        return;
    };
    execute(
        &app.monolith.db,
        "UPDATE customers SET credit_limit_cents = 5000 WHERE id = 2",
        &[],
    )
    .await;
    let lines = [(1, 2), (3, 2)];

    let refusal = json!({
        "error": "payment declined: 6500 cents exceeds the customer's credit limit of 5000 cents",
        "detail": { "amount_cents": 6500, "credit_limit_cents": 5000 },
    });
    assert_refused_at(
        &app,
        2,
        &lines,
        "payment",
        (StatusCode::PAYMENT_REQUIRED, refusal),
    )
    .await;
    let row = service_order(&app.orders.db, FIRST_ID).await.expect("the row");
    assert_eq!(
        row.total_cents, 6500,
        "the prices were reserved before the payment failed"
    );

    let monolith = &app.monolith.db;
    assert_eq!(
        reservation(monolith, &reference(FIRST_ID)).await,
        Some(("released".to_owned(), vec![(1, 2, 1_250), (3, 2, 2_000)])),
        "the compensation released the reservation"
    );
    assert_eq!(all_stock(monolith).await, [STOCK; 5], "and the stock is back");
    assert_eq!(payment(monolith, &reference(FIRST_ID)).await, None);
    assert_eq!(
        count(monolith, "orders").await,
        SEEDED_ORDERS,
        "a failed order is never dual-written"
    );
    assert_eq!(dual_write_stats(&app.orders.url).await, stats(true, 0.0, 0, 0, 0));

    // With a higher limit the same order goes through on the released stock.
    execute(
        monolith,
        "UPDATE customers SET credit_limit_cents = 6500 WHERE id = 2",
        &[],
    )
    .await;
    let order = place_ok(&app.orders.url, 2, &lines).await;
    assert_eq!(
        (id_of(&order), &order["total_cents"]),
        (FIRST_ID + 1, &json!(6500))
    );
    assert_eq!(
        all_stock(monolith).await,
        [STOCK - 2, STOCK, STOCK - 2, STOCK, STOCK]
    );
}

async fn unknown_product_is_unprocessable(engine: Engine) {
    let Some(app) = spawn_app(engine, DUAL_WRITE_ON).await else {
        return;
    };
    let monolith_before = snapshot(&app.monolith.db, MONOLITH_TABLES).await;

    let refusal =
        json!({ "error": "line 1: product 99 does not exist", "detail": { "line": 1, "product_id": 99 } });
    assert_refused_at(
        &app,
        1,
        &[(1, 1), (99, 1)],
        "stock reservation",
        (StatusCode::UNPROCESSABLE_ENTITY, refusal),
    )
    .await;
    assert_eq!(snapshot(&app.monolith.db, MONOLITH_TABLES).await, monolith_before);
}

async fn unknown_customer_writes_no_order(engine: Engine) {
    let Some(app) = spawn_app(engine, DUAL_WRITE_ON).await else {
        return;
    };
    let service_before = snapshot(&app.orders.db, SERVICE_TABLES).await;
    let monolith_before = snapshot(&app.monolith.db, MONOLITH_TABLES).await;

    let answer = place(&app.orders.url, 99, &[(1, 1)]).await;

    assert_eq!(
        answer,
        (
            StatusCode::UNPROCESSABLE_ENTITY,
            json!({ "error": "customer 99 does not exist", "detail": { "field": "customer_id" } })
        )
    );
    assert_eq!(
        count(&app.orders.db, "orders").await,
        0,
        "checked before any row is written"
    );
    assert_eq!(snapshot(&app.orders.db, SERVICE_TABLES).await, service_before);
    assert_eq!(snapshot(&app.monolith.db, MONOLITH_TABLES).await, monolith_before);
    let next = place_ok(&app.orders.url, 1, &[(1, 1)]).await;
    assert_eq!(id_of(&next), FIRST_ID, "no id was used up");
}

/// A request the service must reject before calling anyone.
struct Case {
    /// Names the case in assertion messages.
    name: &'static str,
    /// What is sent.
    request: reqwest::RequestBuilder,
    /// The status expected.
    status: StatusCode,
    /// The whole body expected, when it is the contract's own rule; any
    /// JSON error body otherwise.
    body: Option<Value>,
}

/// Request bodies the service must reject before calling anyone.
fn invalid_requests(base: &str) -> Vec<Case> {
    let client = http_client();
    let url = format!("{base}/orders");
    let json_body = |body: Value| client.post(&url).json(&body);
    let raw_body = |content_type: Option<&str>, body: &'static str| {
        let request = client.post(&url).body(body);
        match content_type {
            Some(content_type) => request.header("content-type", content_type),
            None => request,
        }
    };
    let one_line = |line: Value| json_body(json!({ "customer_id": 1, "lines": [line] }));
    let too_many: Vec<Value> = (1..=101)
        .map(|p| json!({ "product_id": p, "quantity": 1 }))
        .collect();
    let valid = r#"{"customer_id": 1, "lines": [{"product_id": 1, "quantity": 1}]}"#;
    let unprocessable = |name, request, body| Case {
        name,
        request,
        status: StatusCode::UNPROCESSABLE_ENTITY,
        body,
    };
    vec![
        unprocessable(
            "quantity 0",
            one_line(json!({ "product_id": 1, "quantity": 0 })),
            Some(json!({
                "error": "line 0: quantity must be between 1 and 10000, got 0",
                "detail": { "line": 0, "field": "quantity" },
            })),
        ),
        unprocessable(
            "negative quantity",
            one_line(json!({ "product_id": 1, "quantity": -2 })),
            None,
        ),
        unprocessable(
            "quantity above the maximum",
            one_line(json!({ "product_id": 1, "quantity": 10_001 })),
            None,
        ),
        unprocessable(
            "no lines",
            json_body(json!({ "customer_id": 1, "lines": [] })),
            Some(json!({ "error": "an order needs at least one line", "detail": { "field": "lines" } })),
        ),
        unprocessable(
            "duplicate product",
            json_body(json!({ "customer_id": 1, "lines": [
                { "product_id": 1, "quantity": 1 },
                { "product_id": 2, "quantity": 1 },
                { "product_id": 1, "quantity": 2 },
            ] })),
            Some(json!({
                "error": "line 2: product 1 appears on more than one line; put its whole quantity on one line",
                "detail": { "line": 2, "field": "product_id" },
            })),
        ),
        unprocessable(
            "too many lines",
            json_body(json!({ "customer_id": 1, "lines": too_many })),
            Some(
                json!({ "error": "an order may have at most 100 lines, got 101", "detail": { "field": "lines" } }),
            ),
        ),
        unprocessable(
            "unknown field",
            json_body(
                json!({ "customer_id": 1, "lines": [{ "product_id": 1, "quantity": 1 }], "coupon": "X" }),
            ),
            None,
        ),
        unprocessable("missing lines", json_body(json!({ "customer_id": 1 })), None),
        unprocessable(
            "quantity as text",
            one_line(json!({ "product_id": 1, "quantity": "1" })),
            None,
        ),
        Case {
            name: "malformed JSON",
            request: raw_body(Some("application/json"), r#"{"customer_id": 1, "lines": ["#),
            status: StatusCode::BAD_REQUEST,
            body: None,
        },
        Case {
            name: "no content type",
            request: raw_body(None, valid),
            status: StatusCode::UNSUPPORTED_MEDIA_TYPE,
            body: None,
        },
        Case {
            name: "text content type",
            request: raw_body(Some("text/plain"), valid),
            status: StatusCode::UNSUPPORTED_MEDIA_TYPE,
            body: None,
        },
    ]
}

/// Sends every invalid request and checks each answer.
pub async fn reject_invalid_requests(base: &str) {
    for Case {
        name,
        request,
        status,
        body: expected,
    } in invalid_requests(base)
    {
        let (answered, body): Answer = send(request).await;
        assert_eq!(answered, status, "{name}: {body}");
        match expected {
            Some(expected) => assert_eq!(body, expected, "{name}"),
            None => assert!(
                body["error"].as_str().is_some_and(|e| !e.is_empty()),
                "{name}: a JSON error body, got {body}"
            ),
        }
    }
}

async fn invalid_orders_write_nothing_anywhere(engine: Engine) {
    let Some(app) = spawn_app(engine, DUAL_WRITE_ON).await else {
        return;
    };
    let service_before = snapshot(&app.orders.db, SERVICE_TABLES).await;
    let monolith_before = snapshot(&app.monolith.db, MONOLITH_TABLES).await;

    reject_invalid_requests(&app.orders.url).await;

    assert_eq!(snapshot(&app.orders.db, SERVICE_TABLES).await, service_before);
    assert_eq!(snapshot(&app.monolith.db, MONOLITH_TABLES).await, monolith_before);
    assert_eq!(dual_write_stats(&app.orders.url).await, stats(true, 0.0, 0, 0, 0));
}

test_harness::on_each_engine!(
    insufficient_stock_is_a_conflict_and_takes_nothing,
    declined_payment_releases_the_stock,
    unknown_product_is_unprocessable,
    unknown_customer_writes_no_order,
    invalid_orders_write_nothing_anywhere,
);
