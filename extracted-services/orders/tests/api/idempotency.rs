//! `POST /orders` with an `Idempotency-Key`: a retry gets the first answer
//! and runs no second saga, another body under the key is a 422, a key
//! whose saga is still running is a 409 to retry, a failed or recovered
//! saga frees its key, and an order committed by a process killed before it
//! answered is what the retry gets.

use std::sync::Arc;
use std::time::Duration;

use axum::http::StatusCode;
use axum::response::Response;
use orders_service::order_store::{OrderStore, Pending, PLACE_ORDER_SCOPE};
use orders_service::recovery::RecoveryConfig;
use serde_json::{json, Value};
use service_runtime::idempotency::{IdempotencyKey, KeyClaim};
use service_runtime::timestamp::Utc;
use shop_api::{NewOrder, ReservationRequest};
use shop_test_support::upstreams::StubUpstream;
use shop_test_support::AppProcess;
use test_harness::{snapshot, Engine, TestDatabase};
use tokio::sync::Notify;

use crate::helpers::{
    all_stock, count, dual_write_stats, execute, id_of, is_replay, monolith_client, new_order, place_keyed,
    recovery, saga_answer, service_order, spawn_app, stats, StubDelays, DUAL_WRITE_OFF, DUAL_WRITE_ON,
    FIRST_ID, MONOLITH_TABLES, SERVICE_TABLES, STOCK, STUB_UNIT_PRICE,
};

/// The orders service's binary, for the tests that kill it.
const ORDERS_BINARY: &str = env!("CARGO_BIN_EXE_orders-service");

async fn the_same_key_and_body_place_one_order_and_replay_its_answer(engine: Engine) {
    let Some(app) = spawn_app(engine, DUAL_WRITE_ON).await else {
        return;
    };
    let base = &app.orders.url;
    let body = new_order(2, &[(1, 2), (3, 1)]);

    let (status, headers, order) = place_keyed(base, "checkout-1", &body).await;
    assert_eq!(status, StatusCode::CREATED, "{order}");
    assert!(!is_replay(&headers));
    assert_eq!(id_of(&order), FIRST_ID);
    let service_before = snapshot(&app.orders.db, SERVICE_TABLES).await;
    let monolith_before = snapshot(&app.monolith.db, MONOLITH_TABLES).await;

    let (status, headers, again) = place_keyed(base, "checkout-1", &body).await;
    assert_eq!(
        (status, &again),
        (StatusCode::CREATED, &order),
        "the first answer"
    );
    assert!(is_replay(&headers), "a replay says so");
    assert_eq!(snapshot(&app.orders.db, SERVICE_TABLES).await, service_before);
    assert_eq!(
        snapshot(&app.monolith.db, MONOLITH_TABLES).await,
        monolith_before,
        "no second saga, no second dual write"
    );
    assert_eq!(dual_write_stats(base).await, stats(true, 0.0, 1, 0, 0));

    let (status, _, other) = place_keyed(base, "checkout-2", &body).await;
    assert_eq!(
        (status, id_of(&other)),
        (StatusCode::CREATED, FIRST_ID + 1),
        "another key, another order"
    );
}

async fn the_same_key_with_another_body_is_422(engine: Engine) {
    let Some(app) = spawn_app(engine, DUAL_WRITE_OFF).await else {
        return;
    };
    let base = &app.orders.url;
    let (status, _, order) = place_keyed(base, "checkout-1", &new_order(2, &[(1, 1)])).await;
    assert_eq!(status, StatusCode::CREATED, "{order}");
    let before = snapshot(&app.orders.db, SERVICE_TABLES).await;

    let (status, _, refused) = place_keyed(base, "checkout-1", &new_order(2, &[(1, 2)])).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        refused,
        json!({
            "error": "Idempotency-Key `checkout-1` was already used with a different request body; \
                      a new request needs a new key",
            "detail": { "idempotency_key": "checkout-1" },
        })
    );
    assert_eq!(snapshot(&app.orders.db, SERVICE_TABLES).await, before);
    let (_, _, again) = place_keyed(base, "checkout-1", &new_order(2, &[(1, 1)])).await;
    assert_eq!(again, order);
}

async fn concurrent_requests_with_one_key_run_one_saga(engine: Engine) {
    let Some(app) = spawn_app(engine, DUAL_WRITE_OFF).await else {
        return;
    };
    let payments_before = count(&app.monolith.db, "payments").await;
    let body = new_order(1, &[(2, 3)]);

    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..12 {
        let base = app.orders.url.clone();
        let body = body.clone();
        tasks.spawn(async move { place_keyed(&base, "double-click", &body).await });
    }
    let mut placed: Vec<Value> = Vec::new();
    let mut in_progress = 0;
    while let Some(answer) = tasks.join_next().await {
        let (status, headers, body) = answer.expect("a request task");
        match status {
            StatusCode::CREATED => placed.push(body),
            StatusCode::CONFLICT => {
                in_progress += 1;
                assert_eq!(headers.get("retry-after").map(|v| v.as_bytes()), Some(&b"1"[..]));
                assert_eq!(
                    body["detail"],
                    json!({ "idempotency_key": "double-click", "in_progress": true }),
                    "{body}"
                );
            }
            other => panic!("unexpected {other}: {body}"),
        }
    }
    assert!(!placed.is_empty(), "the request that ran the saga answered 201");
    assert!(placed.iter().all(|order| *order == placed[0]), "{placed:?}");
    assert_eq!(placed.len() + in_progress, 12);
    assert_eq!(
        count(&app.orders.db, "orders").await,
        1,
        "one saga, one order row"
    );
    assert_eq!(count(&app.monolith.db, "payments").await, payments_before + 1);
    assert_eq!(all_stock(&app.monolith.db).await[1], STOCK - 3);

    let (status, headers, again) = place_keyed(&app.orders.url, "double-click", &body).await;
    assert_eq!((status, &again), (StatusCode::CREATED, &placed[0]));
    assert!(is_replay(&headers));
}

async fn a_failed_saga_frees_its_key(engine: Engine) {
    let Some(app) = spawn_app(engine, DUAL_WRITE_OFF).await else {
        return;
    };
    execute(
        &app.monolith.db,
        "UPDATE inventory SET stock = 1 WHERE product_id = 4",
        &[],
    )
    .await;
    let body = new_order(1, &[(4, 3)]);

    let (status, _, refused) = place_keyed(&app.orders.url, "restock", &body).await;
    assert_eq!(status, StatusCode::CONFLICT, "the monolith's refusal: {refused}");
    assert_eq!(
        service_order(&app.orders.db, FIRST_ID).await.map(|o| o.state),
        Some("failed".to_owned())
    );
    assert_eq!(
        count(&app.orders.db, "idempotency_keys").await,
        0,
        "the refusal is not remembered"
    );

    execute(
        &app.monolith.db,
        "UPDATE inventory SET stock = 3 WHERE product_id = 4",
        &[],
    )
    .await;
    let (status, headers, order) = place_keyed(&app.orders.url, "restock", &body).await;
    assert_eq!(
        (status, id_of(&order)),
        (StatusCode::CREATED, FIRST_ID + 1),
        "{order}"
    );
    assert!(!is_replay(&headers), "the retry ran a saga of its own");
}

/// A process died after step 2 of the saga (stock reserved): the key is in
/// progress, a retry gets a 409, and once recovery has compensated the
/// order the retry places it afresh.
async fn an_interrupted_saga_holds_its_key_until_recovered(engine: Engine) {
    let Some(app) = spawn_app(engine, DUAL_WRITE_OFF).await else {
        return;
    };
    let body = new_order(1, &[(2, 2)]);
    let order: NewOrder = serde_json::from_value(body.clone()).expect("a new order");
    let key = IdempotencyKey::parse(&"interrupted".parse().expect("a header value")).expect("a valid key");
    let claim = KeyClaim::new(PLACE_ORDER_SCOPE, key, &order);
    // Step 1, as the saga runs it: the pending order and its key.
    let store = OrderStore::new(app.orders.db.clone());
    let started = Utc::now();
    let created = store
        .create_pending(1, &order.lines, started, Some(&claim))
        .await
        .expect("recording the pending order");
    assert_eq!(created, Pending::Created(FIRST_ID));
    // Step 2: the stock is held in the monolith. Then the process dies.
    monolith_client(&app.monolith.url)
        .reserve(
            &ReservationRequest {
                reference: crate::helpers::reference(FIRST_ID),
                lines: order.lines.clone(),
            },
            &"test".parse().expect("a header value"),
        )
        .await
        .expect("reserving");
    assert_eq!(all_stock(&app.monolith.db).await[1], STOCK - 2);

    let (status, headers, busy) = place_keyed(&app.orders.url, "interrupted", &body).await;
    assert_eq!(status, StatusCode::CONFLICT, "{busy}");
    assert_eq!(headers.get("retry-after").map(|v| v.as_bytes()), Some(&b"1"[..]));
    assert_eq!(
        busy["error"],
        "a request with Idempotency-Key `interrupted` is still in progress; retry in a moment"
    );

    // Recovery (time injected: the app's own pass sees the order as young).
    let pass = recovery(&app.orders.db, &app.monolith.url, RecoveryConfig::default())
        .run_once(started + Duration::from_secs(120))
        .await
        .expect("a recovery pass");
    assert_eq!(pass.compensated, [FIRST_ID]);
    assert_eq!(all_stock(&app.monolith.db).await[1], STOCK);

    let (status, headers, order) = place_keyed(&app.orders.url, "interrupted", &body).await;
    assert_eq!(
        (status, id_of(&order)),
        (StatusCode::CREATED, FIRST_ID + 1),
        "{order}"
    );
    assert!(!is_replay(&headers));
    assert_eq!(all_stock(&app.monolith.db).await[1], STOCK - 2, "taken once");
    let (_, headers, again) = place_keyed(&app.orders.url, "interrupted", &body).await;
    assert!(is_replay(&headers));
    assert_eq!(again, order);
}

/// A stub monolith that serves the saga but never answers the dual write,
/// telling the test when it arrives: by then the order is committed
/// `placed` with its key's answer, and the client has had no answer.
async fn monolith_that_hangs_on_the_dual_write(arrived: Arc<Notify>) -> StubUpstream {
    StubUpstream::spawn(move |request| {
        let arrived = Arc::clone(&arrived);
        async move {
            if request.method == "PUT" && request.segments().first() == Some(&"internal") {
                arrived.notify_one();
                return std::future::pending::<Response>().await;
            }
            saga_answer(StubDelays::default(), request).await
        }
    })
    .await
}

async fn an_order_committed_before_a_kill_is_the_retry_s_answer(engine: Engine) {
    let Some(database) = TestDatabase::fresh(engine).await else {
        return;
    };
    let arrived = Arc::new(Notify::new());
    let monolith = monolith_that_hangs_on_the_dual_write(Arc::clone(&arrived)).await;
    let monolith_url = format!("{}/", monolith.url);
    let args = [
        "--listen",
        "127.0.0.1:0",
        "--database-url",
        database.url().expose(),
        "--monolith-url",
        &monolith_url,
        "--monolith-timeout-ms",
        "20000",
        "--dual-write",
        "--log-format",
        "json",
    ];
    let body = new_order(1, &[(1, 2)]);

    let first = AppProcess::start(ORDERS_BINARY, &args).await;
    let url = first.url.clone();
    let request_body = body.clone();
    let lost = tokio::spawn(async move { place_keyed_raw(&url, &request_body).await });
    arrived.notified().await;
    first.kill().await;
    assert!(
        lost.await.expect("the request task").is_err(),
        "the client got no answer from the killed process"
    );

    let second = AppProcess::start(ORDERS_BINARY, &args).await;
    let (status, headers, order) = place_keyed(&second.url, "kill-window", &body).await;
    assert_eq!(status, StatusCode::CREATED, "{order}");
    assert!(is_replay(&headers), "the answer stored with the commit");
    assert_eq!(id_of(&order), FIRST_ID);
    assert_eq!(order["status"], "placed");
    assert_eq!(order["total_cents"], 2 * STUB_UNIT_PRICE);
    let calls = monolith.calls();
    for call in ["POST /inventory/reservations", "POST /payments"] {
        assert_eq!(
            calls.iter().filter(|c| *c == call).count(),
            1,
            "{call} once: {calls:?}"
        );
    }
    let db = service_runtime::Database::open(database.url())
        .await
        .expect("opening the orders database");
    assert_eq!(count(&db, "orders").await, 1, "no second order");
    db.close().await;
    second.kill().await;
}

async fn place_keyed_raw(base: &str, body: &Value) -> reqwest::Result<reqwest::Response> {
    test_harness::http_client()
        .post(format!("{base}/orders"))
        .header("idempotency-key", "kill-window")
        .json(body)
        .send()
        .await
}

test_harness::on_each_engine!(
    the_same_key_and_body_place_one_order_and_replay_its_answer,
    the_same_key_with_another_body_is_422,
    concurrent_requests_with_one_key_run_one_saga,
    a_failed_saga_frees_its_key,
    an_interrupted_saga_holds_its_key_until_recovered,
    an_order_committed_before_a_kill_is_the_retry_s_answer,
);
