//! When the monolith is down, silent or slow: fast JSON 503s, no visible
//! order, compensations attempted for steps whose outcome is unknown; and
//! correlation ids that reach the monolith on every saga call.

use std::time::Duration;

use axum::http::StatusCode;
use serde_json::{json, Value};
use service_runtime::request_id::REQUEST_ID_HEADER;
use shop_test_support::http::{generated_request_id, send_within};
use shop_test_support::upstreams::{closed_port_url, SilentUpstream};
use test_harness::{http_client, snapshot, Engine};

use crate::compensation::reject_invalid_requests;
use crate::helpers::{
    cancel, get, id_of, new_order, place, place_ok, reference, send, service_order, spawn_app, spawn_orders,
    stub_monolith, ServiceOrder, StubDelays, DUAL_WRITE_OFF, DUAL_WRITE_ON, FIRST_ID, MONOLITH_TIMEOUT,
    SERVICE_TABLES, SHORT_TIMEOUT, STUB_UNIT_PRICE,
};

/// A stub endpoint's delay: far longer than any test waits.
const NEVER: Duration = Duration::from_secs(60);

/// Sends `request` and asserts a 503 naming the monolith, containing
/// `failure`, answered within `within`; returns the time it took.
async fn assert_unavailable(request: reqwest::RequestBuilder, failure: &str, within: Duration) -> Duration {
    let ((status, body), elapsed) = send_within(request, within).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    let message = body["error"].as_str().expect("an error message");
    assert!(
        message.starts_with("the monolith, which owns stock, payments and customers, is unavailable: "),
        "{message}"
    );
    assert!(message.contains(failure), "{message}");
    assert_eq!(body["detail"], Value::Null);
    elapsed
}

fn place_request(base: &str, customer_id: i64, lines: &[(i64, i64)]) -> reqwest::RequestBuilder {
    http_client()
        .post(format!("{base}/orders"))
        .json(&new_order(customer_id, lines))
}

async fn unreachable_monolith_answers_503_quickly(engine: Engine) {
    let monolith = closed_port_url();
    let Some(orders) = spawn_orders(engine, &monolith, MONOLITH_TIMEOUT, DUAL_WRITE_ON).await else {
        return;
    };
    let before = snapshot(&orders.db, SERVICE_TABLES).await;

    // A refused connection is immediate: well within the monolith timeout.
    assert_unavailable(
        place_request(&orders.url, 1, &[(1, 1)]),
        &format!("the monolith at {monolith}/customers/1 is unreachable"),
        MONOLITH_TIMEOUT,
    )
    .await;
    assert_unavailable(
        http_client().get(format!("{}/customers/1/orders", orders.url)),
        "is unreachable",
        MONOLITH_TIMEOUT,
    )
    .await;

    assert_eq!(
        snapshot(&orders.db, SERVICE_TABLES).await,
        before,
        "no order row at all"
    );
    assert_eq!(
        get(&format!("{}/orders/{FIRST_ID}", orders.url)).await.0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(cancel(&orders.url, FIRST_ID).await.0, StatusCode::NOT_FOUND);
    assert_eq!(
        get(&format!("{}/health", orders.url)).await,
        (StatusCode::OK, json!({ "status": "ok", "database": "ok" })),
        "the service's health is its own database, not the monolith"
    );
}

async fn silent_monolith_times_out_with_503(engine: Engine) {
    let silent = SilentUpstream::spawn().await;
    let Some(orders) = spawn_orders(engine, &silent.url, SHORT_TIMEOUT, DUAL_WRITE_ON).await else {
        return;
    };
    let before = snapshot(&orders.db, SERVICE_TABLES).await;

    let elapsed = assert_unavailable(
        place_request(&orders.url, 1, &[(1, 1)]),
        &format!(
            "the monolith at {}/customers/1 did not answer within 300ms",
            silent.url
        ),
        Duration::from_secs(2),
    )
    .await;

    assert!(
        elapsed >= SHORT_TIMEOUT,
        "gave up after {elapsed:?}, before the timeout"
    );
    assert!(
        silent.accepted() >= 1,
        "the service did connect; the monolith just never answered"
    );
    // The customer check is the saga's first call: with no answer to it the
    // order never became pending, so there is nothing to compensate.
    assert_eq!(snapshot(&orders.db, SERVICE_TABLES).await, before);
}

/// A saga step whose call to the monolith never answers, and what the
/// service must have done about it.
struct SlowStep {
    /// Which stub endpoint hangs.
    delays: StubDelays,
    /// The order placed.
    customer_id: i64,
    lines: &'static [(i64, i64)],
    /// What the 503's message names.
    failure: &'static str,
    /// How the failed order's reason starts.
    reason: &'static str,
    /// The total recorded on the failed order.
    total_cents: i64,
    /// Every call the stub must have seen, given the order's reference.
    calls: fn(&str) -> Vec<String>,
    /// Why those calls.
    why: &'static str,
}

/// Places the case's order against a stub that hangs on one step: a 503
/// after the timeout, the order `failed` and invisible, and every step
/// whose outcome is unknown compensated, all under the client's request id.
async fn assert_slow_step_compensated(engine: Engine, case: SlowStep) {
    let stub = stub_monolith(case.delays).await;
    let Some(orders) = spawn_orders(engine, &stub.url, SHORT_TIMEOUT, DUAL_WRITE_ON).await else {
        return;
    };

    let elapsed = assert_unavailable(
        place_request(&orders.url, case.customer_id, case.lines).header(REQUEST_ID_HEADER, "req-slow"),
        case.failure,
        Duration::from_secs(2),
    )
    .await;

    assert!(elapsed >= SHORT_TIMEOUT, "{elapsed:?}");
    let row = service_order(&orders.db, FIRST_ID).await.expect("the order row");
    assert_eq!(
        (row.state.as_str(), row.total_cents),
        ("failed", case.total_cents),
        "{row:?}"
    );
    let reason = row.failure_reason.expect("a reason");
    assert!(
        reason.starts_with(case.reason) && reason.contains("did not answer within 300ms"),
        "{reason}"
    );
    assert_eq!(stub.calls(), (case.calls)(&reference(FIRST_ID)), "{}", case.why);
    assert!(
        stub.seen()
            .iter()
            .all(|seen| seen.request_id.as_deref() == Some("req-slow")),
        "{:?}",
        stub.seen()
    );
    assert_eq!(
        get(&format!("{}/orders/{FIRST_ID}", orders.url)).await.0,
        StatusCode::NOT_FOUND
    );
}

async fn slow_reservation_is_released_as_compensation(engine: Engine) {
    let case = SlowStep {
        delays: StubDelays {
            reservation: Some(NEVER),
            payment: None,
        },
        customer_id: 1,
        lines: &[(1, 2)],
        failure: "/inventory/reservations did not answer within 300ms",
        reason: "stock reservation: ",
        total_cents: 0,
        calls: |reference| {
            vec![
                "GET /customers/1".to_owned(),
                "POST /inventory/reservations".to_owned(),
                format!("POST /inventory/reservations/{reference}/release"),
            ]
        },
        why: "the reservation may have happened, so it is released; no payment is attempted",
    };
    assert_slow_step_compensated(engine, case).await;
}

async fn slow_payment_is_refunded_and_released(engine: Engine) {
    let case = SlowStep {
        delays: StubDelays {
            reservation: None,
            payment: Some(NEVER),
        },
        customer_id: 2,
        lines: &[(1, 2), (4, 3)],
        failure: "/payments did not answer within 300ms",
        reason: "payment: ",
        // The reserved prices were recorded before the payment.
        total_cents: 5 * STUB_UNIT_PRICE,
        calls: |reference| {
            vec![
                "GET /customers/2".to_owned(),
                "POST /inventory/reservations".to_owned(),
                "POST /payments".to_owned(),
                format!("POST /payments/{reference}/refund"),
                format!("POST /inventory/reservations/{reference}/release"),
            ]
        },
        why: "the payment may have been taken: refunded, then the stock released; never dual-written",
    };
    assert_slow_step_compensated(engine, case).await;
}

async fn request_ids_reach_the_monolith_on_every_saga_call(engine: Engine) {
    let stub = stub_monolith(StubDelays::default()).await;
    let Some(orders) = spawn_orders(engine, &stub.url, MONOLITH_TIMEOUT, DUAL_WRITE_ON).await else {
        return;
    };
    let client = http_client();
    let reference = reference(FIRST_ID);

    let (status, order) = send(
        client
            .post(format!("{}/orders", orders.url))
            .header(REQUEST_ID_HEADER, "req-place")
            .json(&new_order(1, &[(2, 3), (5, 2)])),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{order}");
    assert_eq!(
        order["total_cents"],
        5 * STUB_UNIT_PRICE,
        "priced at what the reservation answered"
    );
    let (status, cancelled) = send(
        client
            .post(format!("{}/orders/{FIRST_ID}/cancel", orders.url))
            .header(REQUEST_ID_HEADER, "req-cancel"),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{cancelled}");
    let (status, _) = send(
        client
            .get(format!("{}/customers/1/orders", orders.url))
            .header(REQUEST_ID_HEADER, "req-list"),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let generated = generated_request_id(client.get(format!("{}/customers/1/orders", orders.url))).await;

    let seen = stub.seen();
    let calls: Vec<(String, Option<&str>)> =
        seen.iter().map(|s| (s.call(), s.request_id.as_deref())).collect();
    let put = format!("PUT /internal/orders/{FIRST_ID}");
    let release = format!("POST /inventory/reservations/{reference}/release");
    let refund = format!("POST /payments/{reference}/refund");
    assert_eq!(
        calls,
        [
            ("GET /customers/1", Some("req-place")),
            ("POST /inventory/reservations", Some("req-place")),
            ("POST /payments", Some("req-place")),
            (put.as_str(), Some("req-place")),
            (release.as_str(), Some("req-cancel")),
            (refund.as_str(), Some("req-cancel")),
            (put.as_str(), Some("req-cancel")),
            ("GET /customers/1", Some("req-list")),
            ("GET /customers/1", Some(generated.as_str())),
        ]
        .map(|(call, request_id)| (call.to_owned(), request_id))
    );

    // What the saga asked for, beyond the headers.
    assert_eq!(
        seen[1].body,
        json!({ "reference": reference, "lines": [
            { "product_id": 2, "quantity": 3 },
            { "product_id": 5, "quantity": 2 },
        ] })
    );
    assert_eq!(
        seen[2].body,
        json!({ "reference": reference, "order_id": FIRST_ID, "customer_id": 1, "amount_cents": 500 })
    );
    let replica_lines = json!([
        { "line_no": 1, "product_id": 2, "quantity": 3, "unit_price_cents": STUB_UNIT_PRICE },
        { "line_no": 2, "product_id": 5, "quantity": 2, "unit_price_cents": STUB_UNIT_PRICE },
    ]);
    assert_eq!(
        seen[3].body,
        json!({
            "customer_id": 1,
            "status": "placed",
            "total_cents": 500,
            "created_at": order["created_at"],
            "updated_at": order["updated_at"],
            "lines": replica_lines,
        })
    );
    assert_eq!(seen[6].body["status"], "cancelled");
    assert_eq!(seen[6].body["updated_at"], cancelled["updated_at"]);
}

async fn invalid_orders_never_reach_the_monolith(engine: Engine) {
    let stub = stub_monolith(StubDelays::default()).await;
    let Some(orders) = spawn_orders(engine, &stub.url, MONOLITH_TIMEOUT, DUAL_WRITE_ON).await else {
        return;
    };

    reject_invalid_requests(&orders.url).await;

    assert_eq!(stub.calls(), Vec::<String>::new(), "validated before any call");
    assert_eq!(crate::helpers::count(&orders.db, "orders").await, 0);
}

async fn monolith_going_away_keeps_placed_orders_readable(engine: Engine) {
    let Some(mut app) = spawn_app(engine, DUAL_WRITE_OFF).await else {
        return;
    };
    let order = place_ok(&app.orders.url, 1, &[(1, 1)]).await;
    let id = id_of(&order);

    app.monolith.stop().await;

    let before = snapshot(&app.orders.db, SERVICE_TABLES).await;
    assert_unavailable(
        http_client().post(format!("{}/orders/{id}/cancel", app.orders.url)),
        "the monolith at",
        MONOLITH_TIMEOUT,
    )
    .await;
    assert_unavailable(
        place_request(&app.orders.url, 1, &[(1, 1)]),
        "the monolith at",
        MONOLITH_TIMEOUT,
    )
    .await;
    assert_eq!(
        snapshot(&app.orders.db, SERVICE_TABLES).await,
        before,
        "nothing changed"
    );
    assert_eq!(
        service_order(&app.orders.db, id).await,
        Some(ServiceOrder {
            customer_id: 1,
            state: "placed".to_owned(),
            total_cents: 1_250,
            failure_reason: None,
        }),
        "a cancel that could not release the stock leaves the order placed"
    );
    assert_eq!(
        get(&format!("{}/orders/{id}", app.orders.url)).await,
        (StatusCode::OK, order),
        "reads are served from the service's own database"
    );
    let (status, _) = place(&app.orders.url, 1, &[(1, 1)]).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
}

test_harness::on_each_engine!(
    unreachable_monolith_answers_503_quickly,
    silent_monolith_times_out_with_503,
    slow_reservation_is_released_as_compensation,
    slow_payment_is_refunded_and_released,
    request_ids_reach_the_monolith_on_every_saga_call,
    invalid_orders_never_reach_the_monolith,
    monolith_going_away_keeps_placed_orders_readable,
);
