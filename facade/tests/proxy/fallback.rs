//! The monolith as the fallback: in canary and service stages, a request
//! that is safe to repeat (idempotent, never sent, or with an
//! `Idempotency-Key` to a backend that honours it) is
//! answered by legacy when the service fails, and says so; a request that
//! is not safe is never replayed; `retired` has no fallback. Under steady
//! load, a service killed and restarted on the same port costs no request.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use reqwest::{Method, StatusCode};
use test_harness::TestDatabase;

use crate::helpers::{
    assert_fell_back, wait_until, Answer, Behavior, Cutover, Settings, TestFacade, CAPABILITY, USER_HEADER,
};

/// The cut-over fixture with `orders` in `initial`, sticky on
/// [`USER_HEADER`] and without automatic rollback (these cases are about
/// the fallback alone), `service` the lines of the service's backend.
async fn start_without_rollback(initial: &str, service: &str) -> (TestDatabase, Cutover, TestFacade) {
    Cutover::start(Settings {
        initial,
        capability: "sticky = \"header:x-user\"\n[capabilities.orders.rollback]\nenabled = false",
        service,
        ..Settings::default()
    })
    .await
}

#[tokio::test]
async fn a_dead_service_is_covered_by_legacy_for_requests_safe_to_repeat() {
    let (_store, mut cutover, facade) =
        start_without_rollback("canary 100%", "breaker_failures = 1000").await;
    let served = facade.get("/orders/1").await;
    assert_eq!(served.served_by.as_deref(), Some("service"), "{served:?}");
    assert_eq!(served.fallback, None, "{served:?}");

    cutover.service.kill().await;
    assert_fell_back(&facade.get("/orders/1").await, "connect");
    // Nothing reached the dead service, so even a POST without a key may go
    // to legacy.
    let posted = facade.send(Method::POST, "/orders", &[]).await;
    assert_fell_back(&posted, "connect");
    assert_eq!(posted.body["method"], "POST");
    assert!(
        facade
            .metric("strangler_facade_fallbacks_total", &[("reason", "connect")])
            .await
            >= 2.0
    );
}

#[tokio::test]
async fn a_write_that_may_have_reached_the_service_is_never_replayed_to_legacy() {
    // Even when the monolith deduplicates on `Idempotency-Key`, it does not
    // know the keys the service has seen: a keyed order the service placed
    // but did not answer would be placed a second time there.
    let (_store, mut cutover, facade) = Cutover::start(Settings {
        initial: "service",
        capability: "sticky = \"header:x-user\"\n[capabilities.orders.rollback]\nenabled = false",
        service: "breaker_failures = 1000\nretries = 0\nrequest_timeout_ms = 300",
        legacy: "honours_idempotency_key = true",
        ..Settings::default()
    })
    .await;
    cutover.service.set(Behavior::Status(500));

    for key in [None, Some("order-42")] {
        let headers: Vec<(&str, &str)> = key.iter().map(|k| ("idempotency-key", *k)).collect();
        let posted = facade.send(Method::POST, "/orders", &headers).await;
        assert_eq!(
            posted.status,
            StatusCode::INTERNAL_SERVER_ERROR,
            "{key:?}: {posted:?}"
        );
        assert_eq!(posted.upstream.as_deref(), Some("service"), "{posted:?}");
        assert_eq!(posted.fallback, None, "{posted:?}");
    }
    assert_eq!(cutover.legacy.hits(), 0, "a write was replayed to legacy");
    assert_eq!(cutover.service.hits(), 2);
    // Nor after a timeout: the service may commit the order just after.
    cutover.service.set(Behavior::Hang);
    let late = facade
        .send(Method::POST, "/orders", &[("idempotency-key", "order-43")])
        .await;
    assert_eq!(late.status, StatusCode::GATEWAY_TIMEOUT, "{late:?}");
    assert_eq!(late.fallback, None, "{late:?}");
    assert_eq!(
        cutover.legacy.hits(),
        0,
        "a timed-out write was replayed to legacy"
    );
    cutover.service.set(Behavior::Status(500));

    // Idempotent methods fall back, the body whole from the copy kept as
    // it streamed to the service.
    assert_fell_back(&facade.get("/orders/7").await, "status");
    let put = facade
        .client
        .put(facade.url("/orders/43"))
        .body(vec![b'o'; 5000])
        .send()
        .await
        .unwrap();
    let put = Answer::read(put, std::time::Instant::now()).await;
    assert_fell_back(&put, "status");
    assert_eq!(put.body["body_bytes"], 5000, "{put:?}");
    assert_eq!(cutover.service.requests().last().unwrap().body_bytes, 5000);

    // A keyed write that never reached the service (it is down) may go to
    // legacy: nothing can have acted on it.
    cutover.service.kill().await;
    let keyed = facade
        .send(Method::POST, "/orders", &[("idempotency-key", "order-44")])
        .await;
    assert_fell_back(&keyed, "connect");
    assert_eq!(keyed.body["method"], "POST");
}

/// Found by the chaos soak: a keyed order reached the service, which was
/// killed before it answered; the retry the key allows was refused by the
/// breaker the failure had opened, and since that last refusal sent
/// nothing, the order went to the monolith too and was placed twice. What
/// decides the fallback is whether any attempt may have reached the
/// service, not what the last one did.
#[tokio::test]
async fn a_keyed_write_whose_retry_the_breaker_refuses_is_not_replayed_to_legacy() {
    let (_store, cutover, facade) = Cutover::start(Settings {
        initial: "service",
        capability: "[capabilities.orders.rollback]\nenabled = false",
        service: "honours_idempotency_key = true\nbreaker_failures = 1\nbreaker_open_ms = 60000\n\
                  retries = 1\nretry_backoff_ms = 1\nretry_budget = 1.0",
        legacy: "honours_idempotency_key = true",
        ..Settings::default()
    })
    .await;
    cutover.service.set(Behavior::Status(500));
    let keyed = facade
        .send(Method::POST, "/orders", &[("idempotency-key", "order-47")])
        .await;
    assert!(keyed.status.is_server_error(), "{keyed:?}");
    assert_eq!(keyed.fallback, None, "{keyed:?}");
    assert_eq!(
        (cutover.service.hits(), cutover.legacy.hits()),
        (1, 0),
        "the order went to legacy after reaching the service"
    );
    assert_eq!(facade.breaker_of("service").await, "open");
    // A read after the same pair of failures still falls back.
    assert_fell_back(&facade.get("/orders/7").await, "circuit_open");
}

#[tokio::test]
async fn a_keyed_write_is_not_replayed_to_a_backend_that_ignores_the_key() {
    // The monolith's backend does not say it honours `Idempotency-Key`: a
    // write the service may have acted on must not be acted on twice.
    let (_store, cutover, facade) =
        start_without_rollback("service", "breaker_failures = 1000\nretries = 0").await;
    cutover.service.set(Behavior::Status(500));
    let keyed = facade
        .send(Method::POST, "/orders", &[("idempotency-key", "order-44")])
        .await;
    assert_eq!(keyed.status, StatusCode::INTERNAL_SERVER_ERROR, "{keyed:?}");
    assert_eq!(keyed.fallback, None, "{keyed:?}");
    assert_eq!((cutover.service.hits(), cutover.legacy.hits()), (1, 0));
    // A read still falls back.
    assert_fell_back(&facade.get("/orders/7").await, "status");
}

#[tokio::test]
async fn a_keyed_write_is_retried_only_on_a_service_that_honours_the_key() {
    let (_store, cutover, facade) = start_without_rollback(
        "retired",
        "breaker_failures = 1000\nretries = 2\nretry_backoff_ms = 1\nretry_budget = 1.0",
    )
    .await;
    cutover.service.set(Behavior::Status(503));
    let keyed = facade
        .send(Method::POST, "/orders", &[("idempotency-key", "order-45")])
        .await;
    assert_eq!(keyed.status, StatusCode::SERVICE_UNAVAILABLE, "{keyed:?}");
    assert_eq!(
        cutover.service.hits(),
        1,
        "retried to a backend that ignores the key"
    );

    let (_store, cutover, facade) = start_without_rollback(
        "retired",
        "breaker_failures = 1000\nretries = 2\nretry_backoff_ms = 1\nretry_budget = 1.0\nhonours_idempotency_key = true",
    )
    .await;
    cutover.service.set(Behavior::Status(503));
    let keyed = facade
        .send(Method::POST, "/orders", &[("idempotency-key", "order-46")])
        .await;
    assert_eq!(keyed.status, StatusCode::SERVICE_UNAVAILABLE, "{keyed:?}");
    // The retry budget (a share of recent requests) allows at least one.
    assert!(
        cutover.service.hits() >= 2,
        "not retried: {} attempts",
        cutover.service.hits()
    );
}

#[tokio::test]
async fn a_retired_capability_never_falls_back() {
    let (_store, mut cutover, facade) = Cutover::start(Settings {
        initial: "retired",
        ..Settings::default()
    })
    .await;
    cutover.service.kill().await;
    let answer = facade.get("/orders/1").await;
    assert_eq!(answer.status, StatusCode::BAD_GATEWAY, "{answer:?}");
    assert_eq!(answer.served_by.as_deref(), Some("service"), "{answer:?}");
    assert_eq!(answer.fallback, None, "{answer:?}");
    assert_eq!(answer.body["source"], "upstream", "{answer:?}");

    cutover.service.restart().await;
    cutover.service.set(Behavior::Status(503));
    let answer = facade.get("/orders/1").await;
    assert_eq!(answer.status, StatusCode::SERVICE_UNAVAILABLE, "{answer:?}");
    assert_eq!(answer.upstream.as_deref(), Some("service"), "{answer:?}");
    assert_eq!(cutover.legacy.hits(), 0);
}

/// Concurrent clients of the steady load.
const CLIENTS: usize = 6;

/// Every answer of the load so far, by side.
#[derive(Default)]
struct Tally {
    ok: AtomicUsize,
    by_service: AtomicUsize,
    fallbacks: AtomicUsize,
    failures: std::sync::Mutex<Vec<String>>,
}

fn spawn_load(
    facade: &TestFacade,
    tally: &Arc<Tally>,
    stop: &Arc<AtomicBool>,
) -> Vec<tokio::task::JoinHandle<()>> {
    (0..CLIENTS)
        .map(|client| {
            let (http, url) = (facade.client.clone(), facade.url(&format!("/orders/{client}")));
            let (tally, stop) = (Arc::clone(tally), Arc::clone(stop));
            tokio::spawn(async move {
                let mut n = 0;
                while !stop.load(Ordering::SeqCst) {
                    n += 1;
                    let user = format!("client-{client}-{n}");
                    let started = std::time::Instant::now();
                    let outcome = match http.get(&url).header(USER_HEADER, &user).send().await {
                        Ok(response) => Ok(Answer::read(response, started).await),
                        Err(error) => Err(error.to_string()),
                    };
                    match outcome {
                        Ok(answer) if answer.status == StatusCode::OK && answer.upstream.is_some() => {
                            tally.ok.fetch_add(1, Ordering::SeqCst);
                            if answer.upstream.as_deref() == Some("service") {
                                tally.by_service.fetch_add(1, Ordering::SeqCst);
                            }
                            if answer.fallback.is_some() {
                                tally.fallbacks.fetch_add(1, Ordering::SeqCst);
                            }
                        }
                        Ok(answer) => tally.failures.lock().unwrap().push(format!("{answer:?}")),
                        Err(error) => tally.failures.lock().unwrap().push(error),
                    }
                }
            })
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn steady_load_loses_nothing_while_the_service_is_killed_and_restarted() {
    let (_store, mut cutover, facade) =
        start_without_rollback("canary 50%", "breaker_failures = 3\nbreaker_open_ms = 200").await;
    let tally = Arc::new(Tally::default());
    let stop = Arc::new(AtomicBool::new(false));
    let clients = spawn_load(&facade, &tally, &stop);
    let count = |counter: &AtomicUsize| counter.load(Ordering::SeqCst);

    wait_until("the service to serve part of the load", || {
        count(&tally.by_service) >= 100
    })
    .await;
    cutover.service.kill().await;
    let killed_at = count(&tally.ok);
    wait_until("the load to go on while the service is down", || {
        count(&tally.ok) >= killed_at + 300
    })
    .await;
    assert!(
        count(&tally.fallbacks) > 0,
        "nothing fell back while the service was down"
    );
    let mut opened = false;
    for _ in 0..100 {
        if facade.breaker_of("service").await == "open" {
            opened = true;
            break;
        }
    }
    assert!(
        opened,
        "the service's breaker never showed open while it was down"
    );
    let fallbacks_while_down = count(&tally.fallbacks);
    let by_service_while_down = count(&tally.by_service);

    cutover.service.restart().await;
    wait_until("the service to serve again after its restart", || {
        count(&tally.by_service) >= by_service_while_down + 100
    })
    .await;
    stop.store(true, Ordering::SeqCst);
    for client in clients {
        client.await.unwrap();
    }

    let failures = tally.failures.lock().unwrap().clone();
    assert!(
        failures.is_empty(),
        "{} of {} requests failed, e.g. {:?}",
        failures.len(),
        count(&tally.ok) + failures.len(),
        failures.first()
    );
    assert_eq!(facade.breaker_of("service").await, "closed");
    let metrics = facade.metrics().await;
    let fallbacks = crate::helpers::metric_value(
        &metrics,
        "strangler_facade_fallbacks_total",
        &[("capability", CAPABILITY)],
    );
    assert!(
        fallbacks >= fallbacks_while_down as f64,
        "{fallbacks} fallbacks counted, {fallbacks_while_down} seen"
    );
    assert!(
        crate::helpers::metric_value(
            &metrics,
            "strangler_facade_fallbacks_total",
            &[("reason", "circuit_open")]
        ) > 0.0,
        "the open breaker never sent a request straight to legacy"
    );
}

/// A killed service: the first attempt fails to connect, which opens the
/// breaker, and the retry is refused by it. The answer names the cause
/// first, then what followed; the metric counts the cause.
#[tokio::test]
async fn the_fallback_names_the_failure_that_caused_it() {
    let (_store, mut cutover, facade) = Cutover::start(Settings {
        initial: "service",
        capability: "[capabilities.orders.rollback]\nenabled = false",
        service: "breaker_failures = 1\nbreaker_open_ms = 60000\nretries = 1",
        ..Settings::default()
    })
    .await;
    // Answered requests earn the retry budget its share.
    for _ in 0..20 {
        assert_eq!(facade.get("/orders/1").await.status, StatusCode::OK);
    }
    cutover.service.kill().await;
    assert_fell_back(&facade.get("/orders/1").await, "connect, then circuit_open");
    let counted = facade
        .metric("strangler_facade_fallbacks_total", &[("reason", "connect")])
        .await;
    assert_eq!(counted, 1.0);
}
