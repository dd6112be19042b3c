//! `/internal/settings`: the simulated outage answers 503 everywhere but
//! `/internal/`, and the dual-write fault rate changes at runtime, within
//! 0.0 to 1.0.

use axum::http::StatusCode;
use serde_json::{json, Value};
use test_harness::{http_client, Engine};

use crate::helpers::{
    count, dual_write_stats, get, id_of, monolith_order, new_order, place, place_ok, send, spawn_app, stats,
    Answer, DUAL_WRITE_ON,
};

async fn put_settings(base: &str, body: &Value) -> Answer {
    send(http_client().put(format!("{base}/internal/settings")).json(body)).await
}

async fn an_outage_answers_503_outside_internal_and_ends_when_switched_off(engine: Engine) {
    let Some(app) = spawn_app(engine, DUAL_WRITE_ON).await else {
        return;
    };
    let base = &app.orders.url;
    let order = place_ok(base, 1, &[(1, 1)]).await;
    let id = id_of(&order);
    assert_eq!(
        get(&format!("{base}/internal/settings")).await,
        (
            StatusCode::OK,
            json!({ "outage": false, "dual_write_fault_rate": 0.0 })
        )
    );

    assert_eq!(
        put_settings(base, &json!({ "outage": true })).await,
        (
            StatusCode::OK,
            json!({ "outage": true, "dual_write_fault_rate": 0.0 })
        )
    );
    let orders_before = count(&app.orders.db, "orders").await;
    let client = http_client();
    for request in [
        client.get(format!("{base}/orders/{id}")),
        client
            .post(format!("{base}/orders"))
            .json(&new_order(1, &[(1, 1)])),
        client.post(format!("{base}/orders/{id}/cancel")),
        client.get(format!("{base}/customers/1/orders")),
        client.get(format!("{base}/health")),
        client.get(format!("{base}/no-such-endpoint")),
    ] {
        let (status, body) = send(request).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
        assert!(
            body["error"].as_str().is_some_and(|e| e.contains("is down")),
            "{body}"
        );
        assert_eq!(body["detail"], json!({ "outage": true }));
    }
    assert_eq!(
        count(&app.orders.db, "orders").await,
        orders_before,
        "an order refused during the outage was never placed"
    );
    // The switches and counters stay reachable, so the outage can end.
    assert_eq!(get(&format!("{base}/internal/settings")).await.0, StatusCode::OK);
    assert_eq!(dual_write_stats(base).await, stats(true, 0.0, 1, 0, 0));

    let (status, _) = put_settings(base, &json!({ "outage": false })).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(get(&format!("{base}/health")).await.0, StatusCode::OK);
    assert_eq!(get(&format!("{base}/orders/{id}")).await, (StatusCode::OK, order));
}

async fn the_fault_rate_changes_at_runtime_within_range(engine: Engine) {
    let Some(app) = spawn_app(engine, DUAL_WRITE_ON).await else {
        return;
    };
    let base = &app.orders.url;
    assert_eq!(
        put_settings(base, &json!({ "dual_write_fault_rate": 1.0 })).await,
        (
            StatusCode::OK,
            json!({ "outage": false, "dual_write_fault_rate": 1.0 })
        )
    );
    let dropped = id_of(&place_ok(base, 1, &[(2, 1)]).await);
    assert_eq!(monolith_order(&app.monolith.db, dropped).await, None);
    assert_eq!(dual_write_stats(base).await, stats(true, 1.0, 0, 0, 1));

    for (body, expected) in [
        (
            json!({ "dual_write_fault_rate": 1.5 }),
            "between 0.0 and 1.0, got 1.5",
        ),
        (
            json!({ "dual_write_fault_rate": -0.1 }),
            "between 0.0 and 1.0, got -0.1",
        ),
        // Nothing changes when one field of several is refused.
        (
            json!({ "outage": true, "dual_write_fault_rate": 2 }),
            "between 0.0 and 1.0, got 2",
        ),
        (json!({ "dual_write_fault_rate": "half" }), "invalid type"),
        (json!({ "outages": true }), "unknown field `outages`"),
        (json!({}), "nothing to change"),
    ] {
        let (status, answer) = put_settings(base, &body).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}: {answer}");
        let message = answer["error"].as_str().expect("an error message");
        assert!(message.contains(expected), "{body}: {message}");
    }
    assert_eq!(
        get(&format!("{base}/internal/settings")).await.1,
        json!({ "outage": false, "dual_write_fault_rate": 1.0 })
    );

    let (status, _) = put_settings(base, &json!({ "dual_write_fault_rate": 0 })).await;
    assert_eq!(status, StatusCode::OK);
    let written = id_of(&place_ok(base, 1, &[(2, 1)]).await);
    assert!(monolith_order(&app.monolith.db, written).await.is_some());
    assert_eq!(dual_write_stats(base).await, stats(true, 0.0, 1, 0, 1));
    // Placing still works as before the switches were touched.
    assert_eq!(place(base, 1, &[(3, 1)]).await.0, StatusCode::CREATED);
}

test_harness::on_each_engine!(
    an_outage_answers_503_outside_internal_and_ends_when_switched_off,
    the_fault_rate_changes_at_runtime_within_range,
);
