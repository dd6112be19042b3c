//! The orders service on a fresh database against the real monolith (both
//! started with `shop-test-support`), a stub of the monolith's saga
//! endpoints for the failure cases, and small HTTP and SQL helpers.
//!
//! The monolith is seeded small and then given exact prices, stock levels
//! and credit limits with SQL, so that every expected value in the tests is
//! a literal.

use std::time::Duration;

use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use legacy_monolith::seed::SeedSize;
use orders_service::dual_write::DualWriteConfig;
use orders_service::monolith_client::MonolithClient;
use orders_service::order_store::{OrderStore, FIRST_SERVICE_ORDER_ID};
use orders_service::recovery::{RecoveryConfig, SagaRecovery};
use orders_service::{Application, Config, MIGRATIONS};
use serde_json::{json, Value};
use service_runtime::idempotency::{IDEMPOTENCY_KEY_HEADER, REPLAYED_HEADER};
use service_runtime::DatabaseUrl;
use shop_api::{Payment, PaymentRequest, Reservation, ReservationRequest, ReservedLine};
use shop_test_support::upstreams::{refusal, SeenRequest, StubUpstream};
use shop_test_support::{any_port, Monolith, SpawnedApp, GRACE_PERIOD};
use sqlx::FromRow;
use test_harness::{http_client, Database, Engine, TestDatabase};

pub use shop_test_support::http::{get, send, Answer};

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
pub const SERVICE_TABLES: &[&str] = &["orders", "order_lines", "id_allocations", "idempotency_keys"];

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

/// The real monolith, seeded small and then given [`PRICES`], [`STOCK`]
/// and [`CREDIT_LIMIT`]; `None` when the engine's server is unavailable.
pub async fn spawn_monolith(engine: Engine) -> Option<Monolith> {
    let size = SeedSize {
        products: PRICES.len(),
        customers: CUSTOMERS,
        orders: SEEDED_ORDERS as usize,
    };
    let monolith = Monolith::spawn(engine, size).await?;
    let db = &monolith.db;
    for (product_id, price) in (1i64..).zip(PRICES) {
        execute(
            db,
            "UPDATE products SET price_cents = $1 WHERE id = $2",
            &[price, product_id],
        )
        .await;
        execute(
            db,
            "UPDATE inventory SET stock = $1 WHERE product_id = $2",
            &[STOCK, product_id],
        )
        .await;
    }
    execute(
        db,
        "UPDATE customers SET credit_limit_cents = $1",
        &[CREDIT_LIMIT],
    )
    .await;
    Some(monolith)
}

/// Builds the service's settings.
pub fn config(
    database_url: DatabaseUrl,
    monolith_url: &str,
    timeout: Duration,
    dual_write: DualWriteConfig,
) -> Config {
    Config {
        listen: any_port(),
        database_url,
        monolith_url: format!("{monolith_url}/").parse().expect("a valid monolith URL"),
        monolith_timeout: timeout,
        dual_write,
        grace_period: GRACE_PERIOD,
    }
}

/// Starts the orders service against `monolith_url` on a fresh database;
/// `None` when the engine's server is unavailable.
pub async fn spawn_orders(
    engine: Engine,
    monolith_url: &str,
    timeout: Duration,
    dual_write: DualWriteConfig,
) -> Option<SpawnedApp> {
    SpawnedApp::spawn(engine, |database_url| {
        Application::build(config(database_url, monolith_url, timeout, dual_write))
    })
    .await
}

/// The real monolith and the orders service pointed at it.
pub struct TestApp {
    /// The monolith: stock, payments, customers, dual-write target.
    pub monolith: Monolith,
    /// The service under test.
    pub orders: SpawnedApp,
}

/// Spawns both apps on `engine`; `None` when its server is unavailable.
pub async fn spawn_app(engine: Engine, dual_write: DualWriteConfig) -> Option<TestApp> {
    let monolith = spawn_monolith(engine).await?;
    let orders = spawn_orders(engine, &monolith.url, MONOLITH_TIMEOUT, dual_write).await?;
    Some(TestApp { monolith, orders })
}

// ---------------------------------------------------------------- HTTP

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

/// `POST {base}/orders` with an `Idempotency-Key`: status, headers, body.
pub async fn place_keyed(base: &str, key: &str, body: &Value) -> (StatusCode, HeaderMap, Value) {
    let response = http_client()
        .post(format!("{base}/orders"))
        .header(IDEMPOTENCY_KEY_HEADER.as_str(), key)
        .json(body)
        .send()
        .await
        .expect("placing an order");
    let status = response.status();
    let headers = response.headers().clone();
    (status, headers, response.json().await.expect("a JSON body"))
}

/// Whether an answer says it is a replay.
pub fn is_replay(headers: &HeaderMap) -> bool {
    headers
        .get(REPLAYED_HEADER.as_str())
        .is_some_and(|value| value == "true")
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

/// A fresh, migrated orders database with no service on it (so no
/// background recovery either); `None` when the engine's server is
/// unavailable.
pub async fn orders_database(engine: Engine) -> Option<(TestDatabase, Database)> {
    let database = TestDatabase::fresh(engine).await?;
    let db = Database::connect(database.url(), &MIGRATIONS)
        .await
        .expect("migrating the orders database");
    Some((database, db))
}

/// Saga recovery over `db`, compensating through the monolith at `monolith_url`.
pub fn recovery(db: &Database, monolith_url: &str, config: RecoveryConfig) -> SagaRecovery {
    SagaRecovery::new(OrderStore::new(db.clone()), monolith_client(monolith_url), config)
}

/// A client of the monolith at `monolith_url`, as the service builds it.
pub fn monolith_client(monolith_url: &str) -> MonolithClient {
    MonolithClient::new(
        format!("{monolith_url}/").parse().expect("a valid monolith URL"),
        MONOLITH_TIMEOUT,
    )
    .expect("a monolith client")
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

/// The unit price the stub monolith reserves every product at.
pub const STUB_UNIT_PRICE: i64 = 100;

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
pub async fn stub_monolith(delays: StubDelays) -> StubUpstream {
    StubUpstream::spawn(move |request| saga_answer(delays, request)).await
}

/// How the stub monolith of [`stub_monolith`] answers `request`.
pub async fn saga_answer(delays: StubDelays, request: SeenRequest) -> Response {
    match (request.method.as_str(), request.segments().as_slice()) {
        ("GET", ["customers", id]) => {
            let id: i64 = id.parse().unwrap_or_default();
            Json(json!({ "id": id, "email": format!("customer{id}@example.com"), "name": "Stub Customer" }))
                .into_response()
        }
        ("POST", ["inventory", "reservations"]) => {
            if let Some(delay) = delays.reservation {
                tokio::time::sleep(delay).await;
            }
            let Ok(reservation) = serde_json::from_value::<ReservationRequest>(request.body.clone()) else {
                return refusal(StatusCode::UNPROCESSABLE_ENTITY, "not a reservation request");
            };
            let reservation = Reservation {
                id: 1,
                reference: reservation.reference,
                status: "held".to_owned(),
                lines: reservation
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
            if let Some(delay) = delays.payment {
                tokio::time::sleep(delay).await;
            }
            let Ok(payment) = serde_json::from_value::<PaymentRequest>(request.body.clone()) else {
                return refusal(StatusCode::UNPROCESSABLE_ENTITY, "not a payment request");
            };
            let payment = Payment {
                id: 1,
                reference: payment.reference,
                order_id: payment.order_id,
                customer_id: payment.customer_id,
                amount_cents: payment.amount_cents,
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
        _ => refusal(
            StatusCode::NOT_FOUND,
            &format!("the stub does not serve {}", request.call()),
        ),
    }
}
