//! `/internal/settings`: the planted price-rounding bug changes what the
//! service serves, never what it stores, and bad settings are refused.

use axum::http::StatusCode;
use serde_json::{json, Value};
use test_harness::{http_client, Engine};

use crate::helpers::{
    catalog_price, get, insert_product, put_json, sample_product, send, spawn_app, SEEDED_PRODUCTS,
};

async fn the_price_bug_changes_served_prices_only(engine: Engine) {
    let Some(app) = spawn_app(engine).await else {
        return;
    };
    let settings_url = format!("{}/internal/settings", app.catalog.url);
    // Off by default.
    assert_eq!(
        get(&settings_url).await,
        (StatusCode::OK, json!({ "price_rounding_bug": false }))
    );
    let odd = sample_product(SEEDED_PRODUCTS + 1);
    let odd = crate::helpers::MonolithProduct {
        price_cents: 1999,
        ..odd
    };
    insert_product(&app.catalog.db, &odd).await;
    let product_url = format!("{}/products/{}", app.catalog.url, odd.id);
    let list_url = format!("{}/products?cursor={SEEDED_PRODUCTS}", app.catalog.url);
    let listed_price = |page: &Value| page["items"][0]["price_cents"].clone();
    assert_eq!(get(&product_url).await.1["price_cents"], 1999);

    let (status, body) = put_json(&settings_url, &json!({ "price_rounding_bug": true })).await;
    assert_eq!(
        (status, body),
        (StatusCode::OK, json!({ "price_rounding_bug": true }))
    );
    assert_eq!(get(&settings_url).await.1, json!({ "price_rounding_bug": true }));
    let (status, product) = get(&product_url).await;
    assert_eq!(status, StatusCode::OK, "{product}");
    assert_eq!(product["price_cents"], 2000, "{product}");
    assert_eq!(listed_price(&get(&list_url).await.1), json!(2000));
    // The seeded products' served prices no longer match the monolith's
    // unless a price happens to be whole dollars.
    for id in 1..=SEEDED_PRODUCTS {
        let (_, served) = get(&format!("{}/products/{id}", app.catalog.url)).await;
        let (_, legacy) = get(&format!("{}/products/{id}", app.monolith.url)).await;
        let exact = legacy["price_cents"].as_i64().expect("a price");
        assert_eq!(served["price_cents"], (exact + 50) / 100 * 100, "product {id}");
    }
    // Only the answers are wrong: the database keeps the exact price.
    assert_eq!(catalog_price(&app.catalog.db, odd.id).await.0, 1999);

    let (status, _) = put_json(&settings_url, &json!({ "price_rounding_bug": false })).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(get(&product_url).await.1["price_cents"], 1999);
    assert_eq!(listed_price(&get(&list_url).await.1), json!(1999));
    assert_eq!(catalog_price(&app.catalog.db, odd.id).await.0, 1999);
}

async fn bad_settings_are_refused_and_change_nothing(engine: Engine) {
    let Some(app) = spawn_app(engine).await else {
        return;
    };
    let settings_url = format!("{}/internal/settings", app.catalog.url);
    for (body, expected) in [
        (
            json!({ "price_rounding_bugs": true }),
            "unknown field `price_rounding_bugs`",
        ),
        (json!({ "price_rounding_bug": "yes" }), "invalid type"),
        (json!({}), "nothing to change"),
    ] {
        let (status, answer) = put_json(&settings_url, &body).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}: {answer}");
        let message = answer["error"].as_str().expect("an error message");
        assert!(message.contains(expected), "{body}: {message}");
    }
    let (status, answer) = send(
        http_client()
            .put(&settings_url)
            .header("content-type", "application/json")
            .body("{not json"),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
    assert_eq!(get(&settings_url).await.1, json!({ "price_rounding_bug": false }));
}

test_harness::on_each_engine!(
    the_price_bug_changes_served_prices_only,
    bad_settings_are_refused_and_change_nothing,
);
