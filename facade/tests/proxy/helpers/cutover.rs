//! The fixture of the safe-cutover cases: one capability, `orders`, served
//! by two [`Controlled`] upstreams (`legacy` and `service`), with the
//! settings each case needs; and readers of what the admin API reports
//! about it (backends, shadow report, history, metrics).

use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::Value;
use test_harness::{DatabaseUrl, TestDatabase};

use super::controlled::{Controlled, UPSTREAM_HEADER};
use super::{eventually, sqlite_store, start_facade, TestFacade, WAIT_LIMIT};

/// The capability every cut-over case moves.
pub const CAPABILITY: &str = "orders";

/// The sticky header of the canary cases.
pub const USER_HEADER: &str = "x-user";

/// The monolith and the service of [`CAPABILITY`].
pub struct Cutover {
    /// The monolith (backend `legacy`, also the default backend).
    pub legacy: Controlled,
    /// The extracted service (backend `service`).
    pub service: Controlled,
}

/// What a case adds to the configuration; each field is TOML inserted
/// under its table.
#[derive(Debug, Clone, Copy)]
pub struct Settings<'a> {
    /// The capability's initial stage (`legacy`, `canary 10%`, …).
    pub initial: &'a str,
    /// Lines under `[capabilities.orders]`; may open its subtables
    /// (`[capabilities.orders.shadow]`, …) after its own keys.
    pub capability: &'a str,
    /// Lines under `[backends.legacy]`.
    pub legacy: &'a str,
    /// Lines under `[backends.service]`.
    pub service: &'a str,
    /// Lines under `[facade]`.
    pub facade: &'a str,
}

impl Default for Settings<'_> {
    fn default() -> Self {
        Self {
            initial: "legacy",
            capability: "",
            legacy: "",
            service: "",
            facade: "",
        }
    }
}

impl Cutover {
    /// Starts both upstreams, answering.
    pub async fn spawn() -> Self {
        Self {
            legacy: Controlled::spawn("legacy").await,
            service: Controlled::spawn("service").await,
        }
    }

    /// Both upstreams behind a facade configured with `settings`, on a
    /// fresh SQLite store: the store (keep it), the upstreams and the facade.
    pub async fn start(settings: Settings<'_>) -> (TestDatabase, Self, TestFacade) {
        let store = sqlite_store();
        let (cutover, facade) = Self::start_on(store.url(), settings).await;
        (store, cutover, facade)
    }

    /// [`Cutover::start`] on `store`.
    pub async fn start_on(store: &DatabaseUrl, settings: Settings<'_>) -> (Self, TestFacade) {
        let cutover = Self::spawn().await;
        let facade = start_facade(&cutover.config(&settings), store).await;
        (cutover, facade)
    }

    /// The configuration: every method of `/orders` and `/orders/*` belongs
    /// to `orders`.
    pub fn config(&self, settings: &Settings<'_>) -> String {
        let Settings {
            initial,
            capability,
            legacy,
            service,
            facade,
        } = settings;
        let (legacy_addr, service_addr) = (self.legacy.addr, self.service.addr);
        format!(
            r#"
[facade]
default_backend = "legacy"
access_log = false
grace_seconds = 1
{facade}

[backends.legacy]
urls = ["http://{legacy_addr}"]
{legacy}

[backends.service]
urls = ["http://{service_addr}"]
{service}

[[routes]]
capability = "{CAPABILITY}"
path = "/orders"

[[routes]]
capability = "{CAPABILITY}"
path = "/orders/*"

[capabilities.{CAPABILITY}]
legacy = "legacy"
service = "service"
initial = "{initial}"
{capability}
"#
        )
    }
}

/// An answer through the proxy, with what the facade says about its side.
#[derive(Debug)]
pub struct Answer {
    /// The status.
    pub status: StatusCode,
    /// `x-strangler-served-by`.
    pub served_by: Option<String>,
    /// `x-strangler-fallback`.
    pub fallback: Option<String>,
    /// The upstream that produced the answer ([`UPSTREAM_HEADER`]).
    pub upstream: Option<String>,
    /// The body as JSON (or a JSON string of the text).
    pub body: Value,
    /// Time from sending to the whole body.
    pub elapsed: Duration,
}

impl Answer {
    /// Reads a whole response.
    pub async fn read(response: reqwest::Response, started: Instant) -> Self {
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let (served_by, fallback, upstream) = (
            header("x-strangler-served-by"),
            header("x-strangler-fallback"),
            header(UPSTREAM_HEADER),
        );
        let status = response.status();
        let text = response.text().await.unwrap();
        Self {
            status,
            served_by,
            fallback,
            upstream,
            body: serde_json::from_str(&text).unwrap_or(Value::String(text)),
            elapsed: started.elapsed(),
        }
    }
}

/// Checks that legacy answered 200 in the service's place, saying `reason`.
pub fn assert_fell_back(answer: &Answer, reason: &str) {
    assert_eq!(answer.status, StatusCode::OK, "{answer:?}");
    assert_eq!(answer.upstream.as_deref(), Some("legacy"), "{answer:?}");
    assert_eq!(answer.served_by.as_deref(), Some("legacy"), "{answer:?}");
    assert_eq!(answer.fallback.as_deref(), Some(reason), "{answer:?}");
}

impl TestFacade {
    /// Sends `method path` with `headers` through the proxy.
    pub async fn send(&self, method: Method, path: &str, headers: &[(&str, &str)]) -> Answer {
        let mut request = self.client.request(method, self.url(path));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let started = Instant::now();
        let response = request.send().await.unwrap();
        Answer::read(response, started).await
    }

    /// `method path` with `body` through the proxy.
    pub async fn send_body(&self, method: Method, path: &str, body: Vec<u8>) -> Answer {
        let started = Instant::now();
        let response = self
            .client
            .request(method, self.url(path))
            .body(body)
            .send()
            .await
            .unwrap();
        Answer::read(response, started).await
    }

    /// `GET path` through the proxy.
    pub async fn get(&self, path: &str) -> Answer {
        self.send(Method::GET, path, &[]).await
    }

    /// The backend `name` in `GET /capabilities`.
    pub async fn backend_view(&self, name: &str) -> Value {
        self.listed("backends", name).await
    }

    /// The state of backend `name`'s circuit breaker, as listed.
    pub async fn breaker_of(&self, name: &str) -> String {
        self.backend_view(name).await["breaker"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    /// `GET /capabilities/orders/shadow` over `window_seconds` with up to
    /// ten samples.
    pub async fn shadow_report(&self, window_seconds: u64) -> Value {
        let path = format!("/capabilities/{CAPABILITY}/shadow?window_seconds={window_seconds}&samples=10");
        let (status, report) = self.admin_get(&path).await;
        assert_eq!(status, StatusCode::OK, "{report}");
        report
    }

    /// Polls the shadow report until `condition` holds on it; returns it.
    pub async fn wait_for_shadow(&self, what: &str, condition: impl Fn(&Value) -> bool) -> Value {
        eventually(what, WAIT_LIMIT, Duration::from_millis(20), async || {
            let report = self.shadow_report(300).await;
            if condition(&report) {
                Ok(report)
            } else {
                Err(report.to_string())
            }
        })
        .await
    }

    /// The newest entries of `GET /history?capability=orders`.
    pub async fn history(&self) -> Vec<Value> {
        let (status, history) = self.admin_get(&format!("/history?capability={CAPABILITY}")).await;
        assert_eq!(status, StatusCode::OK, "{history}");
        history.as_array().unwrap().clone()
    }

    /// `GET /metrics`, as text, without the `replica_id` label that every
    /// series carries, so that a case can name a series by its own labels
    /// (`replicas.rs` checks that label on [`TestFacade::exposition`]).
    pub async fn metrics(&self) -> String {
        without_replica_label(&self.exposition().await)
    }

    /// `GET /metrics`, as served.
    pub async fn exposition(&self) -> String {
        let response = self
            .client
            .get(self.admin_url("/metrics"))
            .bearer_auth(&self.token)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        response.text().await.unwrap()
    }

    /// The sum of the samples of metric `name` (its full exposed name, such
    /// as `strangler_facade_retries_total`) whose labels include `labels`.
    pub async fn metric(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        metric_value(&self.metrics().await, name, labels)
    }
}

/// `exposition` without its `replica_id="…"` labels.
pub fn without_replica_label(exposition: &str) -> String {
    let mut text = String::with_capacity(exposition.len());
    let mut rest = exposition;
    while let Some(start) = rest.find("replica_id=\"") {
        let value_start = start + "replica_id=\"".len();
        let Some(length) = rest[value_start..].find('"') else {
            break;
        };
        let end = value_start + length + 1;
        let mut kept = &rest[..start];
        let mut next = &rest[end..];
        // One label among others: drop its separating comma too.
        if let Some(stripped) = kept.strip_suffix(',') {
            kept = stripped;
        } else if let Some(stripped) = next.strip_prefix(',') {
            next = stripped;
        }
        text.push_str(kept);
        // `{replica_id="x"}` alone leaves `{}`: drop the braces.
        if text.ends_with('{') && next.starts_with('}') {
            text.pop();
            next = &next[1..];
        }
        rest = next;
    }
    text.push_str(rest);
    text
}

/// The sum of the samples of `name` in an exposition whose labels include
/// every pair of `labels`.
pub fn metric_value(exposition: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    exposition
        .lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let (metric, label_text) = match series.split_once('{') {
                Some((metric, rest)) => (metric, rest.trim_end_matches('}')),
                None => (series, ""),
            };
            let wanted = metric == name
                && labels
                    .iter()
                    .all(|(k, v)| label_text.split(',').any(|pair| pair == format!("{k}=\"{v}\"")));
            wanted.then(|| value.parse::<f64>().ok()).flatten()
        })
        .sum()
}
