//! Spawning the real monolith and the orders service for one test, stub and
//! silent upstreams for the failure cases, and small HTTP and SQL helpers.
//!
//! The monolith is seeded small and then given exact prices, stock levels
//! and credit limits with SQL, so that every expected value in the tests is
//! a literal.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use legacy_monolith::seed::{seed_if_empty, SeedReport, SeedSize};
use orders_service::dual_write::DualWriteConfig;
use orders_service::order_store::FIRST_SERVICE_ORDER_ID;
use orders_service::{Application, Config};
use serde_json::{json, Value};
use service_runtime::request_id::REQUEST_ID_HEADER;
use shop_api::{Payment, PaymentRequest, Reservation, ReservationRequest, ReservedLine};
use sqlx::FromRow;
use test_harness::{http_client, wait_until_healthy, Database, Engine, RunningApp, TestDatabase};
use tokio::task::JoinHandle;

/// The id of the first order the service places.
pub const FIRST_ID: i64 = FIRST_SERVICE_ORDER_ID;

/// The monolith timeout of services that talk to the real monolith.
pub const MONOLITH_TIMEOUT: Duration = Duration::from_secs(2);

/// The monolith timeout of the slow-upstream cases.
pub const SHORT_TIMEOUT: Duration = Duration::from_millis(300);

/// Unit prices of products 1 to 5, set in the monolith after seeding.
pub const PRICES: [i64; 5] = [1_250, 399, 2_000, 75, 10_000];

/// Units in stock of every product after seeding.
pub const STOCK: i64 = 20;

/// Every customer's credit limit after seeding: no test order reaches it
/// unless a test lowers it.
pub const CREDIT_LIMIT: i64 = 1_000_000;

/// Customers 1 to 3 exist in the monolith.
pub const CUSTOMERS: usize = 3;

/// Orders the monolith's seed places itself (ids 1 and 2).
pub const SEEDED_ORDERS: i64 = 2;

/// The service's tables, for before/after snapshots.
pub const SERVICE_TABLES: &[&str] = &["orders", "order_lines", "id_allocations"];

/// The monolith's tables an order could touch, for before/after snapshots.
pub const MONOLITH_TABLES: &[&str] = &[
    "orders",
    "order_lines",
    "inventory",
    "payments",
    "stock_reservations",
    "stock_reservation_lines",
    "id_allocations",
];

/// Dual writes on, nothing dropped.
pub const DUAL_WRITE_ON: DualWriteConfig = DualWriteConfig {
    enabled: true,
    fault_rate: 0.0,
};

/// Dual writes off.
pub const DUAL_WRITE_OFF: DualWriteConfig = DualWriteConfig {
    enabled: false,
    fault_rate: 0.0,
};

/// The monolith's price of a product.
pub fn price(product_id: i64) -> i64 {
    let index = usize::try_from(product_id - 1).expect("a product id from 1");
    PRICES[index]
}

/// The stock and payment reference the service uses for an order.
pub fn reference(order_id: i64) -> String {
    format!("orders-service:order:{order_id}")
}

fn any_port() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

/// The real monolith, seeded small, serving on a free port.
pub struct Monolith {
    /// Its base URL, without a trailing slash.
    pub url: String,
    /// The app's own pool; closed once [`Monolith::stop`] has run.
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
        let db = app.database().clone();
        let size = SeedSize {
            products: PRICES.len(),
            customers: CUSTOMERS,
            orders: 2,
        };
        let report = seed_if_empty(&db, size).await.expect("seeding the monolith");
        assert_eq!(
            report,
            SeedReport::Loaded {
                products: PRICES.len(),
                customers: CUSTOMERS,
                orders: 2
            }
        );
        for (product_id, price) in (1i64..).zip(PRICES) {
            execute(
                &db,
                "UPDATE products SET price_cents = $1 WHERE id = $2",
                &[price, product_id],
            )
            .await;
            execute(
                &db,
                "UPDATE inventory SET stock = $1 WHERE product_id = $2",
                &[STOCK, product_id],
            )
            .await;
        }
        execute(
            &db,
            "UPDATE customers SET credit_limit_cents = $1",
            &[CREDIT_LIMIT],
        )
        .await;
        let app = RunningApp::start(app).await;
        Some(Self {
            url: app.url.clone(),
            db,
            app,
            _database: database,
        })
    }

    /// Shuts the monolith down and waits until it no longer listens. Its
    /// pool ([`Monolith::db`]) is closed with it.
    pub async fn stop(&mut self) {
        self.app.stop().await;
    }
}

/// The orders service under test, serving on a free port.
pub struct OrdersService {
    /// Its base URL, without a trailing slash.
    pub url: String,
    /// Its own database (the app's pool).
    pub db: Database,
    _database: TestDatabase,
}

/// Builds the service's settings.
pub fn config(
    database: &TestDatabase,
    monolith_url: &str,
    timeout: Duration,
    dual_write: DualWriteConfig,
) -> Config {
    Config {
        listen: any_port(),
        database_url: database.url().clone(),
        monolith_url: format!("{monolith_url}/").parse().expect("a valid monolith URL"),
        monolith_timeout: timeout,
        dual_write,
        grace_period: Duration::from_secs(1),
    }
}

impl OrdersService {
    /// Starts the service against `monolith_url` on a fresh database; `None`
    /// when the engine's server is unavailable.
    pub async fn spawn(
        engine: Engine,
        monolith_url: &str,
        timeout: Duration,
        dual_write: DualWriteConfig,
    ) -> Option<Self> {
        let database = TestDatabase::fresh(engine).await?;
        let app = Application::build(config(&database, monolith_url, timeout, dual_write))
            .await
            .expect("starting the orders service");
        let db = app.database().clone();
        let url = format!("http://{}", app.local_addr());
        tokio::spawn(app.run_until_stopped(std::future::pending()));
        wait_until_healthy(&url).await;
        Some(Self {
            url,
            db,
            _database: database,
        })
    }
}

/// The real monolith and the orders service pointed at it.
pub struct TestApp {
    /// The monolith: stock, payments, customers, dual-write target.
    pub monolith: Monolith,
    /// The service under test.
    pub orders: OrdersService,
}

/// Spawns both apps on `engine`; `None` when its server is unavailable.
pub async fn spawn_app(engine: Engine, dual_write: DualWriteConfig) -> Option<TestApp> {
    let monolith = Monolith::spawn(engine).await?;
    let orders = OrdersService::spawn(engine, &monolith.url, MONOLITH_TIMEOUT, dual_write).await?;
    Some(TestApp { monolith, orders })
}

// ---------------------------------------------------------------- HTTP

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

/// The body of `POST /orders`.
pub fn new_order(customer_id: i64, lines: &[(i64, i64)]) -> Value {
    let lines: Vec<Value> = lines
        .iter()
        .map(|&(product_id, quantity)| json!({ "product_id": product_id, "quantity": quantity }))
        .collect();
    json!({ "customer_id": customer_id, "lines": lines })
}

/// `POST {base}/orders` for `(product_id, quantity)` lines.
pub async fn place(base: &str, customer_id: i64, lines: &[(i64, i64)]) -> Answer {
    send(
        http_client()
            .post(format!("{base}/orders"))
            .json(&new_order(customer_id, lines)),
    )
    .await
}

/// Places an order that must succeed and returns its body.
pub async fn place_ok(base: &str, customer_id: i64, lines: &[(i64, i64)]) -> Value {
    let (status, order) = place(base, customer_id, lines).await;
    assert_eq!(status, StatusCode::CREATED, "{order}");
    order
}

/// `POST {base}/orders/{id}/cancel`.
pub async fn cancel(base: &str, id: i64) -> Answer {
    send(http_client().post(format!("{base}/orders/{id}/cancel"))).await
}

/// The lines an order of `(product_id, quantity)` gets at the monolith's prices.
pub fn priced_lines(lines: &[(i64, i64)]) -> Value {
    lines
        .iter()
        .map(|&(product_id, quantity)| {
            json!({ "product_id": product_id, "quantity": quantity, "unit_price_cents": price(product_id) })
        })
        .collect()
}

/// `GET {base}/internal/dual-write`.
pub async fn dual_write_stats(base: &str) -> Value {
    let (status, stats) = get(&format!("{base}/internal/dual-write")).await;
    assert_eq!(status, StatusCode::OK, "{stats}");
    stats
}

/// The expected dual-write counters.
pub fn stats(enabled: bool, fault_rate: f64, written: u64, failed: u64, dropped: u64) -> Value {
    json!({
        "enabled": enabled,
        "fault_rate": fault_rate,
        "written": written,
        "failed": failed,
        "dropped_by_fault_injection": dropped,
    })
}

/// The `id` of an order body.
pub fn id_of(order: &Value) -> i64 {
    order["id"].as_i64().expect("an order id")
}

// ---------------------------------------------------------------- SQL

/// Runs one statement with integer parameters.
pub async fn execute(db: &Database, sql: &str, params: &[i64]) {
    let mut query = sqlx::query(sql);
    for param in params {
        query = query.bind(*param);
    }
    query
        .execute(db.pool())
        .await
        .unwrap_or_else(|e| panic!("running `{sql}`: {e}"));
}

/// Rows in a table.
pub async fn count(db: &Database, table: &str) -> i64 {
    let (n,): (i64,) = sqlx::query_as(&format!("SELECT COUNT(*) FROM {table}"))
        .fetch_one(db.pool())
        .await
        .unwrap_or_else(|e| panic!("counting {table}: {e}"));
    n
}

/// The monolith's stock of products 1 to 5.
pub async fn all_stock(db: &Database) -> Vec<i64> {
    let rows: Vec<(i64,)> = sqlx::query_as("SELECT stock FROM inventory ORDER BY product_id")
        .fetch_all(db.pool())
        .await
        .expect("reading the monolith's inventory");
    rows.into_iter().map(|(stock,)| stock).collect()
}

/// A monolith reservation: its status and `(product_id, quantity, unit_price_cents)` lines.
pub async fn reservation(db: &Database, reference: &str) -> Option<(String, Vec<(i64, i64, i64)>)> {
    let row: Option<(i64, String)> =
        sqlx::query_as("SELECT id, status FROM stock_reservations WHERE reference = $1")
            .bind(reference)
            .fetch_optional(db.pool())
            .await
            .expect("reading the monolith's reservations");
    let (id, status) = row?;
    let lines: Vec<(i64, i64, i64)> = sqlx::query_as(
        "SELECT product_id, quantity, unit_price_cents FROM stock_reservation_lines \
         WHERE reservation_id = $1 ORDER BY line_no",
    )
    .bind(id)
    .fetch_all(db.pool())
    .await
    .expect("reading the monolith's reservation lines");
    Some((status, lines))
}

/// A row of the monolith's payments table.
#[derive(Debug, Clone, PartialEq, Eq, FromRow)]
pub struct PaymentRow {
    pub order_id: i64,
    pub customer_id: i64,
    pub amount_cents: i64,
    pub status: String,
}

/// The monolith's payment with `reference`.
pub async fn payment(db: &Database, reference: &str) -> Option<PaymentRow> {
    sqlx::query_as("SELECT order_id, customer_id, amount_cents, status FROM payments WHERE reference = $1")
        .bind(reference)
        .fetch_optional(db.pool())
        .await
        .expect("reading the monolith's payments")
}

/// A row of the service's orders table.
#[derive(Debug, Clone, PartialEq, Eq, FromRow)]
pub struct ServiceOrder {
    pub customer_id: i64,
    pub state: String,
    pub total_cents: i64,
    pub failure_reason: Option<String>,
}

/// The service's order row `id`, whatever its state.
pub async fn service_order(db: &Database, id: i64) -> Option<ServiceOrder> {
    sqlx::query_as("SELECT customer_id, state, total_cents, failure_reason FROM orders WHERE id = $1")
        .bind(id)
        .fetch_optional(db.pool())
        .await
        .expect("reading the service's orders")
}

/// `(line_no, product_id, quantity, unit_price_cents)` of an order, in
/// either database (both name the table and columns the same).
pub async fn order_lines(db: &Database, order_id: i64) -> Vec<(i64, i64, i64, i64)> {
    sqlx::query_as(
        "SELECT line_no, product_id, quantity, unit_price_cents FROM order_lines \
         WHERE order_id = $1 ORDER BY line_no",
    )
    .bind(order_id)
    .fetch_all(db.pool())
    .await
    .expect("reading order lines")
}

/// A row of the monolith's orders table.
#[derive(Debug, Clone, PartialEq, Eq, FromRow)]
pub struct MonolithOrder {
    pub customer_id: i64,
    pub status: String,
    pub total_cents: i64,
    pub origin: String,
    pub created_at: String,
    pub updated_at: String,
}

/// The monolith's order row `id`.
pub async fn monolith_order(db: &Database, id: i64) -> Option<MonolithOrder> {
    sqlx::query_as(
        "SELECT customer_id, status, total_cents, origin, created_at, updated_at FROM orders WHERE id = $1",
    )
    .bind(id)
    .fetch_optional(db.pool())
    .await
    .expect("reading the monolith's orders")
}

/// The first order the monolith's seed left `placed`.
pub async fn seeded_placed_order(db: &Database) -> i64 {
    let (id,): (i64,) = sqlx::query_as("SELECT id FROM orders WHERE status = 'placed' ORDER BY id LIMIT 1")
        .fetch_one(db.pool())
        .await
        .expect("the seed places at least one order that stays placed");
    id
}

/// What the backfill does for one order, done by hand so the tests do not
/// depend on it: the monolith's order and lines into the service's schema
/// (`status` → `state`).
pub async fn backfill_order(monolith: &Database, service: &Database, id: i64) {
    let order = monolith_order(monolith, id)
        .await
        .expect("the order exists in the monolith");
    sqlx::query(
        "INSERT INTO orders (id, customer_id, state, total_cents, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(id)
    .bind(order.customer_id)
    .bind(&order.status)
    .bind(order.total_cents)
    .bind(&order.created_at)
    .bind(&order.updated_at)
    .execute(service.pool())
    .await
    .expect("copying the order into the service's database");
    for (line_no, product_id, quantity, unit_price_cents) in order_lines(monolith, id).await {
        execute(
            service,
            "INSERT INTO order_lines (order_id, line_no, product_id, quantity, unit_price_cents) \
             VALUES ($1, $2, $3, $4, $5)",
            &[id, line_no, product_id, quantity, unit_price_cents],
        )
        .await;
    }
}

// ---------------------------------------------------------------- upstreams

/// The base URL of a port nothing listens on: bound, then released.
pub fn closed_port_url() -> String {
    let listener = std::net::TcpListener::bind(any_port()).expect("binding a port");
    let addr = listener.local_addr().expect("a local address");
    drop(listener);
    format!("http://{addr}")
}

/// An upstream that accepts connections, holds them open and never
/// answers a byte.
pub struct SilentUpstream {
    /// Its base URL.
    pub url: String,
    accepted: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

impl SilentUpstream {
    /// Listens on a free port and accepts in the background.
    pub async fn spawn() -> Self {
        let listener = tokio::net::TcpListener::bind(any_port())
            .await
            .expect("binding the silent upstream");
        let url = format!("http://{}", listener.local_addr().expect("an address"));
        let accepted = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&accepted);
        let task = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((socket, _)) = listener.accept().await {
                counter.fetch_add(1, Ordering::SeqCst);
                held.push(socket);
            }
        });
        Self { url, accepted, task }
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

impl Drop for SilentUpstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The unit price the stub monolith reserves every product at.
pub const STUB_UNIT_PRICE: i64 = 100;

/// A request the stub monolith received.
#[derive(Debug, Clone, PartialEq)]
pub struct SeenRequest {
    /// `METHOD /path`, for example `POST /payments`.
    pub call: String,
    /// Its `X-Request-Id`, if any.
    pub request_id: Option<String>,
    /// Its JSON body, `null` when it had none.
    pub body: Value,
}

/// Which stub endpoints answer late (after the service gave up).
#[derive(Debug, Clone, Copy, Default)]
pub struct StubDelays {
    /// Delay of `POST /inventory/reservations`.
    pub reservation: Option<Duration>,
    /// Delay of `POST /payments`.
    pub payment: Option<Duration>,
}

/// A stand-in for the monolith that implements just enough of the saga's
/// endpoints and records every request it receives.
pub struct StubMonolith {
    /// Its base URL.
    pub url: String,
    seen: Arc<Mutex<Vec<SeenRequest>>>,
}

#[derive(Clone)]
struct StubState {
    delays: StubDelays,
    seen: Arc<Mutex<Vec<SeenRequest>>>,
}

fn stub_refusal(status: StatusCode, message: String) -> Response {
    (status, Json(json!({ "error": message, "detail": null }))).into_response()
}

async fn stub_handler(
    State(state): State<StubState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path().to_owned();
    let body: Value = if body.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&body)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&body).into_owned()))
    };
    state.seen.lock().expect("the stub's log").push(SeenRequest {
        call: format!("{method} {path}"),
        request_id: headers
            .get(REQUEST_ID_HEADER)
            .map(|value| value.to_str().expect("an ASCII request id").to_owned()),
        body: body.clone(),
    });
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    match (method.as_str(), segments.as_slice()) {
        ("GET", ["customers", id]) => {
            let id: i64 = id.parse().unwrap_or_default();
            Json(json!({ "id": id, "email": format!("customer{id}@example.com"), "name": "Stub Customer" }))
                .into_response()
        }
        ("POST", ["inventory", "reservations"]) => {
            if let Some(delay) = state.delays.reservation {
                tokio::time::sleep(delay).await;
            }
            let Ok(request) = serde_json::from_value::<ReservationRequest>(body) else {
                return stub_refusal(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "not a reservation request".to_owned(),
                );
            };
            let reservation = Reservation {
                id: 1,
                reference: request.reference,
                status: "held".to_owned(),
                lines: request
                    .lines
                    .iter()
                    .map(|line| ReservedLine {
                        product_id: line.product_id,
                        quantity: line.quantity,
                        unit_price_cents: STUB_UNIT_PRICE,
                    })
                    .collect(),
            };
            (StatusCode::CREATED, Json(reservation)).into_response()
        }
        ("POST", ["inventory", "reservations", reference, "release"]) => Json(Reservation {
            id: 1,
            reference: (*reference).to_owned(),
            status: "released".to_owned(),
            lines: Vec::new(),
        })
        .into_response(),
        ("POST", ["payments"]) => {
            if let Some(delay) = state.delays.payment {
                tokio::time::sleep(delay).await;
            }
            let Ok(request) = serde_json::from_value::<PaymentRequest>(body) else {
                return stub_refusal(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "not a payment request".to_owned(),
                );
            };
            let payment = Payment {
                id: 1,
                reference: request.reference,
                order_id: request.order_id,
                customer_id: request.customer_id,
                amount_cents: request.amount_cents,
                status: "captured".to_owned(),
            };
            (StatusCode::CREATED, Json(payment)).into_response()
        }
        ("POST", ["payments", reference, "refund"]) => Json(Payment {
            id: 1,
            reference: (*reference).to_owned(),
            order_id: 0,
            customer_id: 0,
            amount_cents: 0,
            status: "refunded".to_owned(),
        })
        .into_response(),
        ("PUT", ["internal", "orders", _]) => Json(json!({})).into_response(),
        _ => stub_refusal(
            StatusCode::NOT_FOUND,
            format!("the stub does not serve {method} {path}"),
        ),
    }
}

impl StubMonolith {
    /// Serves on a free port; requests queue in the listen backlog until the
    /// spawned server first runs, so no readiness wait is needed.
    pub async fn spawn(delays: StubDelays) -> Self {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let router = Router::new().fallback(stub_handler).with_state(StubState {
            delays,
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

    /// `METHOD /path` of every request received so far, in order.
    pub fn calls(&self) -> Vec<String> {
        self.seen().into_iter().map(|seen| seen.call).collect()
    }
}
