//! Automatic rollback: a capability whose service fails more than its error
//! budget allows, in canary or service, is moved back to legacy by the
//! facade itself, within the budget's window, with an audited transition
//! (actor `auto-rollback`, the measured rate in the reason and the detail);
//! a healthy service is left alone.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::json;
use test_harness::TestDatabase;

use crate::helpers::{
    assert_fell_back, eventually, wait_until, Behavior, Cutover, Settings, TestFacade, CAPABILITY, WAIT_LIMIT,
};

const BUDGET: &str =
    "[capabilities.orders.rollback]\nmax_error_rate = 0.2\nwindow_seconds = 10\nmin_requests = 10";

#[tokio::test]
async fn a_service_over_its_error_budget_is_rolled_back_to_legacy() {
    for initial in ["canary 100%", "service"] {
        let (_store, cutover, facade) = Cutover::start(Settings {
            initial,
            capability: BUDGET,
            service: "retries = 0",
            ..Settings::default()
        })
        .await;

        // A healthy service stays.
        for n in 0..30 {
            let answer = facade.get(&format!("/orders/{n}")).await;
            assert_eq!(answer.upstream.as_deref(), Some("service"), "{answer:?}");
        }
        assert_eq!(facade.target_of(CAPABILITY).await, initial);

        // A failing one is rolled back within the window; meanwhile legacy
        // covers every request.
        cutover.service.set(Behavior::Status(500));
        let failing_since = Instant::now();
        let mut sent = 0;
        while facade.target_of(CAPABILITY).await != "legacy" {
            let answer = facade.get("/orders/1").await;
            assert_eq!(answer.status, StatusCode::OK, "{answer:?}");
            assert_eq!(answer.upstream.as_deref(), Some("legacy"), "{answer:?}");
            sent += 1;
            assert!(
                failing_since.elapsed() < WAIT_LIMIT,
                "no rollback after {sent} failures"
            );
        }
        let took = failing_since.elapsed();
        assert!(
            took < Duration::from_secs(10),
            "{initial}: the rollback took {took:?}"
        );

        let history = facade.history().await;
        let rollback = &history[0];
        assert_eq!(rollback["actor"], "auto-rollback", "{rollback}");
        assert_eq!(rollback["from"], initial, "{rollback}");
        assert_eq!(rollback["to"], "legacy", "{rollback}");
        assert_eq!(rollback["forced"], false, "{rollback}");
        let reason = rollback["reason"].as_str().unwrap();
        assert!(
            reason.contains("error rate") && reason.contains("20.0% budget"),
            "{reason}"
        );
        let detail = &rollback["detail"];
        let rate = detail["error_rate"].as_f64().unwrap();
        assert!(rate > 0.2, "{detail}");
        assert!(
            reason.contains(&format!("{:.1}%", rate * 100.0)),
            "{reason} / {detail}"
        );
        assert!(detail["requests"].as_u64().unwrap() >= 10, "{detail}");
        assert_eq!(detail["window_seconds"], 10, "{detail}");
        assert_eq!(detail["max_error_rate"], 0.2, "{detail}");
        assert_eq!(detail["from"], initial, "{detail}");
        assert_eq!(
            history.iter().filter(|t| t["actor"] == "auto-rollback").count(),
            1,
            "one breach, one rollback: {history:?}"
        );

        // Legacy now serves, with no fallback involved.
        let service_hits = cutover.service.hits();
        for n in 0..5 {
            let answer = facade.get(&format!("/orders/{n}")).await;
            assert_eq!(answer.upstream.as_deref(), Some("legacy"), "{answer:?}");
            assert_eq!(answer.fallback, None, "{answer:?}");
        }
        assert_eq!(cutover.service.hits(), service_hits);
        let counted = facade
            .metric(
                "strangler_facade_auto_rollbacks_total",
                &[("capability", CAPABILITY)],
            )
            .await;
        assert_eq!(counted, 1.0);
    }
}

#[tokio::test]
async fn a_disabled_budget_never_rolls_back() {
    let (_store, cutover, facade) = Cutover::start(Settings {
        initial: "service",
        capability: "[capabilities.orders.rollback]\nenabled = false\nmin_requests = 5",
        service: "retries = 0",
        ..Settings::default()
    })
    .await;
    cutover.service.set(Behavior::Status(500));
    for n in 0..30 {
        let answer = facade.get(&format!("/orders/{n}")).await;
        // `status`, then `circuit_open` once the service's breaker opens.
        assert_eq!(answer.upstream.as_deref(), Some("legacy"), "{answer:?}");
        assert!(answer.fallback.is_some(), "{answer:?}");
    }
    assert_eq!(facade.target_of(CAPABILITY).await, "service");
    assert!(facade
        .history()
        .await
        .iter()
        .all(|t| t["actor"] != "auto-rollback"));
}

/// The service starts failing with 500s; its two failures open its
/// breaker (`breaker_failures = 2`), the requests falling back meanwhile.
async fn open_the_breaker_with_an_outage(cutover: &Cutover, facade: &TestFacade) {
    cutover.service.set(Behavior::Status(500));
    for _ in 0..2 {
        assert_fell_back(&facade.get("/orders/1").await, "status");
    }
    assert_eq!(facade.breaker_of("service").await, "open");
}

/// An outage opens the service's breaker for a minute; the capability is
/// moved back, the service comes back answering as `recovered` says, and the
/// capability is moved forward again.
async fn moved_forward_after_an_outage(recovered: Behavior) -> (TestDatabase, Cutover, TestFacade) {
    let (store, cutover, facade) = Cutover::start(Settings {
        initial: "service",
        capability: BUDGET,
        service: "retries = 0\nbreaker_failures = 2\nbreaker_open_ms = 60000",
        ..Settings::default()
    })
    .await;
    open_the_breaker_with_an_outage(&cutover, &facade).await;
    let back = json!({"to": "legacy", "reason": "outage", "actor": "ops"});
    facade.flip_ok(CAPABILITY, back).await;
    cutover.service.set(recovered);
    let forward = json!({"to": "service", "reason": "recovered", "actor": "ops", "force": true});
    facade.flip_ok(CAPABILITY, forward).await;
    (store, cutover, facade)
}

/// The service must serve at once after the move forward: the stale
/// breaker used to refuse every request of the new stage, and the
/// refusals, counted against the fresh error budget, rolled the capability
/// back within milliseconds.
#[tokio::test]
async fn a_recovered_service_serves_at_once_after_a_move_forward() {
    let (_store, _cutover, facade) = moved_forward_after_an_outage(Behavior::Answer).await;
    for n in 0..30 {
        let answer = facade.get(&format!("/orders/{n}")).await;
        assert_eq!(
            answer.upstream.as_deref(),
            Some("service"),
            "request {n}: {answer:?}"
        );
        assert_eq!(answer.fallback, None, "request {n}: {answer:?}");
    }
    assert_eq!(facade.breaker_of("service").await, "closed");
    let listed = facade.listed("capabilities", CAPABILITY).await;
    assert_eq!(listed["error_budget"], json!([0, 30]), "{listed}");
    assert_eq!(facade.target_of(CAPABILITY).await, "service");
}

/// While the breaker's one probe is out, the requests it refuses fall back
/// and are not counted: the service is being tried right then. Only the
/// probe's own answer counts.
#[tokio::test]
async fn refusals_while_the_probe_is_out_do_not_count() {
    // The probe takes its time; meanwhile everything else is refused.
    let (_store, cutover, facade) =
        moved_forward_after_an_outage(Behavior::Slow(Duration::from_millis(700))).await;
    let facade = std::sync::Arc::new(facade);
    let probe = tokio::spawn({
        let facade = std::sync::Arc::clone(&facade);
        async move { facade.get("/orders/probe").await }
    });
    wait_until("the probe to reach the service", || cutover.service.hits() == 3).await;
    for _ in 0..10 {
        assert_fell_back(&facade.get("/orders/1").await, "circuit_open");
    }
    let probed = probe.await.unwrap();
    assert_eq!(probed.upstream.as_deref(), Some("service"), "{probed:?}");
    let listed = facade.listed("capabilities", CAPABILITY).await;
    assert_eq!(listed["error_budget"], json!([0, 1]), "{listed}");
    assert_eq!(facade.target_of(CAPABILITY).await, "service");
}

/// The breaker follows the health checks: while they fail, an outage's
/// breaker stays open; once one passes, the next request is its probe,
/// long before the open period (a minute here) would have let one through.
/// The capability stays at `service` throughout, so no flip ends the open
/// period instead.
#[tokio::test]
async fn a_passing_health_check_ends_the_open_period_an_outage_started() {
    let (_store, cutover, facade) = Cutover::start(Settings {
        initial: "service",
        capability: "[capabilities.orders.rollback]\nenabled = false",
        service: "retries = 0\nbreaker_failures = 2\nbreaker_open_ms = 60000\n\
                  health_path = \"/health\"\nhealth_interval_ms = 20",
        ..Settings::default()
    })
    .await;
    open_the_breaker_with_an_outage(&cutover, &facade).await;
    // Failing health checks leave it open: many intervals pass, every
    // request is refused without reaching the service.
    let checked = cutover.service.hits();
    wait_until("several failing health checks", || {
        cutover.service.hits() >= checked + 5
    })
    .await;
    for _ in 0..5 {
        assert_fell_back(&facade.get("/orders/1").await, "circuit_open");
    }
    cutover.service.set(Behavior::Answer);
    let recovered = Instant::now();
    eventually(
        "the service to serve again",
        WAIT_LIMIT,
        Duration::from_millis(10),
        async || {
            let answer = facade.get("/orders/2").await;
            match answer.upstream.as_deref() {
                Some("service") => Ok(()),
                _ => Err(format!("{answer:?}")),
            }
        },
    )
    .await;
    assert!(recovered.elapsed() < Duration::from_secs(30));
    assert_eq!(facade.breaker_of("service").await, "closed");
}
