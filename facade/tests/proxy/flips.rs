//! Moving a capability through the admin API: under load without losing a
//! request, audited, reversible, and refused without side effects when the
//! change is wrong.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use test_harness::{on_each_engine, Engine};

use crate::helpers::{wait_until, Shop, TestFacade};

on_each_engine!(
    a_flip_under_load_loses_no_request,
    a_flip_is_audited_and_rollback_returns,
    refused_changes_change_nothing,
);

/// Concurrent clients during the flip.
const CLIENTS: usize = 8;
/// Requests completed before the flip, and again after it, at least.
const REQUESTS_EACH_SIDE: usize = 120;

struct Sample {
    started: Instant,
    outcome: Result<String, String>,
}

async fn a_flip_under_load_loses_no_request(engine: Engine) {
    let Some((_store, _shop, facade)) = Shop::start_on(engine).await else {
        return;
    };
    let stop = Arc::new(AtomicBool::new(false));
    let completed = Arc::new(AtomicUsize::new(0));
    let mut clients = Vec::new();
    for client_number in 0..CLIENTS {
        let client = facade.client.clone();
        let url = facade.url(&format!("/orders/{client_number}"));
        let (stop, completed) = (Arc::clone(&stop), Arc::clone(&completed));
        clients.push(tokio::spawn(async move {
            let mut samples = Vec::new();
            while !stop.load(Ordering::SeqCst) {
                let started = Instant::now();
                let outcome = match client.get(&url).send().await {
                    Ok(response) if response.status() == StatusCode::OK => response
                        .json::<Value>()
                        .await
                        .map(|body| body["name"].as_str().unwrap_or("?").to_owned())
                        .map_err(|error| format!("unreadable body: {error}")),
                    Ok(response) => Err(format!("status {}", response.status())),
                    Err(error) => Err(error.to_string()),
                };
                samples.push(Sample { started, outcome });
                completed.fetch_add(1, Ordering::SeqCst);
            }
            samples
        }));
    }

    wait_until("requests before the flip", || {
        completed.load(Ordering::SeqCst) >= REQUESTS_EACH_SIDE
    })
    .await;
    facade
        .flip_ok(
            "orders",
            json!({"to": "service", "reason": "cut over under load", "actor": "load-test"}),
        )
        .await;
    let flipped_at = Instant::now();
    let at_flip = completed.load(Ordering::SeqCst);
    wait_until("requests after the flip", || {
        completed.load(Ordering::SeqCst) >= at_flip + REQUESTS_EACH_SIDE + CLIENTS
    })
    .await;
    stop.store(true, Ordering::SeqCst);

    let mut samples = Vec::new();
    for client in clients {
        samples.extend(client.await.unwrap());
    }
    let failures: Vec<&String> = samples.iter().filter_map(|s| s.outcome.as_ref().err()).collect();
    assert!(
        failures.is_empty(),
        "{} of {} requests failed during the flip, e.g. {:?}",
        failures.len(),
        samples.len(),
        failures.first()
    );
    let before = samples.iter().filter(|s| s.started < flipped_at).count();
    let after: Vec<&Sample> = samples.iter().filter(|s| s.started > flipped_at).collect();
    assert!(
        samples.iter().any(|s| s.outcome.as_deref() == Ok("legacy")),
        "no request reached legacy before the flip ({before} started before it)"
    );
    assert!(
        after.len() >= REQUESTS_EACH_SIDE,
        "only {} requests after the flip",
        after.len()
    );
    let stale = after
        .iter()
        .filter(|s| s.outcome.as_deref() != Ok("orders"))
        .count();
    assert_eq!(
        stale,
        0,
        "{stale} of {} requests that started after the flip's answer reached the old side",
        after.len()
    );
    let (_, history) = facade.admin_get("/history?limit=1").await;
    assert_eq!(history[0]["capability"], "orders");
    assert_eq!(history[0]["actor"], "load-test");
    assert_eq!(history[0]["reason"], "cut over under load");
}

async fn a_flip_is_audited_and_rollback_returns(engine: Engine) {
    let Some((_store, _shop, facade)) = Shop::start_on(engine).await else {
        return;
    };

    let outcome = facade
        .flip_ok(
            "orders",
            json!({"to": "service", "reason": "parity reached", "actor": "alice"}),
        )
        .await;
    assert_eq!(outcome["applied"], true);
    let transition = &outcome["transition"];
    assert_eq!(transition["capability"], "orders");
    assert_eq!(transition["from"], "legacy");
    assert_eq!(transition["to"], "service");
    assert_eq!(transition["actor"], "alice");
    assert_eq!(transition["reason"], "parity reached");
    assert_eq!(facade.target_of("orders").await, "service");
    assert_eq!(facade.side(Method::GET, "/orders/1").await, "orders");

    let (status, history) = facade.admin_get("/history").await;
    assert_eq!(status, StatusCode::OK, "{history}");
    let newest = &history.as_array().unwrap()[0];
    assert_eq!(
        newest, transition,
        "the audit log holds the transition as answered"
    );
    assert!(newest["at"].as_str().unwrap().ends_with('Z'), "{newest}");
    // The capability's own log: the flip, then its seeding from the config.
    let (_, own) = facade.admin_get("/history?capability=orders").await;
    let own = own.as_array().unwrap();
    assert_eq!(own.len(), 2, "{own:?}");
    assert_eq!(own[1]["from"], Value::Null);
    assert_eq!(own[1]["to"], "legacy");
    assert_eq!(own[1]["actor"], "config");

    let (status, outcome) = facade
        .admin_post(
            "/capabilities/orders/rollback",
            &json!({"reason": "error rate up", "actor": "bob"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{outcome}");
    assert_eq!(outcome["transition"]["from"], "service");
    assert_eq!(outcome["transition"]["to"], "legacy");
    assert_eq!(outcome["transition"]["actor"], "bob");
    assert_eq!(facade.target_of("orders").await, "legacy");
    assert_eq!(facade.side(Method::GET, "/orders/1").await, "legacy");
    let (_, history) = facade.admin_get("/history?capability=orders&limit=1").await;
    assert_eq!(history.as_array().unwrap().len(), 1);
    assert_eq!(history[0]["reason"], "error rate up");
    assert_eq!(history[0]["to"], "legacy");
}

/// What a refused change must leave as it was: the capabilities and the
/// table revision, and the audit log.
async fn state_of(facade: &TestFacade) -> (Value, Value) {
    let (status, mut listing) = facade.admin_get("/capabilities").await;
    assert_eq!(status, StatusCode::OK, "{listing}");
    // Backends' live counters (retry budget, in flight) move with traffic;
    // the routing state is what must not.
    listing["backends"] = Value::Null;
    let (status, history) = facade.admin_get("/history").await;
    assert_eq!(status, StatusCode::OK, "{history}");
    (listing, history)
}

async fn refused_changes_change_nothing(engine: Engine) {
    let Some((_store, _shop, facade)) = Shop::start_on(engine).await else {
        return;
    };
    let before = state_of(&facade).await;

    // A dry run says what would happen and does nothing.
    let outcome = facade
        .flip_ok(
            "orders",
            json!({"to": "service", "reason": "just looking", "actor": "carol", "dry_run": true}),
        )
        .await;
    assert_eq!(outcome["applied"], false);
    assert_eq!(outcome["transition"]["from"], "legacy");
    assert_eq!(outcome["transition"]["to"], "service");
    assert_eq!(state_of(&facade).await, before);
    assert_eq!(facade.side(Method::GET, "/orders/1").await, "legacy");

    let refusals = [
        (
            "/capabilities/billing/flip",
            json!({"to": "service", "reason": "r", "actor": "a"}),
            StatusCode::NOT_FOUND,
        ),
        (
            "/capabilities/catalog/flip",
            json!({"to": "service", "reason": "already there", "actor": "a"}),
            StatusCode::CONFLICT,
        ),
        (
            "/capabilities/orders/flip",
            json!({"to": "sideways", "reason": "r", "actor": "a"}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            "/capabilities/orders/flip",
            json!({"reason": "no target", "actor": "a"}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            "/capabilities/orders/flip",
            json!({"to": "service", "reason": "r", "actor": "   "}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            "/capabilities/orders/rollback",
            json!({"reason": "never moved", "actor": "a"}),
            StatusCode::CONFLICT,
        ),
        (
            "/capabilities/billing/rollback",
            json!({"reason": "r", "actor": "a"}),
            StatusCode::NOT_FOUND,
        ),
    ];
    for (path, body, expected) in refusals {
        let (status, answer) = facade.admin_post(path, &body).await;
        assert_eq!(status, expected, "{path} {body}: {answer}");
        assert!(answer["error"].is_string(), "{path}: a JSON error, got {answer}");
        assert_eq!(state_of(&facade).await, before, "{path} {body} changed something");
    }
    let (_, unknown) = facade
        .flip("billing", json!({"to": "service", "reason": "r", "actor": "a"}))
        .await;
    let message = unknown["error"].as_str().unwrap();
    assert!(
        message.contains("billing") && message.contains("orders"),
        "{message}"
    );

    // Malformed JSON is a 400, and also changes nothing.
    let response = facade
        .client
        .post(facade.admin_url("/capabilities/orders/flip"))
        .bearer_auth(&facade.token)
        .header("content-type", "application/json")
        .body("{\"to\": ")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert_eq!(state_of(&facade).await, before);
    assert_eq!(facade.side(Method::GET, "/orders/1").await, "legacy");
    assert_eq!(facade.side(Method::GET, "/products/1").await, "catalog");
}
