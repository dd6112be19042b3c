//! Gates on forward moves, through the admin API: leaving shadow needs a
//! low mismatch rate over enough comparisons; reaching service needs a
//! clean, recent reconciliation (rows written into the test's store as the
//! reconciler would); `force` passes a refusing gate and the audit log
//! says so; moves back are never gated. The gates read the store's shadow
//! and reconciliation tables, so their cases run on SQLite and PostgreSQL.

use chrono::{SecondsFormat, Utc};
use reqwest::StatusCode;
use serde_json::{json, Value};
use test_harness::{on_each_engine, DatabaseUrl, Engine, TestDatabase};
use toolkit_db::Database;

use crate::helpers::{Cutover, Settings, TestFacade, CAPABILITY};

on_each_engine!(
    leaving_shadow_needs_a_low_mismatch_rate_over_enough_comparisons,
    reaching_service_needs_a_fresh_clean_reconciliation,
);

async fn flip(facade: &TestFacade, to: Value) -> (StatusCode, Value) {
    let mut body = json!({"reason": "gate test", "actor": "tester"});
    body.as_object_mut()
        .unwrap()
        .extend(to.as_object().unwrap().clone());
    facade.flip(CAPABILITY, body).await
}

/// The refusal's message, after checking it is a 409 that changed nothing.
async fn refusal(facade: &TestFacade, to: Value, stage_before: &str) -> String {
    let (status, answer) = flip(facade, to).await;
    assert_eq!(status, StatusCode::CONFLICT, "{answer}");
    assert_eq!(facade.target_of(CAPABILITY).await, stage_before);
    let message = answer["error"].as_str().unwrap().to_owned();
    assert!(message.contains("--force"), "{message}");
    message
}

async fn send_gets(facade: &TestFacade, n: usize) {
    for i in 0..n {
        assert_eq!(facade.get(&format!("/orders/{i}")).await.status, StatusCode::OK);
    }
}

async fn leaving_shadow_needs_a_low_mismatch_rate_over_enough_comparisons(engine: Engine) {
    let Some(store) = TestDatabase::fresh(engine).await else {
        return;
    };
    let settings = Settings {
        initial: "shadow",
        capability: "[capabilities.orders.shadow]\nignore = [\"$.served_at\", \"$.updated_at\"]\n\
                     [capabilities.orders.gates]\nshadow_max_mismatch_rate = 0.1\n\
                     shadow_min_comparisons = 10\nshadow_window_seconds = 600\nreconciliation = false",
        ..Settings::default()
    };
    let (cutover, facade) = Cutover::start_on(store.url(), settings).await;
    let canary = json!({"to": "canary", "percent": 10});

    let message = refusal(&facade, canary.clone(), "shadow").await;
    assert!(message.contains("only 0 shadow comparisons"), "{message}");

    cutover.service.set_price(1);
    send_gets(&facade, 12).await;
    facade
        .wait_for_shadow("12 comparisons", |r| r["totals"]["compared"] == 12)
        .await;
    let message = refusal(&facade, canary.clone(), "shadow").await;
    assert!(
        message.contains("mismatch rate") && message.contains("100.00% (12 of 12)"),
        "{message}"
    );

    // Forced: it passes, and the audit log keeps the override and why.
    let (status, outcome) = flip(&facade, json!({"to": "canary", "percent": 10, "force": true})).await;
    assert_eq!(status, StatusCode::OK, "{outcome}");
    assert_eq!(outcome["overridden"].as_array().unwrap().len(), 1, "{outcome}");
    let forced = &facade.history().await[0];
    assert_eq!(forced["forced"], true, "{forced}");
    assert_eq!(forced["to"], "canary 10%", "{forced}");
    let overridden = forced["detail"]["overridden"][0].as_str().unwrap();
    assert!(overridden.contains("mismatch rate"), "{forced}");
    assert_eq!(forced["detail"]["gates"]["shadow"]["mismatched"], 12, "{forced}");

    // Back to shadow is never gated, bad as the evidence is.
    let (status, back) = flip(&facade, json!({"to": "shadow"})).await;
    assert_eq!(status, StatusCode::OK, "{back}");
    assert_eq!(back["transition"]["forced"], false, "{back}");

    // With the service fixed, matches bring the rate under the threshold.
    cutover.service.set_price(1299);
    send_gets(&facade, 110).await;
    facade
        .wait_for_shadow("122 comparisons", |r| r["totals"]["compared"] == 122)
        .await;
    let (status, passed) = flip(&facade, canary).await;
    assert_eq!(status, StatusCode::OK, "{passed}");
    assert_eq!(passed["transition"]["forced"], false, "{passed}");
    assert_eq!(passed["overridden"], json!([]), "{passed}");
    assert_eq!(
        passed["transition"]["detail"]["gates"]["shadow"]["compared"], 122,
        "{passed}"
    );
    assert_eq!(facade.target_of(CAPABILITY).await, "canary 10%");
}

/// Adds a finished run to `reconciliation_runs`, `age_seconds` ago.
pub(crate) async fn record_reconciliation(
    store: &DatabaseUrl,
    capability: &str,
    status: &str,
    age_seconds: i64,
) {
    let db = Database::open(store).await.unwrap();
    let finished = Utc::now() - chrono::Duration::seconds(age_seconds);
    let started = finished - chrono::Duration::seconds(5);
    let (missing, changed) = if status == "diverged" { (2, 1) } else { (0, 0) };
    sqlx::query(
        "INSERT INTO reconciliation_runs (capability, status, started_at, finished_at, rows_compared, \
         missing, extra, changed) VALUES ($1, $2, $3, $4, 100, $5, 0, $6)",
    )
    .bind(capability)
    .bind(status)
    .bind(started.to_rfc3339_opts(SecondsFormat::Secs, true))
    .bind(finished.to_rfc3339_opts(SecondsFormat::Secs, true))
    .bind(missing)
    .bind(changed)
    .execute(db.pool())
    .await
    .unwrap();
}

async fn reaching_service_needs_a_fresh_clean_reconciliation(engine: Engine) {
    let Some(store) = TestDatabase::fresh(engine).await else {
        return;
    };
    let settings = Settings {
        initial: "canary 50%",
        capability: "[capabilities.orders.gates]\nreconciliation_max_age_seconds = 600",
        ..Settings::default()
    };
    let (_cutover, facade) = Cutover::start_on(store.url(), settings).await;
    let service = json!({"to": "service"});

    // Another capability's clean run is no evidence for this one.
    record_reconciliation(store.url(), "catalog", "clean", 0).await;
    let message = refusal(&facade, service.clone(), "canary 50%").await;
    assert!(message.contains("no reconciliation of `orders`"), "{message}");

    record_reconciliation(store.url(), CAPABILITY, "diverged", 0).await;
    let message = refusal(&facade, service.clone(), "canary 50%").await;
    assert!(
        message.contains("diverged: 2 missing, 0 extra, 1 changed"),
        "{message}"
    );
    // One clean shard of a sharded run saw part of the keys: still refused.
    let db = Database::open(store.url()).await.unwrap();
    sqlx::query(
        "INSERT INTO reconciliation_runs (capability, status, started_at, finished_at, rows_compared, \
         missing, extra, changed, run_group, shard_index, shard_count) \
         VALUES ($1, 'clean', $2, $2, 25, 0, 0, 0, 'nightly', 1, 4)",
    )
    .bind(CAPABILITY)
    .bind(Utc::now().to_rfc3339_opts(SecondsFormat::Secs, true))
    .execute(db.pool())
    .await
    .unwrap();
    db.close().await;
    let message = refusal(&facade, service.clone(), "canary 50%").await;
    assert!(message.contains("diverged: 2 missing"), "{message}");

    record_reconciliation(store.url(), CAPABILITY, "clean", 7200).await;
    let message = refusal(&facade, service.clone(), "canary 50%").await;
    assert!(message.contains("more than 600s ago"), "{message}");
    // Retiring straight from canary meets the same gate.
    refusal(&facade, json!({"to": "retired"}), "canary 50%").await;

    record_reconciliation(store.url(), CAPABILITY, "clean", 0).await;
    let (status, passed) = flip(&facade, service.clone()).await;
    assert_eq!(status, StatusCode::OK, "{passed}");
    assert_eq!(passed["transition"]["forced"], false, "{passed}");
    let evidence = &passed["transition"]["detail"]["gates"]["reconciliation"];
    assert_eq!(evidence["status"], "clean", "{passed}");
    assert!(evidence["age_seconds"].as_u64().unwrap() < 600, "{passed}");

    // Back to legacy is never gated, even with a diverged latest run.
    record_reconciliation(store.url(), CAPABILITY, "diverged", 0).await;
    let (status, back) = flip(&facade, json!({"to": "legacy"})).await;
    assert_eq!(status, StatusCode::OK, "{back}");

    // Forward again, forced over the diverged run: passes, audited.
    refusal(&facade, service.clone(), "legacy").await;
    let (status, forced) = flip(&facade, json!({"to": "service", "force": true})).await;
    assert_eq!(status, StatusCode::OK, "{forced}");
    let newest = &facade.history().await[0];
    assert_eq!(newest["to"], "service", "{newest}");
    assert_eq!(newest["forced"], true, "{newest}");
    assert!(
        newest["detail"]["overridden"][0]
            .as_str()
            .unwrap()
            .contains("diverged"),
        "{newest}"
    );
    assert_eq!(
        newest["detail"]["gates"]["reconciliation"]["status"], "diverged",
        "{newest}"
    );
}

#[tokio::test]
async fn forcing_a_move_no_gate_refuses_is_not_recorded_as_an_override() {
    let (store, _cutover, facade) = Cutover::start(Settings::default()).await;
    record_reconciliation(store.url(), CAPABILITY, "clean", 0).await;
    let (status, outcome) = flip(&facade, json!({"to": "service", "force": true})).await;
    assert_eq!(status, StatusCode::OK, "{outcome}");
    assert_eq!(outcome["transition"]["forced"], false, "{outcome}");
    assert_eq!(facade.history().await[0]["forced"], false);
}
