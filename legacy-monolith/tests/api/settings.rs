//! `/internal/settings` (`legacy-monolith --fault-switches`): an injected
//! latency that holds the shop's routes but not `/health` or the switch
//! itself, refused when out of range, and no endpoint at all by default.

use std::time::{Duration, Instant};

use legacy_monolith::settings::Settings;
use legacy_monolith::{Application, Config};
use reqwest::StatusCode;
use serde_json::{json, Value};
use shop_test_support::{any_port, SpawnedApp, GRACE_PERIOD};
use test_harness::{http_client, Engine};

use crate::helpers::{error_body, json_body, spawn_app};

/// The latency the tests inject: long enough to tell apart from a quick
/// answer on a busy machine.
const LATENCY: Duration = Duration::from_millis(800);

/// The monolith with its runtime switches, on a fresh empty database.
async fn spawn_with_switches(engine: Engine) -> Option<SpawnedApp> {
    SpawnedApp::spawn(engine, |database_url| {
        Application::build_with_settings(
            Config {
                listen: any_port(),
                database_url,
                seed: false,
                grace_period: GRACE_PERIOD,
            },
            Settings::default(),
        )
    })
    .await
}

/// Sends `request` and returns its status, its JSON body and how long it took.
async fn timed(request: reqwest::RequestBuilder) -> (StatusCode, Value, Duration) {
    let started = Instant::now();
    let response = request.send().await.expect("an answer");
    let status = response.status();
    let body = response.json().await.unwrap_or(Value::Null);
    (status, body, started.elapsed())
}

async fn the_switches_are_absent_by_default(engine: Engine) {
    let Some(app) = spawn_app(engine).await else {
        return;
    };
    error_body(app.get("/internal/settings").await, StatusCode::NOT_FOUND).await;
    let response = app
        .put_json("/internal/settings", &json!({ "latency_ms": 1000 }))
        .await;
    error_body(response, StatusCode::NOT_FOUND).await;
}

async fn an_injected_latency_holds_shop_routes_only(engine: Engine) {
    let Some(app) = spawn_with_switches(engine).await else {
        return;
    };
    let client = http_client();
    let settings = format!("{}/internal/settings", app.url);
    let product = format!("{}/products/1", app.url);
    let health = format!("{}/health", app.url);
    let (status, body, _) = timed(client.get(&settings)).await;
    assert_eq!((status, body), (StatusCode::OK, json!({ "latency_ms": 0 })));

    let millis = LATENCY.as_millis() as u64;
    let (status, body, took) = timed(client.put(&settings).json(&json!({ "latency_ms": millis }))).await;
    assert_eq!((status, body), (StatusCode::OK, json!({ "latency_ms": millis })));
    assert!(took < LATENCY, "the switch itself is not held: {took:?}");

    // An empty shop: the product does not exist, and the answer says so,
    // late.
    let (status, _, took) = timed(client.get(&product)).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(took >= LATENCY, "a shop route waits the latency: {took:?}");
    let (status, body, took) = timed(client.get(&health)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(took < LATENCY, "/health is not held: {took:?}");

    let (status, body, _) = timed(client.put(&settings).json(&json!({ "latency_ms": 0 }))).await;
    assert_eq!((status, body), (StatusCode::OK, json!({ "latency_ms": 0 })));
    let (status, _, took) = timed(client.get(&product)).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(took < LATENCY, "no latency once it is set back to 0: {took:?}");
}

async fn bad_settings_are_refused_and_change_nothing(engine: Engine) {
    let Some(app) = spawn_with_switches(engine).await else {
        return;
    };
    let client = http_client();
    let settings = format!("{}/internal/settings", app.url);
    let response = client
        .put(&settings)
        .json(&json!({ "latency_ms": 250 }))
        .send()
        .await
        .expect("an answer");
    json_body(response, StatusCode::OK).await;
    for body in [
        json!({ "latency_ms": 60_001 }),
        json!({ "latency_ms": -1 }),
        json!({}),
        json!({ "latency_ms": 10, "outage": true }),
    ] {
        let response = client.put(&settings).json(&body).send().await.expect("an answer");
        let error = error_body(response, StatusCode::UNPROCESSABLE_ENTITY).await;
        assert!(error["error"].is_string(), "{body}: {error}");
    }
    let response = client.get(&settings).send().await.expect("an answer");
    assert_eq!(
        json_body(response, StatusCode::OK).await,
        json!({ "latency_ms": 250 })
    );
}

test_harness::on_each_engine!(
    the_switches_are_absent_by_default,
    an_injected_latency_holds_shop_routes_only,
    bad_settings_are_refused_and_change_nothing,
);
