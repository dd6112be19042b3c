//! What every module shares: a facade started on port 0 against a fresh
//! store and awaited on its admin `/ready`, the sample shop configuration
//! (and the shop started behind a facade), polling until a deadline
//! (`eventually`, `wait_until`), and admin API helpers. Tiny real upstreams
//! (`upstream`) and a raw HTTP/1.1 client (`raw_http`) live in submodules,
//! as do the upstreams that fail on purpose (`controlled`) and the
//! safe-cutover fixture (`cutover`).

mod controlled;
mod cutover;
mod private_postgres;
mod raw_http;
mod store_link;
pub mod tls;
mod upstream;

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use facade::config::FacadeConfig;
use facade::Facade;
use reqwest::{Method, StatusCode};
use serde_json::Value;
use tempfile::TempDir;
use test_harness::{DatabaseUrl, Engine, TestDatabase};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub use controlled::{Behavior, Controlled};
pub use cutover::{
    assert_fell_back, metric_value, without_replica_label, Answer, Cutover, Settings, CAPABILITY, USER_HEADER,
};
pub use private_postgres::PrivatePostgres;
pub use raw_http::{raw_request, read_response, read_response_after, RawResponse};
pub use store_link::StoreLink;
pub use test_harness::browser::Browser;
pub use upstream::{
    closed_address, payload_checksum, payload_chunk, spawn_upgrade_upstream, spawn_upstream, Checksum,
    Upstream, CHUNK,
};

/// How long any wait in these tests may take before it counts as a failure.
pub const WAIT_LIMIT: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------------------
// The sample configuration
// ---------------------------------------------------------------------------

/// Three upstreams standing in for the monolith and two extracted services.
pub struct Shop {
    /// The monolith, also the default backend.
    pub legacy: Upstream,
    /// The catalog service (its backend rewrites `Host`).
    pub catalog: Upstream,
    /// The orders service.
    pub orders: Upstream,
}

impl Shop {
    /// Starts the three upstreams.
    pub async fn spawn() -> Self {
        Self {
            legacy: spawn_upstream("legacy").await,
            catalog: spawn_upstream("catalog").await,
            orders: spawn_upstream("orders").await,
        }
    }

    /// The shop behind a facade (its configuration with `extra_facade`) on
    /// a fresh SQLite store: the store (keep it), the shop and the facade.
    pub async fn start(extra_facade: &str) -> (TestDatabase, Self, TestFacade) {
        Self::start_on_store(sqlite_store(), extra_facade).await
    }

    /// [`Shop::start`] on a fresh store of `engine`, or `None` when its
    /// server is absent (see [`TestDatabase::fresh`]).
    pub async fn start_on(engine: Engine) -> Option<(TestDatabase, Self, TestFacade)> {
        let store = TestDatabase::fresh(engine).await?;
        Some(Self::start_on_store(store, "").await)
    }

    async fn start_on_store(store: TestDatabase, extra_facade: &str) -> (TestDatabase, Self, TestFacade) {
        let shop = Self::spawn().await;
        let facade = start_facade(&shop.config(extra_facade), store.url()).await;
        (store, shop, facade)
    }

    /// Hits on every upstream, for "never reached an upstream" checks.
    pub fn hits(&self) -> usize {
        self.legacy.hits() + self.catalog.hits() + self.orders.hits()
    }

    /// The shop's configuration, `extra_facade` added to `[facade]`:
    ///
    /// - `catalog` (starts on service): `GET /products/{id}`;
    /// - `orders` (starts on legacy): `PUT /products/{id}`, `GET /orders/{id}`,
    ///   `POST /orders`;
    /// - `assets` (starts on service, served by the catalog upstream):
    ///   `/public/*`;
    /// - anything else: the default backend, `legacy`.
    pub fn config(&self, extra_facade: &str) -> String {
        let (legacy, catalog, orders) = (self.legacy.addr, self.catalog.addr, self.orders.addr);
        format!(
            r#"
[facade]
default_backend = "legacy"
access_log = false
grace_seconds = 5
{extra_facade}

[backends.legacy]
urls = ["http://{legacy}"]

[backends.catalog]
urls = ["http://{catalog}"]
host_header = "rewrite"

[backends.orders]
urls = ["http://{orders}"]

[capabilities.catalog]
legacy = "legacy"
service = "catalog"
initial = "service"

[capabilities.orders]
legacy = "legacy"
service = "orders"
# These tests are about routing; the gates have their own.
gates = {{ reconciliation = false }}

[capabilities.assets]
legacy = "legacy"
service = "catalog"
initial = "service"

[[routes]]
capability = "catalog"
path = "/products/{{id}}"
methods = ["GET"]

[[routes]]
capability = "orders"
path = "/products/{{id}}"
methods = ["PUT"]

[[routes]]
capability = "orders"
path = "/orders/{{id}}"
methods = ["GET"]

[[routes]]
capability = "orders"
path = "/orders"
methods = ["POST"]

[[routes]]
capability = "assets"
path = "/public/*"
"#
        )
    }
}

// ---------------------------------------------------------------------------
// The facade
// ---------------------------------------------------------------------------

/// A facade serving in the background; dropping it triggers its shutdown.
pub struct TestFacade {
    /// The proxy listener (the TLS one when there is no plain one).
    pub proxy: SocketAddr,
    /// The TLS listener, when configured.
    pub tls: Option<SocketAddr>,
    /// The admin listener.
    pub admin: SocketAddr,
    /// The admin bearer token.
    pub token: String,
    /// A client whose requests time out.
    pub client: reqwest::Client,
    shutdown: Option<oneshot::Sender<()>>,
    running: Option<JoinHandle<std::io::Result<()>>>,
    _token_dir: TempDir,
}

/// A fresh SQLite store, for the cases whose subject is not the store.
pub fn sqlite_store() -> TestDatabase {
    TestDatabase::sqlite()
}

/// A configuration with one backend, `legacy` at `upstream`, as the
/// default for every request: for cases about proxying itself.
pub fn legacy_only_config(upstream: std::net::SocketAddr) -> String {
    format!(
        r#"
[facade]
default_backend = "legacy"
access_log = false

[backends.legacy]
urls = ["http://{upstream}"]
"#
    )
}

/// Parses `text` as `strangler.toml` and points its listeners at port 0.
pub fn parse_config(text: &str) -> FacadeConfig {
    let mut config = FacadeConfig::parse(Path::new("strangler.toml"), text)
        .unwrap_or_else(|error| panic!("the test configuration is refused: {error}"));
    config.listen = Some("127.0.0.1:0".parse().unwrap());
    config.admin_listen = "127.0.0.1:0".parse().unwrap();
    config
}

/// Starts a facade for `text` on `store`, with an admin token in a file.
pub async fn start_facade(text: &str, store: &DatabaseUrl) -> TestFacade {
    start_facade_with(text, store, |_| {}).await
}

/// [`start_facade`], with a last change to the parsed configuration.
pub async fn start_facade_with(
    text: &str,
    store: &DatabaseUrl,
    adjust: impl FnOnce(&mut FacadeConfig),
) -> TestFacade {
    start_facade_traced(text, store, adjust, None).await
}

/// [`start_facade_with`], with sampled requests' spans going to `tracing`.
pub async fn start_facade_traced(
    text: &str,
    store: &DatabaseUrl,
    adjust: impl FnOnce(&mut FacadeConfig),
    tracing: Option<toolkit_telemetry::SpanSink>,
) -> TestFacade {
    let mut config = parse_config(text);
    config.store_url = store.clone();
    let token_dir = tempfile::tempdir().unwrap();
    let token = format!("token-{}", uuid::Uuid::new_v4().simple());
    let token_file = token_dir.path().join("admin-token");
    std::fs::write(&token_file, format!("{token}\n")).unwrap();
    config.admin_token_file = Some(token_file);
    adjust(&mut config);
    let facade = Facade::build_traced(config, tracing)
        .await
        .unwrap_or_else(|error| panic!("starting the facade: {}", error_chain(&error)));
    let (proxy, admin, tls) = (facade.proxy_addr(), facade.admin_addr(), facade.tls_addr());
    let (trigger, shutdown) = oneshot::channel::<()>();
    let running = tokio::spawn(facade.run_until_stopped(async move {
        let _ = shutdown.await;
    }));
    let started = TestFacade {
        proxy,
        tls,
        admin,
        token,
        client: test_harness::http_client(),
        shutdown: Some(trigger),
        running: Some(running),
        _token_dir: token_dir,
    };
    started.wait_ready().await;
    started
}

/// An error and its causes, on one line.
pub fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    std::iter::successors(Some(error), |&e| e.source())
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(": ")
}

/// Calls `attempt` every `every` until it returns `Ok`, and returns that;
/// panics with `what` and the last `Err` once `limit` has passed.
pub async fn eventually<T>(
    what: &str,
    limit: Duration,
    every: Duration,
    mut attempt: impl AsyncFnMut() -> Result<T, String>,
) -> T {
    let deadline = Instant::now() + limit;
    loop {
        match attempt().await {
            Ok(value) => return value,
            Err(last) => assert!(
                Instant::now() < deadline,
                "timed out after {limit:?} waiting for {what}: {last}"
            ),
        }
        tokio::time::sleep(every).await;
    }
}

/// Polls `condition` every few milliseconds until it holds; panics with
/// `what` after [`WAIT_LIMIT`].
pub async fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
    let every = Duration::from_millis(5);
    eventually(what, WAIT_LIMIT, every, async || match condition() {
        true => Ok(()),
        false => Err("it does not hold yet".to_owned()),
    })
    .await;
}

impl TestFacade {
    async fn wait_ready(&self) {
        let url = self.admin_url("/ready");
        let what = format!("{url} to answer 200");
        eventually(&what, WAIT_LIMIT, Duration::from_millis(10), async || {
            let response = self.client.get(&url).bearer_auth(&self.token).send().await;
            match response {
                Ok(response) if response.status() == StatusCode::OK => Ok(()),
                Ok(response) => Err(format!("status {}", response.status())),
                Err(error) => Err(error.to_string()),
            }
        })
        .await;
    }

    /// `http://proxy{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.proxy)
    }

    /// `http://admin{path}`.
    pub fn admin_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.admin)
    }

    /// Sends `method path` through the proxy; status and JSON body.
    pub async fn call(&self, method: Method, path: &str) -> (StatusCode, Value) {
        json_of(self.client.request(method, self.url(path)).send().await.unwrap()).await
    }

    /// The upstream that answered `method path` (which must succeed).
    pub async fn side(&self, method: Method, path: &str) -> String {
        let (status, body) = self.call(method.clone(), path).await;
        assert_eq!(status, StatusCode::OK, "{method} {path}: {body}");
        body["name"].as_str().unwrap().to_owned()
    }

    /// `GET` on the admin API with the token; status and JSON body.
    pub async fn admin_get(&self, path: &str) -> (StatusCode, Value) {
        let response = self
            .client
            .get(self.admin_url(path))
            .bearer_auth(&self.token)
            .send()
            .await
            .unwrap();
        json_of(response).await
    }

    /// `POST` of JSON on the admin API with the token.
    pub async fn admin_post(&self, path: &str, body: &Value) -> (StatusCode, Value) {
        let response = self
            .client
            .post(self.admin_url(path))
            .bearer_auth(&self.token)
            .json(body)
            .send()
            .await
            .unwrap();
        json_of(response).await
    }

    /// `POST /capabilities/{name}/flip`.
    pub async fn flip(&self, capability: &str, body: Value) -> (StatusCode, Value) {
        self.admin_post(&format!("/capabilities/{capability}/flip"), &body)
            .await
    }

    /// [`TestFacade::flip`], which must answer 200 OK; the outcome.
    pub async fn flip_ok(&self, capability: &str, body: Value) -> Value {
        let (status, outcome) = self.flip(capability, body).await;
        assert_eq!(status, StatusCode::OK, "flipping {capability}: {outcome}");
        outcome
    }

    /// The entry named `name` in the list `section` (`capabilities` or
    /// `backends`) of `GET /capabilities`.
    pub async fn listed(&self, section: &str, name: &str) -> Value {
        let (status, listing) = self.admin_get("/capabilities").await;
        assert_eq!(status, StatusCode::OK, "{listing}");
        listing[section]
            .as_array()
            .unwrap()
            .iter()
            .find(|entry| entry["name"] == name)
            .unwrap_or_else(|| panic!("no {name} in the {section} of {listing}"))
            .clone()
    }

    /// The stage of `capability` in `GET /capabilities`.
    pub async fn target_of(&self, capability: &str) -> String {
        self.listed("capabilities", capability).await["stage"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    /// Triggers the shutdown and returns the task serving the facade.
    pub fn stop(&mut self) -> JoinHandle<std::io::Result<()>> {
        if let Some(trigger) = self.shutdown.take() {
            let _ = trigger.send(());
        }
        self.running.take().expect("the facade was already stopped")
    }
}

/// Status and JSON body (or the text as a JSON string) of a response.
pub async fn json_of(response: reqwest::Response) -> (StatusCode, Value) {
    let status = response.status();
    let text = response.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
}
