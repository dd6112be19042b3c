//! Products (`GET /products`, `GET|PUT /products/{id}`), stock levels
//! (`GET /inventory`, `PUT /inventory/{id}`) and `GET /customers/{id}`.

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use service_runtime::pagination::Page;
use shop_api::{Customer, Product, StockLevel};
use test_harness::Engine;

use crate::helpers::{
    error_body, json_body, price, snapshot_all, spawn_app, TestApp, NO_SUCH_PRODUCT, PRICES, STOCK,
};

async fn page(app: &TestApp, query: &str) -> Page<Product> {
    let body = json_body(app.get(&format!("/products{query}")).await, StatusCode::OK).await;
    serde_json::from_value(body).expect("a page of products")
}

fn ids(products: &[Product]) -> Vec<i64> {
    products.iter().map(|p| p.id).collect()
}

async fn products_are_listed_with_their_stock(engine: Engine) {
    let Some(app) = spawn_app(engine).await else {
        return;
    };
    app.load_fixture().await;
    app.set_stock(4, 0).await;

    let all = page(&app, "").await;
    assert_eq!(ids(&all.items), vec![1, 2, 3, 4, 5]);
    assert_eq!(all.next_cursor, None);
    for product in &all.items {
        assert_eq!(product.price_cents, price(product.id));
        assert_eq!(product.stock, if product.id == 4 { 0 } else { STOCK });
        assert_eq!(product.sku, format!("SKU-{:05}", product.id));
        let (name, description, updated_at) = sqlx::query_as::<_, (String, String, String)>(
            "SELECT name, description, updated_at FROM products WHERE id = $1",
        )
        .bind(product.id)
        .fetch_one(app.db.pool())
        .await
        .expect("reading a product");
        assert_eq!(
            (&product.name, &product.description, &product.updated_at),
            (&name, &description, &updated_at)
        );
        assert!(!product.name.is_empty());
    }
}

async fn products_are_paged_by_cursor(engine: Engine) {
    let Some(app) = spawn_app(engine).await else {
        return;
    };
    app.load_fixture().await;

    let first = page(&app, "?limit=2").await;
    assert_eq!(ids(&first.items), vec![1, 2]);
    assert_eq!(first.next_cursor, Some(2));

    let second = page(&app, "?limit=2&cursor=2").await;
    assert_eq!(ids(&second.items), vec![3, 4]);
    assert_eq!(second.next_cursor, Some(4));

    let last = page(&app, "?limit=2&cursor=4").await;
    assert_eq!(ids(&last.items), vec![5]);
    assert_eq!(last.next_cursor, None, "the last page has no next cursor");

    // Exactly `limit` rows left: still the last page.
    let exact = page(&app, "?cursor=2&limit=3").await;
    assert_eq!(ids(&exact.items), vec![3, 4, 5]);
    assert_eq!(exact.next_cursor, None);

    let beyond = page(&app, "?cursor=5").await;
    assert!(beyond.items.is_empty());
    assert_eq!(beyond.next_cursor, None);

    let widest = page(&app, "?limit=200").await;
    assert_eq!(ids(&widest.items), vec![1, 2, 3, 4, 5]);
    let narrowest = page(&app, "?limit=1").await;
    assert_eq!(ids(&narrowest.items), vec![1]);
    assert_eq!(narrowest.next_cursor, Some(1));

    // The pages together are the whole list, in the same form.
    let whole = page(&app, "").await;
    let mut stitched = first.items;
    stitched.extend(second.items);
    stitched.extend(last.items);
    assert_eq!(stitched, whole.items);
}

async fn bad_page_parameters_are_400(engine: Engine) {
    let Some(app) = spawn_app(engine).await else {
        return;
    };
    app.load_fixture().await;

    for query in ["?limit=0", "?limit=201", "?limit=-1"] {
        let body = error_body(
            app.get(&format!("/products{query}")).await,
            StatusCode::BAD_REQUEST,
        )
        .await;
        let message = body["error"].as_str().unwrap_or_default();
        assert!(message.contains("limit"), "{query}: {message}");
    }
    for query in [
        "?limit=abc",
        "?limit=",
        "?limit=1.5",
        "?cursor=abc",
        "?page=2",
        "?limit=1&limit=2",
    ] {
        error_body(
            app.get(&format!("/products{query}")).await,
            StatusCode::BAD_REQUEST,
        )
        .await;
    }
}

async fn a_product_is_fetched_by_id(engine: Engine) {
    let Some(app) = spawn_app(engine).await else {
        return;
    };
    app.load_fixture().await;

    let body = json_body(app.get("/products/3").await, StatusCode::OK).await;
    let product: Product = serde_json::from_value(body).expect("a product");
    assert_eq!(product.id, 3);
    assert_eq!(product.sku, "SKU-00003");
    assert_eq!(product.price_cents, 399);
    assert_eq!(product.stock, STOCK);
    let listed = page(&app, "").await;
    assert_eq!(Some(&product), listed.items.iter().find(|p| p.id == 3));

    let missing = error_body(app.get("/products/999").await, StatusCode::NOT_FOUND).await;
    assert!(
        missing["error"].as_str().unwrap_or_default().contains("999"),
        "{missing}"
    );
    error_body(app.get("/products/0").await, StatusCode::NOT_FOUND).await;
    error_body(app.get("/products/abc").await, StatusCode::BAD_REQUEST).await;
    error_body(app.get("/products/1.5").await, StatusCode::BAD_REQUEST).await;
    error_body(
        app.get("/products/99999999999999999999").await,
        StatusCode::BAD_REQUEST,
    )
    .await;
}

async fn price_and_stock_are_updated(engine: Engine) {
    let Some(app) = spawn_app(engine).await else {
        return;
    };
    app.load_fixture().await;

    let body = json_body(
        app.put_json("/products/2", &json!({ "price_cents": 1_999, "stock": 42 }))
            .await,
        StatusCode::OK,
    )
    .await;
    let updated: Product = serde_json::from_value(body).expect("a product");
    assert_eq!((updated.id, updated.price_cents, updated.stock), (2, 1_999, 42));
    assert_eq!(
        app.scalar("SELECT price_cents FROM products WHERE id = 2", &[])
            .await,
        1_999
    );
    assert_eq!(app.stock(2).await, 42);
    let fetched: Product =
        serde_json::from_value(json_body(app.get("/products/2").await, StatusCode::OK).await)
            .expect("a product");
    assert_eq!(fetched, updated);

    // Price alone leaves the stock; stock alone leaves the price.
    let body = json_body(
        app.put_json("/products/2", &json!({ "price_cents": 0 })).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(
        (body["price_cents"].as_i64(), body["stock"].as_i64()),
        (Some(0), Some(42))
    );
    let body = json_body(
        app.put_json("/products/2", &json!({ "stock": 0 })).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(
        (body["price_cents"].as_i64(), body["stock"].as_i64()),
        (Some(0), Some(0))
    );
    assert_eq!(
        app.scalar("SELECT price_cents FROM products WHERE id = 2", &[])
            .await,
        0
    );
    assert_eq!(app.stock(2).await, 0);

    // Other products are untouched.
    for (id, price) in PRICES.into_iter().filter(|(id, _)| *id != 2) {
        assert_eq!(
            app.scalar("SELECT price_cents FROM products WHERE id = $1", &[id])
                .await,
            price
        );
        assert_eq!(app.stock(id).await, STOCK);
    }
}

async fn invalid_product_updates_change_nothing(engine: Engine) {
    let Some(app) = spawn_app(engine).await else {
        return;
    };
    app.load_fixture().await;
    let before = snapshot_all(&app).await;

    let cases: [(Value, StatusCode, Option<&str>); 7] = [
        (
            json!({ "price_cents": -1 }),
            StatusCode::UNPROCESSABLE_ENTITY,
            Some("price_cents"),
        ),
        (
            json!({ "stock": -1 }),
            StatusCode::UNPROCESSABLE_ENTITY,
            Some("stock"),
        ),
        (
            json!({ "price_cents": 100, "stock": -5 }),
            StatusCode::UNPROCESSABLE_ENTITY,
            Some("stock"),
        ),
        (json!({}), StatusCode::UNPROCESSABLE_ENTITY, None),
        (
            json!({ "price_cents": null }),
            StatusCode::UNPROCESSABLE_ENTITY,
            None,
        ),
        (
            json!({ "price_cents": 100, "colour": "red" }),
            StatusCode::UNPROCESSABLE_ENTITY,
            None,
        ),
        (
            json!({ "price_cents": "cheap" }),
            StatusCode::UNPROCESSABLE_ENTITY,
            None,
        ),
    ];
    for (update, status, field) in cases {
        let body = error_body(app.put_json("/products/1", &update).await, status).await;
        if let Some(field) = field {
            assert_eq!(body["detail"]["field"], field, "{update}: {body}");
        }
        assert_eq!(snapshot_all(&app).await, before, "{update} changed the database");
    }

    let raw = [
        (
            Some("application/json"),
            "{\"price_cents\": 1",
            StatusCode::BAD_REQUEST,
        ),
        (Some("application/json"), "", StatusCode::BAD_REQUEST),
        (None, "{\"price_cents\": 1}", StatusCode::UNSUPPORTED_MEDIA_TYPE),
        (
            Some("text/plain"),
            "{\"price_cents\": 1}",
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
        ),
    ];
    for (content_type, text, status) in raw {
        error_body(
            app.send_raw(Method::PUT, "/products/1", content_type, text).await,
            status,
        )
        .await;
        assert_eq!(snapshot_all(&app).await, before, "{text:?} changed the database");
    }

    error_body(
        app.put_json(
            &format!("/products/{NO_SUCH_PRODUCT}"),
            &json!({ "price_cents": 1 }),
        )
        .await,
        StatusCode::NOT_FOUND,
    )
    .await;
    error_body(
        app.put_json("/products/abc", &json!({ "price_cents": 1 })).await,
        StatusCode::BAD_REQUEST,
    )
    .await;
    assert_eq!(snapshot_all(&app).await, before);
}

async fn stock_levels_are_read_and_set(engine: Engine) {
    let Some(app) = spawn_app(engine).await else {
        return;
    };
    app.load_fixture().await;
    app.set_stock(3, 7).await;

    let body = json_body(app.get("/inventory?product_ids=3,1,999").await, StatusCode::OK).await;
    let levels: Vec<StockLevel> = serde_json::from_value(body).expect("stock levels");
    assert_eq!(
        levels,
        vec![
            StockLevel {
                product_id: 1,
                stock: STOCK
            },
            StockLevel {
                product_id: 3,
                stock: 7
            },
        ]
    );
    let body = json_body(app.get("/inventory?product_ids=").await, StatusCode::OK).await;
    assert_eq!(body, json!([]));

    let body = json_body(
        app.put_json("/inventory/2", &json!({ "stock": 25 })).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(body, json!({ "product_id": 2, "stock": 25 }));
    assert_eq!(app.stock(2).await, 25);

    let before = snapshot_all(&app).await;
    let body = error_body(
        app.put_json("/inventory/2", &json!({ "stock": -1 })).await,
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
    assert_eq!(body["detail"]["field"], "stock");
    error_body(
        app.put_json("/inventory/999", &json!({ "stock": 1 })).await,
        StatusCode::NOT_FOUND,
    )
    .await;
    error_body(
        app.put_json("/inventory/2", &json!({})).await,
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
    error_body(
        app.get("/inventory?product_ids=1,x").await,
        StatusCode::BAD_REQUEST,
    )
    .await;
    error_body(app.get("/inventory").await, StatusCode::BAD_REQUEST).await;
    let too_many = (1..=201).map(|n| n.to_string()).collect::<Vec<_>>().join(",");
    error_body(
        app.get(&format!("/inventory?product_ids={too_many}")).await,
        StatusCode::BAD_REQUEST,
    )
    .await;
    assert_eq!(snapshot_all(&app).await, before);
}

async fn customers_are_fetched_by_id(engine: Engine) {
    let Some(app) = spawn_app(engine).await else {
        return;
    };
    app.load_fixture().await;

    let body = json_body(app.get("/customers/2").await, StatusCode::OK).await;
    let customer: Customer = serde_json::from_value(body).expect("a customer");
    let (email, name) =
        sqlx::query_as::<_, (String, String)>("SELECT email, name FROM customers WHERE id = 2")
            .fetch_one(app.db.pool())
            .await
            .expect("reading a customer");
    assert_eq!(customer, Customer { id: 2, email, name });
    assert!(customer.email.ends_with("2@example.com"), "{}", customer.email);

    error_body(app.get("/customers/999").await, StatusCode::NOT_FOUND).await;
    error_body(app.get("/customers/abc").await, StatusCode::BAD_REQUEST).await;
}

test_harness::on_each_engine!(
    products_are_listed_with_their_stock,
    products_are_paged_by_cursor,
    bad_page_parameters_are_400,
    a_product_is_fetched_by_id,
    price_and_stock_are_updated,
    invalid_product_updates_change_nothing,
    stock_levels_are_read_and_set,
    customers_are_fetched_by_id,
);
