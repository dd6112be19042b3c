//! The admin API's token, and what `/metrics`, `/health` and `/explain`
//! report.

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::helpers::{json_of, without_replica_label, Shop};

#[tokio::test]
async fn the_bearer_scheme_is_case_insensitive() {
    let (_store, _shop, facade) = Shop::start("").await;
    for scheme in ["Bearer", "bearer", "BEARER"] {
        let response = facade
            .client
            .get(facade.admin_url("/capabilities"))
            .header("authorization", format!("{scheme} {}", facade.token))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK, "scheme {scheme}");
    }
}

#[tokio::test]
async fn wrong_tokens_brake_their_address_and_are_counted() {
    let (_store, _shop, facade) = Shop::start("admin_failures_per_minute = 3").await;
    let url = facade.admin_url("/capabilities");
    let wrong = format!("{}x", facade.token);
    for attempt in 1..=3 {
        let response = facade.client.get(&url).bearer_auth(&wrong).send().await.unwrap();
        assert_eq!(
            response.status(),
            StatusCode::UNAUTHORIZED,
            "wrong token {attempt}"
        );
    }
    // The fourth is braked, and so is the right token from the same address.
    for token in [&wrong, &facade.token] {
        let response = facade.client.get(&url).bearer_auth(token).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        let wait: u64 = response.headers()["retry-after"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!((1..=60).contains(&wait), "Retry-After: {wait}");
        let (_, body) = json_of(response).await;
        assert!(
            body["error"]
                .as_str()
                .unwrap()
                .contains("too many wrong admin tokens"),
            "{body}"
        );
    }
    // Another address is not braked.
    let elsewhere = reqwest::Client::builder()
        .local_address("127.0.0.2".parse::<std::net::IpAddr>().unwrap())
        .timeout(std::time::Duration::from_secs(30))
        .build()
        .unwrap();
    let metrics = elsewhere
        .get(facade.admin_url("/metrics"))
        .bearer_auth(&facade.token)
        .send()
        .await
        .unwrap();
    assert_eq!(metrics.status(), StatusCode::OK);
    let text = without_replica_label(&metrics.text().await.unwrap());
    for (outcome, count) in [("wrong", 3), ("braked", 2)] {
        let line = format!("strangler_facade_admin_auth_failures_total{{outcome=\"{outcome}\"}} {count}");
        assert!(text.contains(&line), "no `{line}` in\n{text}");
    }
}

#[tokio::test]
async fn every_admin_endpoint_wants_the_token() {
    // Thirty wrong tokens from one address: the brake (tested below) is
    // set high enough to stay out of the way.
    let (_store, _shop, facade) = Shop::start("admin_failures_per_minute = 10000").await;
    let wrong = format!("{}x", facade.token);
    let prefix = &facade.token[..facade.token.len() - 1];

    for path in [
        "/capabilities",
        "/history",
        "/health",
        "/ready",
        "/metrics",
        "/nope",
    ] {
        let url = facade.admin_url(path);
        let attempts = [
            ("no token", facade.client.get(&url)),
            ("a wrong token", facade.client.get(&url).bearer_auth(&wrong)),
            (
                "a prefix of the token",
                facade.client.get(&url).bearer_auth(prefix),
            ),
            (
                "the token without the Bearer scheme",
                facade.client.get(&url).header("authorization", &facade.token),
            ),
            (
                "basic authentication",
                facade.client.get(&url).basic_auth("admin", Some(&facade.token)),
            ),
        ];
        for (what, request) in attempts {
            let response = request.send().await.unwrap();
            assert_eq!(
                response.status(),
                StatusCode::UNAUTHORIZED,
                "GET {path} with {what}"
            );
            assert_eq!(
                response.headers()["www-authenticate"],
                "Bearer",
                "GET {path} with {what}"
            );
            let (_, body) = json_of(response).await;
            assert!(body["error"].is_string(), "GET {path} with {what}: {body}");
        }
    }

    // A flip without the token changes nothing.
    let response = facade
        .client
        .post(facade.admin_url("/capabilities/orders/flip"))
        .json(&json!({"to": "service", "reason": "r", "actor": "mallory"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(facade.target_of("orders").await, "legacy");
    assert_eq!(facade.side(Method::GET, "/orders/1").await, "legacy");
    let (status, history) = facade.admin_get("/history").await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        history.as_array().unwrap().iter().all(|t| t["actor"] == "config"),
        "{history}"
    );
}

/// The value of the sample whose line starts with `series` (name and labels).
fn sample(metrics: &str, series: &str) -> Option<f64> {
    metrics
        .lines()
        .find(|line| line.starts_with(series))
        .and_then(|line| line[series.len()..].trim().parse().ok())
}

#[tokio::test]
async fn metrics_count_requests_by_capability() {
    let (_store, _shop, facade) = Shop::start("").await;
    for _ in 0..3 {
        assert_eq!(facade.side(Method::GET, "/products/1").await, "catalog");
    }
    for _ in 0..2 {
        assert_eq!(facade.side(Method::GET, "/orders/1").await, "legacy");
    }
    assert_eq!(facade.side(Method::GET, "/unrouted").await, "legacy");

    let metrics = facade.metrics().await;
    assert!(metrics.contains("strangler_facade_requests"), "{metrics}");
    assert_eq!(
        sample(
            &metrics,
            r#"strangler_facade_requests_total{capability="catalog",backend="catalog",status="2xx"}"#
        ),
        Some(3.0),
        "{metrics}"
    );
    assert_eq!(
        sample(
            &metrics,
            r#"strangler_facade_requests_total{capability="orders",backend="legacy",status="2xx"}"#
        ),
        Some(2.0),
        "{metrics}"
    );
    assert_eq!(
        sample(
            &metrics,
            r#"strangler_facade_requests_total{capability="-",backend="legacy",status="2xx"}"#
        ),
        Some(1.0),
        "{metrics}"
    );
    assert_eq!(
        sample(&metrics, "strangler_facade_route_store_reachable"),
        Some(1.0)
    );
}

#[tokio::test]
async fn health_and_explain_describe_the_table() {
    let (_store, shop, facade) = Shop::start("").await;

    let (status, health) = facade.admin_get("/health").await;
    assert_eq!(status, StatusCode::OK, "{health}");
    assert_eq!(health["status"], "ok");
    assert_eq!(health["route_store"], "reachable");

    let (status, explained) = facade
        .admin_get("/explain?method=put&url=/products/%2e%2e/products/9")
        .await;
    assert_eq!(status, StatusCode::OK, "{explained}");
    assert_eq!(explained["normalized_path"], "/products/9");
    assert_eq!(explained["capability"], "orders");
    assert_eq!(explained["stage"], "legacy");
    assert_eq!(explained["side"], "legacy");
    assert_eq!(explained["backend"], "legacy");
    assert_eq!(explained["instance"], shop.legacy.addr.to_string());
    let (_, unrouted) = facade.admin_get("/explain?method=GET&url=/elsewhere").await;
    assert_eq!(unrouted["capability"], Value::Null);
    assert_eq!(unrouted["backend"], "legacy");
    let (status, _) = facade.admin_get("/explain?method=GET&url=/a%252Fb").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}
