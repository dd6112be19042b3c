//! Facades sharing one PostgreSQL store: a change made through one is in
//! force in the other within a second, and losing the store leaves every
//! facade routing on its last table while its health says `degraded`.

use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::json;
use sqlx::{Connection, PgConnection};
use test_harness::Engine;

use crate::helpers::{eventually, start_facade, Shop, WAIT_LIMIT};

#[tokio::test]
async fn a_flip_through_one_facade_reaches_the_other_within_a_second() {
    let Some((store, shop, a)) = Shop::start_on(Engine::Postgres).await else {
        return;
    };
    let b = start_facade(&shop.config(""), store.url()).await;
    assert_eq!(a.side(Method::GET, "/orders/1").await, "legacy");
    assert_eq!(b.side(Method::GET, "/orders/1").await, "legacy");

    a.flip_ok(
        "orders",
        json!({"to": "service", "reason": "replicas follow", "actor": "ops"}),
    )
    .await;
    let flipped_at = Instant::now();
    assert_eq!(a.side(Method::GET, "/orders/1").await, "orders");
    let (within, every) = (Duration::from_secs(1), Duration::from_millis(10));
    eventually(
        "facade B to follow the flip through A",
        within,
        every,
        async || {
            let side = b.side(Method::GET, "/orders/1").await;
            match side.as_str() {
                "orders" => Ok(()),
                _ => Err(format!("B still routes orders to {side}")),
            }
        },
    )
    .await;
    let followed = flipped_at.elapsed();
    assert!(followed < Duration::from_secs(1), "B followed after {followed:?}");
    assert_eq!(b.target_of("orders").await, "service");
    // Both read the same audit log.
    let (_, history) = b.admin_get("/history?limit=1").await;
    assert_eq!(history[0]["actor"], "ops");
}

/// The database name at the end of a PostgreSQL URL.
fn database_name(url: &str) -> &str {
    let path = url.rsplit_once('/').map_or(url, |(_, name)| name);
    path.split('?').next().unwrap()
}

#[tokio::test]
async fn losing_the_store_keeps_routing_on_the_last_table() {
    let Some((store, _shop, facade)) = Shop::start_on(Engine::Postgres).await else {
        return;
    };
    facade
        .flip_ok(
            "orders",
            json!({"to": "service", "reason": "before the outage", "actor": "ops"}),
        )
        .await;

    let mut admin = PgConnection::connect(&test_harness::postgres_admin_url())
        .await
        .unwrap();
    let name = database_name(store.url().expose());
    sqlx::query(&format!("DROP DATABASE {name} WITH (FORCE)"))
        .execute(&mut admin)
        .await
        .unwrap();

    // Health reports the outage within about two seconds.
    let (within, every) = (Duration::from_secs(2), Duration::from_millis(20));
    let health = eventually("/health to say degraded", within, every, async || {
        let (status, health) = facade.admin_get("/health").await;
        assert_eq!(status, StatusCode::OK, "{health}");
        if health["status"] == "degraded" {
            Ok(health)
        } else {
            Err(format!("/health still says {health}"))
        }
    })
    .await;
    assert!(
        health["route_store"].as_str().unwrap().starts_with("unreachable"),
        "{health}"
    );
    assert!(health["route_store_error"].is_string(), "{health}");

    // Routing goes on with the last table, not the configuration's targets.
    for _ in 0..20 {
        assert_eq!(facade.side(Method::GET, "/orders/1").await, "orders");
        assert_eq!(facade.side(Method::GET, "/products/1").await, "catalog");
        assert_eq!(facade.side(Method::GET, "/elsewhere").await, "legacy");
    }
    let (status, capabilities) = facade.admin_get("/capabilities").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(capabilities["store_reachable"], false);
    // A change cannot be recorded, so none is made.
    let started = Instant::now();
    let (status, body) = facade
        .flip(
            "orders",
            json!({"to": "legacy", "reason": "during the outage", "actor": "ops"}),
        )
        .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert!(started.elapsed() < WAIT_LIMIT);
    assert_eq!(facade.side(Method::GET, "/orders/1").await, "orders");
    let (_, health) = facade.admin_get("/health").await;
    assert_eq!(health["status"], "degraded");
}

/// Replicas of a Deployment start together on a new store: every one of
/// them must come up (one used to fail on the seed's unique key), and the
/// audit log must say once, not once per replica, that each capability was
/// first seen.
#[tokio::test]
async fn replicas_starting_together_on_an_empty_store_all_come_up() {
    let shop = Shop::spawn().await;
    let config = shop.config("");
    for round in 1..=20 {
        let Some(store) = test_harness::TestDatabase::fresh(Engine::Postgres).await else {
            return;
        };
        // Each start panics, naming the error, if its facade cannot start.
        let mut replicas =
            futures::future::join_all((0..5).map(|_| start_facade(&config, store.url()))).await;
        let (status, history) = replicas[0].admin_get("/history?limit=100").await;
        assert_eq!(status, StatusCode::OK, "round {round}: {history}");
        let mut seeded: Vec<&str> = history
            .as_array()
            .unwrap()
            .iter()
            .filter(|entry| entry["actor"] == "config")
            .map(|entry| entry["capability"].as_str().unwrap())
            .collect();
        seeded.sort_unstable();
        assert_eq!(
            seeded,
            ["assets", "catalog", "orders"],
            "round {round}: {history}"
        );
        for replica in &mut replicas {
            replica.stop().await.unwrap().unwrap();
        }
    }
}
