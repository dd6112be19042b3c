//! Where requests go: per route, per method, to the capability's current
//! target, and to the default backend when no route matches.

use reqwest::{Method, StatusCode};
use serde_json::json;
use test_harness::{on_each_engine, Engine, TestDatabase};

use crate::helpers::{sqlite_store, start_facade, Shop};

on_each_engine!(routes_by_path_method_and_target);

async fn routes_by_path_method_and_target(engine: Engine) {
    let Some(store) = TestDatabase::fresh(engine).await else {
        return;
    };
    let shop = Shop::spawn().await;
    let facade = start_facade(&shop.config(""), store.url()).await;

    // The same path, two methods, two capabilities on different targets.
    assert_eq!(facade.side(Method::GET, "/products/7").await, "catalog");
    assert_eq!(facade.side(Method::PUT, "/products/7").await, "legacy");
    // A method no route names, and paths no route claims: the default.
    assert_eq!(facade.side(Method::DELETE, "/products/7").await, "legacy");
    assert_eq!(facade.side(Method::GET, "/products/7/reviews").await, "legacy");
    assert_eq!(facade.side(Method::GET, "/products").await, "legacy");
    assert_eq!(facade.side(Method::GET, "/somewhere/else").await, "legacy");
    assert_eq!(facade.side(Method::GET, "/orders/3").await, "legacy");
    assert_eq!(facade.side(Method::POST, "/orders").await, "legacy");
    // A prefix route matches on segment boundaries only.
    assert_eq!(facade.side(Method::GET, "/public/css/site.css").await, "catalog");
    assert_eq!(facade.side(Method::GET, "/publicity").await, "legacy");

    let (status, body) = facade
        .flip(
            "orders",
            json!({"to": "service", "reason": "orders extracted", "actor": "routing-test"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");

    // Only the orders capability moved, on every one of its routes.
    assert_eq!(facade.side(Method::PUT, "/products/7").await, "orders");
    assert_eq!(facade.side(Method::GET, "/orders/3").await, "orders");
    assert_eq!(facade.side(Method::POST, "/orders").await, "orders");
    assert_eq!(facade.side(Method::GET, "/products/7").await, "catalog");
    assert_eq!(facade.side(Method::DELETE, "/products/7").await, "legacy");
    assert_eq!(facade.side(Method::GET, "/orders").await, "legacy");

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
