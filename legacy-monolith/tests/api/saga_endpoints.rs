//! The endpoints the extracted orders service calls: stock reservations and
//! payments (both idempotent by the caller's reference) and
//! `PUT /internal/orders/{id}`, which receives the service's dual writes.

use reqwest::StatusCode;
use serde_json::{json, Value};
use service_runtime::pagination::Page;
use shop_api::{Order, OrderLine, OrderStatus, Payment, Reservation, ReservedLine};
use test_harness::Engine;

use crate::helpers::{
    error_body, json_body, lines_json, snapshot_all, spawn_app, TestApp, NO_SUCH_CUSTOMER, NO_SUCH_PRODUCT,
    POOR, POOR_LIMIT, RICH, STOCK,
};

/// An order id from the orders service's own range.
const SERVICE_ORDER: i64 = 1_000_001;

fn reservation_body(reference: &str, lines: &[(i64, i64)]) -> Value {
    json!({ "reference": reference, "lines": lines_json(lines) })
}

fn payment_body(reference: &str, order_id: i64, customer_id: i64, amount_cents: i64) -> Value {
    json!({
        "reference": reference,
        "order_id": order_id,
        "customer_id": customer_id,
        "amount_cents": amount_cents,
    })
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

    let request = reservation_body("orders-service:order:1000001", &[(3, 1), (1, 2)]);
    let body = json_body(
        app.post_json("/inventory/reservations", &request).await,
        StatusCode::CREATED,
    )
    .await;
    let reservation: Reservation = serde_json::from_value(body).expect("a reservation");
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
    let before = snapshot_all(&app).await;
    let body = json_body(
        app.post_json("/inventory/reservations", &request).await,
        StatusCode::OK,
    )
    .await;
    let replay: Reservation = serde_json::from_value(body).expect("a reservation");
    assert_eq!(replay, reservation);
    assert_eq!(snapshot_all(&app).await, before);

    // Another reference is another reservation.
    let body = json_body(
        app.post_json(
            "/inventory/reservations",
            &reservation_body("orders-service:order:1000002", &[(1, 1)]),
        )
        .await,
        StatusCode::CREATED,
    )
    .await;
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
    json_body(
        app.post_json(
            "/inventory/reservations",
            &reservation_body("saga-1", &[(1, 2), (2, 1)]),
        )
        .await,
        StatusCode::CREATED,
    )
    .await;
    let before = snapshot_all(&app).await;

    for lines in [
        vec![(1, 3), (2, 1)],
        vec![(1, 2)],
        vec![(1, 2), (2, 1), (3, 1)],
        vec![(2, 1), (1, 2)],
        vec![(1, 2), (4, 1)],
    ] {
        let body = error_body(
            app.post_json("/inventory/reservations", &reservation_body("saga-1", &lines))
                .await,
            StatusCode::CONFLICT,
        )
        .await;
        assert!(
            body["error"].as_str().unwrap_or_default().contains("saga-1"),
            "{body}"
        );
        assert_eq!(snapshot_all(&app).await, before, "{lines:?} changed the database");
    }
}

async fn releasing_returns_stock_once(engine: Engine) {
    let Some(app) = spawn_app(engine).await else {
        return;
    };
    app.load_fixture().await;
    let body = json_body(
        app.post_json(
            "/inventory/reservations",
            &reservation_body("saga-2", &[(2, 4), (5, 10)]),
        )
        .await,
        StatusCode::CREATED,
    )
    .await;
    let held: Reservation = serde_json::from_value(body).expect("a reservation");
    assert_eq!(app.all_stock().await, vec![STOCK, STOCK - 4, STOCK, STOCK, 0]);

    let body = json_body(
        app.post_empty("/inventory/reservations/saga-2/release").await,
        StatusCode::OK,
    )
    .await;
    let released: Reservation = serde_json::from_value(body).expect("a reservation");
    assert_eq!(
        released,
        Reservation {
            status: "released".to_owned(),
            ..held.clone()
        }
    );
    assert_eq!(app.all_stock().await, vec![STOCK; 5]);
    assert_eq!(reservation_status(&app, "saga-2").await, "released");

    // A repeated release changes nothing at all.
    let before = snapshot_all(&app).await;
    let body = json_body(
        app.post_empty("/inventory/reservations/saga-2/release").await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(
        serde_json::from_value::<Reservation>(body).expect("a reservation"),
        released
    );
    assert_eq!(snapshot_all(&app).await, before);

    // A late duplicate of the original request gets the released
    // reservation back and takes no stock.
    let body = json_body(
        app.post_json(
            "/inventory/reservations",
            &reservation_body("saga-2", &[(2, 4), (5, 10)]),
        )
        .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(
        serde_json::from_value::<Reservation>(body).expect("a reservation"),
        released
    );
    assert_eq!(snapshot_all(&app).await, before);

    let body = error_body(
        app.post_empty("/inventory/reservations/no-such-saga/release")
            .await,
        StatusCode::NOT_FOUND,
    )
    .await;
    assert!(
        body["error"]
            .as_str()
            .unwrap_or_default()
            .contains("no-such-saga"),
        "{body}"
    );
    assert_eq!(snapshot_all(&app).await, before);
}

async fn rejected_reservations_change_nothing(engine: Engine) {
    let Some(app) = spawn_app(engine).await else {
        return;
    };
    app.load_fixture().await;
    app.set_stock(2, 1).await;
    let before = snapshot_all(&app).await;

    // The second line is short after the first line's stock was taken.
    let body = error_body(
        app.post_json(
            "/inventory/reservations",
            &reservation_body("short", &[(1, 5), (2, 2)]),
        )
        .await,
        StatusCode::CONFLICT,
    )
    .await;
    assert_eq!(
        body["detail"],
        json!({ "line": 1, "product_id": 2, "requested": 2, "available": 1 })
    );
    assert_eq!(snapshot_all(&app).await, before);

    let long_reference = "r".repeat(201);
    let cases: [(Value, Value); 7] = [
        (
            reservation_body("unknown", &[(1, 1), (NO_SUCH_PRODUCT, 1)]),
            json!({ "line": 1, "product_id": NO_SUCH_PRODUCT }),
        ),
        (reservation_body("", &[(1, 1)]), json!({ "field": "reference" })),
        (
            reservation_body("   ", &[(1, 1)]),
            json!({ "field": "reference" }),
        ),
        (
            reservation_body(&long_reference, &[(1, 1)]),
            json!({ "field": "reference" }),
        ),
        (reservation_body("empty", &[]), json!({ "field": "lines" })),
        (
            reservation_body("zero", &[(1, 0)]),
            json!({ "line": 0, "field": "quantity" }),
        ),
        (
            reservation_body("twice", &[(1, 1), (1, 1)]),
            json!({ "line": 1, "field": "product_id" }),
        ),
    ];
    for (request, detail) in cases {
        let body = error_body(
            app.post_json("/inventory/reservations", &request).await,
            StatusCode::UNPROCESSABLE_ENTITY,
        )
        .await;
        assert_eq!(body["detail"], detail, "{request}: {body}");
        assert_eq!(snapshot_all(&app).await, before, "{request} changed the database");
    }
    error_body(
        app.post_json(
            "/inventory/reservations",
            &json!({ "reference": "x", "lines": [], "extra": 1 }),
        )
        .await,
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
    // A reference of exactly 200 characters is accepted.
    json_body(
        app.post_json(
            "/inventory/reservations",
            &reservation_body(&"r".repeat(200), &[(1, 1)]),
        )
        .await,
        StatusCode::CREATED,
    )
    .await;
}

// ---------------------------------------------------------------------------
// Payments
// ---------------------------------------------------------------------------

async fn a_payment_is_captured_once_per_reference(engine: Engine) {
    let Some(app) = spawn_app(engine).await else {
        return;
    };
    app.load_fixture().await;

    let request = payment_body("pay:1000001", SERVICE_ORDER, RICH, 2_500);
    let body = json_body(app.post_json("/payments", &request).await, StatusCode::CREATED).await;
    let payment: Payment = serde_json::from_value(body).expect("a payment");
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

    let before = snapshot_all(&app).await;
    let body = json_body(app.post_json("/payments", &request).await, StatusCode::OK).await;
    assert_eq!(
        serde_json::from_value::<Payment>(body).expect("a payment"),
        payment
    );
    assert_eq!(snapshot_all(&app).await, before, "a replay captures nothing more");

    // A zero amount is a valid payment.
    json_body(
        app.post_json("/payments", &payment_body("pay:free", SERVICE_ORDER + 1, RICH, 0))
            .await,
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
    json_body(
        app.post_json("/payments", &payment_body("pay-x", SERVICE_ORDER, RICH, 2_500))
            .await,
        StatusCode::CREATED,
    )
    .await;
    let before = snapshot_all(&app).await;

    for request in [
        payment_body("pay-x", SERVICE_ORDER, RICH, 2_501),
        payment_body("pay-x", SERVICE_ORDER, POOR, 2_500),
        payment_body("pay-x", SERVICE_ORDER + 1, RICH, 2_500),
    ] {
        let body = error_body(app.post_json("/payments", &request).await, StatusCode::CONFLICT).await;
        assert!(
            body["error"].as_str().unwrap_or_default().contains("pay-x"),
            "{body}"
        );
        assert_eq!(snapshot_all(&app).await, before, "{request} changed the database");
    }
}

async fn declined_and_invalid_payments_change_nothing(engine: Engine) {
    let Some(app) = spawn_app(engine).await else {
        return;
    };
    app.load_fixture().await;
    let before = snapshot_all(&app).await;

    let body = error_body(
        app.post_json(
            "/payments",
            &payment_body("over", SERVICE_ORDER, POOR, POOR_LIMIT + 1),
        )
        .await,
        StatusCode::PAYMENT_REQUIRED,
    )
    .await;
    assert_eq!(
        body["detail"],
        json!({ "amount_cents": POOR_LIMIT + 1, "credit_limit_cents": POOR_LIMIT })
    );
    assert_eq!(snapshot_all(&app).await, before);

    let cases: [(Value, Value); 4] = [
        (
            payment_body("nobody", SERVICE_ORDER, NO_SUCH_CUSTOMER, 100),
            json!({ "field": "customer_id" }),
        ),
        (
            payment_body("negative", SERVICE_ORDER, RICH, -1),
            json!({ "field": "amount_cents" }),
        ),
        (
            payment_body("", SERVICE_ORDER, RICH, 100),
            json!({ "field": "reference" }),
        ),
        (
            payment_body(" ", SERVICE_ORDER, RICH, 100),
            json!({ "field": "reference" }),
        ),
    ];
    for (request, detail) in cases {
        let body = error_body(
            app.post_json("/payments", &request).await,
            StatusCode::UNPROCESSABLE_ENTITY,
        )
        .await;
        assert_eq!(body["detail"], detail, "{request}: {body}");
        assert_eq!(snapshot_all(&app).await, before, "{request} changed the database");
    }
    for request in [
        json!({ "reference": "r", "order_id": 1, "customer_id": RICH }),
        json!({ "reference": "r", "order_id": 1, "customer_id": RICH, "amount_cents": "10" }),
        json!({ "reference": "r", "order_id": 1, "customer_id": RICH, "amount_cents": 10, "currency": "EUR" }),
    ] {
        error_body(
            app.post_json("/payments", &request).await,
            StatusCode::UNPROCESSABLE_ENTITY,
        )
        .await;
        assert_eq!(snapshot_all(&app).await, before, "{request} changed the database");
    }

    // Exactly the limit is accepted.
    json_body(
        app.post_json(
            "/payments",
            &payment_body("at-limit", SERVICE_ORDER, POOR, POOR_LIMIT),
        )
        .await,
        StatusCode::CREATED,
    )
    .await;
}

async fn a_payment_is_refunded_once(engine: Engine) {
    let Some(app) = spawn_app(engine).await else {
        return;
    };
    app.load_fixture().await;
    let body = json_body(
        app.post_json("/payments", &payment_body("pay-r", SERVICE_ORDER, RICH, 1_234))
            .await,
        StatusCode::CREATED,
    )
    .await;
    let captured: Payment = serde_json::from_value(body).expect("a payment");

    let body = json_body(app.post_empty("/payments/pay-r/refund").await, StatusCode::OK).await;
    let refunded: Payment = serde_json::from_value(body).expect("a payment");
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

    let before = snapshot_all(&app).await;
    let body = json_body(app.post_empty("/payments/pay-r/refund").await, StatusCode::OK).await;
    assert_eq!(
        serde_json::from_value::<Payment>(body).expect("a payment"),
        refunded
    );
    assert_eq!(
        snapshot_all(&app).await,
        before,
        "a second refund changes nothing"
    );

    error_body(
        app.post_empty("/payments/no-such-payment/refund").await,
        StatusCode::NOT_FOUND,
    )
    .await;
    assert_eq!(snapshot_all(&app).await, before);
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

    let path = format!("/internal/orders/{SERVICE_ORDER}");
    let body = json_body(
        app.put_json(
            &path,
            &replica_body(POOR, "placed", &[(1, 4, 1, 9_000), (2, 1, 2, 1_000)]),
        )
        .await,
        StatusCode::OK,
    )
    .await;
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
    let path = format!("/internal/orders/{SERVICE_ORDER}");
    json_body(
        app.put_json(
            &path,
            &replica_body(
                RICH,
                "placed",
                &[(1, 1, 1, 1_000), (2, 2, 1, 2_500), (3, 3, 1, 399)],
            ),
        )
        .await,
        StatusCode::OK,
    )
    .await;
    let untouched = stock_and_money(&app).await;

    let mut update = replica_body(RICH, "cancelled", &[(1, 5, 3, 50)]);
    update["updated_at"] = json!("2026-11-23T11:30:00.000Z");
    let body = json_body(app.put_json(&path, &update).await, StatusCode::OK).await;
    let order: Order = serde_json::from_value(body).expect("an order");
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
    let before = snapshot_all(&app).await;
    let again = json_body(app.put_json(&path, &update).await, StatusCode::OK).await;
    assert_eq!(serde_json::from_value::<Order>(again).expect("an order"), order);
    assert_eq!(snapshot_all(&app).await, before);
    assert_eq!(stock_and_money(&app).await, untouched);
}

async fn invalid_replicas_change_nothing(engine: Engine) {
    let Some(app) = spawn_app(engine).await else {
        return;
    };
    app.load_fixture().await;
    // One replica exists already: an invalid update must not touch it either.
    let existing = SERVICE_ORDER + 1;
    json_body(
        app.put_json(
            &format!("/internal/orders/{existing}"),
            &replica_body(RICH, "placed", &[(1, 1, 2, 1_000)]),
        )
        .await,
        StatusCode::OK,
    )
    .await;
    let before = snapshot_all(&app).await;

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
    for id in [SERVICE_ORDER, existing] {
        for (what, replica) in &cases {
            error_body(
                app.put_json(&format!("/internal/orders/{id}"), replica).await,
                StatusCode::UNPROCESSABLE_ENTITY,
            )
            .await;
            assert_eq!(
                snapshot_all(&app).await,
                before,
                "{what} for order {id} changed the database"
            );
        }
    }
    error_body(
        app.put_json(
            "/internal/orders/abc",
            &replica_body(RICH, "placed", &[(1, 1, 1, 1_000)]),
        )
        .await,
        StatusCode::BAD_REQUEST,
    )
    .await;
    assert_eq!(snapshot_all(&app).await, before);
}

async fn a_monolith_order_cannot_be_overwritten_by_a_replica(engine: Engine) {
    let Some(app) = spawn_app(engine).await else {
        return;
    };
    app.load_fixture().await;
    let placed = app.place_order(RICH, &[(1, 1)]).await;
    let before = snapshot_all(&app).await;

    for id in [1, placed.id] {
        let body = error_body(
            app.put_json(
                &format!("/internal/orders/{id}"),
                &replica_body(RICH, "cancelled", &[(1, 2, 1, 1)]),
            )
            .await,
            StatusCode::CONFLICT,
        )
        .await;
        assert!(
            body["error"].as_str().unwrap_or_default().contains("monolith"),
            "{body}"
        );
        assert_eq!(snapshot_all(&app).await, before);
    }
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
    json_body(
        app.put_json(
            &format!("/internal/orders/{SERVICE_ORDER}"),
            &replica_body(RICH, "placed", &[(1, 1, 2, 1_000)]),
        )
        .await,
        StatusCode::OK,
    )
    .await;
    // The service's saga paid for it under its own reference.
    json_body(
        app.post_json(
            "/payments",
            &payment_body("orders-service:order:1000001", SERVICE_ORDER, RICH, 2_000),
        )
        .await,
        StatusCode::CREATED,
    )
    .await;
    let before = snapshot_all(&app).await;

    let body = error_body(
        app.post_empty(&format!("/orders/{SERVICE_ORDER}/cancel")).await,
        StatusCode::CONFLICT,
    )
    .await;
    assert!(
        body["error"]
            .as_str()
            .unwrap_or_default()
            .contains("orders service"),
        "{body}"
    );
    assert_eq!(
        snapshot_all(&app).await,
        before,
        "neither stock nor the payment moved"
    );
}

async fn the_monolith_s_own_references_are_reserved(engine: Engine) {
    let Some(app) = spawn_app(engine).await else {
        return;
    };
    app.load_fixture().await;
    let order = app.place_order(RICH, &[(1, 1)]).await;
    let before = snapshot_all(&app).await;
    // Taking `order:<next id>` would block the monolith's next order.
    let body = error_body(
        app.post_json(
            "/payments",
            &payment_body(&format!("order:{}", order.id + 1), order.id + 1, RICH, 1),
        )
        .await,
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
    assert_eq!(body["detail"]["field"], "reference");
    error_body(
        app.post_json(
            "/inventory/reservations",
            &reservation_body("order:77", &[(1, 1)]),
        )
        .await,
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
    // A monolith order's payment is refunded by cancelling the order.
    let body = error_body(
        app.post_empty(&format!("/payments/order:{}/refund", order.id))
            .await,
        StatusCode::CONFLICT,
    )
    .await;
    assert!(
        body["error"]
            .as_str()
            .unwrap_or_default()
            .contains("cancel the order"),
        "{body}"
    );
    assert_eq!(snapshot_all(&app).await, before);
}

async fn a_replica_on_the_next_order_id_does_not_block_placing_orders(engine: Engine) {
    let Some(app) = spawn_app(engine).await else {
        return;
    };
    app.load_fixture().await;
    let next = app
        .scalar("SELECT next_id FROM id_allocations WHERE name = 'orders'", &[])
        .await;
    json_body(
        app.put_json(
            &format!("/internal/orders/{next}"),
            &replica_body(RICH, "placed", &[(1, 1, 2, 1_000)]),
        )
        .await,
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
