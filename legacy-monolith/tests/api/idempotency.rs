//! `POST /orders` with an `Idempotency-Key`: a retry gets the first answer
//! and places nothing, another body under the key is a 422, concurrent
//! requests with one key place one order, and an order committed by a
//! server that died before answering is what the retry gets.

use std::sync::Arc;

use axum::extract::Request as AxumRequest;
use axum::middleware::Next;
use axum::response::Response as AxumResponse;
use legacy_monolith::{router, AppState, MIGRATIONS};
use reqwest::header::CONTENT_TYPE;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use service_runtime::app::BoundApp;
use service_runtime::idempotency::{self, IDEMPOTENCY_KEY_HEADER, REPLAYED_HEADER};
use service_runtime::timestamp::Utc;
use service_runtime::Database;
use shop_test_support::{any_port, RunningApp, GRACE_PERIOD};
use test_harness::Engine;
use tokio::sync::Notify;

use crate::helpers::{
    error_body, json_body, order_body, snapshot_all, spawn_app, TestApp, RICH, SEEDED_ORDERS, STOCK,
};

/// `POST /orders` with `key`, the body sent as the given text.
async fn post_keyed_text(app: &TestApp, url: &str, key: &str, body: &str) -> reqwest::Response {
    app.client
        .post(url)
        .header(IDEMPOTENCY_KEY_HEADER.as_str(), key)
        .header(CONTENT_TYPE, "application/json")
        .body(body.to_owned())
        .send()
        .await
        .expect("placing an order")
}

/// `POST /orders` with `key` and a JSON body.
async fn post_keyed(app: &TestApp, key: &str, body: &Value) -> reqwest::Response {
    post_keyed_text(app, &app.url("/orders"), key, &body.to_string()).await
}

fn replayed(response: &reqwest::Response) -> bool {
    response
        .headers()
        .get(REPLAYED_HEADER.as_str())
        .is_some_and(|value| value == "true")
}

async fn orders_placed(app: &TestApp) -> i64 {
    app.scalar("SELECT COUNT(*) FROM orders WHERE id > $1", &[SEEDED_ORDERS])
        .await
}

async fn the_same_key_and_body_place_one_order_and_replay_its_answer(engine: Engine) {
    let Some(app) = spawn_app(engine).await else {
        return;
    };
    app.load_fixture().await;

    let first = post_keyed(&app, "checkout-1", &order_body(RICH, &[(1, 2), (3, 1)])).await;
    assert!(!replayed(&first), "a first answer is not a replay");
    let order = json_body(first, StatusCode::CREATED).await;
    assert_eq!(order["id"], SEEDED_ORDERS + 1);
    let before = snapshot_all(&app).await;

    // The same body, written differently: other key order, other spacing.
    let text = r#"{ "lines": [ {"quantity": 2, "product_id": 1}, {"product_id": 3, "quantity": 1} ],
                    "customer_id": 1 }"#;
    let again = post_keyed_text(&app, &app.url("/orders"), "checkout-1", text).await;
    assert!(replayed(&again), "a replay says so");
    assert_eq!(
        json_body(again, StatusCode::CREATED).await,
        order,
        "the first answer, status and body"
    );
    assert_eq!(snapshot_all(&app).await, before, "a replay changes no row");
    assert_eq!(orders_placed(&app).await, 1);
    assert_eq!(app.all_stock().await[..3], [STOCK - 2, STOCK, STOCK - 1]);

    // Another key, or none, is another order.
    let other = json_body(
        post_keyed(&app, "checkout-2", &order_body(RICH, &[(1, 2), (3, 1)])).await,
        StatusCode::CREATED,
    )
    .await;
    assert_eq!(other["id"], SEEDED_ORDERS + 2);
    app.place_order(RICH, &[(1, 2), (3, 1)]).await;
    assert_eq!(orders_placed(&app).await, 3);
}

async fn the_same_key_with_another_body_is_422(engine: Engine) {
    let Some(app) = spawn_app(engine).await else {
        return;
    };
    app.load_fixture().await;
    let order = json_body(
        post_keyed(&app, "checkout-1", &order_body(RICH, &[(1, 1)])).await,
        StatusCode::CREATED,
    )
    .await;
    let before = snapshot_all(&app).await;

    for other in [
        order_body(RICH, &[(1, 2)]),
        order_body(RICH, &[(2, 1)]),
        order_body(3, &[(1, 1)]),
    ] {
        let body = error_body(
            post_keyed(&app, "checkout-1", &other).await,
            StatusCode::UNPROCESSABLE_ENTITY,
        )
        .await;
        assert_eq!(
            body,
            json!({
                "error": "Idempotency-Key `checkout-1` was already used with a different request body; \
                          a new request needs a new key",
                "detail": { "idempotency_key": "checkout-1" },
            })
        );
    }
    assert_eq!(
        snapshot_all(&app).await,
        before,
        "a refused reuse changes nothing"
    );
    let again = post_keyed(&app, "checkout-1", &order_body(RICH, &[(1, 1)])).await;
    assert_eq!(
        json_body(again, StatusCode::CREATED).await,
        order,
        "the key still holds its order"
    );
}

async fn concurrent_requests_with_one_key_place_one_order(engine: Engine) {
    let Some(app) = spawn_app(engine).await else {
        return;
    };
    app.load_fixture().await;
    let body = order_body(RICH, &[(2, 3)]);

    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..12 {
        let request = app
            .client
            .post(app.url("/orders"))
            .header(IDEMPOTENCY_KEY_HEADER.as_str(), "double-click")
            .json(&body);
        tasks.spawn(async move {
            let response = request.send().await.expect("placing an order");
            let status = response.status();
            (status, response.json::<Value>().await.expect("a JSON body"))
        });
    }
    let mut answers = Vec::new();
    while let Some(answer) = tasks.join_next().await {
        answers.push(answer.expect("a request task"));
    }
    let (status, first) = answers[0].clone();
    assert_eq!(status, StatusCode::CREATED, "{first}");
    assert!(
        answers
            .iter()
            .all(|answer| *answer == (StatusCode::CREATED, first.clone())),
        "every request gets the one order: {answers:?}"
    );
    assert_eq!(orders_placed(&app).await, 1);
    assert_eq!(app.stock(2).await, STOCK - 3);
    assert_eq!(
        app.scalar(
            "SELECT COUNT(*) FROM payments WHERE order_id > $1",
            &[SEEDED_ORDERS]
        )
        .await,
        1
    );
}

/// A server whose process "dies" between its commit and its answer: a
/// layer lets `POST /orders` run to the end (the order is committed) and
/// then never answers, telling the test the moment the commit is done.
async fn dying_server(db: Database, committed: Arc<Notify>) -> RunningApp {
    let dies_before_answering = move |request: AxumRequest, next: Next| {
        let committed = Arc::clone(&committed);
        async move {
            let placing = request.method() == Method::POST && request.uri().path() == "/orders";
            let response = next.run(request).await;
            if placing {
                committed.notify_one();
                return std::future::pending::<AxumResponse>().await;
            }
            response
        }
    };
    let router = router(AppState { db: db.clone() }).layer(axum::middleware::from_fn(dies_before_answering));
    let app = BoundApp::bind(any_port(), router, db, GRACE_PERIOD)
        .await
        .expect("binding the dying server");
    RunningApp::start(app).await
}

async fn an_order_committed_before_a_crash_is_the_retry_s_answer(engine: Engine) {
    let Some(app) = spawn_app(engine).await else {
        return;
    };
    app.load_fixture().await;
    let committed = Arc::new(Notify::new());
    let db = Database::connect(app.database_url(), &MIGRATIONS)
        .await
        .expect("a second pool on the monolith's database");
    let dying = dying_server(db, Arc::clone(&committed)).await;
    let body = order_body(RICH, &[(4, 2)]);

    let lost = tokio::spawn(post_keyed_text_owned(
        app.client.clone(),
        format!("{}/orders", dying.url),
        body.to_string(),
    ));
    committed.notified().await;
    // The client gives up on the answer that never comes, and the server is
    // gone; the order was committed.
    lost.abort();
    drop(dying);
    assert_eq!(orders_placed(&app).await, 1, "the first request committed");

    // The retry reaches another server on the same database.
    let retry = post_keyed(&app, "crash-window", &body).await;
    assert!(replayed(&retry));
    let order = json_body(retry, StatusCode::CREATED).await;
    let id = order["id"].as_i64().expect("an order id");
    assert_eq!(id, SEEDED_ORDERS + 1, "the order the first request committed");
    assert_eq!(
        json_body(app.get(&format!("/orders/{id}")).await, StatusCode::OK).await,
        order
    );
    assert_eq!(orders_placed(&app).await, 1, "no second order");
    assert_eq!(app.stock(4).await, STOCK - 2, "stock taken once");
    assert_eq!(
        app.scalar("SELECT COUNT(*) FROM payments WHERE order_id = $1", &[id])
            .await,
        1,
        "paid once"
    );
}

async fn post_keyed_text_owned(
    client: reqwest::Client,
    url: String,
    body: String,
) -> reqwest::Result<reqwest::Response> {
    client
        .post(url)
        .header(IDEMPOTENCY_KEY_HEADER.as_str(), "crash-window")
        .header(CONTENT_TYPE, "application/json")
        .body(body)
        .send()
        .await
}

async fn a_refused_order_leaves_its_key_free(engine: Engine) {
    let Some(app) = spawn_app(engine).await else {
        return;
    };
    app.load_fixture().await;
    let body = order_body(RICH, &[(5, STOCK + 1)]);
    let before = snapshot_all(&app).await;

    error_body(post_keyed(&app, "restock", &body).await, StatusCode::CONFLICT).await;
    assert_eq!(snapshot_all(&app).await, before, "the refusal is not remembered");

    app.set_stock(5, STOCK + 1).await;
    let retry = post_keyed(&app, "restock", &body).await;
    assert!(!replayed(&retry), "the retry is judged afresh");
    json_body(retry, StatusCode::CREATED).await;
    assert_eq!(app.stock(5).await, 0);
}

async fn an_expired_key_is_forgotten_and_purged(engine: Engine) {
    let Some(app) = spawn_app(engine).await else {
        return;
    };
    app.load_fixture().await;
    let first = json_body(
        post_keyed(&app, "yesterday", &order_body(RICH, &[(1, 1)])).await,
        StatusCode::CREATED,
    )
    .await;
    // 24 hours and a minute later, as far as the key's row can tell.
    sqlx::query("UPDATE idempotency_keys SET created_at = $1")
        .bind(service_runtime::timestamp::before(
            Utc::now(),
            idempotency::KEY_RETENTION + std::time::Duration::from_secs(60),
        ))
        .execute(app.db.pool())
        .await
        .expect("ageing the key");

    let second = post_keyed(&app, "yesterday", &order_body(RICH, &[(2, 1)])).await;
    assert!(!replayed(&second));
    let second = json_body(second, StatusCode::CREATED).await;
    assert_ne!(second["id"], first["id"], "the key now holds a new order");
    assert_eq!(
        app.scalar("SELECT COUNT(*) FROM idempotency_keys", &[]).await,
        1,
        "taken over, not added"
    );
    let again = post_keyed(&app, "yesterday", &order_body(RICH, &[(2, 1)])).await;
    assert_eq!(json_body(again, StatusCode::CREATED).await, second);

    assert_eq!(
        idempotency::purge_expired(&app.db, Utc::now())
            .await
            .expect("purging"),
        0,
        "a fresh key stays"
    );
    let later = Utc::now() + idempotency::KEY_RETENTION + std::time::Duration::from_secs(1);
    assert_eq!(
        idempotency::purge_expired(&app.db, later).await.expect("purging"),
        1
    );
    assert_eq!(app.scalar("SELECT COUNT(*) FROM idempotency_keys", &[]).await, 0);
}

async fn malformed_keys_are_400_and_change_nothing(engine: Engine) {
    let Some(app) = spawn_app(engine).await else {
        return;
    };
    app.load_fixture().await;
    let before = snapshot_all(&app).await;
    let body = order_body(RICH, &[(1, 1)]).to_string();
    let long = "k".repeat(idempotency::MAX_KEY_LEN + 1);
    for key in ["", "two words", long.as_str()] {
        let response = post_keyed_text(&app, &app.url("/orders"), key, &body).await;
        let error = error_body(response, StatusCode::BAD_REQUEST).await;
        assert_eq!(
            error["detail"],
            json!({ "header": "Idempotency-Key" }),
            "{key:?}: {error}"
        );
    }
    let twice = app
        .client
        .post(app.url("/orders"))
        .header(IDEMPOTENCY_KEY_HEADER.as_str(), "a")
        .header(IDEMPOTENCY_KEY_HEADER.as_str(), "b")
        .header(CONTENT_TYPE, "application/json")
        .body(body)
        .send()
        .await
        .expect("placing an order");
    error_body(twice, StatusCode::BAD_REQUEST).await;
    assert_eq!(snapshot_all(&app).await, before);
}

test_harness::on_each_engine!(
    the_same_key_and_body_place_one_order_and_replay_its_answer,
    the_same_key_with_another_body_is_422,
    concurrent_requests_with_one_key_place_one_order,
    an_order_committed_before_a_crash_is_the_retry_s_answer,
    a_refused_order_leaves_its_key_free,
    an_expired_key_is_forgotten_and_purged,
    malformed_keys_are_400_and_change_nothing,
);
