//! The sticky canary through real sockets: every request of a key lands on
//! one side, the shares follow the percentage, and a key that reached the
//! service at a small share stays there as the share grows.

use futures::StreamExt;
use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::helpers::{Cutover, Settings, TestFacade, CAPABILITY, USER_HEADER};

/// Distinct sticky keys.
const KEYS: usize = 10_000;
/// Requests in flight at once.
const CONCURRENCY: usize = 16;

/// Whether each key was served by the service, one request per key; every
/// answer must say the same side in `x-strangler-served-by` as the
/// upstream that produced it.
async fn sides_of_every_key(facade: &TestFacade) -> Vec<bool> {
    futures::stream::iter(0..KEYS)
        .map(|key| async move {
            let user = format!("user-{key}");
            let answer = facade
                .send(Method::GET, &format!("/orders/{key}"), &[(USER_HEADER, &user)])
                .await;
            assert_eq!(answer.status, StatusCode::OK, "{user}: {answer:?}");
            assert_eq!(answer.served_by, answer.upstream, "{user}: {answer:?}");
            assert_eq!(answer.fallback, None, "{user}: {answer:?}");
            answer.served_by.as_deref() == Some("service")
        })
        .buffered(CONCURRENCY)
        .collect()
        .await
}

async fn flip_to_canary(facade: &TestFacade, percent: f64) {
    facade
        .flip_ok(
            CAPABILITY,
            json!({"to": "canary", "percent": percent, "reason": "widen the canary", "actor": "test"}),
        )
        .await;
    assert_eq!(facade.target_of(CAPABILITY).await, format!("canary {percent}%"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sticky_canary_keeps_every_key_on_one_side_as_the_share_grows() {
    let (_store, cutover, facade) = Cutover::start(Settings {
        capability: "sticky = \"header:x-user\"",
        ..Settings::default()
    })
    .await;

    flip_to_canary(&facade, 10.0).await;
    let at_ten = sides_of_every_key(&facade).await;
    let again_at_ten = sides_of_every_key(&facade).await;
    let moved = at_ten.iter().zip(&again_at_ten).filter(|(a, b)| a != b).count();
    assert_eq!(moved, 0, "{moved} keys changed side between two requests at 10%");
    let on_service = at_ten.iter().filter(|s| **s).count();
    assert!(
        (800..1200).contains(&on_service),
        "{on_service} of {KEYS} keys on the service at 10%"
    );
    assert_eq!(cutover.service.hits(), 2 * on_service);
    assert_eq!(cutover.legacy.hits(), 2 * (KEYS - on_service));

    flip_to_canary(&facade, 50.0).await;
    let at_fifty = sides_of_every_key(&facade).await;
    let left_service = at_ten
        .iter()
        .zip(&at_fifty)
        .filter(|(ten, fifty)| **ten && !**fifty)
        .count();
    assert_eq!(
        left_service, 0,
        "{left_service} keys served by the service at 10% went back to legacy at 50%"
    );
    let on_service = at_fifty.iter().filter(|s| **s).count();
    assert!(
        (4700..5300).contains(&on_service),
        "{on_service} of {KEYS} keys on the service at 50%"
    );
}

#[tokio::test]
async fn without_its_header_a_request_is_keyed_by_the_client_address() {
    let (_store, _cutover, facade) = Cutover::start(Settings {
        initial: "canary 50%",
        capability: "sticky = \"header:x-user\"",
        ..Settings::default()
    })
    .await;

    // Every request from this one address, without the header, is one key.
    let first = facade.get("/orders/1").await;
    assert_eq!(first.status, StatusCode::OK, "{first:?}");
    for n in 0..50 {
        let answer = facade.get(&format!("/orders/{n}")).await;
        assert_eq!(answer.served_by, first.served_by, "request {n}: {answer:?}");
    }
    // /explain agrees with what the proxy did.
    let (status, explained) = facade
        .admin_get("/explain?method=GET&url=/orders/1&client=127.0.0.1")
        .await;
    assert_eq!(status, StatusCode::OK, "{explained}");
    assert_eq!(
        explained["side"].as_str(),
        first.served_by.as_deref(),
        "{explained}"
    );
}

/// The side each of 40 clients behind the facade's own address lands on,
/// every client asking twice: `X-Forwarded-For` names the client.
async fn sides_of_forwarded_clients(facade: &TestFacade) -> Vec<String> {
    let mut sides = Vec::new();
    for client in 1..=40 {
        let forwarded = format!("203.0.113.{client}");
        let first = facade
            .send(Method::GET, "/orders/1", &[("x-forwarded-for", &forwarded)])
            .await;
        let again = facade
            .send(Method::GET, "/orders/1", &[("x-forwarded-for", &forwarded)])
            .await;
        assert_eq!(first.status, StatusCode::OK, "{forwarded}: {first:?}");
        assert_eq!(first.served_by, again.served_by, "{forwarded} changed sides");
        sides.push(first.served_by.unwrap_or_default());
    }
    sides
}

#[tokio::test]
async fn behind_trusted_proxies_a_canary_by_client_splits_the_forwarded_clients() {
    let settings = |facade| Settings {
        initial: "canary 50%",
        capability: "sticky = \"client\"",
        facade,
        ..Settings::default()
    };
    // The facade's clients all connect from 127.0.0.1, its one proxy.
    let (_store, _cutover, facade) = Cutover::start(settings("trusted_proxies = [\"127.0.0.0/8\"]")).await;
    let sides = sides_of_forwarded_clients(&facade).await;
    // Half of 40 clients each way, give or take: both sides seen (all 40 on
    // one side happens one time in 2^39).
    assert!(sides.iter().any(|side| side == "service"), "{sides:?}");
    assert!(sides.iter().any(|side| side == "legacy"), "{sides:?}");

    // Without it, the peer is the client: every request is one client's.
    let (_store, _cutover, facade) = Cutover::start(settings("")).await;
    let sides = sides_of_forwarded_clients(&facade).await;
    assert!(sides.iter().all(|side| *side == sides[0]), "{sides:?}");
}
