//! The monolith and both extracted services together: same contract,
//! dual writes, fault injection and saga compensation across real processes'
//! worth of HTTP and databases.

use orders_service::dual_write::DualWriteConfig;
use serde_json::{json, Value};
use test_harness::Engine;

use crate::helpers::{count, ints, spawn_stack, Stack};

const DUAL_WRITES: DualWriteConfig = DualWriteConfig {
    enabled: true,
    fault_rate: 0.0,
};

async fn get(stack: &Stack, url: String) -> Value {
    let response = stack.client.get(&url).send().await.unwrap();
    assert!(response.status().is_success(), "{url}: {}", response.status());
    response.json().await.unwrap()
}

async fn place(stack: &Stack, body: Value) -> (u16, Value) {
    let response = stack
        .client
        .post(format!("{}/orders", stack.orders))
        .json(&body)
        .send()
        .await
        .unwrap();
    (response.status().as_u16(), response.json().await.unwrap())
}

async fn stock(stack: &Stack, product_id: i64) -> i64 {
    ints(
        &stack.monolith_db,
        "SELECT stock FROM inventory WHERE product_id = $1",
        product_id,
    )
    .await[0]
}

async fn backfilled_services_answer_like_the_monolith(engine: Engine) {
    let Some(stack) = spawn_stack(engine, DUAL_WRITES).await else {
        return;
    };
    let (count,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM products")
        .fetch_one(stack.catalog_db.pool())
        .await
        .unwrap();
    assert_eq!(count, 20);
    for path in ["/products?limit=200", "/products/7"] {
        assert_eq!(
            get(&stack, format!("{}{path}", stack.catalog)).await,
            get(&stack, format!("{}{path}", stack.monolith)).await
        );
    }
    for path in ["/orders/1", "/orders/40", "/customers/2/orders?limit=3"] {
        assert_eq!(
            get(&stack, format!("{}{path}", stack.orders)).await,
            get(&stack, format!("{}{path}", stack.monolith)).await
        );
    }
}

async fn an_order_placed_through_the_service_lands_in_both_databases(engine: Engine) {
    let Some(stack) = spawn_stack(engine, DUAL_WRITES).await else {
        return;
    };
    let before = stock(&stack, 3).await;
    let (status, order) =
        place(&stack, json!({ "customer_id": 2, "lines": [{ "product_id": 3, "quantity": 2 }, { "product_id": 4, "quantity": 1 }] }))
            .await;
    assert_eq!(status, 201, "{order}");
    let id = order["id"].as_i64().unwrap();
    assert!(id >= 1_000_000);
    assert_eq!(stock(&stack, 3).await, before - 2);
    // The monolith's copy is the same order, marked as the service's.
    let from_monolith = get(&stack, format!("{}/orders/{id}", stack.monolith)).await;
    assert_eq!(from_monolith, order);
    assert_eq!(
        count(
            &stack.monolith_db,
            "SELECT COUNT(*) FROM orders WHERE origin = $1",
            "orders-service"
        )
        .await,
        1
    );
    assert_eq!(
        ints(
            &stack.orders_db,
            "SELECT COUNT(*) FROM order_lines WHERE order_id = $1",
            id
        )
        .await,
        vec![2]
    );
    let dual = get(&stack, format!("{}/internal/dual-write", stack.orders)).await;
    assert_eq!(dual["written"], 1);
}

async fn with_every_dual_write_dropped_the_order_lands_only_in_the_service(engine: Engine) {
    let faulty = DualWriteConfig {
        enabled: true,
        fault_rate: 1.0,
    };
    let Some(stack) = spawn_stack(engine, faulty).await else {
        return;
    };
    let (status, order) = place(
        &stack,
        json!({ "customer_id": 1, "lines": [{ "product_id": 5, "quantity": 1 }] }),
    )
    .await;
    assert_eq!(status, 201, "{order}");
    let id = order["id"].as_i64().unwrap();
    assert_eq!(
        ints(
            &stack.orders_db,
            "SELECT COUNT(*) FROM orders WHERE id = $1 AND state = 'placed'",
            id
        )
        .await,
        vec![1]
    );
    assert_eq!(
        ints(
            &stack.monolith_db,
            "SELECT COUNT(*) FROM orders WHERE id = $1",
            id
        )
        .await,
        vec![0]
    );
    // The saga's own steps still happened in the monolith: stock and payment.
    let reference = format!("orders-service:order:{id}");
    assert_eq!(
        count(
            &stack.monolith_db,
            "SELECT COUNT(*) FROM payments WHERE reference = $1",
            &reference
        )
        .await,
        1
    );
    let dual = get(&stack, format!("{}/internal/dual-write", stack.orders)).await;
    assert_eq!(
        (
            dual["written"].as_u64(),
            dual["dropped_by_fault_injection"].as_u64()
        ),
        (Some(0), Some(1))
    );
}

async fn a_failed_stock_step_is_compensated(engine: Engine) {
    let Some(stack) = spawn_stack(engine, DUAL_WRITES).await else {
        return;
    };
    sqlx::query("UPDATE inventory SET stock = 1 WHERE product_id = 6")
        .execute(stack.monolith_db.pool())
        .await
        .unwrap();
    let payments_before = count(
        &stack.monolith_db,
        "SELECT COUNT(*) FROM payments WHERE reference <> $1",
        "",
    )
    .await;
    let (status, body) = place(
        &stack,
        json!({ "customer_id": 1, "lines": [{ "product_id": 6, "quantity": 5 }] }),
    )
    .await;
    assert_eq!(status, 409, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("insufficient stock"),
        "{body}"
    );
    // The service's order is failed and invisible; the monolith kept nothing.
    assert_eq!(
        count(
            &stack.orders_db,
            "SELECT COUNT(*) FROM orders WHERE state = $1",
            "failed"
        )
        .await,
        1
    );
    assert_eq!(stock(&stack, 6).await, 1);
    assert_eq!(
        count(
            &stack.monolith_db,
            "SELECT COUNT(*) FROM payments WHERE reference <> $1",
            ""
        )
        .await,
        payments_before
    );
    assert_eq!(
        count(
            &stack.monolith_db,
            "SELECT COUNT(*) FROM orders WHERE origin = $1",
            "orders-service"
        )
        .await,
        0
    );
}

async fn a_declined_payment_releases_the_reserved_stock(engine: Engine) {
    let Some(stack) = spawn_stack(engine, DUAL_WRITES).await else {
        return;
    };
    sqlx::query("UPDATE customers SET credit_limit_cents = 1 WHERE id = 3")
        .execute(stack.monolith_db.pool())
        .await
        .unwrap();
    let before = stock(&stack, 8).await;
    let (status, body) = place(
        &stack,
        json!({ "customer_id": 3, "lines": [{ "product_id": 8, "quantity": 2 }] }),
    )
    .await;
    assert_eq!(status, 402, "{body}");
    assert_eq!(stock(&stack, 8).await, before, "the reservation must be released");
    assert_eq!(
        count(
            &stack.monolith_db,
            "SELECT COUNT(*) FROM stock_reservations WHERE status = $1",
            "released"
        )
        .await,
        1
    );
    assert_eq!(
        count(
            &stack.orders_db,
            "SELECT COUNT(*) FROM orders WHERE state = $1",
            "failed"
        )
        .await,
        1
    );
}

async fn cancelling_through_the_service_restores_the_monolith(engine: Engine) {
    let Some(stack) = spawn_stack(engine, DUAL_WRITES).await else {
        return;
    };
    let before = stock(&stack, 9).await;
    let (_, order) = place(
        &stack,
        json!({ "customer_id": 4, "lines": [{ "product_id": 9, "quantity": 3 }] }),
    )
    .await;
    let id = order["id"].as_i64().unwrap();
    let response = stack
        .client
        .post(format!("{}/orders/{id}/cancel", stack.orders))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(stock(&stack, 9).await, before);
    let reference = format!("orders-service:order:{id}");
    assert_eq!(
        count(
            &stack.monolith_db,
            "SELECT COUNT(*) FROM payments WHERE reference = $1 AND status = 'refunded'",
            &reference
        )
        .await,
        1
    );
    assert_eq!(
        get(&stack, format!("{}/orders/{id}", stack.monolith)).await["status"],
        "cancelled"
    );
}

async fn reconcile_orders(stack: &Stack) -> reconciler::Report {
    let mapping = mapping::Mapping::load(&test_harness::workspace_path("demo/mapping.toml")).unwrap();
    reconciler::reconcile(
        mapping.capability("orders").unwrap(),
        &stack.monolith_url,
        &stack.orders_url,
        &reconciler::Options::default(),
    )
    .await
    .unwrap()
}

async fn the_reconciler_finds_exactly_the_dropped_dual_writes(engine: Engine) {
    let faulty = DualWriteConfig {
        enabled: true,
        fault_rate: 1.0,
    };
    let Some(stack) = spawn_stack(engine, faulty).await else {
        return;
    };
    // Backfilled and untouched: the shipped mapping compares clean.
    let report = reconcile_orders(&stack).await;
    assert_eq!(report.status, reconciler::report::Status::Clean, "{report:?}");
    // A saga that fails leaves a failed order in the service only, which the
    // mapping's service filter keeps out of the comparison.
    sqlx::query("UPDATE inventory SET stock = 0 WHERE product_id = 2")
        .execute(stack.monolith_db.pool())
        .await
        .unwrap();
    let (status, _) = place(
        &stack,
        json!({ "customer_id": 1, "lines": [{ "product_id": 2, "quantity": 1 }] }),
    )
    .await;
    assert_eq!(status, 409);
    // Every dual write of a placed order is dropped: the order and its two
    // lines exist in the service only.
    let (status, order) = place(
        &stack,
        json!({ "customer_id": 2, "lines": [{ "product_id": 3, "quantity": 1 }, { "product_id": 4, "quantity": 2 }] }),
    )
    .await;
    assert_eq!(status, 201, "{order}");
    let report = reconcile_orders(&stack).await;
    assert_eq!(report.status, reconciler::report::Status::Diverged);
    assert_eq!(
        (report.totals.missing, report.totals.extra, report.totals.changed),
        (0, 3, 0),
        "{report:?}"
    );
}

test_harness::on_each_engine!(
    the_reconciler_finds_exactly_the_dropped_dual_writes,
    backfilled_services_answer_like_the_monolith,
    an_order_placed_through_the_service_lands_in_both_databases,
    with_every_dual_write_dropped_the_order_lands_only_in_the_service,
    a_failed_stock_step_is_compensated,
    a_declined_payment_releases_the_reserved_stock,
    cancelling_through_the_service_restores_the_monolith,
);
