//! Starting the monolith on a fresh database, loading a small fixture with
//! known values, and the request and assertion helpers every module shares:
//! among them [`Refusal`], one case of a table of requests the monolith must
//! refuse without changing a row.

use legacy_monolith::seed::{seed_if_empty, SeedReport, SeedSize};
use reqwest::header::CONTENT_TYPE;
use reqwest::{Method, Response, StatusCode};
use serde_json::Value;
use service_runtime::Database;
use shop_test_support::{spawn_empty_monolith, SpawnedApp};
use test_harness::{Engine, SqlValue};

/// A running monolith and the database behind it.
pub struct TestApp {
    /// `http://127.0.0.1:PORT`.
    pub address: String,
    /// The monolith's own pool, for arranging and checking rows.
    pub db: Database,
    /// A client whose requests time out.
    pub client: reqwest::Client,
    // Serves until the test ends; keeps the SQLite file (or the PostgreSQL
    // database) for the test.
    app: SpawnedApp,
}

/// Starts the monolith on port 0 against a fresh database of `engine` and
/// waits until `/health` answers; `None` when the engine's server is absent
/// (the harness has printed why).
pub async fn spawn_app(engine: Engine) -> Option<TestApp> {
    let app = spawn_empty_monolith(engine).await?;
    Some(TestApp {
        address: app.url.clone(),
        db: app.db.clone(),
        client: test_harness::http_client(),
        app,
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
    "idempotency_keys",
];

/// Every row of every table.
pub type Snapshot = Vec<(String, Vec<Vec<SqlValue>>)>;

/// Every row of every table of the monolith.
pub async fn snapshot_all(app: &TestApp) -> Snapshot {
    test_harness::snapshot(&app.db, ALL_TABLES).await
}

impl TestApp {
    /// The URL of the monolith's database, to serve it from a second server.
    pub fn database_url(&self) -> &service_runtime::DatabaseUrl {
        self.app.database_url()
    }

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
        self.one(sql, binds).await
    }

    /// The one text a query returns.
    pub async fn text(&self, sql: &str, binds: &[i64]) -> String {
        self.one(sql, binds).await
    }

    /// The one value a query with integer parameters returns.
    async fn one<T>(&self, sql: &str, binds: &[i64]) -> T
    where
        for<'r> (T,): sqlx::FromRow<'r, sqlx::any::AnyRow>,
        T: Send + Unpin,
    {
        let mut query = sqlx::query_as::<_, (T,)>(sql);
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

    /// Sends `request`.
    pub async fn send(&self, request: &Request) -> Response {
        let builder = self
            .client
            .request(request.method.clone(), self.url(&request.path));
        let builder = match &request.body {
            Body::Empty => builder,
            Body::Json(body) => builder.json(body),
            Body::Raw { content_type, text } => {
                let builder = builder.body(text.clone());
                match content_type {
                    Some(content_type) => builder.header(CONTENT_TYPE, *content_type),
                    None => builder,
                }
            }
        };
        builder
            .send()
            .await
            .unwrap_or_else(|e| panic!("{} {}: {e}", request.method, request.path))
    }

    /// `GET path`.
    pub async fn get(&self, path: &str) -> Response {
        self.send(&Request::get(path)).await
    }

    /// `POST path` with a JSON body.
    pub async fn post_json(&self, path: &str, body: &Value) -> Response {
        self.send(&Request::post_json(path, body.clone())).await
    }

    /// `PUT path` with a JSON body.
    pub async fn put_json(&self, path: &str, body: &Value) -> Response {
        self.send(&Request::put_json(path, body.clone())).await
    }

    /// Any method with a raw body and an optional `Content-Type`.
    pub async fn send_raw(
        &self,
        method: Method,
        path: &str,
        content_type: Option<&'static str>,
        body: &str,
    ) -> Response {
        self.send(&Request::raw(method, path, content_type, body)).await
    }

    /// Sends every case in turn: each must be refused with its status, a
    /// JSON error body (its `detail` and `error` as the case pins them) and
    /// leave every table as it was before the first.
    pub async fn assert_refusals(&self, cases: impl IntoIterator<Item = Refusal>) {
        let before = snapshot_all(self).await;
        for case in cases {
            let name = &case.name;
            let body = error_body_of(name, self.send(&case.request).await, case.status).await;
            if let Some(detail) = &case.detail {
                assert_eq!(&body["detail"], detail, "{name}: {body}");
            }
            if let Some(text) = &case.error_contains {
                let error = body["error"].as_str().unwrap_or_default();
                assert!(error.contains(text.as_str()), "{name}: `{text}` not in {body}");
            }
            assert_eq!(snapshot_all(self).await, before, "{name} changed the database");
        }
    }

    /// Sends `request` again, as a client retrying after a timeout would:
    /// it must be answered 200 with `expected`, the first answer, and change
    /// no row.
    pub async fn assert_replay(&self, name: &str, request: &Request, expected: &Value) {
        let before = snapshot_all(self).await;
        let body = json_body_of(name, self.send(request).await, StatusCode::OK).await;
        assert_eq!(
            &body, expected,
            "{name}: the replay answers what the first request did"
        );
        assert_eq!(snapshot_all(self).await, before, "{name} changed the database");
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
// Tables of requests
// ---------------------------------------------------------------------------

/// One request: method, path and body.
#[derive(Debug, Clone)]
pub struct Request {
    /// Its method.
    pub method: Method,
    /// Its path and query, for example `/orders/1`.
    pub path: String,
    /// What it carries.
    pub body: Body,
}

/// What a [`Request`] carries.
#[derive(Debug, Clone)]
pub enum Body {
    /// Nothing.
    Empty,
    /// A JSON value, sent with a JSON `Content-Type`.
    Json(Value),
    /// Text as given, with a `Content-Type` or none.
    Raw {
        content_type: Option<&'static str>,
        text: String,
    },
}

impl Request {
    /// `GET path`.
    pub fn get(path: impl Into<String>) -> Self {
        Self::new(Method::GET, path, Body::Empty)
    }

    /// `POST path` without a body (cancel, release, refund).
    pub fn post_empty(path: impl Into<String>) -> Self {
        Self::new(Method::POST, path, Body::Empty)
    }

    /// `POST path` with a JSON body.
    pub fn post_json(path: impl Into<String>, body: Value) -> Self {
        Self::new(Method::POST, path, Body::Json(body))
    }

    /// `PUT path` with a JSON body.
    pub fn put_json(path: impl Into<String>, body: Value) -> Self {
        Self::new(Method::PUT, path, Body::Json(body))
    }

    /// Any method with a raw body and an optional `Content-Type`.
    pub fn raw(
        method: Method,
        path: impl Into<String>,
        content_type: Option<&'static str>,
        text: impl Into<String>,
    ) -> Self {
        let text = text.into();
        Self::new(method, path, Body::Raw { content_type, text })
    }

    fn new(method: Method, path: impl Into<String>, body: Body) -> Self {
        Self {
            method,
            path: path.into(),
            body,
        }
    }
}

/// A request the monolith must refuse without changing a single row: one
/// case of a table for [`TestApp::assert_refusals`].
#[derive(Debug, Clone)]
pub struct Refusal {
    /// Names the case in every assertion message.
    pub name: String,
    /// What is sent.
    pub request: Request,
    /// The status expected.
    pub status: StatusCode,
    /// The whole `detail` expected, when the case pins it.
    pub detail: Option<Value>,
    /// Text the `error` message must contain, when the case pins it.
    pub error_contains: Option<String>,
}

impl Refusal {
    /// A case that pins the status only (and a JSON error body).
    pub fn new(name: impl Into<String>, request: Request, status: StatusCode) -> Self {
        Self {
            name: name.into(),
            request,
            status,
            detail: None,
            error_contains: None,
        }
    }

    /// The case also pins the whole `detail`.
    pub fn detail(self, detail: Value) -> Self {
        Self {
            detail: Some(detail),
            ..self
        }
    }

    /// The case also pins text the `error` message contains.
    pub fn error_contains(self, text: impl Into<String>) -> Self {
        Self {
            error_contains: Some(text.into()),
            ..self
        }
    }
}

// ---------------------------------------------------------------------------
// Response assertions
// ---------------------------------------------------------------------------

/// Asserts the status and a JSON `Content-Type`, and returns the parsed body.
pub async fn json_body(response: Response, expected: StatusCode) -> Value {
    json_body_of("", response, expected).await
}

/// [`json_body`], naming the case `name` in its assertion messages.
pub async fn json_body_of(name: &str, response: Response, expected: StatusCode) -> Value {
    let case = if name.is_empty() {
        String::new()
    } else {
        format!("{name}: ")
    };
    let status = response.status();
    let url = response.url().to_string();
    let content_type = response
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let text = response.text().await.expect("reading a response body");
    assert_eq!(status, expected, "{case}status of {url}; body: {text}");
    assert!(
        content_type.starts_with("application/json"),
        "{case}{url} answered Content-Type `{content_type}`, not JSON; body: {text}"
    );
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{case}{url} answered invalid JSON ({e}): {text}"))
}

/// Asserts an error response: the status, a JSON body whose `error` is a
/// non-empty string, and a `detail` key (null when there is none). Returns
/// the body.
pub async fn error_body(response: Response, expected: StatusCode) -> Value {
    error_body_of("", response, expected).await
}

/// [`error_body`], naming the case `name` in its assertion messages.
pub async fn error_body_of(name: &str, response: Response, expected: StatusCode) -> Value {
    let body = json_body_of(name, response, expected).await;
    let error = body["error"]
        .as_str()
        .unwrap_or_else(|| panic!("{name}: the error body has no string `error`: {body}"));
    assert!(!error.trim().is_empty(), "{name}: empty error message: {body}");
    assert!(
        body.as_object().is_some_and(|o| o.contains_key("detail")),
        "{name}: the error body has no `detail`: {body}"
    );
    body
}
