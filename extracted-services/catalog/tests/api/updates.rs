//! `PUT /products/{id}`: price here, stock in the monolith, bad bodies nowhere.

use axum::http::StatusCode;
use serde_json::json;
use test_harness::{http_client, snapshot, Database, Engine};

use crate::helpers::{catalog_price, get, put_json, send, spawn_app};

async fn monolith_stock(db: &Database, id: i64) -> i64 {
    let (stock,): (i64,) = sqlx::query_as("SELECT stock FROM inventory WHERE product_id = $1")
        .bind(id)
        .fetch_one(db.pool())
        .await
        .expect("reading the monolith's inventory");
    stock
}

async fn price_update_persists_in_the_service_only(engine: Engine) {
    let Some(app) = spawn_app(engine).await else {
        return;
    };
    let url = format!("{}/products/2", app.catalog.url);
    let (_, before) = get(&url).await;
    let monolith_before = snapshot(&app.monolith.db, &["products", "inventory"]).await;

    let (status, updated) = put_json(&url, &json!({ "price_cents": 12_345 })).await;

    assert_eq!(status, StatusCode::OK, "{updated}");
    assert_eq!(updated["price_cents"], 12_345);
    assert_ne!(
        updated["updated_at"], before["updated_at"],
        "a price change is a catalog change"
    );
    for unchanged in ["id", "sku", "name", "description", "stock"] {
        assert_eq!(updated[unchanged], before[unchanged], "{unchanged}");
    }
    assert_eq!(
        get(&url).await,
        (StatusCode::OK, updated.clone()),
        "the change is served"
    );
    let (price, updated_at) = catalog_price(&app.catalog.db, 2).await;
    assert_eq!(price, 12_345);
    assert_eq!(json!(updated_at), updated["updated_at"]);
    assert_eq!(
        snapshot(&app.monolith.db, &["products", "inventory"]).await,
        monolith_before,
        "the monolith's products are no longer the catalog's source of truth"
    );
    let (_, in_monolith) = get(&format!("{}/products/2", app.monolith.url)).await;
    assert_eq!(in_monolith["price_cents"], before["price_cents"]);
}

async fn stock_update_changes_the_monolith_inventory(engine: Engine) {
    let Some(app) = spawn_app(engine).await else {
        return;
    };
    let url = format!("{}/products/3", app.catalog.url);
    let (_, before) = get(&url).await;
    let catalog_before = snapshot(&app.catalog.db, &["products"]).await;

    let (status, updated) = put_json(&url, &json!({ "stock": 7 })).await;

    assert_eq!(status, StatusCode::OK, "{updated}");
    let mut expected = before.clone();
    expected["stock"] = json!(7);
    assert_eq!(updated, expected, "a stock-only update changes only the stock");
    assert_eq!(monolith_stock(&app.monolith.db, 3).await, 7);
    assert_eq!(
        snapshot(&app.catalog.db, &["products"]).await,
        catalog_before,
        "stock is not stored in the catalog"
    );
    let monolith_view = get(&format!("{}/products/3", app.monolith.url)).await;
    assert_eq!(
        get(&url).await,
        monolith_view,
        "both sides agree after the update"
    );

    let (status, both) = put_json(&url, &json!({ "price_cents": 999, "stock": 0 })).await;
    assert_eq!(status, StatusCode::OK, "{both}");
    assert_eq!(
        (both["price_cents"].clone(), both["stock"].clone()),
        (json!(999), json!(0))
    );
    assert_eq!(monolith_stock(&app.monolith.db, 3).await, 0);
    assert_eq!(catalog_price(&app.catalog.db, 3).await.0, 999);
    let (_, in_monolith) = get(&format!("{}/products/3", app.monolith.url)).await;
    assert_eq!(in_monolith["price_cents"], before["price_cents"]);
}

async fn invalid_updates_answer_like_the_monolith_and_change_nothing(engine: Engine) {
    let Some(app) = spawn_app(engine).await else {
        return;
    };
    let client = http_client();
    let catalog_before = snapshot(&app.catalog.db, &["products"]).await;
    let monolith_before = snapshot(&app.monolith.db, &["products", "inventory"]).await;
    let json_type = Some("application/json");
    let cases = [
        ("/products/1", json_type, "{}", StatusCode::UNPROCESSABLE_ENTITY),
        (
            "/products/1",
            json_type,
            r#"{"price_cents": -1}"#,
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            "/products/1",
            json_type,
            r#"{"stock": -1}"#,
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            "/products/1",
            json_type,
            r#"{"price_cents": 5, "stock": -1}"#,
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            "/products/1",
            json_type,
            r#"{"price_cents": "cheap"}"#,
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            "/products/1",
            json_type,
            r#"{"name": "Renamed"}"#,
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        ("/products/1", json_type, "{not json", StatusCode::BAD_REQUEST),
        ("/products/1", json_type, "", StatusCode::BAD_REQUEST),
        (
            "/products/1",
            None,
            r#"{"price_cents": 5}"#,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
        ),
        (
            "/products/999",
            json_type,
            r#"{"price_cents": 5, "stock": 5}"#,
            StatusCode::NOT_FOUND,
        ),
        (
            "/products/abc",
            json_type,
            r#"{"price_cents": 5}"#,
            StatusCode::BAD_REQUEST,
        ),
    ];
    for (path, content_type, body, expected) in cases {
        let request = |base: &str| {
            let request = client.put(format!("{base}{path}")).body(body);
            match content_type {
                Some(value) => request.header("content-type", value),
                None => request,
            }
        };
        let catalog = send(request(&app.catalog.url)).await;
        let monolith = send(request(&app.monolith.url)).await;
        assert_eq!(catalog.0, expected, "PUT {path} {body}: {}", catalog.1);
        assert_eq!(catalog, monolith, "PUT {path} {body}");
    }
    assert_eq!(snapshot(&app.catalog.db, &["products"]).await, catalog_before);
    assert_eq!(
        snapshot(&app.monolith.db, &["products", "inventory"]).await,
        monolith_before
    );
}

test_harness::on_each_engine!(
    price_update_persists_in_the_service_only,
    stock_update_changes_the_monolith_inventory,
    invalid_updates_answer_like_the_monolith_and_change_nothing,
);
