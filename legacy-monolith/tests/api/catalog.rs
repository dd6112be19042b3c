//! Products (`GET /products`, `GET|PUT /products/{id}`), stock levels
//! (`GET /inventory`, `PUT /inventory/{id}`) and `GET /customers/{id}`.

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use service_runtime::pagination::Page;
use shop_api::{Customer, Product, StockLevel};
use test_harness::Engine;

use crate::helpers::{
    json_body, price, spawn_app, Refusal, Request, TestApp, NO_SUCH_PRODUCT, PRICES, STOCK,
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

    let bad_page = |query: &str| {
        Refusal::new(
            query,
            Request::get(format!("/products{query}")),
            StatusCode::BAD_REQUEST,
        )
    };
    let out_of_range =
        ["?limit=0", "?limit=201", "?limit=-1"].map(|query| bad_page(query).error_contains("limit"));
    let malformed = [
        "?limit=abc",
        "?limit=",
        "?limit=1.5",
        "?cursor=abc",
        "?page=2",
        "?limit=1&limit=2",
    ]
    .map(bad_page);
    app.assert_refusals(out_of_range.into_iter().chain(malformed))
        .await;
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

    let product = |id: &str, status| {
        Refusal::new(
            format!("product {id}"),
            Request::get(format!("/products/{id}")),
            status,
        )
    };
    app.assert_refusals([
        product("999", StatusCode::NOT_FOUND).error_contains("999"),
        product("0", StatusCode::NOT_FOUND),
        product("abc", StatusCode::BAD_REQUEST),
        product("1.5", StatusCode::BAD_REQUEST),
        product("99999999999999999999", StatusCode::BAD_REQUEST),
    ])
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

    let update = |name: &str, body: Value| {
        Refusal::new(
            name,
            Request::put_json("/products/1", body),
            StatusCode::UNPROCESSABLE_ENTITY,
        )
    };
    let field = |name: &str| json!({ "field": name });
    let raw = |name: &str, content_type, text: &str, status| {
        Refusal::new(
            name,
            Request::raw(Method::PUT, "/products/1", content_type, text),
            status,
        )
    };
    let json_type = Some("application/json");
    app.assert_refusals([
        update("a negative price", json!({ "price_cents": -1 })).detail(field("price_cents")),
        update("a negative stock", json!({ "stock": -1 })).detail(field("stock")),
        update(
            "a price and a negative stock",
            json!({ "price_cents": 100, "stock": -5 }),
        )
        .detail(field("stock")),
        update("nothing to change", json!({})),
        update("a null price", json!({ "price_cents": null })),
        update("an unknown field", json!({ "price_cents": 100, "colour": "red" })),
        update("a price as text", json!({ "price_cents": "cheap" })),
        raw(
            "truncated JSON",
            json_type,
            "{\"price_cents\": 1",
            StatusCode::BAD_REQUEST,
        ),
        raw("an empty body", json_type, "", StatusCode::BAD_REQUEST),
        raw(
            "no content type",
            None,
            "{\"price_cents\": 1}",
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
        ),
        raw(
            "a text content type",
            Some("text/plain"),
            "{\"price_cents\": 1}",
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
        ),
        Refusal::new(
            "an unknown product",
            Request::put_json(
                format!("/products/{NO_SUCH_PRODUCT}"),
                json!({ "price_cents": 1 }),
            ),
            StatusCode::NOT_FOUND,
        ),
        Refusal::new(
            "an id that is not a number",
            Request::put_json("/products/abc", json!({ "price_cents": 1 })),
            StatusCode::BAD_REQUEST,
        ),
    ])
    .await;
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

    let too_many = (1..=201).map(|n| n.to_string()).collect::<Vec<_>>().join(",");
    let levels = |name: &str, query: &str| {
        Refusal::new(
            name,
            Request::get(format!("/inventory{query}")),
            StatusCode::BAD_REQUEST,
        )
    };
    app.assert_refusals([
        Refusal::new(
            "a negative stock",
            Request::put_json("/inventory/2", json!({ "stock": -1 })),
            StatusCode::UNPROCESSABLE_ENTITY,
        )
        .detail(json!({ "field": "stock" })),
        Refusal::new(
            "an unknown product",
            Request::put_json("/inventory/999", json!({ "stock": 1 })),
            StatusCode::NOT_FOUND,
        ),
        Refusal::new(
            "no stock",
            Request::put_json("/inventory/2", json!({})),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        levels("an id that is not a number", "?product_ids=1,x"),
        levels("no ids", ""),
        levels("201 ids", &format!("?product_ids={too_many}")),
    ])
    .await;
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

    app.assert_refusals([
        Refusal::new(
            "an unknown customer",
            Request::get("/customers/999"),
            StatusCode::NOT_FOUND,
        ),
        Refusal::new(
            "an id that is not a number",
            Request::get("/customers/abc"),
            StatusCode::BAD_REQUEST,
        ),
    ])
    .await;
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
