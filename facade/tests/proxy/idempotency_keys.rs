//! A client repeating a keyed write (`Idempotency-Key`) reaches the side
//! its key went to first: never the monolith's fallback behind the
//! service's open breaker, and not the other side after a flip. Found by
//! the chaos soak: an order reached the service, its answer was lost, the
//! client repeated it while the breaker was open, and the fallback placed
//! it on the monolith too.

use reqwest::Method;
use serde_json::json;

use crate::helpers::{Behavior, Cutover, Settings, CAPABILITY};

#[tokio::test]
async fn a_repeated_keyed_write_is_not_sent_to_legacy_behind_an_open_breaker() {
    let (_store, cutover, facade) = Cutover::start(Settings {
        initial: "service",
        capability: "[capabilities.orders.rollback]\nenabled = false",
        service: "honours_idempotency_key = true\nbreaker_failures = 1\nbreaker_open_ms = 60000\nretries = 0",
        legacy: "honours_idempotency_key = true",
        ..Settings::default()
    })
    .await;
    let first = facade
        .send(Method::POST, "/orders", &[("idempotency-key", "order-51")])
        .await;
    assert_eq!(first.served_by.as_deref(), Some("service"), "{first:?}");
    // Its answer lost, say; meanwhile the service fails and its breaker
    // opens, so reads go to the monolith.
    cutover.service.set(Behavior::Status(500));
    let read = facade.get("/orders/7").await;
    assert!(
        read.status.is_server_error() || read.fallback.is_some(),
        "{read:?}"
    );
    assert_eq!(facade.breaker_of("service").await, "open");
    let read = facade.get("/orders/7").await;
    assert_eq!(read.fallback.as_deref(), Some("circuit_open"), "{read:?}");

    let legacy_before = cutover.legacy.hits();
    let repeated = facade
        .send(Method::POST, "/orders", &[("idempotency-key", "order-51")])
        .await;
    assert!(repeated.status.is_server_error(), "{repeated:?}");
    assert_eq!(repeated.fallback, None, "{repeated:?}");
    assert_eq!(
        cutover.legacy.hits(),
        legacy_before,
        "a repeat of an order the service saw went to the monolith"
    );

    // A key the service never saw still falls back: nothing of it reached
    // the service, so the monolith placing it is its only placing.
    let fresh = facade
        .send(Method::POST, "/orders", &[("idempotency-key", "order-52")])
        .await;
    assert_eq!(fresh.fallback.as_deref(), Some("circuit_open"), "{fresh:?}");
    assert_eq!(cutover.legacy.hits(), legacy_before + 1);
    // And its repeat stays with the monolith, even once the service is back.
    cutover.service.set(Behavior::Answer);
    let repeated = facade
        .send(Method::POST, "/orders", &[("idempotency-key", "order-52")])
        .await;
    assert_eq!(repeated.served_by.as_deref(), Some("legacy"), "{repeated:?}");
    assert_eq!(cutover.legacy.hits(), legacy_before + 2);
}

#[tokio::test]
async fn a_repeated_keyed_write_stays_on_its_side_across_a_flip() {
    let (_store, cutover, facade) = Cutover::start(Settings {
        initial: "legacy",
        capability: "[capabilities.orders.rollback]\nenabled = false",
        service: "honours_idempotency_key = true",
        legacy: "honours_idempotency_key = true",
        ..Settings::default()
    })
    .await;
    let first = facade
        .send(Method::POST, "/orders", &[("idempotency-key", "order-61")])
        .await;
    assert_eq!(first.served_by.as_deref(), Some("legacy"), "{first:?}");
    facade
        .flip_ok(
            CAPABILITY,
            json!({"to": "service", "reason": "cut over", "actor": "test", "force": true}),
        )
        .await;

    let service_before = cutover.service.hits();
    let repeated = facade
        .send(Method::POST, "/orders", &[("idempotency-key", "order-61")])
        .await;
    assert_eq!(repeated.served_by.as_deref(), Some("legacy"), "{repeated:?}");
    assert_eq!(cutover.service.hits(), service_before);
    // New keys, and requests without one, follow the flip.
    let fresh = facade
        .send(Method::POST, "/orders", &[("idempotency-key", "order-62")])
        .await;
    assert_eq!(fresh.served_by.as_deref(), Some("service"), "{fresh:?}");
    let unkeyed = facade.send(Method::POST, "/orders", &[]).await;
    assert_eq!(unkeyed.served_by.as_deref(), Some("service"), "{unkeyed:?}");
}
