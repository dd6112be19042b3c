//! The endpoints the extracted orders service calls: stock reservations and
//! payments (both idempotent by the caller's reference) and
//! `PUT /internal/orders/{id}`, which receives the service's dual writes.
//!
//! Requests that must be refused are tables of [`Refusal`] cases; retries
//! go through [`TestApp::assert_replay`].

use std::fmt::Display;

use reqwest::StatusCode;
use serde_json::{json, Value};
use service_runtime::pagination::Page;
use shop_api::{Order, OrderLine, OrderStatus, Payment, Reservation, ReservedLine};
use test_harness::Engine;

use crate::helpers::{
    json_body, lines_json, spawn_app, Refusal, Request, TestApp, NO_SUCH_CUSTOMER, NO_SUCH_PRODUCT, POOR,
    POOR_LIMIT, RICH, STOCK,
};

/// An order id from the orders service's own range.
const SERVICE_ORDER: i64 = 1_000_001;

/// `POST /inventory/reservations`.
fn reserve(reference: &str, lines: &[(i64, i64)]) -> Request {
    Request::post_json(
        "/inventory/reservations",
        json!({ "reference": reference, "lines": lines_json(lines) }),
    )
}

/// `POST /inventory/reservations/{reference}/release`.
fn release(reference: &str) -> Request {
    Request::post_empty(format!("/inventory/reservations/{reference}/release"))
}

/// `POST /payments`.
fn pay(reference: &str, order_id: i64, customer_id: i64, amount_cents: i64) -> Request {
    Request::post_json(
        "/payments",
        json!({
            "reference": reference,
            "order_id": order_id,
            "customer_id": customer_id,
            "amount_cents": amount_cents,
        }),
    )
}

/// `POST /payments/{reference}/refund`.
fn refund(reference: &str) -> Request {
    Request::post_empty(format!("/payments/{reference}/refund"))
}

/// `PUT /internal/orders/{id}`: a dual write.
fn replicate(id: impl Display, replica: Value) -> Request {
    Request::put_json(format!("/internal/orders/{id}"), replica)
}

/// Sends `request`, which must succeed with `status`, and returns the body.
async fn accepted(app: &TestApp, request: &Request, status: StatusCode) -> Value {
    json_body(app.send(request).await, status).await
}

async fn reservation_status(app: &TestApp, reference: &str) -> String {
    sqlx::query_as::<_, (String,)>("SELECT status FROM stock_reservations WHERE reference = $1")
        .bind(reference)
        .fetch_one(app.db.pool())
        .await
        .expect("reading a reservation")
        .0
}

// ---------------------------------------------------------------------------
// Reservations
// ---------------------------------------------------------------------------

async fn a_reservation_holds_stock_once_per_reference(engine: Engine) {
    let Some(app) = spawn_app(engine).await else {
        return;
    };
    app.load_fixture().await;

    let request = reserve("orders-service:order:1000001", &[(3, 1), (1, 2)]);
    let body = accepted(&app, &request, StatusCode::CREATED).await;
    let reservation: Reservation = serde_json::from_value(body.clone()).expect("a reservation");
    assert_eq!(reservation.reference, "orders-service:order:1000001");
    assert_eq!(reservation.status, "held");
    assert_eq!(
        reservation.lines,
        vec![
            ReservedLine {
                product_id: 3,
                quantity: 1,
                unit_price_cents: 399
            },
            ReservedLine {
                product_id: 1,
                quantity: 2,
                unit_price_cents: 1_000
            },
        ]
    );
    assert_eq!(
        app.all_stock().await,
        vec![STOCK - 2, STOCK, STOCK - 1, STOCK, STOCK]
    );
    assert_eq!(
        reservation_status(&app, "orders-service:order:1000001").await,
        "held"
    );

    // A retry after a timeout: the same reservation, stock taken only once.
    app.assert_replay("a retried reservation", &request, &body).await;

    // Another reference is another reservation.
    let other = reserve("orders-service:order:1000002", &[(1, 1)]);
    let body = accepted(&app, &other, StatusCode::CREATED).await;
    assert_ne!(body["id"].as_i64(), Some(reservation.id));
    assert_eq!(app.stock(1).await, STOCK - 3);
    assert_eq!(
        app.scalar("SELECT COUNT(*) FROM stock_reservations", &[]).await,
        2
    );
    // Reservations touch neither orders nor payments.
    assert_eq!(app.scalar("SELECT COUNT(*) FROM payments", &[]).await, 4);
}

async fn a_reference_reused_with_other_lines_is_409(engine: Engine) {
    let Some(app) = spawn_app(engine).await else {
        return;
    };
    app.load_fixture().await;
    accepted(&app, &reserve("saga-1", &[(1, 2), (2, 1)]), StatusCode::CREATED).await;

    let cases = [
        ("another quantity", vec![(1, 3), (2, 1)]),
        ("a line fewer", vec![(1, 2)]),
        ("a line more", vec![(1, 2), (2, 1), (3, 1)]),
        ("the lines in another order", vec![(2, 1), (1, 2)]),
        ("another product", vec![(1, 2), (4, 1)]),
    ];
    app.assert_refusals(cases.map(|(name, lines)| {
        Refusal::new(name, reserve("saga-1", &lines), StatusCode::CONFLICT).error_contains("saga-1")
    }))
    .await;
}

async fn releasing_returns_stock_once(engine: Engine) {
    let Some(app) = spawn_app(engine).await else {
        return;
    };
    app.load_fixture().await;
    let request = reserve("saga-2", &[(2, 4), (5, 10)]);
    let body = accepted(&app, &request, StatusCode::CREATED).await;
    let held: Reservation = serde_json::from_value(body).expect("a reservation");
    assert_eq!(app.all_stock().await, vec![STOCK, STOCK - 4, STOCK, STOCK, 0]);

    let body = accepted(&app, &release("saga-2"), StatusCode::OK).await;
    let released: Reservation = serde_json::from_value(body.clone()).expect("a reservation");
    assert_eq!(
        released,
        Reservation {
            status: "released".to_owned(),
            ..held
        }
    );
    assert_eq!(app.all_stock().await, vec![STOCK; 5]);
    assert_eq!(reservation_status(&app, "saga-2").await, "released");

    // A repeated release changes nothing at all.
    app.assert_replay("a repeated release", &release("saga-2"), &body)
        .await;
    // A late duplicate of the original request gets the released
    // reservation back and takes no stock.
    app.assert_replay("a late duplicate of the reservation", &request, &body)
        .await;
    app.assert_refusals([Refusal::new(
        "an unknown reference",
        release("no-such-saga"),
        StatusCode::NOT_FOUND,
    )
    .error_contains("no-such-saga")])
        .await;
}

async fn rejected_reservations_change_nothing(engine: Engine) {
    let Some(app) = spawn_app(engine).await else {
        return;
    };
    app.load_fixture().await;
    app.set_stock(2, 1).await;

    let long_reference = "r".repeat(201);
    let unprocessable = |name: &str, request| Refusal::new(name, request, StatusCode::UNPROCESSABLE_ENTITY);
    let bad_reference = json!({ "field": "reference" });
    app.assert_refusals([
        // The second line is short after the first line's stock was taken.
        Refusal::new(
            "the second line short",
            reserve("short", &[(1, 5), (2, 2)]),
            StatusCode::CONFLICT,
        )
        .detail(json!({ "line": 1, "product_id": 2, "requested": 2, "available": 1 })),
        unprocessable(
            "an unknown product",
            reserve("unknown", &[(1, 1), (NO_SUCH_PRODUCT, 1)]),
        )
        .detail(json!({ "line": 1, "product_id": NO_SUCH_PRODUCT })),
        unprocessable("an empty reference", reserve("", &[(1, 1)])).detail(bad_reference.clone()),
        unprocessable("a blank reference", reserve("   ", &[(1, 1)])).detail(bad_reference.clone()),
        unprocessable("a reference too long", reserve(&long_reference, &[(1, 1)])).detail(bad_reference),
        unprocessable("no lines", reserve("empty", &[])).detail(json!({ "field": "lines" })),
        unprocessable("quantity 0", reserve("zero", &[(1, 0)]))
            .detail(json!({ "line": 0, "field": "quantity" })),
        unprocessable("a product twice", reserve("twice", &[(1, 1), (1, 1)]))
            .detail(json!({ "line": 1, "field": "product_id" })),
        unprocessable(
            "an unknown field",
            Request::post_json(
                "/inventory/reservations",
                json!({ "reference": "x", "lines": [], "extra": 1 }),
            ),
        ),
    ])
    .await;
    // A reference of exactly 200 characters is accepted.
    accepted(&app, &reserve(&"r".repeat(200), &[(1, 1)]), StatusCode::CREATED).await;
}

// ---------------------------------------------------------------------------
// Payments
// ---------------------------------------------------------------------------

async fn a_payment_is_captured_once_per_reference(engine: Engine) {
    let Some(app) = spawn_app(engine).await else {
        return;
    };
    app.load_fixture().await;

    let request = pay("pay:1000001", SERVICE_ORDER, RICH, 2_500);
    let body = accepted(&app, &request, StatusCode::CREATED).await;
    let payment: Payment = serde_json::from_value(body.clone()).expect("a payment");
    assert_eq!(
        (
            payment.reference.as_str(),
            payment.order_id,
            payment.customer_id,
            payment.amount_cents,
            payment.status.as_str()
        ),
        ("pay:1000001", SERVICE_ORDER, RICH, 2_500, "captured")
    );
    assert_eq!(
        app.payment_row("pay:1000001").await,
        Some((
            "pay:1000001".to_owned(),
            SERVICE_ORDER,
            RICH,
            2_500,
            "captured".to_owned()
        ))
    );

    // A replay captures nothing more.
    app.assert_replay("a retried payment", &request, &body).await;

    // A zero amount is a valid payment.
    accepted(
        &app,
        &pay("pay:free", SERVICE_ORDER + 1, RICH, 0),
        StatusCode::CREATED,
    )
    .await;
    assert_eq!(app.scalar("SELECT COUNT(*) FROM payments", &[]).await, 4 + 2);
}

async fn a_conflicting_payment_replay_is_409(engine: Engine) {
    let Some(app) = spawn_app(engine).await else {
        return;
    };
    app.load_fixture().await;
    accepted(
        &app,
        &pay("pay-x", SERVICE_ORDER, RICH, 2_500),
        StatusCode::CREATED,
    )
    .await;

    let conflict =
        |name: &str, request| Refusal::new(name, request, StatusCode::CONFLICT).error_contains("pay-x");
    app.assert_refusals([
        conflict("another amount", pay("pay-x", SERVICE_ORDER, RICH, 2_501)),
        conflict("another customer", pay("pay-x", SERVICE_ORDER, POOR, 2_500)),
        conflict("another order", pay("pay-x", SERVICE_ORDER + 1, RICH, 2_500)),
    ])
    .await;
}

async fn declined_and_invalid_payments_change_nothing(engine: Engine) {
    let Some(app) = spawn_app(engine).await else {
        return;
    };
    app.load_fixture().await;

    let unprocessable = |name: &str, request| Refusal::new(name, request, StatusCode::UNPROCESSABLE_ENTITY);
    let raw = |body: Value| Request::post_json("/payments", body);
    let bad_reference = json!({ "field": "reference" });
    app.assert_refusals([
        Refusal::new(
            "over the credit limit",
            pay("over", SERVICE_ORDER, POOR, POOR_LIMIT + 1),
            StatusCode::PAYMENT_REQUIRED,
        )
        .detail(json!({ "amount_cents": POOR_LIMIT + 1, "credit_limit_cents": POOR_LIMIT })),
        unprocessable(
            "an unknown customer",
            pay("nobody", SERVICE_ORDER, NO_SUCH_CUSTOMER, 100),
        )
        .detail(json!({ "field": "customer_id" })),
        unprocessable("a negative amount", pay("negative", SERVICE_ORDER, RICH, -1))
            .detail(json!({ "field": "amount_cents" })),
        unprocessable("an empty reference", pay("", SERVICE_ORDER, RICH, 100)).detail(bad_reference.clone()),
        unprocessable("a blank reference", pay(" ", SERVICE_ORDER, RICH, 100)).detail(bad_reference),
        unprocessable(
            "no amount",
            raw(json!({ "reference": "r", "order_id": 1, "customer_id": RICH })),
        ),
        unprocessable(
            "the amount as text",
            raw(json!({ "reference": "r", "order_id": 1, "customer_id": RICH, "amount_cents": "10" })),
        ),
        unprocessable(
            "an unknown field",
            raw(
                json!({ "reference": "r", "order_id": 1, "customer_id": RICH, "amount_cents": 10, "currency": "EUR" }),
            ),
        ),
    ])
    .await;

    // Exactly the limit is accepted.
    accepted(
        &app,
        &pay("at-limit", SERVICE_ORDER, POOR, POOR_LIMIT),
        StatusCode::CREATED,
    )
    .await;
}

async fn a_payment_is_refunded_once(engine: Engine) {
    let Some(app) = spawn_app(engine).await else {
        return;
    };
    app.load_fixture().await;
    let body = accepted(
        &app,
        &pay("pay-r", SERVICE_ORDER, RICH, 1_234),
        StatusCode::CREATED,
    )
    .await;
    let captured: Payment = serde_json::from_value(body).expect("a payment");

    let body = accepted(&app, &refund("pay-r"), StatusCode::OK).await;
    let refunded: Payment = serde_json::from_value(body.clone()).expect("a payment");
    assert_eq!(
        refunded,
        Payment {
            status: "refunded".to_owned(),
            ..captured
        }
    );
    assert_eq!(
        app.payment_row("pay-r").await.map(|p| p.4),
        Some("refunded".to_owned())
    );

    // A second refund changes nothing.
    app.assert_replay("a second refund", &refund("pay-r"), &body)
        .await;
    app.assert_refusals([Refusal::new(
        "an unknown payment",
        refund("no-such-payment"),
        StatusCode::NOT_FOUND,
    )])
    .await;
}

// ---------------------------------------------------------------------------
// The orders service's dual writes
// ---------------------------------------------------------------------------

fn replica_body(customer_id: i64, status: &str, lines: &[(i64, i64, i64, i64)]) -> Value {
    let total: i64 = lines.iter().map(|(_, _, quantity, price)| quantity * price).sum();
    json!({
        "customer_id": customer_id,
        "status": status,
        "total_cents": total,
        "created_at": "2026-11-23T10:00:00.000Z",
        "updated_at": "2026-11-23T10:00:00.000Z",
        "lines": lines
            .iter()
            .map(|(line_no, product_id, quantity, unit_price_cents)| json!({
                "line_no": line_no,
                "product_id": product_id,
                "quantity": quantity,
                "unit_price_cents": unit_price_cents,
            }))
            .collect::<Vec<_>>(),
    })
}

/// The tables a dual write must never touch.
async fn stock_and_money(app: &TestApp) -> crate::helpers::Snapshot {
    test_harness::snapshot(
        &app.db,
        &[
            "inventory",
            "id_allocations",
            "payments",
            "stock_reservations",
            "stock_reservation_lines",
        ],
    )
    .await
}

async fn a_replica_is_inserted_and_served(engine: Engine) {
    let Some(app) = spawn_app(engine).await else {
        return;
    };
    app.load_fixture().await;
    let untouched = stock_and_money(&app).await;

    let replica = replica_body(POOR, "placed", &[(1, 4, 1, 9_000), (2, 1, 2, 1_000)]);
    let body = accepted(&app, &replicate(SERVICE_ORDER, replica), StatusCode::OK).await;
    let order: Order = serde_json::from_value(body).expect("an order");
    assert_eq!(
        order,
        Order {
            id: SERVICE_ORDER,
            customer_id: POOR,
            status: OrderStatus::Placed,
            total_cents: 11_000,
            lines: vec![
                OrderLine {
                    product_id: 4,
                    quantity: 1,
                    unit_price_cents: 9_000
                },
                OrderLine {
                    product_id: 1,
                    quantity: 2,
                    unit_price_cents: 1_000
                },
            ],
            created_at: "2026-11-23T10:00:00.000Z".to_owned(),
            updated_at: "2026-11-23T10:00:00.000Z".to_owned(),
        },
        "the service's prices and times are kept as given"
    );
    let fetched = json_body(app.get(&format!("/orders/{SERVICE_ORDER}")).await, StatusCode::OK).await;
    assert_eq!(serde_json::from_value::<Order>(fetched).expect("an order"), order);
    assert_eq!(
        app.text("SELECT origin FROM orders WHERE id = $1", &[SERVICE_ORDER])
            .await,
        "orders-service"
    );
    let listed = json_body(
        app.get(&format!("/customers/{POOR}/orders?limit=1")).await,
        StatusCode::OK,
    )
    .await;
    let listed: Page<Order> = serde_json::from_value(listed).expect("a page of orders");
    assert_eq!(listed.items, vec![order]);
    assert_eq!(
        stock_and_money(&app).await,
        untouched,
        "a dual write moves no stock and no money"
    );
}

async fn a_replica_write_replaces_the_lines(engine: Engine) {
    let Some(app) = spawn_app(engine).await else {
        return;
    };
    app.load_fixture().await;
    let replica = replica_body(
        RICH,
        "placed",
        &[(1, 1, 1, 1_000), (2, 2, 1, 2_500), (3, 3, 1, 399)],
    );
    accepted(&app, &replicate(SERVICE_ORDER, replica), StatusCode::OK).await;
    let untouched = stock_and_money(&app).await;

    let mut update = replica_body(RICH, "cancelled", &[(1, 5, 3, 50)]);
    update["updated_at"] = json!("2026-11-23T11:30:00.000Z");
    let update = replicate(SERVICE_ORDER, update);
    let body = accepted(&app, &update, StatusCode::OK).await;
    let order: Order = serde_json::from_value(body.clone()).expect("an order");
    assert_eq!(order.status, OrderStatus::Cancelled);
    assert_eq!(order.total_cents, 150);
    assert_eq!(
        order.lines,
        vec![OrderLine {
            product_id: 5,
            quantity: 3,
            unit_price_cents: 50
        }]
    );
    assert_eq!(order.created_at, "2026-11-23T10:00:00.000Z");
    assert_eq!(order.updated_at, "2026-11-23T11:30:00.000Z");
    let fetched = json_body(app.get(&format!("/orders/{SERVICE_ORDER}")).await, StatusCode::OK).await;
    assert_eq!(serde_json::from_value::<Order>(fetched).expect("an order"), order);
    assert_eq!(
        app.scalar(
            "SELECT COUNT(*) FROM order_lines WHERE order_id = $1",
            &[SERVICE_ORDER]
        )
        .await,
        1
    );
    assert_eq!(
        app.scalar("SELECT COUNT(*) FROM orders WHERE id = $1", &[SERVICE_ORDER])
            .await,
        1
    );

    // The same write again is idempotent.
    app.assert_replay("the same replica write again", &update, &body)
        .await;
    assert_eq!(stock_and_money(&app).await, untouched);
}

async fn invalid_replicas_change_nothing(engine: Engine) {
    let Some(app) = spawn_app(engine).await else {
        return;
    };
    app.load_fixture().await;
    // One replica exists already: an invalid update must not touch it either.
    let existing = SERVICE_ORDER + 1;
    accepted(
        &app,
        &replicate(existing, replica_body(RICH, "placed", &[(1, 1, 2, 1_000)])),
        StatusCode::OK,
    )
    .await;

    let mut wrong_total = replica_body(RICH, "placed", &[(1, 1, 2, 1_000)]);
    wrong_total["total_cents"] = json!(1_999);
    let mut no_created_at = replica_body(RICH, "placed", &[(1, 1, 1, 1_000)]);
    no_created_at["created_at"] = json!("");
    let mut unknown_status = replica_body(RICH, "placed", &[(1, 1, 1, 1_000)]);
    unknown_status["status"] = json!("pending");
    let mut unknown_field = replica_body(RICH, "placed", &[(1, 1, 1, 1_000)]);
    unknown_field["origin"] = json!("monolith");
    let cases: [(&str, Value); 10] = [
        ("total mismatch", wrong_total),
        (
            "unknown product",
            replica_body(RICH, "placed", &[(1, 1, 1, 1_000), (2, NO_SUCH_PRODUCT, 1, 5)]),
        ),
        (
            "unknown customer",
            replica_body(NO_SUCH_CUSTOMER, "placed", &[(1, 1, 1, 1_000)]),
        ),
        ("no lines", replica_body(RICH, "placed", &[])),
        (
            "line_no twice",
            replica_body(RICH, "placed", &[(1, 1, 1, 1_000), (1, 2, 1, 2_500)]),
        ),
        ("line_no 0", replica_body(RICH, "placed", &[(0, 1, 1, 1_000)])),
        ("quantity 0", replica_body(RICH, "placed", &[(1, 1, 0, 1_000)])),
        ("empty created_at", no_created_at),
        ("unknown status", unknown_status),
        ("unknown field", unknown_field),
    ];
    let for_each_order = [SERVICE_ORDER, existing].into_iter().flat_map(|id| {
        cases.iter().map(move |(what, replica)| {
            Refusal::new(
                format!("{what} for order {id}"),
                replicate(id, replica.clone()),
                StatusCode::UNPROCESSABLE_ENTITY,
            )
        })
    });
    let not_an_id = Refusal::new(
        "an id that is not a number",
        replicate("abc", replica_body(RICH, "placed", &[(1, 1, 1, 1_000)])),
        StatusCode::BAD_REQUEST,
    );
    app.assert_refusals(for_each_order.chain([not_an_id])).await;
}

async fn a_monolith_order_cannot_be_overwritten_by_a_replica(engine: Engine) {
    let Some(app) = spawn_app(engine).await else {
        return;
    };
    app.load_fixture().await;
    let placed = app.place_order(RICH, &[(1, 1)]).await;

    let overwrite = |name: &str, id: i64| {
        let replica = replica_body(RICH, "cancelled", &[(1, 2, 1, 1)]);
        Refusal::new(name, replicate(id, replica), StatusCode::CONFLICT).error_contains("monolith")
    };
    app.assert_refusals([
        overwrite("a seeded order", 1),
        overwrite("an order placed in the monolith", placed.id),
    ])
    .await;
    let fetched = json_body(app.get(&format!("/orders/{}", placed.id)).await, StatusCode::OK).await;
    assert_eq!(
        serde_json::from_value::<Order>(fetched).expect("an order"),
        placed
    );
}

async fn a_replica_cannot_be_cancelled_in_the_monolith(engine: Engine) {
    let Some(app) = spawn_app(engine).await else {
        return;
    };
    app.load_fixture().await;
    accepted(
        &app,
        &replicate(SERVICE_ORDER, replica_body(RICH, "placed", &[(1, 1, 2, 1_000)])),
        StatusCode::OK,
    )
    .await;
    // The service's saga paid for it under its own reference.
    accepted(
        &app,
        &pay("orders-service:order:1000001", SERVICE_ORDER, RICH, 2_000),
        StatusCode::CREATED,
    )
    .await;

    // Neither stock nor the payment moves.
    app.assert_refusals([Refusal::new(
        "cancelling a replica in the monolith",
        Request::post_empty(format!("/orders/{SERVICE_ORDER}/cancel")),
        StatusCode::CONFLICT,
    )
    .error_contains("orders service")])
        .await;
}

async fn the_monolith_s_own_references_are_reserved(engine: Engine) {
    let Some(app) = spawn_app(engine).await else {
        return;
    };
    app.load_fixture().await;
    let order = app.place_order(RICH, &[(1, 1)]).await;
    let next = order.id + 1;
    let bad_reference = json!({ "field": "reference" });
    app.assert_refusals([
        // Taking `order:<next id>` would block the monolith's next order.
        Refusal::new(
            "a payment under the monolith's next reference",
            pay(&format!("order:{next}"), next, RICH, 1),
            StatusCode::UNPROCESSABLE_ENTITY,
        )
        .detail(bad_reference.clone()),
        Refusal::new(
            "a reservation under a monolith reference",
            reserve("order:77", &[(1, 1)]),
            StatusCode::UNPROCESSABLE_ENTITY,
        )
        .detail(bad_reference),
        // A monolith order's payment is refunded by cancelling the order.
        Refusal::new(
            "refunding a monolith order's payment",
            refund(&format!("order:{}", order.id)),
            StatusCode::CONFLICT,
        )
        .error_contains("cancel the order"),
    ])
    .await;
}

async fn a_replica_on_the_next_order_id_does_not_block_placing_orders(engine: Engine) {
    let Some(app) = spawn_app(engine).await else {
        return;
    };
    app.load_fixture().await;
    let next = app
        .scalar("SELECT next_id FROM id_allocations WHERE name = 'orders'", &[])
        .await;
    accepted(
        &app,
        &replicate(next, replica_body(RICH, "placed", &[(1, 1, 2, 1_000)])),
        StatusCode::OK,
    )
    .await;
    let placed = app.place_order(RICH, &[(2, 1)]).await;
    assert_eq!(placed.id, next + 1, "the taken id is skipped");
    let again = app.place_order(RICH, &[(2, 1)]).await;
    assert_eq!(again.id, next + 2);
}

test_harness::on_each_engine!(
    a_reservation_holds_stock_once_per_reference,
    a_reference_reused_with_other_lines_is_409,
    releasing_returns_stock_once,
    rejected_reservations_change_nothing,
    a_payment_is_captured_once_per_reference,
    a_conflicting_payment_replay_is_409,
    declined_and_invalid_payments_change_nothing,
    a_payment_is_refunded_once,
    a_replica_is_inserted_and_served,
    a_replica_write_replaces_the_lines,
    invalid_replicas_change_nothing,
    the_monolith_s_own_references_are_reserved,
    a_replica_on_the_next_order_id_does_not_block_placing_orders,
    a_monolith_order_cannot_be_overwritten_by_a_replica,
    a_replica_cannot_be_cancelled_in_the_monolith,
);
