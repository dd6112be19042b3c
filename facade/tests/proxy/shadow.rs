//! Shadow traffic: the monolith answers the client unchanged while a copy
//! goes to the service and the answers are compared, with configured and
//! learned noise ignored and a real field change caught; writes are copied
//! only when the service owns its database; bodies over the cap are
//! skipped; and a full shadow queue never slows the primary.

use std::time::Duration;

use futures::StreamExt;
use reqwest::{Method, StatusCode};
use serde_json::Value;
use test_harness::TestDatabase;

use crate::helpers::{wait_until, Answer, Behavior, Cutover, Settings, TestFacade};

/// The shadow settings of the comparison case.
const COMPARED: &str = "[capabilities.orders.shadow]\nignore = [\"$.updated_at\"]\nlearn_noise = true";

/// The shadow settings of the cases about the body cap.
const CAPPED: &str = "[capabilities.orders.shadow]\nmax_body_bytes = 300";

/// The cut-over fixture with `orders` in shadow, `capability` the lines
/// under its table.
async fn start_in_shadow(capability: &str) -> (TestDatabase, Cutover, TestFacade) {
    Cutover::start(Settings {
        initial: "shadow",
        capability,
        ..Settings::default()
    })
    .await
}

fn assert_from_legacy(answer: &Answer, price: i64) {
    assert_eq!(answer.status, StatusCode::OK, "{answer:?}");
    assert_eq!(answer.upstream.as_deref(), Some("legacy"), "{answer:?}");
    assert_eq!(answer.served_by.as_deref(), Some("legacy"), "{answer:?}");
    assert_eq!(answer.body["price_cents"], price, "{answer:?}");
    assert!(
        answer.body["updated_at"].as_str().unwrap().ends_with("by legacy"),
        "{answer:?}"
    );
}

async fn compared_at_least(facade: &TestFacade, n: i64) -> Value {
    facade
        .wait_for_shadow(&format!("{n} comparisons"), |r| {
            r["totals"]["compared"].as_i64() >= Some(n)
        })
        .await
}

#[tokio::test]
async fn shadow_ignores_configured_and_learned_noise_but_catches_a_real_change() {
    let (_store, cutover, facade) = start_in_shadow(COMPARED).await;

    // `updated_at` differs by configuration, `served_at` on every call.
    for n in 0..20 {
        assert_from_legacy(&facade.get(&format!("/orders/{n}")).await, 1299);
    }
    let report = compared_at_least(&facade, 20).await;
    assert_eq!(report["totals"]["mismatched"], 0, "{report}");
    assert_eq!(report["mismatch_rate"], 0.0, "{report}");
    assert_eq!(report["top_fields"], serde_json::json!([]), "{report}");
    let noise = report["learned_noise"].as_array().unwrap();
    assert!(noise.contains(&Value::from("$.served_at")), "{report}");
    assert!(
        !noise.contains(&Value::from("$.updated_at")),
        "ignored, not learned: {report}"
    );
    let copies: Vec<_> = cutover.service.requests();
    assert!(copies.iter().all(|seen| seen.shadow), "{copies:?}");

    cutover.service.set_price(1500);
    for n in 0..10 {
        // The client still gets the monolith's answer, unchanged.
        assert_from_legacy(&facade.get(&format!("/orders/{n}")).await, 1299);
    }
    let report = compared_at_least(&facade, 30).await;
    assert_eq!(report["totals"]["mismatched"], 10, "{report}");
    assert_eq!(
        report["top_fields"],
        serde_json::json!([{"field": "$.price_cents", "mismatches": 10}]),
        "{report}"
    );
    let sample = &report["samples"][0];
    assert_eq!(sample["fields"], "[\"$.price_cents\"]", "{sample}");
    assert_eq!(
        (
            sample["legacy_status"].as_i64(),
            sample["service_status"].as_i64()
        ),
        (Some(200), Some(200))
    );
    let diff = sample["diff"].as_str().unwrap();
    let changed = |sign: char, value: &str| {
        diff.lines()
            .any(|line| line.starts_with(sign) && line.contains("price_cents") && line.contains(value))
    };
    assert!(changed('-', "1299") && changed('+', "1500"), "{diff}");
    assert!(
        !diff.contains("served_at") && !diff.contains("updated_at"),
        "noise in the diff: {diff}"
    );
    let mismatches = facade
        .metric("strangler_facade_shadow_total", &[("reason", "mismatch")])
        .await;
    assert_eq!(mismatches, 10.0);
}

#[tokio::test]
async fn writes_are_shadowed_only_to_a_service_that_owns_its_database() {
    for owns_database in [false, true] {
        let capability =
            format!("[capabilities.orders.shadow]\nservice_writes_own_database = {owns_database}");
        let (_store, cutover, facade) = start_in_shadow(&capability).await;

        let posted = facade.send_body(Method::POST, "/orders", vec![b'o'; 50]).await;
        assert_eq!(posted.upstream.as_deref(), Some("legacy"), "{posted:?}");
        assert_eq!(posted.body["body_bytes"], 50, "{posted:?}");
        // A copy of a later GET shows the queue has moved past the POST.
        assert_from_legacy(&facade.get("/orders/1").await, 1299);
        let copies = if owns_database { 2 } else { 1 };
        wait_until("the shadow copies", || cutover.service.hits() >= copies).await;
        let methods: Vec<String> = cutover.service.requests().into_iter().map(|s| s.method).collect();
        let report = compared_at_least(&facade, copies as i64).await;
        if owns_database {
            assert_eq!(methods, ["POST", "GET"], "owns its database");
            assert_eq!(cutover.service.requests()[0].body_bytes, 50, "the copy's body");
        } else {
            assert_eq!(methods, ["GET"], "the POST was copied to a service sharing state");
            assert_eq!(report["totals"]["skipped"], 1, "{report}");
        }
    }
}

#[tokio::test]
async fn answers_over_the_cap_are_not_shadowed_and_are_counted() {
    let (_store, cutover, facade) = start_in_shadow(CAPPED).await;

    let big = facade.get("/orders/1?pad=1000").await;
    assert_eq!(big.upstream.as_deref(), Some("legacy"), "{big:?}");
    assert_eq!(
        big.body["pad"].as_str().map(str::len),
        Some(1000),
        "the client's answer was cut"
    );
    assert_from_legacy(&facade.get("/orders/2").await, 1299);
    let report = compared_at_least(&facade, 1).await;
    assert_eq!(report["totals"]["skipped"], 1, "{report}");
    assert_eq!(report["totals"]["compared"], 1, "{report}");
    assert_eq!(cutover.service.requests().len(), 1);
    assert_eq!(cutover.service.requests()[0].path, "/orders/2");
}

#[tokio::test]
async fn requests_with_bodies_over_the_cap_are_not_shadowed() {
    let (_store, cutover, facade) = start_in_shadow(CAPPED).await;

    let big = facade.send_body(Method::PUT, "/orders/1", vec![b'b'; 1000]).await;
    assert_eq!(big.upstream.as_deref(), Some("legacy"), "{big:?}");
    assert_eq!(big.body["body_bytes"], 1000, "{big:?}");
    let small = facade.send_body(Method::PUT, "/orders/2", vec![b's'; 100]).await;
    assert_eq!(small.body["body_bytes"], 100, "{small:?}");
    let report = compared_at_least(&facade, 1).await;
    let copies = cutover.service.requests();
    assert_eq!(
        copies.len(),
        1,
        "a request body over the cap was shadowed: {copies:?}"
    );
    assert_eq!(
        (copies[0].path.as_str(), copies[0].body_bytes),
        ("/orders/2", 100)
    );
    assert_eq!(report["totals"]["skipped"], 1, "{report}");
}

/// Requests of the full-queue case.
const FLOOD: usize = 40;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_shadow_queue_never_slows_the_primary() {
    let (_store, cutover, facade) = Cutover::start(Settings {
        initial: "shadow",
        facade: "shadow_queue = 1\nshadow_concurrency = 1",
        ..Settings::default()
    })
    .await;
    // The service never answers a copy: one is in flight for good, one
    // waits in the queue, and every other copy must be dropped at once.
    cutover.service.set(Behavior::Hang);

    let answers: Vec<Answer> = futures::stream::iter(0..FLOOD)
        .map(|n| {
            let facade = &facade;
            async move { facade.get(&format!("/orders/{n}")).await }
        })
        .buffer_unordered(4)
        .collect()
        .await;
    for answer in &answers {
        assert_from_legacy(answer, 1299);
        assert!(
            answer.elapsed < Duration::from_secs(1),
            "a primary request took {:?} with the shadow queue full",
            answer.elapsed
        );
    }
    wait_until("the first copy to reach the service", || {
        cutover.service.hits() >= 1
    })
    .await;
    let report = facade
        .wait_for_shadow("dropped copies", |r| r["totals"]["dropped"].as_i64() >= Some(1))
        .await;
    let dropped = report["totals"]["dropped"].as_i64().unwrap();
    assert!(
        dropped >= FLOOD as i64 - 4,
        "only {dropped} of {FLOOD} copies dropped: {report}"
    );
    assert_eq!(report["totals"]["compared"], 0, "{report}");
    assert_eq!(
        cutover.service.hits(),
        1,
        "more copies in flight than shadow_concurrency"
    );
}
