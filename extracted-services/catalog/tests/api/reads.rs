//! Reads answer exactly what the monolith answers for the same products.

use axum::http::StatusCode;
use serde_json::{json, Value};
use test_harness::{http_client, Engine};

use crate::helpers::{get, insert_product, sample_product, send, spawn_app, SEEDED_PRODUCTS};

async fn list_matches_the_monolith(engine: Engine) {
    let Some(app) = spawn_app(engine).await else {
        return;
    };
    for query in [
        "",
        "?limit=2",
        "?limit=2&cursor=2",
        "?limit=200",
        "?cursor=4",
        "?cursor=5",
        "?cursor=-9",
    ] {
        let catalog = get(&format!("{}/products{query}", app.catalog.url)).await;
        let monolith = get(&format!("{}/products{query}", app.monolith.url)).await;
        assert_eq!(catalog.0, StatusCode::OK, "{query}: {}", catalog.1);
        assert_eq!(catalog, monolith, "GET /products{query}");
    }
    let (_, page) = get(&format!("{}/products", app.catalog.url)).await;
    let items = page["items"].as_array().expect("items");
    assert_eq!(items.len() as i64, SEEDED_PRODUCTS);
    assert!(
        items.iter().all(|item| item["stock"].as_i64() > Some(0)),
        "the seed stocks every product, so stock must come from the monolith: {page}"
    );
}

async fn get_matches_the_monolith(engine: Engine) {
    let Some(app) = spawn_app(engine).await else {
        return;
    };
    for id in 1..=SEEDED_PRODUCTS {
        let catalog = get(&format!("{}/products/{id}", app.catalog.url)).await;
        let monolith = get(&format!("{}/products/{id}", app.monolith.url)).await;
        assert_eq!(catalog.0, StatusCode::OK, "{}", catalog.1);
        assert_eq!(catalog, monolith, "GET /products/{id}");
    }
}

async fn pagination_walks_every_product_once(engine: Engine) {
    let Some(app) = spawn_app(engine).await else {
        return;
    };
    let mut ids = Vec::new();
    let mut cursor: Option<i64> = None;
    let mut pages = 0;
    loop {
        let query = cursor.map_or_else(|| "?limit=2".to_owned(), |c| format!("?limit=2&cursor={c}"));
        let (status, page) = get(&format!("{}/products{query}", app.catalog.url)).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        pages += 1;
        let items = page["items"].as_array().expect("items");
        assert!(items.len() <= 2, "{page}");
        ids.extend(items.iter().map(|item| item["id"].as_i64().expect("an id")));
        cursor = page["next_cursor"].as_i64();
        if cursor.is_none() {
            break;
        }
        assert_eq!(
            cursor,
            ids.last().copied(),
            "the cursor is the last id of the page"
        );
    }
    assert_eq!(ids, (1..=SEEDED_PRODUCTS).collect::<Vec<_>>());
    assert_eq!(pages, 3);
}

async fn bad_requests_answer_like_the_monolith(engine: Engine) {
    let Some(app) = spawn_app(engine).await else {
        return;
    };
    let client = http_client();
    let cases = [
        ("GET", "/products/999", StatusCode::NOT_FOUND),
        ("GET", "/products/abc", StatusCode::BAD_REQUEST),
        ("GET", "/products?limit=0", StatusCode::BAD_REQUEST),
        ("GET", "/products?limit=201", StatusCode::BAD_REQUEST),
        ("GET", "/products?limit=many", StatusCode::BAD_REQUEST),
        ("GET", "/products?cursor=abc", StatusCode::BAD_REQUEST),
        ("GET", "/products?colour=red", StatusCode::BAD_REQUEST),
        ("GET", "/no-such-endpoint", StatusCode::NOT_FOUND),
        ("DELETE", "/products/1", StatusCode::METHOD_NOT_ALLOWED),
        ("POST", "/products", StatusCode::METHOD_NOT_ALLOWED),
    ];
    for (method, path, expected) in cases {
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("a method");
        let catalog = send(client.request(method.clone(), format!("{}{path}", app.catalog.url))).await;
        let monolith = send(client.request(method.clone(), format!("{}{path}", app.monolith.url))).await;
        assert_eq!(catalog.0, expected, "{method} {path}: {}", catalog.1);
        assert!(catalog.1["error"].is_string(), "{method} {path}: {}", catalog.1);
        assert_eq!(catalog, monolith, "{method} {path}");
    }
    let (_, body) = get(&format!("{}/products/999", app.catalog.url)).await;
    assert_eq!(
        body,
        json!({ "error": "product 999 does not exist", "detail": null })
    );
}

async fn stock_the_monolith_does_not_report_is_zero(engine: Engine) {
    let Some(app) = spawn_app(engine).await else {
        return;
    };
    let only_here = sample_product(SEEDED_PRODUCTS + 1);
    insert_product(&app.catalog.db, &only_here).await;
    let (status, product) = get(&format!("{}/products/{}", app.catalog.url, only_here.id)).await;
    assert_eq!(status, StatusCode::OK, "{product}");
    assert_eq!(
        product,
        json!({
            "id": only_here.id,
            "sku": only_here.sku,
            "name": only_here.name,
            "description": only_here.description,
            "price_cents": only_here.price_cents,
            "stock": 0,
            "updated_at": only_here.updated_at,
        })
    );
    let (_, page) = get(&format!("{}/products", app.catalog.url)).await;
    let stocks: Vec<Value> = page["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|item| item["stock"].clone())
        .collect();
    assert_eq!(stocks.len() as i64, SEEDED_PRODUCTS + 1, "{page}");
    assert_eq!(stocks.last(), Some(&json!(0)), "{page}");
}

test_harness::on_each_engine!(
    list_matches_the_monolith,
    get_matches_the_monolith,
    pagination_walks_every_product_once,
    bad_requests_answer_like_the_monolith,
    stock_the_monolith_does_not_report_is_zero,
);
