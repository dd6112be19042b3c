//! When the monolith says no: the client gets the monolith's answer, every
//! completed saga step is undone, and the order is left `failed` (invisible).
//! Requests the service rejects itself write nothing anywhere.

use axum::http::StatusCode;
use serde_json::{json, Value};
use test_harness::{http_client, snapshot, Engine};

use crate::helpers::{
    all_stock, count, dual_write_stats, execute, get, id_of, order_lines, payment, place, place_ok,
    reference, reservation, send, service_order, spawn_app, stats, Answer, DUAL_WRITE_ON, FIRST_ID,
    MONOLITH_TABLES, SEEDED_ORDERS, SERVICE_TABLES, STOCK,
};

/// Asserts that order `id` was compensated: `failed` with a reason naming
/// the step and the monolith's message, and invisible through the API.
async fn assert_failed(app: &crate::helpers::TestApp, id: i64, step: &str, message: &str) {
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
    let answer = place(&app.orders.url, 1, &[(2, 2), (4, 3)]).await;

    let message = "line 1: insufficient stock for product 4: 3 requested, 1 available";
    assert_eq!(
        answer,
        (
            StatusCode::CONFLICT,
            json!({
                "error": message,
                "detail": { "line": 1, "product_id": 4, "requested": 3, "available": 1 },
            })
        ),
        "the monolith's refusal, passed on as is"
    );
    assert_failed(&app, FIRST_ID, "stock reservation", message).await;
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

    let answer = place(&app.orders.url, 2, &lines).await;

    let message = "payment declined: 6500 cents exceeds the customer's credit limit of 5000 cents";
    assert_eq!(
        answer,
        (
            StatusCode::PAYMENT_REQUIRED,
            json!({ "error": message, "detail": { "amount_cents": 6500, "credit_limit_cents": 5000 } })
        )
    );
    assert_failed(&app, FIRST_ID, "payment", message).await;
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

    let answer = place(&app.orders.url, 1, &[(1, 1), (99, 1)]).await;

    let message = "line 1: product 99 does not exist";
    assert_eq!(
        answer,
        (
            StatusCode::UNPROCESSABLE_ENTITY,
            json!({ "error": message, "detail": { "line": 1, "product_id": 99 } })
        )
    );
    assert_failed(&app, FIRST_ID, "stock reservation", message).await;
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

/// Request bodies the service must reject before calling anyone, with the
/// status and (when it is the contract's own rule) the message expected.
fn invalid_requests(base: &str) -> Vec<(&'static str, reqwest::RequestBuilder, StatusCode, Option<Value>)> {
    let client = http_client();
    let url = format!("{base}/orders");
    let json_body = |body: Value| client.post(&url).json(&body);
    let too_many: Vec<Value> = (1..=101)
        .map(|p| json!({ "product_id": p, "quantity": 1 }))
        .collect();
    let unprocessable = StatusCode::UNPROCESSABLE_ENTITY;
    vec![
        (
            "quantity 0",
            json_body(json!({ "customer_id": 1, "lines": [{ "product_id": 1, "quantity": 0 }] })),
            unprocessable,
            Some(json!({
                "error": "line 0: quantity must be between 1 and 10000, got 0",
                "detail": { "line": 0, "field": "quantity" },
            })),
        ),
        (
            "negative quantity",
            json_body(json!({ "customer_id": 1, "lines": [{ "product_id": 1, "quantity": -2 }] })),
            unprocessable,
            None,
        ),
        (
            "quantity above the maximum",
            json_body(json!({ "customer_id": 1, "lines": [{ "product_id": 1, "quantity": 10_001 }] })),
            unprocessable,
            None,
        ),
        (
            "no lines",
            json_body(json!({ "customer_id": 1, "lines": [] })),
            unprocessable,
            Some(json!({ "error": "an order needs at least one line", "detail": { "field": "lines" } })),
        ),
        (
            "duplicate product",
            json_body(json!({ "customer_id": 1, "lines": [
                { "product_id": 1, "quantity": 1 },
                { "product_id": 2, "quantity": 1 },
                { "product_id": 1, "quantity": 2 },
            ] })),
            unprocessable,
            Some(json!({
                "error": "line 2: product 1 appears on more than one line; put its whole quantity on one line",
                "detail": { "line": 2, "field": "product_id" },
            })),
        ),
        (
            "too many lines",
            json_body(json!({ "customer_id": 1, "lines": too_many })),
            unprocessable,
            Some(
                json!({ "error": "an order may have at most 100 lines, got 101", "detail": { "field": "lines" } }),
            ),
        ),
        (
            "unknown field",
            json_body(
                json!({ "customer_id": 1, "lines": [{ "product_id": 1, "quantity": 1 }], "coupon": "X" }),
            ),
            unprocessable,
            None,
        ),
        (
            "missing lines",
            json_body(json!({ "customer_id": 1 })),
            unprocessable,
            None,
        ),
        (
            "quantity as text",
            json_body(json!({ "customer_id": 1, "lines": [{ "product_id": 1, "quantity": "1" }] })),
            unprocessable,
            None,
        ),
        (
            "malformed JSON",
            client
                .post(&url)
                .header("content-type", "application/json")
                .body(r#"{"customer_id": 1, "lines": ["#),
            StatusCode::BAD_REQUEST,
            None,
        ),
        (
            "no content type",
            client
                .post(&url)
                .body(r#"{"customer_id": 1, "lines": [{"product_id": 1, "quantity": 1}]}"#),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            None,
        ),
        (
            "text content type",
            client
                .post(&url)
                .header("content-type", "text/plain")
                .body(r#"{"customer_id": 1, "lines": [{"product_id": 1, "quantity": 1}]}"#),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            None,
        ),
    ]
}

/// Sends every invalid request and checks each answer.
pub async fn reject_invalid_requests(base: &str) {
    for (case, request, status, expected) in invalid_requests(base) {
        let (answered, body): Answer = send(request).await;
        assert_eq!(answered, status, "{case}: {body}");
        match expected {
            Some(expected) => assert_eq!(body, expected, "{case}"),
            None => assert!(
                body["error"].as_str().is_some_and(|e| !e.is_empty()),
                "{case}: a JSON error body, got {body}"
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
