//! `POST /orders/{id}/cancel`: the service's own orders are released and
//! refunded through the saga endpoints and dual-written as cancelled;
//! orders the monolith placed (backfilled here) are cancelled by the monolith.

use axum::http::StatusCode;
use serde_json::json;
use test_harness::{http_client, Engine};

use crate::helpers::{
    all_stock, backfill_order, cancel, count, dual_write_stats, get, id_of, monolith_order, order_lines,
    payment, place, place_ok, reference, reservation, seeded_placed_order, send, service_order, spawn_app,
    stats, PaymentRow, DUAL_WRITE_ON, FIRST_ID, STOCK,
};

async fn cancelling_releases_refunds_and_dual_writes(engine: Engine) {
    let Some(app) = spawn_app(engine, DUAL_WRITE_ON).await else {
        return;
    };
    let placed = place_ok(&app.orders.url, 1, &[(1, 2), (2, 1)]).await;
    let id = id_of(&placed);
    assert_eq!(
        all_stock(&app.monolith.db).await,
        [STOCK - 2, STOCK - 1, STOCK, STOCK, STOCK]
    );

    let (status, cancelled) = cancel(&app.orders.url, id).await;

    assert_eq!(status, StatusCode::OK, "{cancelled}");
    assert_eq!(cancelled["status"], "cancelled");
    for unchanged in ["id", "customer_id", "total_cents", "lines", "created_at"] {
        assert_eq!(cancelled[unchanged], placed[unchanged], "{unchanged}");
    }
    let updated_at = cancelled["updated_at"].as_str().expect("updated_at");
    assert!(updated_at >= placed["updated_at"].as_str().expect("updated_at"));
    assert_eq!(
        get(&format!("{}/orders/{id}", app.orders.url)).await,
        (StatusCode::OK, cancelled.clone())
    );
    assert_eq!(
        service_order(&app.orders.db, id).await.map(|o| o.state),
        Some("cancelled".to_owned())
    );

    let monolith = &app.monolith.db;
    assert_eq!(all_stock(monolith).await, [STOCK; 5], "the stock is back");
    assert_eq!(
        reservation(monolith, &reference(id))
            .await
            .map(|(status, _)| status),
        Some("released".to_owned())
    );
    assert_eq!(
        payment(monolith, &reference(id)).await,
        Some(PaymentRow {
            order_id: id,
            customer_id: 1,
            amount_cents: 2 * 1_250 + 399,
            status: "refunded".to_owned(),
        })
    );
    let replica = monolith_order(monolith, id)
        .await
        .expect("the dual-written order");
    assert_eq!(
        (replica.status.as_str(), replica.origin.as_str()),
        ("cancelled", "orders-service")
    );
    assert_eq!(replica.updated_at, updated_at);
    assert_eq!(
        get(&format!("{}/orders/{id}", app.monolith.url)).await,
        (StatusCode::OK, cancelled),
        "the monolith's copy follows the cancellation"
    );
    assert_eq!(dual_write_stats(&app.orders.url).await, stats(true, 0.0, 2, 0, 0));
}

async fn cancelling_twice_unknown_or_failed_orders(engine: Engine) {
    let Some(app) = spawn_app(engine, DUAL_WRITE_ON).await else {
        return;
    };
    let id = id_of(&place_ok(&app.orders.url, 1, &[(3, 4)]).await);
    let (status, _) = cancel(&app.orders.url, id).await;
    assert_eq!(status, StatusCode::OK);
    // Stock the second cancel could wrongly put back a second time.
    assert_eq!(all_stock(&app.monolith.db).await, [STOCK; 5]);

    assert_eq!(
        cancel(&app.orders.url, id).await,
        (
            StatusCode::CONFLICT,
            json!({ "error": format!("order {id} is already cancelled"), "detail": null })
        )
    );
    assert_eq!(
        all_stock(&app.monolith.db).await,
        [STOCK; 5],
        "nothing released twice"
    );
    assert_eq!(
        dual_write_stats(&app.orders.url).await,
        stats(true, 0.0, 2, 0, 0),
        "no third write"
    );

    let unknown = FIRST_ID + 50;
    assert_eq!(
        cancel(&app.orders.url, unknown).await,
        (
            StatusCode::NOT_FOUND,
            json!({ "error": format!("order {unknown} does not exist"), "detail": null })
        )
    );

    let (status, _) = place(&app.orders.url, 1, &[(3, STOCK + 1)]).await;
    assert_eq!(status, StatusCode::CONFLICT);
    let failed = id + 1;
    assert_eq!(
        service_order(&app.orders.db, failed).await.map(|o| o.state),
        Some("failed".to_owned())
    );
    assert_eq!(
        cancel(&app.orders.url, failed).await.0,
        StatusCode::NOT_FOUND,
        "a failed order is not visible, so not cancellable"
    );
    assert_eq!(
        service_order(&app.orders.db, failed).await.map(|o| o.state),
        Some("failed".to_owned())
    );

    let (status, body) = send(http_client().post(format!("{}/orders/abc/cancel", app.orders.url))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let (status, body) = send(http_client().get(format!("{}/orders/{id}/cancel", app.orders.url))).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED, "{body}");
}

async fn legacy_orders_are_cancelled_by_the_monolith(engine: Engine) {
    let Some(app) = spawn_app(engine, DUAL_WRITE_ON).await else {
        return;
    };
    let monolith = &app.monolith.db;
    let id = seeded_placed_order(monolith).await;
    backfill_order(monolith, &app.orders.db, id).await;
    let lines = order_lines(monolith, id).await;
    assert!(!lines.is_empty());
    let (_, in_monolith) = get(&format!("{}/orders/{id}", app.monolith.url)).await;
    assert_eq!(
        get(&format!("{}/orders/{id}", app.orders.url)).await,
        (StatusCode::OK, in_monolith.clone()),
        "the backfilled order reads the same in both"
    );
    let payment_before = payment(monolith, &format!("order:{id}"))
        .await
        .expect("the seed's payment");
    assert_eq!(payment_before.status, "captured");

    let (status, cancelled) = cancel(&app.orders.url, id).await;

    assert_eq!(status, StatusCode::OK, "{cancelled}");
    assert_eq!(cancelled["status"], "cancelled");
    for unchanged in ["id", "customer_id", "total_cents", "lines", "created_at"] {
        assert_eq!(cancelled[unchanged], in_monolith[unchanged], "{unchanged}");
    }
    let mut expected_stock = vec![STOCK; 5];
    for &(_, product_id, quantity, _) in &lines {
        expected_stock[usize::try_from(product_id - 1).expect("a product id")] += quantity;
    }
    assert_eq!(
        all_stock(monolith).await,
        expected_stock,
        "the monolith put the stock back"
    );
    let in_monolith = monolith_order(monolith, id).await.expect("the order");
    assert_eq!(
        (in_monolith.status.as_str(), in_monolith.origin.as_str()),
        ("cancelled", "monolith")
    );
    assert_eq!(
        payment(monolith, &format!("order:{id}")).await.map(|p| p.status),
        Some("refunded".to_owned())
    );
    assert_eq!(
        service_order(&app.orders.db, id).await.map(|o| o.state),
        Some("cancelled".to_owned())
    );
    assert_eq!(
        count(monolith, "stock_reservations").await,
        0,
        "no saga reference was involved"
    );
    assert_eq!(
        dual_write_stats(&app.orders.url).await,
        stats(true, 0.0, 0, 0, 0),
        "the monolith already holds the cancellation; nothing to dual-write"
    );

    let (status, _) = cancel(&app.orders.url, id).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(all_stock(monolith).await, expected_stock);
}

async fn legacy_order_already_cancelled_in_the_monolith_catches_up(engine: Engine) {
    let Some(app) = spawn_app(engine, DUAL_WRITE_ON).await else {
        return;
    };
    let monolith = &app.monolith.db;
    let id = seeded_placed_order(monolith).await;
    backfill_order(monolith, &app.orders.db, id).await;
    let (status, _) = send(http_client().post(format!("{}/orders/{id}/cancel", app.monolith.url))).await;
    assert_eq!(status, StatusCode::OK, "cancelled in the monolith directly");
    let stock = all_stock(monolith).await;

    assert_eq!(
        cancel(&app.orders.url, id).await,
        (
            StatusCode::CONFLICT,
            json!({ "error": format!("order {id} is already cancelled"), "detail": null })
        ),
        "the monolith's answer"
    );
    assert_eq!(
        service_order(&app.orders.db, id).await.map(|o| o.state),
        Some("cancelled".to_owned()),
        "the service caught up with the monolith"
    );
    let (status, order) = get(&format!("{}/orders/{id}", app.orders.url)).await;
    assert_eq!((status, &order["status"]), (StatusCode::OK, &json!("cancelled")));
    assert_eq!(all_stock(monolith).await, stock, "no stock put back twice");
}

test_harness::on_each_engine!(
    cancelling_releases_refunds_and_dual_writes,
    cancelling_twice_unknown_or_failed_orders,
    legacy_orders_are_cancelled_by_the_monolith,
    legacy_order_already_cancelled_in_the_monolith_catches_up,
);
