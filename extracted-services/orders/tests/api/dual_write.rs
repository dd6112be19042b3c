//! The dual-write phase: orders written back into the monolith's tables,
//! or deliberately not (switched off, fault injection), and a refused
//! second write that never fails the client's request.

use axum::http::StatusCode;
use orders_service::dual_write::DualWriteConfig;
use test_harness::{snapshot, Engine};

use crate::helpers::{
    all_stock, cancel, count, dual_write_stats, execute, get, id_of, monolith_order, order_lines, payment,
    place_ok, reference, service_order, spawn_app, stats, MonolithOrder, DUAL_WRITE_OFF, DUAL_WRITE_ON,
    FIRST_ID, SEEDED_ORDERS, STOCK,
};

async fn dual_write_copies_the_order_into_the_monolith(engine: Engine) {
    let Some(app) = spawn_app(engine, DUAL_WRITE_ON).await else {
        return;
    };
    let order = place_ok(&app.orders.url, 1, &[(2, 3), (4, 1)]).await;
    let id = id_of(&order);

    assert_eq!(
        monolith_order(&app.monolith.db, id).await,
        Some(MonolithOrder {
            customer_id: 1,
            status: "placed".to_owned(),
            total_cents: 3 * 399 + 75,
            origin: "orders-service".to_owned(),
            created_at: order["created_at"].as_str().expect("created_at").to_owned(),
            updated_at: order["updated_at"].as_str().expect("updated_at").to_owned(),
        })
    );
    let lines = [(1, 2, 3, 399), (2, 4, 1, 75)];
    assert_eq!(order_lines(&app.monolith.db, id).await, lines);
    assert_eq!(order_lines(&app.orders.db, id).await, lines);
    assert_eq!(
        get(&format!("{}/orders/{id}", app.monolith.url)).await,
        (StatusCode::OK, order.clone()),
        "the monolith serves the dual-written order exactly as the service does"
    );
    assert_eq!(dual_write_stats(&app.orders.url).await, stats(true, 0.0, 1, 0, 0));
    assert_eq!(
        all_stock(&app.monolith.db).await,
        [STOCK, STOCK - 3, STOCK, STOCK - 1, STOCK],
        "the dual write stores the order; it takes no stock a second time"
    );
}

async fn dual_write_off_leaves_the_monolith_orders_alone(engine: Engine) {
    let Some(app) = spawn_app(engine, DUAL_WRITE_OFF).await else {
        return;
    };
    let before = snapshot(&app.monolith.db, &["orders", "order_lines"]).await;

    let order = place_ok(&app.orders.url, 1, &[(1, 1)]).await;
    let (status, _) = cancel(&app.orders.url, id_of(&order)).await;
    assert_eq!(status, StatusCode::OK);

    assert_eq!(
        snapshot(&app.monolith.db, &["orders", "order_lines"]).await,
        before
    );
    assert_eq!(count(&app.monolith.db, "orders").await, SEEDED_ORDERS);
    assert_eq!(
        payment(&app.monolith.db, &reference(id_of(&order)))
            .await
            .map(|p| p.status),
        Some("refunded".to_owned()),
        "the saga itself still ran against the monolith"
    );
    assert_eq!(
        dual_write_stats(&app.orders.url).await,
        stats(false, 0.0, 0, 0, 0)
    );
}

async fn fault_injection_drops_every_second_write(engine: Engine) {
    let config = DualWriteConfig {
        enabled: true,
        fault_rate: 1.0,
    };
    let Some(app) = spawn_app(engine, config).await else {
        return;
    };

    let (status, order) = crate::helpers::place(&app.orders.url, 3, &[(5, 1)]).await;

    assert_eq!(
        status,
        StatusCode::CREATED,
        "the client never sees a dropped second write: {order}"
    );
    let id = id_of(&order);
    assert_eq!(
        service_order(&app.orders.db, id).await.map(|o| o.state),
        Some("placed".to_owned())
    );
    assert_eq!(
        monolith_order(&app.monolith.db, id).await,
        None,
        "only in the service's database"
    );
    assert_eq!(dual_write_stats(&app.orders.url).await, stats(true, 1.0, 0, 0, 1));

    let (status, cancelled) = cancel(&app.orders.url, id).await;
    assert_eq!(status, StatusCode::OK, "{cancelled}");
    assert_eq!(monolith_order(&app.monolith.db, id).await, None);
    assert_eq!(dual_write_stats(&app.orders.url).await, stats(true, 1.0, 0, 0, 2));
    assert_eq!(count(&app.monolith.db, "orders").await, SEEDED_ORDERS);
}

async fn refused_dual_write_is_counted_not_fatal(engine: Engine) {
    let Some(app) = spawn_app(engine, DUAL_WRITE_ON).await else {
        return;
    };
    // An order the monolith placed itself under the id the service is about
    // to use: the monolith refuses to let a dual write overwrite it.
    sqlx::query(
        "INSERT INTO orders (id, customer_id, status, total_cents, origin, created_at, updated_at) \
         VALUES ($1, 3, 'placed', 0, 'monolith', '2026-01-01T00:00:00.000Z', '2026-01-01T00:00:00.000Z')",
    )
    .bind(FIRST_ID)
    .execute(app.monolith.db.pool())
    .await
    .expect("inserting a colliding order");
    let before = monolith_order(&app.monolith.db, FIRST_ID).await;

    let order = place_ok(&app.orders.url, 1, &[(1, 1)]).await;

    assert_eq!(id_of(&order), FIRST_ID);
    assert_eq!(
        service_order(&app.orders.db, FIRST_ID).await.map(|o| o.state),
        Some("placed".to_owned())
    );
    assert_eq!(
        monolith_order(&app.monolith.db, FIRST_ID).await,
        before,
        "the monolith's own order is kept"
    );
    assert_eq!(dual_write_stats(&app.orders.url).await, stats(true, 0.0, 0, 1, 0));

    // The next order does not collide and is written.
    execute(&app.monolith.db, "DELETE FROM orders WHERE id = $1", &[FIRST_ID]).await;
    let next = place_ok(&app.orders.url, 1, &[(1, 1)]).await;
    assert_eq!(
        monolith_order(&app.monolith.db, id_of(&next))
            .await
            .map(|o| o.origin),
        Some("orders-service".to_owned())
    );
    assert_eq!(dual_write_stats(&app.orders.url).await, stats(true, 0.0, 1, 1, 0));
}

test_harness::on_each_engine!(
    dual_write_copies_the_order_into_the_monolith,
    dual_write_off_leaves_the_monolith_orders_alone,
    fault_injection_drops_every_second_write,
    refused_dual_write_is_counted_not_fatal,
);
