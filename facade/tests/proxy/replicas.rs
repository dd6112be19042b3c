//! Three facade replicas on one PostgreSQL route store agree: a flip
//! through any of them is in force on all within a second; conflicting
//! flips are serialized (one wins, the other gets a 409, the audit log
//! holds exactly the winner); a canary key lands on the same side on every
//! replica; one replica's automatic rollback reaches the others and the
//! audit log names it; and a store that goes away and comes back (a link
//! cut, or the store's PostgreSQL crashing and starting again) leaves
//! every replica serving, `degraded`, then caught up. Each replica names
//! itself (`replica_id`) in the audit log, `/metrics` and the admin API.

use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use test_harness::{DatabaseUrl, Engine, TestDatabase};

use crate::helpers::{
    eventually, start_facade, Behavior, Cutover, PrivatePostgres, Settings, Shop, StoreLink, TestFacade,
    CAPABILITY, USER_HEADER, WAIT_LIMIT,
};

/// The replicas' names.
const NAMES: [&str; 3] = ["replica-a", "replica-b", "replica-c"];

/// A fresh PostgreSQL store, or `None` when the server is absent outside CI.
async fn postgres_store() -> Option<TestDatabase> {
    TestDatabase::fresh(Engine::Postgres).await
}

/// Three facades for `config(name)` on `store`, started together.
async fn three_replicas(store: &DatabaseUrl, config: impl Fn(&str) -> String) -> Vec<TestFacade> {
    let texts: Vec<String> = NAMES.iter().map(|name| config(name)).collect();
    futures::future::join_all(texts.iter().map(|text| start_facade(text, store))).await
}

/// Which upstream a replica sends `GET path` to: the shop's upstreams say
/// it in their body, the cut-over fixture's in a header.
#[derive(Clone, Copy)]
enum Fixture {
    Shop,
    Cutover,
}

async fn side_of(replica: &TestFacade, fixture: Fixture, path: &str) -> String {
    match fixture {
        Fixture::Shop => replica.side(Method::GET, path).await,
        Fixture::Cutover => replica.get(path).await.upstream.unwrap_or_default(),
    }
}

/// Three replicas of the shop's facade on a fresh PostgreSQL store (keep
/// the store and the shop), or `None` when the server is absent outside CI.
async fn shop_replicas() -> Option<(TestDatabase, Shop, Vec<TestFacade>)> {
    let store = postgres_store().await?;
    let shop = Shop::spawn().await;
    let replicas = three_replicas(store.url(), |name| {
        shop.config(&format!("replica_id = \"{name}\""))
    })
    .await;
    Some((store, shop, replicas))
}

/// Waits until every replica routes `GET path` to `side`; returns how long
/// that took from `since`.
async fn all_route_to(
    replicas: &[TestFacade],
    fixture: Fixture,
    path: &str,
    side: &str,
    since: Instant,
) -> Duration {
    for (replica, name) in replicas.iter().zip(NAMES) {
        let what = format!("{name} to route {path} to {side}");
        eventually(&what, WAIT_LIMIT, Duration::from_millis(5), async || {
            let now = side_of(replica, fixture, path).await;
            if now == side {
                Ok(())
            } else {
                Err(format!("{name} still routes it to {now}"))
            }
        })
        .await;
    }
    since.elapsed()
}

/// Waits until `replica`'s `/health` (always 200) says `status`.
async fn reports(replica: &TestFacade, name: &str, status: &str, within: Duration) {
    let what = format!("{name} to report {status}");
    eventually(&what, within, Duration::from_millis(20), async || {
        let (code, health) = replica.admin_get("/health").await;
        assert_eq!(code, StatusCode::OK, "{health}");
        match health["status"].as_str() {
            Some(now) if now == status => Ok(()),
            _ => Err(format!("{health}")),
        }
    })
    .await;
}

#[tokio::test]
async fn a_flip_through_any_replica_is_served_by_all_within_a_second() {
    let Some((_store, _shop, replicas)) = shop_replicas().await else {
        return;
    };

    // Through each replica in turn: forward, then back.
    let mut slowest = Duration::ZERO;
    for (round, (through, name)) in replicas.iter().zip(NAMES).enumerate() {
        let (to, side) = if round % 2 == 0 {
            ("service", "orders")
        } else {
            ("legacy", "legacy")
        };
        through
            .flip_ok(
                "orders",
                json!({"to": to, "reason": format!("round {round}"), "actor": "ops"}),
            )
            .await;
        let flipped = Instant::now();
        let took = all_route_to(&replicas, Fixture::Shop, "/orders/1", side, flipped).await;
        assert!(
            took < Duration::from_secs(1),
            "through {name}: all followed after {took:?}"
        );
        slowest = slowest.max(took);
        let history = through.history_of("orders").await;
        assert_eq!(history[0]["replica"], name, "{history:?}");
    }
    // The measured propagation, for docs/deploy.md.
    eprintln!("replicas: a flip was in force on all three within {slowest:?}");

    // Each names itself in the admin API and on every metric series.
    for (replica, name) in replicas.iter().zip(NAMES) {
        let (_, health) = replica.admin_get("/health").await;
        assert_eq!(health["replica_id"], name, "{health}");
        let (_, listing) = replica.admin_get("/capabilities").await;
        assert_eq!(listing["replica_id"], name, "{listing}");
        let metrics = replica.exposition().await;
        let series: Vec<&str> = metrics
            .lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
            .collect();
        assert!(!series.is_empty(), "{metrics}");
        for line in series {
            assert!(line.contains(&format!("replica_id=\"{name}\"")), "{line}");
        }
    }
}

#[tokio::test]
async fn conflicting_flips_through_two_replicas_are_serialized() {
    let Some((_store, _shop, replicas)) = shop_replicas().await else {
        return;
    };
    let (a, b) = (&replicas[0], &replicas[1]);

    for round in 0..10 {
        let before = a.history_of("orders").await;
        let start = before[0]["to"].as_str().unwrap().to_owned();
        // Two operators act on the same reading at the same moment, each
        // through their own replica, towards different stages.
        let (first, second) = tokio::join!(
            a.flip(
                "orders",
                json!({"to": "shadow", "from": start, "reason": format!("a {round}"), "actor": "ann", "force": true})
            ),
            b.flip(
                "orders",
                json!({"to": "canary", "percent": 10, "from": start, "reason": format!("b {round}"), "actor": "bob", "force": true})
            ),
        );
        let statuses = [first.0, second.0];
        let winners = statuses.iter().filter(|s| **s == StatusCode::OK).count();
        assert_eq!(winners, 1, "round {round}: {first:?} / {second:?}");
        let (lost_status, lost) = if first.0 == StatusCode::OK {
            &second
        } else {
            &first
        };
        assert_eq!(*lost_status, StatusCode::CONFLICT, "round {round}: {lost}");
        let message = lost["error"].as_str().unwrap();
        assert!(
            message.contains(&format!("moved from {start} to")) && message.contains("nothing changed"),
            "round {round}: {message}"
        );
        // Exactly one new audit record, the winner's, seen alike by all.
        let after = replicas[2].history_of("orders").await;
        assert_eq!(after.len(), before.len() + 1, "round {round}: {after:?}");
        let winner = if first.0 == StatusCode::OK {
            ("ann", NAMES[0])
        } else {
            ("bob", NAMES[1])
        };
        assert_eq!(after[0]["actor"], winner.0, "{after:?}");
        assert_eq!(after[0]["replica"], winner.1, "{after:?}");
        assert_eq!(after[0]["from"], start.as_str(), "{after:?}");
        // Back to legacy for the next round; rollbacks are never gated.
        a.flip_ok(
            "orders",
            json!({"to": "legacy", "reason": "reset", "actor": "ops"}),
        )
        .await;
    }

    // A stale reading is refused outright, before any gate is asked.
    let (status, body) = b
        .flip(
            "orders",
            json!({"to": "service", "from": "shadow", "reason": "stale", "actor": "bob"}),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("moved from shadow to legacy"),
        "{body}"
    );
}

#[tokio::test]
async fn every_replica_sends_a_canary_key_to_the_same_side() {
    let Some(store) = postgres_store().await else {
        return;
    };
    let cutover = Cutover::spawn().await;
    let replicas = three_replicas(store.url(), |name| {
        cutover.config(&Settings {
            initial: "canary 30%",
            capability: "sticky = \"header:x-user\"",
            facade: &format!("replica_id = \"{name}\""),
            ..Settings::default()
        })
    })
    .await;
    let mut on_service = 0;
    for key in 0..300 {
        let user = format!("user-{key}");
        let mut sides = Vec::new();
        for replica in &replicas {
            let answer = replica
                .send(Method::GET, "/orders/1", &[(USER_HEADER, &user)])
                .await;
            sides.push(answer.upstream.unwrap());
        }
        assert!(sides.iter().all(|s| *s == sides[0]), "{user}: {sides:?}");
        on_service += usize::from(sides[0] == "service");
    }
    // The share is the canary's, give or take the hash's spread.
    assert!(
        (60..=120).contains(&on_service),
        "{on_service} of 300 on the service"
    );
}

const BUDGET: &str =
    "[capabilities.orders.rollback]\nmax_error_rate = 0.2\nwindow_seconds = 10\nmin_requests = 10";

#[tokio::test]
async fn one_replicas_automatic_rollback_reaches_all_and_names_it() {
    let Some(store) = postgres_store().await else {
        return;
    };
    let cutover = Cutover::spawn().await;
    let replicas = three_replicas(store.url(), |name| {
        cutover.config(&Settings {
            initial: "service",
            capability: BUDGET,
            service: "retries = 0",
            facade: &format!("replica_id = \"{name}\""),
            ..Settings::default()
        })
    })
    .await;
    all_route_to(
        &replicas,
        Fixture::Cutover,
        "/orders/1",
        "service",
        Instant::now(),
    )
    .await;

    // Only replica B sees the failures: the budget it judges is its own.
    cutover.service.set(Behavior::Status(500));
    let judge = &replicas[1];
    let failing_since = Instant::now();
    while judge.target_of(CAPABILITY).await != "legacy" {
        let answer = judge.get("/orders/1").await;
        assert_eq!(answer.status, StatusCode::OK, "{answer:?}");
        assert!(failing_since.elapsed() < WAIT_LIMIT, "B never rolled back");
    }
    let rolled_back = Instant::now();
    cutover.service.set(Behavior::Answer);
    let took = all_route_to(&replicas, Fixture::Cutover, "/orders/1", "legacy", rolled_back).await;
    assert!(
        took < Duration::from_secs(1),
        "the others followed after {took:?}"
    );

    let history = replicas[0].history_of(CAPABILITY).await;
    let rollbacks: Vec<&Value> = history.iter().filter(|t| t["actor"] == "auto-rollback").collect();
    assert_eq!(rollbacks.len(), 1, "one breach, one rollback: {history:?}");
    assert_eq!(rollbacks[0]["replica"], NAMES[1], "{history:?}");
    assert_eq!(rollbacks[0]["detail"]["replica"], NAMES[1], "{history:?}");
    for replica in &replicas {
        assert_eq!(replica.target_of(CAPABILITY).await, "legacy");
    }
}

#[tokio::test]
async fn replicas_ride_out_a_store_restart_and_catch_up() {
    let Some(store) = postgres_store().await else {
        return;
    };
    let shop = Shop::spawn().await;
    let link = StoreLink::to(store.url()).await;
    // A and B reach the store through the link; C, straight, plays the
    // replica on the far side of the outage that keeps taking changes.
    let config = |name: &str| shop.config(&format!("replica_id = \"{name}\""));
    let (text_a, text_b) = (config(NAMES[0]), config(NAMES[1]));
    let (a, b) = tokio::join!(start_facade(&text_a, &link.url), start_facade(&text_b, &link.url));
    let c = start_facade(&config(NAMES[2]), store.url()).await;
    let linked = [&a, &b];

    link.cut();
    for (replica, name) in linked.iter().zip(NAMES) {
        reports(replica, name, "degraded", WAIT_LIMIT).await;
        // Still serving on its last table.
        assert_eq!(replica.side(Method::GET, "/orders/1").await, "legacy");
        assert_eq!(replica.side(Method::GET, "/products/1").await, "catalog");
    }
    // A change made while they are cut off…
    c.flip_ok(
        "orders",
        json!({"to": "service", "reason": "during the outage", "actor": "ops"}),
    )
    .await;
    for replica in linked {
        assert_eq!(replica.side(Method::GET, "/orders/1").await, "legacy");
    }
    // …is in force on them within seconds of the store's return.
    link.restore();
    let back = Instant::now();
    for (replica, name) in linked.iter().zip(NAMES) {
        let what = format!("{name} to catch up after the store came back");
        eventually(
            &what,
            Duration::from_secs(5),
            Duration::from_millis(20),
            async || {
                let side = replica.side(Method::GET, "/orders/1").await;
                let (_, health) = replica.admin_get("/health").await;
                match (side.as_str(), health["status"].as_str()) {
                    ("orders", Some("ok")) => Ok(()),
                    _ => Err(format!("routes to {side}; health {health}")),
                }
            },
        )
        .await;
    }
    eprintln!(
        "replicas: caught up {:?} after the store came back",
        back.elapsed()
    );
}

#[tokio::test]
async fn replicas_ride_out_their_postgresql_crashing_and_starting_again() {
    let Some(server) = PrivatePostgres::start().await else {
        return;
    };
    let shop = Shop::spawn().await;
    let replicas = three_replicas(&server.url(), |name| {
        shop.config(&format!("replica_id = \"{name}\""))
    })
    .await;
    replicas[0]
        .flip_ok(
            "orders",
            json!({"to": "service", "reason": "before the crash", "actor": "ops"}),
        )
        .await;
    all_route_to(&replicas, Fixture::Shop, "/orders/1", "orders", Instant::now()).await;

    server.crash().await;
    for (replica, name) in replicas.iter().zip(NAMES) {
        reports(replica, name, "degraded", WAIT_LIMIT).await;
        // Still serving on its last table, the flip included.
        assert_eq!(replica.side(Method::GET, "/orders/1").await, "orders");
        assert_eq!(replica.side(Method::GET, "/products/1").await, "catalog");
    }
    // A change cannot be recorded while the store is down, and says so
    // rather than pretending.
    let (status, refusal) = replicas[1]
        .flip(
            "orders",
            json!({"to": "legacy", "reason": "during the crash", "actor": "ops"}),
        )
        .await;
    assert!(
        status.is_server_error(),
        "a flip with the store down: {status} {refusal}"
    );
    assert_eq!(replicas[1].side(Method::GET, "/orders/1").await, "orders");

    server.up().await;
    let back = Instant::now();
    for (replica, name) in replicas.iter().zip(NAMES) {
        reports(replica, name, "ok", Duration::from_secs(5)).await;
    }
    let caught_up = back.elapsed();
    // Changes flow between the replicas again.
    let since = Instant::now();
    replicas[2]
        .flip_ok(
            "orders",
            json!({"to": "legacy", "reason": "after the crash", "actor": "ops"}),
        )
        .await;
    let took = all_route_to(&replicas, Fixture::Shop, "/orders/1", "legacy", since).await;
    assert!(
        took < Duration::from_secs(1),
        "a flip after the restart took {took:?}"
    );
    eprintln!(
        "replicas: ok again {caught_up:?} after their PostgreSQL restarted; the next flip reached all in {took:?}"
    );
}

impl TestFacade {
    /// The audit log of one capability, newest first.
    async fn history_of(&self, capability: &str) -> Vec<Value> {
        let (status, history) = self
            .admin_get(&format!("/history?capability={capability}&limit=1000"))
            .await;
        assert_eq!(status, StatusCode::OK, "{history}");
        history.as_array().unwrap().clone()
    }
}
