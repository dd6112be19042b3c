//! Starting the monolith on a fresh database, loading a small fixture with
//! known values, and the request and assertion helpers every module shares.

use std::time::Duration;

use legacy_monolith::seed::{seed_if_empty, SeedReport, SeedSize};
use legacy_monolith::{Application, Config};
use reqwest::header::CONTENT_TYPE;
use reqwest::{Method, Response, StatusCode};
use serde_json::Value;
use service_runtime::Database;
use test_harness::SqlValue;
use test_harness::{Engine, TestDatabase};

/// A running monolith and the database behind it.
pub struct TestApp {
    /// `http://127.0.0.1:PORT`.
    pub address: String,
    /// The monolith's own pool, for arranging and checking rows.
    pub db: Database,
    /// A client whose requests time out.
    pub client: reqwest::Client,
    // Keeps the SQLite file (or the PostgreSQL database) for the test.
    _database: TestDatabase,
}

/// Starts the monolith on port 0 against a fresh database of `engine` and
/// waits until `/health` answers; `None` when the engine's server is absent
/// (the harness has printed why).
pub async fn spawn_app(engine: Engine) -> Option<TestApp> {
    let database = TestDatabase::fresh(engine).await?;
    let app = Application::build(Config {
        listen: "127.0.0.1:0".parse().expect("a valid listen address"),
        database_url: database.url().clone(),
        seed: false,
        grace_period: Duration::from_secs(1),
    })
    .await
    .expect("building the monolith");
    let address = format!("http://{}", app.local_addr());
    let db = app.database().clone();
    tokio::spawn(async move {
        app.run_until_stopped(std::future::pending())
            .await
            .expect("serving the monolith");
    });
    test_harness::wait_until_healthy(&address).await;
    Some(TestApp {
        address,
        db,
        client: test_harness::http_client(),
        _database: database,
    })
}

// ---------------------------------------------------------------------------
// The fixture: `seed_if_empty` with a tiny size, then exact values by SQL.
// ---------------------------------------------------------------------------

/// Products 1 to 5 and their unit prices after [`TestApp::load_fixture`].
pub const PRICES: [(i64, i64); 5] = [(1, 1_000), (2, 2_500), (3, 399), (4, 10_000), (5, 50)];
/// Every product's stock after [`TestApp::load_fixture`].
pub const STOCK: i64 = 10;
/// A customer whose credit limit never gets in the way (1,000,000 cents).
pub const RICH: i64 = 1;
/// A customer with a credit limit of [`POOR_LIMIT`].
pub const POOR: i64 = 2;
/// [`POOR`]'s credit limit in cents.
pub const POOR_LIMIT: i64 = 5_000;
/// A third customer, also with a 1,000,000 cents limit.
pub const OTHER: i64 = 3;
/// Orders 1 to 4 exist (placed by the seed); the monolith's next id is 5.
pub const SEEDED_ORDERS: i64 = 4;
/// A product id that does not exist.
pub const NO_SUCH_PRODUCT: i64 = 999;
/// A customer id that does not exist.
pub const NO_SUCH_CUSTOMER: i64 = 999;

/// The unit price of a fixture product.
pub fn price(product_id: i64) -> i64 {
    PRICES
        .iter()
        .find(|(id, _)| *id == product_id)
        .map(|(_, price)| *price)
        .expect("a fixture product")
}

/// Every table of the monolith, for before/after comparisons.
pub const ALL_TABLES: &[&str] = &[
    "customers",
    "products",
    "inventory",
    "id_allocations",
    "orders",
    "order_lines",
    "payments",
    "stock_reservations",
    "stock_reservation_lines",
];

/// Every row of every table.
pub type Snapshot = Vec<(String, Vec<Vec<SqlValue>>)>;

/// Every row of every table of the monolith.
pub async fn snapshot_all(app: &TestApp) -> Snapshot {
    test_harness::snapshot(&app.db, ALL_TABLES).await
}

impl TestApp {
    /// Loads 5 products, 3 customers and 4 orders with `seed_if_empty`,
    /// then sets the values tests rely on: [`PRICES`], [`STOCK`] for every
    /// product, and the credit limits of [`RICH`], [`POOR`] and [`OTHER`].
    pub async fn load_fixture(&self) {
        let size = SeedSize {
            products: 5,
            customers: 3,
            orders: SEEDED_ORDERS as usize,
        };
        let report = seed_if_empty(&self.db, size).await.expect("seeding the fixture");
        assert_eq!(
            report,
            SeedReport::Loaded {
                products: 5,
                customers: 3,
                orders: SEEDED_ORDERS as usize
            }
        );
        for (id, price) in PRICES {
            self.execute("UPDATE products SET price_cents = $1 WHERE id = $2", &[price, id])
                .await;
        }
        let stocked = self.execute("UPDATE inventory SET stock = $1", &[STOCK]).await;
        assert_eq!(stocked, 5);
        for (id, limit) in [(RICH, 1_000_000), (POOR, POOR_LIMIT), (OTHER, 1_000_000)] {
            let updated = self
                .execute(
                    "UPDATE customers SET credit_limit_cents = $1 WHERE id = $2",
                    &[limit, id],
                )
                .await;
            assert_eq!(updated, 1, "customer {id} exists");
        }
    }

    /// Runs a statement with integer parameters; returns the rows affected.
    pub async fn execute(&self, sql: &str, binds: &[i64]) -> u64 {
        let mut query = sqlx::query(sql);
        for value in binds {
            query = query.bind(*value);
        }
        query
            .execute(self.db.pool())
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
            .rows_affected()
    }

    /// The one integer a query returns.
    pub async fn scalar(&self, sql: &str, binds: &[i64]) -> i64 {
        let mut query = sqlx::query_as::<_, (i64,)>(sql);
        for value in binds {
            query = query.bind(*value);
        }
        query
            .fetch_one(self.db.pool())
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
            .0
    }

    /// The one text a query returns.
    pub async fn text(&self, sql: &str, binds: &[i64]) -> String {
        let mut query = sqlx::query_as::<_, (String,)>(sql);
        for value in binds {
            query = query.bind(*value);
        }
        query
            .fetch_one(self.db.pool())
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
            .0
    }

    /// A product's stock as stored.
    pub async fn stock(&self, product_id: i64) -> i64 {
        self.scalar("SELECT stock FROM inventory WHERE product_id = $1", &[product_id])
            .await
    }

    /// The stock of products 1 to 5, in id order.
    pub async fn all_stock(&self) -> Vec<i64> {
        let rows: Vec<(i64,)> = sqlx::query_as("SELECT stock FROM inventory ORDER BY product_id")
            .fetch_all(self.db.pool())
            .await
            .expect("reading stock");
        rows.into_iter().map(|(stock,)| stock).collect()
    }

    /// Sets a product's stock directly in the database.
    pub async fn set_stock(&self, product_id: i64, stock: i64) {
        let updated = self
            .execute(
                "UPDATE inventory SET stock = $1 WHERE product_id = $2",
                &[stock, product_id],
            )
            .await;
        assert_eq!(updated, 1, "product {product_id} has an inventory row");
    }

    /// `(reference, order_id, customer_id, amount_cents, status)` of a payment.
    pub async fn payment_row(&self, reference: &str) -> Option<(String, i64, i64, i64, String)> {
        sqlx::query_as(
            "SELECT reference, order_id, customer_id, amount_cents, status FROM payments WHERE reference = $1",
        )
        .bind(reference)
        .fetch_optional(self.db.pool())
        .await
        .expect("reading a payment")
    }

    // -----------------------------------------------------------------------
    // Requests
    // -----------------------------------------------------------------------

    /// The absolute URL of `path`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.address)
    }

    /// `GET path`.
    pub async fn get(&self, path: &str) -> Response {
        self.client
            .get(self.url(path))
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {path}: {e}"))
    }

    /// `POST path` with a JSON body.
    pub async fn post_json(&self, path: &str, body: &Value) -> Response {
        self.client
            .post(self.url(path))
            .json(body)
            .send()
            .await
            .unwrap_or_else(|e| panic!("POST {path}: {e}"))
    }

    /// `PUT path` with a JSON body.
    pub async fn put_json(&self, path: &str, body: &Value) -> Response {
        self.client
            .put(self.url(path))
            .json(body)
            .send()
            .await
            .unwrap_or_else(|e| panic!("PUT {path}: {e}"))
    }

    /// `POST path` without a body (cancel, release, refund).
    pub async fn post_empty(&self, path: &str) -> Response {
        self.client
            .post(self.url(path))
            .send()
            .await
            .unwrap_or_else(|e| panic!("POST {path}: {e}"))
    }

    /// Any method with a raw body and an optional `Content-Type`.
    pub async fn send_raw(
        &self,
        method: Method,
        path: &str,
        content_type: Option<&str>,
        body: &str,
    ) -> Response {
        let mut request = self
            .client
            .request(method.clone(), self.url(path))
            .body(body.to_owned());
        if let Some(content_type) = content_type {
            request = request.header(CONTENT_TYPE, content_type);
        }
        request
            .send()
            .await
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"))
    }

    /// Places an order that must succeed and returns its body.
    pub async fn place_order(&self, customer_id: i64, lines: &[(i64, i64)]) -> shop_api::Order {
        let body = order_body(customer_id, lines);
        let order = json_body(self.post_json("/orders", &body).await, StatusCode::CREATED).await;
        serde_json::from_value(order).expect("an order body")
    }
}

/// The JSON body of `POST /orders` for `(product_id, quantity)` lines.
pub fn order_body(customer_id: i64, lines: &[(i64, i64)]) -> Value {
    serde_json::json!({
        "customer_id": customer_id,
        "lines": lines_json(lines),
    })
}

/// `[{"product_id": …, "quantity": …}, …]`.
pub fn lines_json(lines: &[(i64, i64)]) -> Value {
    lines
        .iter()
        .map(|(product_id, quantity)| serde_json::json!({ "product_id": product_id, "quantity": quantity }))
        .collect()
}

// ---------------------------------------------------------------------------
// Response assertions
// ---------------------------------------------------------------------------

/// Asserts the status and a JSON `Content-Type`, and returns the parsed body.
pub async fn json_body(response: Response, expected: StatusCode) -> Value {
    let status = response.status();
    let url = response.url().to_string();
    let content_type = response
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let text = response.text().await.expect("reading a response body");
    assert_eq!(status, expected, "status of {url}; body: {text}");
    assert!(
        content_type.starts_with("application/json"),
        "{url} answered Content-Type `{content_type}`, not JSON; body: {text}"
    );
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{url} answered invalid JSON ({e}): {text}"))
}

/// Asserts an error response: the status, a JSON body whose `error` is a
/// non-empty string, and a `detail` key (null when there is none). Returns
/// the body.
pub async fn error_body(response: Response, expected: StatusCode) -> Value {
    let body = json_body(response, expected).await;
    let error = body["error"]
        .as_str()
        .unwrap_or_else(|| panic!("the error body has no string `error`: {body}"));
    assert!(!error.trim().is_empty(), "empty error message: {body}");
    assert!(
        body.as_object().is_some_and(|o| o.contains_key("detail")),
        "the error body has no `detail`: {body}"
    );
    body
}
