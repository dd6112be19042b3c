//! A backend's safety net against upstreams that fail on purpose: the
//! circuit breaker's transitions (closed → open → half-open probe → open or
//! closed) seen in the listing and the metrics, the retry budget counted in
//! upstream calls, timeouts (per attempt and in total), slow answers,
//! resets mid-body, and the bulkhead.

use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use tokio::task::JoinHandle;

use crate::helpers::{
    assert_fell_back, eventually, wait_until, Answer, Behavior, Controlled, Cutover, Settings, TestFacade,
    WAIT_LIMIT,
};

const BREAKER_STATE: &str = "strangler_facade_circuit_breaker_state";

async fn breaker_metric(facade: &TestFacade, state: &str) -> f64 {
    facade
        .metric(BREAKER_STATE, &[("backend", "legacy"), ("state", state)])
        .await
}

/// Sends `GET /orders/1` until an answer is not the open breaker's 503;
/// returns it with the number of 503s before it.
async fn first_answer_past_the_breaker(facade: &TestFacade) -> (Answer, usize) {
    let mut refused = 0;
    let every = Duration::from_millis(10);
    let answer = eventually("a probe past the breaker", WAIT_LIMIT, every, async || {
        let answer = facade.get("/orders/1").await;
        if answer.status != StatusCode::SERVICE_UNAVAILABLE || answer.upstream.is_some() {
            return Ok(answer);
        }
        assert_eq!(answer.body["source"], "facade", "{answer:?}");
        refused += 1;
        Err(format!("the breaker never let a probe through: {answer:?}"))
    })
    .await;
    (answer, refused)
}

/// Makes `upstream` answer in 2 s and sends it two `GET /orders/{n}`;
/// returns them once both are in flight, filling a bulkhead of two.
async fn hold_two(facade: &Arc<TestFacade>, upstream: &Controlled) -> Vec<JoinHandle<Answer>> {
    upstream.set(Behavior::Slow(Duration::from_secs(2)));
    let busy = (0..2)
        .map(|n| {
            let facade = Arc::clone(facade);
            tokio::spawn(async move { facade.get(&format!("/orders/{n}")).await })
        })
        .collect();
    wait_until("two requests in flight", || upstream.hits() == 2).await;
    busy
}

#[tokio::test]
async fn the_circuit_breaker_opens_fails_fast_and_closes_after_a_successful_probe() {
    let (_store, cutover, facade) = Cutover::start(Settings {
        legacy: "breaker_failures = 3\nbreaker_open_ms = 300\nretries = 0",
        ..Settings::default()
    })
    .await;
    assert_eq!(facade.breaker_of("legacy").await, "closed");
    assert_eq!(breaker_metric(&facade, "closed").await, 1.0);

    cutover.legacy.set(Behavior::Status(500));
    for _ in 0..3 {
        let answer = facade.get("/orders/1").await;
        assert_eq!(answer.status, StatusCode::INTERNAL_SERVER_ERROR, "{answer:?}");
        assert_eq!(answer.upstream.as_deref(), Some("legacy"), "{answer:?}");
    }
    assert_eq!(facade.breaker_of("legacy").await, "open");
    assert_eq!(breaker_metric(&facade, "open").await, 1.0);
    assert_eq!(breaker_metric(&facade, "closed").await, 0.0);

    // Open: a legacy-stage capability has no fallback, so a fast 503 that
    // never reaches the upstream.
    let refused = facade.get("/orders/1").await;
    assert_eq!(refused.status, StatusCode::SERVICE_UNAVAILABLE, "{refused:?}");
    assert!(
        refused.body["error"]
            .as_str()
            .unwrap()
            .contains("circuit breaker"),
        "{refused:?}"
    );
    assert_eq!(cutover.legacy.hits(), 3);
    let refusals = facade
        .metric(
            "strangler_facade_backend_refusals_total",
            &[("backend", "legacy"), ("reason", "circuit_open")],
        )
        .await;
    assert!(refusals >= 1.0, "{refusals}");

    // After `breaker_open_ms`, one probe; it fails, so the breaker opens again.
    let (probe, _) = first_answer_past_the_breaker(&facade).await;
    assert_eq!(probe.status, StatusCode::INTERNAL_SERVER_ERROR, "{probe:?}");
    assert_eq!(cutover.legacy.hits(), 4, "exactly one probe goes through");
    assert_eq!(facade.breaker_of("legacy").await, "open");

    // The next probe succeeds and closes it.
    cutover.legacy.set(Behavior::Answer);
    let (probe, refused_meanwhile) = first_answer_past_the_breaker(&facade).await;
    assert_eq!(probe.status, StatusCode::OK, "{probe:?}");
    assert!(
        refused_meanwhile >= 1,
        "the re-opened breaker let a request through at once"
    );
    assert_eq!(cutover.legacy.hits(), 5);
    assert_eq!(facade.breaker_of("legacy").await, "closed");
    assert_eq!(breaker_metric(&facade, "closed").await, 1.0);
    assert_eq!(facade.get("/orders/2").await.status, StatusCode::OK);
}

#[tokio::test]
async fn an_open_breaker_sends_requests_straight_to_the_fallback() {
    let (_store, cutover, facade) = Cutover::start(Settings {
        initial: "service",
        capability: "[capabilities.orders.rollback]\nenabled = false",
        service: "breaker_failures = 2\nbreaker_open_ms = 60000\nretries = 0",
        ..Settings::default()
    })
    .await;
    cutover.service.set(Behavior::Status(502));
    for _ in 0..2 {
        assert_eq!(facade.get("/orders/1").await.fallback.as_deref(), Some("status"));
    }
    assert_eq!(facade.breaker_of("service").await, "open");
    for _ in 0..5 {
        assert_fell_back(&facade.get("/orders/1").await, "circuit_open");
    }
    assert_eq!(cutover.service.hits(), 2, "an open breaker let requests through");
}

/// Requests of the retry budget case.
const REQUESTS: usize = 200;

#[tokio::test]
async fn retries_stay_within_the_retry_budget() {
    let (_store, cutover, facade) = Cutover::start(Settings {
        legacy: "retries = 2\nretry_budget = 0.2\nretry_backoff_ms = 1\nbreaker_failures = 100000",
        ..Settings::default()
    })
    .await;
    cutover.legacy.set(Behavior::Status(500));

    let started = Instant::now();
    for n in 0..REQUESTS {
        let answer = facade.get(&format!("/orders/{n}")).await;
        assert_eq!(answer.status, StatusCode::INTERNAL_SERVER_ERROR, "{answer:?}");
    }
    // The budget's window is 10 s: the whole run must fit in it for the
    // bound below to be exact (an expired window would give retries again).
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "the run outlasted the window"
    );
    let hits = cutover.legacy.hits();
    let retries = hits - REQUESTS;
    assert!(
        retries <= REQUESTS / 5,
        "{retries} retries for {REQUESTS} requests, over the 20% budget"
    );
    // Each request deposits 0.2 retries, so the budget is spent as it fills.
    assert!(
        retries >= REQUESTS / 5 - 2,
        "only {retries} retries: the budget was not used"
    );
    let listed = facade.backend_view("legacy").await["retry_budget"].clone();
    assert_eq!(listed[0], REQUESTS, "{listed}");
    assert_eq!(listed[1], retries, "{listed}");
    let metrics = facade.metrics().await;
    let counted = crate::helpers::metric_value(
        &metrics,
        "strangler_facade_retries_total",
        &[("backend", "legacy")],
    );
    assert_eq!(counted, retries as f64);
    let refused = crate::helpers::metric_value(
        &metrics,
        "strangler_facade_backend_refusals_total",
        &[("backend", "legacy"), ("reason", "retry_budget")],
    );
    assert!(
        refused >= (REQUESTS - retries) as f64 / 2.0,
        "{refused} retries refused by the budget"
    );
}

#[tokio::test]
async fn a_hanging_backend_times_out_and_a_slow_one_within_its_limit_passes() {
    let (_store, cutover, facade) = Cutover::start(Settings {
        legacy: "request_timeout_ms = 300\nretries = 0",
        ..Settings::default()
    })
    .await;

    cutover.legacy.set(Behavior::Slow(Duration::from_millis(100)));
    let slow = facade.get("/orders/1").await;
    assert_eq!(slow.status, StatusCode::OK, "{slow:?}");
    assert!(slow.elapsed >= Duration::from_millis(100), "{slow:?}");

    cutover.legacy.set(Behavior::Hang);
    let hung = facade.get("/orders/1").await;
    assert_eq!(hung.status, StatusCode::GATEWAY_TIMEOUT, "{hung:?}");
    assert_eq!(hung.body["source"], "upstream", "{hung:?}");
    assert!(
        (Duration::from_millis(300)..Duration::from_secs(2)).contains(&hung.elapsed),
        "{hung:?}"
    );
    assert_eq!(hung.fallback, None);
}

#[tokio::test]
async fn retries_of_a_hanging_backend_end_within_the_total_timeout() {
    // One attempt may take 1 s, all of them together 1.2 s: a second
    // attempt gets what is left, not a second full second.
    let (_store, cutover, facade) = Cutover::start(Settings {
        legacy: "request_timeout_ms = 1000\ntotal_timeout_ms = 1200\nretries = 2\nretry_budget = 1.0\nretry_backoff_ms = 1",
        ..Settings::default()
    })
    .await;
    cutover.legacy.set(Behavior::Hang);
    let hung = facade.get("/orders/1").await;
    assert_eq!(hung.status, StatusCode::GATEWAY_TIMEOUT, "{hung:?}");
    assert_eq!(cutover.legacy.hits(), 2, "the hanging request was not retried");
    assert!(
        hung.elapsed < Duration::from_millis(1700),
        "the request took {:?}, beyond its 1.2 s total timeout",
        hung.elapsed
    );
}

#[tokio::test]
async fn a_hanging_service_in_canary_is_covered_by_legacy() {
    let (_store, cutover, facade) = Cutover::start(Settings {
        initial: "canary 100%",
        capability: "[capabilities.orders.rollback]\nenabled = false",
        service: "request_timeout_ms = 300\nretries = 0",
        ..Settings::default()
    })
    .await;
    cutover.service.set(Behavior::Hang);
    let answer = facade.get("/orders/1").await;
    assert_fell_back(&answer, "timeout");
    assert!(answer.elapsed < Duration::from_secs(2), "{answer:?}");
}

#[tokio::test]
async fn a_reset_mid_body_reaches_the_client_as_an_error_and_nothing_hangs() {
    let (_store, cutover, facade) = Cutover::start(Settings::default()).await;
    cutover.legacy.set(Behavior::ResetMidBody);

    let started = Instant::now();
    let outcome = match facade.client.get(facade.url("/orders/1")).send().await {
        Ok(response) if response.status() == StatusCode::OK => response.bytes().await.map(|b| b.len()),
        Ok(response) => {
            assert_eq!(response.status(), StatusCode::BAD_GATEWAY);
            Ok(0)
        }
        Err(error) => Err(error),
    };
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
    match outcome {
        Ok(0) => {}
        Ok(length) => panic!("the client got a complete-looking body of {length} bytes"),
        // hyper reports the body cut short; reqwest calls that decoding it.
        Err(error) => assert!(
            error.is_body() || error.is_decode() || error.is_request(),
            "{error:?}"
        ),
    }

    // The facade goes on serving.
    cutover.legacy.set(Behavior::Answer);
    assert_eq!(facade.get("/orders/1").await.status, StatusCode::OK);
}

#[tokio::test]
async fn a_full_bulkhead_refuses_at_once_or_falls_back() {
    let (_store, cutover, facade) = Cutover::start(Settings {
        legacy: "max_concurrent = 2",
        service: "max_concurrent = 2",
        ..Settings::default()
    })
    .await;
    let facade = Arc::new(facade);

    let busy = hold_two(&facade, &cutover.legacy).await;
    assert_eq!(facade.backend_view("legacy").await["in_flight"], 2);
    let refused = futures::future::join_all((0..3).map(|_| facade.get("/orders/9"))).await;
    for answer in &refused {
        assert_eq!(answer.status, StatusCode::SERVICE_UNAVAILABLE, "{answer:?}");
        assert!(answer.elapsed < Duration::from_secs(1), "{answer:?}");
        assert!(
            answer.body["error"].as_str().unwrap().contains("in flight"),
            "{answer:?}"
        );
    }
    assert_eq!(cutover.legacy.hits(), 2);
    for request in busy {
        assert_eq!(request.await.unwrap().status, StatusCode::OK);
    }
    let refusals = facade
        .metric(
            "strangler_facade_backend_refusals_total",
            &[("backend", "legacy"), ("reason", "bulkhead_full")],
        )
        .await;
    assert_eq!(refusals, 3.0);
}

#[tokio::test]
async fn a_full_service_bulkhead_falls_back_to_legacy() {
    let (_store, cutover, facade) = Cutover::start(Settings {
        initial: "service",
        capability: "[capabilities.orders.rollback]\nenabled = false",
        service: "max_concurrent = 2",
        ..Settings::default()
    })
    .await;
    let facade = Arc::new(facade);
    let busy = hold_two(&facade, &cutover.service).await;
    let covered = futures::future::join_all((0..3).map(|_| facade.get("/orders/9"))).await;
    for answer in &covered {
        assert_fell_back(answer, "bulkhead_full");
        assert!(answer.elapsed < Duration::from_secs(1), "{answer:?}");
    }
    for request in busy {
        assert_eq!(request.await.unwrap().upstream.as_deref(), Some("service"));
    }
}
