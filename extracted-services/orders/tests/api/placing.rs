//! Placing an order: the saga takes stock and payment in the monolith, the
//! order lives in the service's database and is read back from there.

use axum::http::StatusCode;
use serde_json::json;
use test_harness::Engine;

use crate::helpers::{
    all_stock, count, get, id_of, order_lines, payment, place, place_ok, priced_lines, reference,
    reservation, service_order, spawn_app, PaymentRow, ServiceOrder, DUAL_WRITE_OFF, FIRST_ID, SEEDED_ORDERS,
    STOCK,
};

async fn placing_takes_stock_and_payment_in_the_monolith(engine: Engine) {
    let Some(app) = spawn_app(engine, DUAL_WRITE_OFF).await else {
        return;
    };
    let lines = [(1, 2), (3, 1), (5, 4)];

    let (status, order) = place(&app.orders.url, 2, &lines).await;

    assert_eq!(status, StatusCode::CREATED, "{order}");
    let id = id_of(&order);
    assert_eq!(id, FIRST_ID, "the service's ids start at 1,000,000");
    assert_eq!(order["customer_id"], 2);
    assert_eq!(order["status"], "placed");
    assert_eq!(
        order["lines"],
        priced_lines(&lines),
        "lines at the monolith's prices"
    );
    assert_eq!(order["total_cents"], 2 * 1_250 + 2_000 + 4 * 10_000);
    let created_at = order["created_at"].as_str().expect("created_at");
    let updated_at = order["updated_at"].as_str().expect("updated_at");
    assert!(
        created_at.ends_with('Z') && created_at.len() == 24,
        "{created_at}"
    );
    assert!(updated_at >= created_at, "{updated_at} < {created_at}");

    let monolith = &app.monolith.db;
    assert_eq!(
        all_stock(monolith).await,
        [STOCK - 2, STOCK, STOCK - 1, STOCK, STOCK - 4]
    );
    assert_eq!(
        reservation(monolith, &reference(id)).await,
        Some((
            "held".to_owned(),
            vec![(1, 2, 1_250), (3, 1, 2_000), (5, 4, 10_000)]
        )),
        "the stock is held under the order's reference"
    );
    assert_eq!(
        payment(monolith, &reference(id)).await,
        Some(PaymentRow {
            order_id: id,
            customer_id: 2,
            amount_cents: 44_500,
            status: "captured".to_owned(),
        })
    );
    assert_eq!(
        count(monolith, "orders").await,
        SEEDED_ORDERS,
        "dual writes are off"
    );

    assert_eq!(
        service_order(&app.orders.db, id).await,
        Some(ServiceOrder {
            customer_id: 2,
            state: "placed".to_owned(),
            total_cents: 44_500,
            failure_reason: None,
        })
    );
    assert_eq!(
        order_lines(&app.orders.db, id).await,
        [(1, 1, 2, 1_250), (2, 3, 1, 2_000), (3, 5, 4, 10_000)]
    );
    assert_eq!(
        get(&format!("{}/orders/{id}", app.orders.url)).await,
        (StatusCode::OK, order)
    );

    let second = place_ok(&app.orders.url, 2, &[(1, 1)]).await;
    assert_eq!(id_of(&second), FIRST_ID + 1);
    assert_eq!(
        all_stock(monolith).await,
        [STOCK - 3, STOCK, STOCK - 1, STOCK, STOCK - 4]
    );
}

async fn customer_orders_are_newest_first_and_paginated(engine: Engine) {
    let Some(app) = spawn_app(engine, DUAL_WRITE_OFF).await else {
        return;
    };
    let base = &app.orders.url;
    let first = place_ok(base, 1, &[(1, 1)]).await;
    let (status, refused) = place(base, 1, &[(2, STOCK + 1)]).await;
    assert_eq!(status, StatusCode::CONFLICT, "{refused}");
    let other_customer = place_ok(base, 2, &[(2, 1)]).await;
    let third = place_ok(base, 1, &[(3, 1)]).await;
    let fourth = place_ok(base, 1, &[(4, 2), (1, 1)]).await;
    assert_eq!(
        [&first, &other_customer, &third, &fourth].map(id_of),
        [FIRST_ID, FIRST_ID + 2, FIRST_ID + 3, FIRST_ID + 4],
        "the refused order used id {} and failed",
        FIRST_ID + 1
    );

    let page = |query: &str| format!("{base}/customers/1/orders{query}");
    assert_eq!(
        get(&page("?limit=2")).await,
        (
            StatusCode::OK,
            json!({ "items": [fourth, third], "next_cursor": FIRST_ID + 3 })
        )
    );
    assert_eq!(
        get(&page(&format!("?limit=2&cursor={}", FIRST_ID + 3))).await,
        (StatusCode::OK, json!({ "items": [first], "next_cursor": null })),
        "the failed order and the other customer's order are not listed"
    );
    assert_eq!(
        get(&page("")).await,
        (
            StatusCode::OK,
            json!({ "items": [fourth, third, first], "next_cursor": null })
        )
    );
    assert_eq!(
        get(&format!("{base}/customers/2/orders")).await,
        (
            StatusCode::OK,
            json!({ "items": [other_customer], "next_cursor": null })
        )
    );
    assert_eq!(
        get(&format!("{base}/customers/3/orders")).await,
        (StatusCode::OK, json!({ "items": [], "next_cursor": null })),
        "a customer without orders has an empty list"
    );
    assert_eq!(
        get(&format!("{base}/customers/99/orders")).await,
        (
            StatusCode::NOT_FOUND,
            json!({ "error": "customer 99 does not exist", "detail": null })
        ),
        "customers live in the monolith, which does not know 99"
    );
    for bad in ["?limit=0", "?limit=201", "?cursor=abc", "?colour=red"] {
        let (status, body) = get(&page(bad)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {body}");
        assert!(body["error"].is_string(), "{body}");
    }
}

async fn unknown_and_malformed_order_ids(engine: Engine) {
    let Some(app) = spawn_app(engine, DUAL_WRITE_OFF).await else {
        return;
    };
    assert_eq!(
        get(&format!("{}/orders/{FIRST_ID}", app.orders.url)).await,
        (
            StatusCode::NOT_FOUND,
            json!({ "error": format!("order {FIRST_ID} does not exist"), "detail": null })
        )
    );
    assert_eq!(
        get(&format!("{}/orders/1", app.orders.url)).await.0,
        StatusCode::NOT_FOUND,
        "the monolith's seeded orders are not in the service until backfilled"
    );
    let (status, body) = get(&format!("{}/orders/abc", app.orders.url)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
}

test_harness::on_each_engine!(
    placing_takes_stock_and_payment_in_the_monolith,
    customer_orders_are_newest_first_and_paginated,
    unknown_and_malformed_order_ids,
);
