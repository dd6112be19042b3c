//! Where requests go: per route, per method, to the capability's current
//! target, and to the default backend when no route matches.

use reqwest::{Method, StatusCode};
use serde_json::json;
use test_harness::{on_each_engine, Engine};

use crate::helpers::{sqlite_store, start_facade, Shop};

on_each_engine!(routes_by_path_method_and_target);

async fn routes_by_path_method_and_target(engine: Engine) {
    let Some((_store, _shop, facade)) = Shop::start_on(engine).await else {
        return;
    };
    // (method, path, the upstream before `orders` moves to its service, after)
    let cases = [
        // The same path, two methods, two capabilities on different targets.
        (Method::GET, "/products/7", "catalog", "catalog"),
        (Method::PUT, "/products/7", "legacy", "orders"),
        // A method no route names, and paths no route claims: the default.
        (Method::DELETE, "/products/7", "legacy", "legacy"),
        (Method::GET, "/products/7/reviews", "legacy", "legacy"),
        (Method::GET, "/products", "legacy", "legacy"),
        (Method::GET, "/somewhere/else", "legacy", "legacy"),
        (Method::GET, "/orders", "legacy", "legacy"),
        // The other routes of `orders`.
        (Method::GET, "/orders/3", "legacy", "orders"),
        (Method::POST, "/orders", "legacy", "orders"),
        // A prefix route matches on segment boundaries only.
        (Method::GET, "/public/css/site.css", "catalog", "catalog"),
        (Method::GET, "/publicity", "legacy", "legacy"),
    ];

    for (method, path, before, _) in &cases {
        let side = facade.side(method.clone(), path).await;
        assert_eq!(side, *before, "{method} {path} before the flip");
    }
    facade
        .flip_ok(
            "orders",
            json!({"to": "service", "reason": "orders extracted", "actor": "routing-test"}),
        )
        .await;
    // Only the orders capability moved, on every one of its routes.
    for (method, path, _, after) in &cases {
        let side = facade.side(method.clone(), path).await;
        assert_eq!(side, *after, "{method} {path} after the flip");
    }

    // The upstream sees the method, the path and the query it was sent.
    let (_, echoed) = facade.call(Method::PUT, "/products/7?dry=1&x=%20y").await;
    assert_eq!(echoed["method"], "PUT");
    assert_eq!(echoed["path"], "/products/7");
    assert_eq!(echoed["query"], "dry=1&x=%20y");
}

#[tokio::test]
async fn without_a_default_backend_an_unmatched_request_gets_a_json_404() {
    let store = sqlite_store();
    let shop = Shop::spawn().await;
    let config = shop.config("").replace("default_backend = \"legacy\"\n", "");
    let facade = start_facade(&config, store.url()).await;

    assert_eq!(facade.side(Method::GET, "/products/1").await, "catalog");
    let before = shop.hits();
    let response = facade.client.get(facade.url("/nowhere")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    assert_eq!(response.headers()["content-type"], "application/json");
    let request_id = response.headers()["x-request-id"].to_str().unwrap().to_owned();
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["source"], "facade", "{body}");
    assert_eq!(body["request_id"], request_id.as_str());
    assert!(body["error"].as_str().unwrap().contains("no route"), "{body}");
    // A matched path with a method no route names has nowhere to go either.
    let (status, _) = facade.call(Method::DELETE, "/products/1").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(shop.hits(), before, "no upstream may see an unrouted request");
}
