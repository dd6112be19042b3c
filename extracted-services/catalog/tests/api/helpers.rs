//! Spawning the real monolith and the catalog service for one test, stub
//! upstreams for the failure cases, and small HTTP and SQL helpers.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing;
use axum::{Json, Router};
use catalog_service::{Application, Config};
use legacy_monolith::seed::{seed_if_empty, SeedSize};
use serde::Deserialize;
use serde_json::{json, Value};
use service_runtime::request_id::REQUEST_ID_HEADER;
use shop_api::{StockLevel, StockUpdate};
use test_harness::{http_client, wait_until_healthy, Database, Engine, RunningApp, TestDatabase};
use tokio::sync::oneshot;

/// The upstream timeout of services under test that talk to a real monolith.
pub const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(2);

/// How many products the monolith is seeded with.
pub const SEEDED_PRODUCTS: i64 = 5;

fn any_port() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

/// The real monolith, seeded small, serving on a free port.
pub struct Monolith {
    /// Its base URL.
    pub url: String,
    /// A pool of its own on the monolith's database: stays usable after
    /// [`Monolith::stop`], which closes the app's pool.
    pub db: Database,
    app: RunningApp,
    _database: TestDatabase,
}

impl Monolith {
    /// `None` when the engine's server is unavailable (the test then skips).
    pub async fn spawn(engine: Engine) -> Option<Self> {
        let database = TestDatabase::fresh(engine).await?;
        let app = legacy_monolith::Application::build(legacy_monolith::Config {
            listen: any_port(),
            database_url: database.url().clone(),
            seed: false,
            grace_period: Duration::from_secs(1),
        })
        .await
        .expect("starting the monolith");
        let size = SeedSize {
            products: SEEDED_PRODUCTS as usize,
            customers: 2,
            orders: 0,
        };
        seed_if_empty(app.database(), size)
            .await
            .expect("seeding the monolith");
        let db = Database::connect(database.url(), &legacy_monolith::MIGRATIONS)
            .await
            .expect("opening the monolith's database for the test");
        let app = RunningApp::start(app).await;
        Some(Self {
            url: app.url.clone(),
            db,
            app,
            _database: database,
        })
    }

    /// Shuts the monolith down and waits until it no longer listens.
    pub async fn stop(&mut self) {
        self.app.stop().await;
    }
}

/// The catalog service under test, serving on a free port.
pub struct Catalog {
    /// Its base URL.
    pub url: String,
    /// Its database.
    pub db: Database,
    // Dropping the sender is the shutdown signal.
    _stop: oneshot::Sender<()>,
    _database: TestDatabase,
}

impl Catalog {
    /// Starts the service against `monolith_url`; `None` when the engine's
    /// server is unavailable. Its products table starts empty.
    pub async fn spawn(engine: Engine, monolith_url: &str, upstream_timeout: Duration) -> Option<Self> {
        let database = TestDatabase::fresh(engine).await?;
        let app = Application::build(Config {
            listen: any_port(),
            database_url: database.url().clone(),
            monolith_url: monolith_url.parse().expect("a valid monolith URL"),
            upstream_timeout,
            grace_period: Duration::from_secs(1),
        })
        .await
        .expect("starting the catalog service");
        let db = app.database().clone();
        let url = format!("http://{}", app.local_addr());
        let (stop, stopped) = oneshot::channel::<()>();
        tokio::spawn(app.run_until_stopped(async {
            let _ = stopped.await;
        }));
        wait_until_healthy(&url).await;
        Some(Self {
            url,
            db,
            _stop: stop,
            _database: database,
        })
    }
}

/// The monolith and the catalog service pointed at it, with the monolith's
/// products copied into the service's database.
pub struct TestApp {
    /// The real monolith.
    pub monolith: Monolith,
    /// The service under test.
    pub catalog: Catalog,
}

/// Spawns both apps on `engine`; `None` when its server is unavailable.
pub async fn spawn_app(engine: Engine) -> Option<TestApp> {
    let monolith = Monolith::spawn(engine).await?;
    let catalog = Catalog::spawn(engine, &monolith.url, UPSTREAM_TIMEOUT).await?;
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

/// An HTTP status and JSON body.
pub type Answer = (StatusCode, Value);

/// Sends a request and reads the JSON answer (panics when it is not JSON).
pub async fn send(request: reqwest::RequestBuilder) -> Answer {
    let response = request.send().await.expect("sending a request");
    let status = StatusCode::from_u16(response.status().as_u16()).expect("a valid status");
    let body: Value = response.json().await.expect("a JSON body");
    (status, body)
}

/// `GET url`.
pub async fn get(url: &str) -> Answer {
    send(http_client().get(url)).await
}

/// `PUT url` with a JSON body.
pub async fn put_json(url: &str, body: &Value) -> Answer {
    send(http_client().put(url).json(body)).await
}

/// The address of a port nothing listens on: bound, then released.
pub fn closed_port_url() -> String {
    let listener = std::net::TcpListener::bind(any_port()).expect("binding a port");
    let addr = listener.local_addr().expect("a local address");
    drop(listener);
    format!("http://{addr}")
}

/// A request the stub monolith received.
#[derive(Debug, Clone, PartialEq)]
pub struct SeenRequest {
    /// `GET` or `PUT`.
    pub method: &'static str,
    /// Path and query, for example `/inventory?product_ids=1,2`.
    pub target: String,
    /// Its `X-Request-Id`, if any.
    pub request_id: Option<String>,
}

/// A stand-in for the monolith's inventory endpoints that records what it
/// receives. With status 200 it answers stock `STUB_STOCK` for every product;
/// with any other status it answers that status and a plain-text body.
pub struct StubMonolith {
    /// Its base URL.
    pub url: String,
    seen: Arc<Mutex<Vec<SeenRequest>>>,
}

/// The stock the stub reports for every product.
pub const STUB_STOCK: i64 = 42;

#[derive(Clone)]
struct StubState {
    status: StatusCode,
    seen: Arc<Mutex<Vec<SeenRequest>>>,
}

impl StubState {
    fn record(&self, method: &'static str, target: String, headers: &HeaderMap) {
        let request_id = headers
            .get(REQUEST_ID_HEADER)
            .map(|value| value.to_str().expect("an ASCII request id").to_owned());
        self.seen.lock().expect("the stub's log").push(SeenRequest {
            method,
            target,
            request_id,
        });
    }
}

#[derive(Deserialize)]
struct StubQuery {
    product_ids: String,
}

async fn stub_levels(
    State(state): State<StubState>,
    headers: HeaderMap,
    Query(query): Query<StubQuery>,
) -> Response {
    state.record(
        "GET",
        format!("/inventory?product_ids={}", query.product_ids),
        &headers,
    );
    if state.status != StatusCode::OK {
        return (state.status, "stub failure").into_response();
    }
    let levels: Vec<StockLevel> = query
        .product_ids
        .split(',')
        .map(|id| StockLevel {
            product_id: id.parse().expect("numeric product ids"),
            stock: STUB_STOCK,
        })
        .collect();
    Json(levels).into_response()
}

async fn stub_set(
    State(state): State<StubState>,
    headers: HeaderMap,
    Path(product_id): Path<i64>,
    Json(update): Json<StockUpdate>,
) -> Response {
    state.record("PUT", format!("/inventory/{product_id}"), &headers);
    if state.status != StatusCode::OK {
        return (state.status, "stub failure").into_response();
    }
    Json(json!({ "product_id": product_id, "stock": update.stock })).into_response()
}

impl StubMonolith {
    /// Serves on a free port; requests queue in the listen backlog until the
    /// spawned server first runs, so no readiness wait is needed.
    pub async fn spawn(status: StatusCode) -> Self {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let router = Router::new()
            .route("/inventory", routing::get(stub_levels))
            .route("/inventory/{product_id}", routing::put(stub_set))
            .with_state(StubState {
                status,
                seen: Arc::clone(&seen),
            });
        let listener = tokio::net::TcpListener::bind(any_port())
            .await
            .expect("binding the stub");
        let url = format!("http://{}", listener.local_addr().expect("the stub's address"));
        tokio::spawn(async move { axum::serve(listener, router).await });
        Self { url, seen }
    }

    /// Every request received so far, in order.
    pub fn seen(&self) -> Vec<SeenRequest> {
        self.seen.lock().expect("the stub's log").clone()
    }
}
