//! The catalog service on a fresh database against the real monolith (from
//! `shop-test-support`), a stub of the monolith's inventory endpoints for
//! the failure cases, and the SQL that arranges the service's products.

use std::time::Duration;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use catalog_service::{Application, Config};
use legacy_monolith::seed::SeedSize;
use serde_json::json;
use shop_api::{StockLevel, StockUpdate};
use shop_test_support::upstreams::{refusal, SeenRequest, StubUpstream};
use shop_test_support::{any_port, Monolith, SpawnedApp, GRACE_PERIOD};
use test_harness::{Database, Engine};

pub use shop_test_support::http::{get, put_json, send};

/// The upstream timeout of services under test that talk to a real monolith.
pub const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(2);

/// How many products the monolith is seeded with.
pub const SEEDED_PRODUCTS: i64 = 5;

/// The real monolith seeded with [`SEEDED_PRODUCTS`] products, two
/// customers and no orders; `None` when the engine's server is unavailable.
pub async fn spawn_monolith(engine: Engine) -> Option<Monolith> {
    let size = SeedSize {
        products: SEEDED_PRODUCTS as usize,
        customers: 2,
        orders: 0,
    };
    Monolith::spawn(engine, size).await
}

/// Starts the catalog service against `monolith_url` on a fresh database;
/// `None` when the engine's server is unavailable. Its products table
/// starts empty.
pub async fn spawn_catalog(
    engine: Engine,
    monolith_url: &str,
    upstream_timeout: Duration,
) -> Option<SpawnedApp> {
    let monolith_url = monolith_url.parse().expect("a valid monolith URL");
    SpawnedApp::spawn(engine, |database_url| {
        Application::build(Config {
            listen: any_port(),
            database_url,
            monolith_url,
            upstream_timeout,
            grace_period: GRACE_PERIOD,
        })
    })
    .await
}

/// The monolith and the catalog service pointed at it, with the monolith's
/// products copied into the service's database.
pub struct TestApp {
    /// The real monolith.
    pub monolith: Monolith,
    /// The service under test.
    pub catalog: SpawnedApp,
}

/// Spawns both apps on `engine`; `None` when its server is unavailable.
pub async fn spawn_app(engine: Engine) -> Option<TestApp> {
    let monolith = spawn_monolith(engine).await?;
    let catalog = spawn_catalog(engine, &monolith.url, UPSTREAM_TIMEOUT).await?;
    copy_products(&monolith.db, &catalog.db).await;
    Some(TestApp { monolith, catalog })
}

/// A row of the monolith's products table.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct MonolithProduct {
    pub id: i64,
    pub sku: String,
    pub name: String,
    pub description: String,
    pub price_cents: i64,
    pub updated_at: String,
}

/// What the backfill will do, done by hand so the tests do not depend on it:
/// every monolith product into the service's schema (`name` → `title`,
/// `price_cents` → `unit_price_cents`).
pub async fn copy_products(monolith: &Database, catalog: &Database) {
    let products: Vec<MonolithProduct> = sqlx::query_as(
        "SELECT id, sku, name, description, price_cents, updated_at FROM products ORDER BY id",
    )
    .fetch_all(monolith.pool())
    .await
    .expect("reading the monolith's products");
    assert_eq!(products.len() as i64, SEEDED_PRODUCTS);
    for product in &products {
        insert_product(catalog, product).await;
    }
}

/// Inserts one product into the service's database.
pub async fn insert_product(catalog: &Database, product: &MonolithProduct) {
    sqlx::query(
        "INSERT INTO products (id, sku, title, description, unit_price_cents, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(product.id)
    .bind(&product.sku)
    .bind(&product.name)
    .bind(&product.description)
    .bind(product.price_cents)
    .bind(&product.updated_at)
    .execute(catalog.pool())
    .await
    .expect("inserting a product into the catalog's database");
}

/// The stored price and `updated_at` of the product at `id`, read from the
/// service's database.
pub async fn catalog_price(catalog: &Database, id: i64) -> (i64, String) {
    sqlx::query_as("SELECT unit_price_cents, updated_at FROM products WHERE id = $1")
        .bind(id)
        .fetch_one(catalog.pool())
        .await
        .expect("reading the catalog's products")
}

/// A product that exists only where it is inserted.
pub fn sample_product(id: i64) -> MonolithProduct {
    MonolithProduct {
        id,
        sku: format!("TEST-{id:05}"),
        name: format!("Test product {id}"),
        description: "Only in the catalog's database.".to_owned(),
        price_cents: 1_000 + id,
        updated_at: "2026-11-23T12:00:00.000Z".to_owned(),
    }
}

/// The stock the stub reports for every product.
pub const STUB_STOCK: i64 = 42;

/// A stand-in for the monolith's inventory endpoints that records what it
/// receives. With status 200 it answers stock [`STUB_STOCK`] for every
/// product; with any other status it answers that status and a plain-text
/// body.
pub async fn stub_monolith(status: StatusCode) -> StubUpstream {
    StubUpstream::spawn(move |request| async move { inventory_answer(status, &request) }).await
}

fn inventory_answer(status: StatusCode, request: &SeenRequest) -> Response {
    match (request.method.as_str(), request.segments().as_slice()) {
        ("GET", ["inventory"]) | ("PUT", ["inventory", _]) if status != StatusCode::OK => {
            (status, "stub failure").into_response()
        }
        ("GET", ["inventory"]) => {
            let levels: Vec<StockLevel> = request
                .query("product_ids")
                .expect("product ids")
                .split(',')
                .map(|id| StockLevel {
                    product_id: id.parse().expect("numeric product ids"),
                    stock: STUB_STOCK,
                })
                .collect();
            Json(levels).into_response()
        }
        ("PUT", ["inventory", product_id]) => {
            let product_id: i64 = product_id.parse().expect("a numeric product id");
            let update: StockUpdate = serde_json::from_value(request.body.clone()).expect("a stock update");
            Json(json!({ "product_id": product_id, "stock": update.stock })).into_response()
        }
        _ => refusal(
            StatusCode::NOT_FOUND,
            &format!("the stub does not serve {}", request.call()),
        ),
    }
}
