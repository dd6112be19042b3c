//! `strangler demo --traffic`: a steady synthetic shop client.
//!
//! A migration's stages (shadow, canary, fallback, rollback) only show
//! something when requests flow, so the demo can generate them: at a fixed
//! rate, through the facade like any client, mostly product reads, about one
//! in five a new order (with a fresh `Idempotency-Key`), some reads of the
//! orders it placed and now and then a customer's order list. Every request
//! carries an `x-customer-id`, the canary's sticky key.
//!
//! Nothing here is fatal: every request has a timeout, and a failure is only
//! counted. Every 10 s one log line sums up the answers by status class, by
//! the side that served them (`x-strangler-served-by`) and the fallbacks
//! (`x-strangler-fallback`). What to send next is [`Planner::next`], a pure
//! function of the planner's memory and a random source, so it is tested
//! without a network.

use std::collections::VecDeque;
use std::fmt;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use facade::proxy::{FALLBACK, SERVED_BY};
use rand::rngs::StdRng;
use rand::seq::index::sample;
use rand::{Rng, SeedableRng};
use reqwest::Method;
use serde_json::{json, Value};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio::time::{interval, interval_at, Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;

/// Requests per second unless `--traffic-rate` says otherwise.
pub const DEFAULT_RATE: f64 = 20.0;
/// The most `--traffic-rate` may ask for: the demo is for a laptop.
const MAX_RATE: f64 = 1000.0;
/// The most one request may take, connecting and reading the body included.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// How often the summary line is logged.
const REPORT_EVERY: Duration = Duration::from_secs(10);
/// Requests in flight at most; a tick beyond that is skipped and counted,
/// so that a stalled facade does not pile up tasks without bound.
const MAX_IN_FLIGHT: usize = 256;
/// Orders remembered for later reads; the oldest are forgotten first.
const REMEMBERED_ORDERS: usize = 1000;

/// Parses `--traffic-rate`: requests per second, above 0 and at most 1000.
pub fn parse_rate(text: &str) -> Result<f64, String> {
    let rate: f64 = text
        .parse()
        .map_err(|_| format!("`{text}` is not a number of requests per second"))?;
    if !(rate > 0.0 && rate <= MAX_RATE) {
        return Err(format!(
            "{text} is out of range; give a rate above 0 and at most {MAX_RATE} requests per second"
        ));
    }
    Ok(rate)
}

/// One request the synthetic client sends.
#[derive(Debug, Clone, PartialEq)]
pub enum Planned {
    /// `GET /products/{id}`.
    Product { id: i64, customer: i64 },
    /// `POST /orders` with `(product_id, quantity)` lines.
    PlaceOrder {
        customer: i64,
        lines: Vec<(i64, i64)>,
        idempotency_key: String,
    },
    /// `GET /orders/{id}` of an order this client placed.
    Order { id: i64, customer: i64 },
    /// `GET /customers/{id}/orders`.
    CustomerOrders { customer: i64 },
}

impl Planned {
    /// The HTTP method.
    pub fn method(&self) -> Method {
        match self {
            Self::PlaceOrder { .. } => Method::POST,
            _ => Method::GET,
        }
    }

    /// Path and query.
    pub fn path(&self) -> String {
        match self {
            Self::Product { id, .. } => format!("/products/{id}"),
            Self::PlaceOrder { .. } => "/orders".to_owned(),
            Self::Order { id, .. } => format!("/orders/{id}"),
            Self::CustomerOrders { customer } => format!("/customers/{customer}/orders"),
        }
    }

    /// The customer on whose behalf it is sent (`x-customer-id`).
    pub fn customer(&self) -> i64 {
        match self {
            Self::Product { customer, .. }
            | Self::PlaceOrder { customer, .. }
            | Self::Order { customer, .. }
            | Self::CustomerOrders { customer } => *customer,
        }
    }

    /// The JSON body, for an order.
    pub fn body(&self) -> Option<Value> {
        let Self::PlaceOrder { customer, lines, .. } = self else {
            return None;
        };
        let lines: Vec<Value> = lines
            .iter()
            .map(|(product_id, quantity)| json!({ "product_id": product_id, "quantity": quantity }))
            .collect();
        Some(json!({ "customer_id": customer, "lines": lines }))
    }
}

/// Decides what to send next, and remembers the orders placed so far.
#[derive(Debug)]
pub struct Planner {
    products: i64,
    customers: i64,
    orders: VecDeque<(i64, i64)>,
    run: u64,
    keys_issued: u64,
}

impl Planner {
    /// A planner for a shop whose product and customer ids are `1..=products`
    /// and `1..=customers` (the seed's). Idempotency keys carry a random
    /// prefix drawn from `rng`, so that a restarted demo never reuses one.
    pub fn new(products: i64, customers: i64, rng: &mut impl Rng) -> Self {
        Self {
            products: products.max(1),
            customers: customers.max(1),
            orders: VecDeque::new(),
            run: rng.gen(),
            keys_issued: 0,
        }
    }

    /// The next request: about 20% new orders, 10% reads of a placed order
    /// (product reads until one exists), 4% order lists, the rest products.
    pub fn next(&mut self, rng: &mut impl Rng) -> Planned {
        let customer = rng.gen_range(1..=self.customers);
        match rng.gen_range(0..100) {
            0..=19 => {
                let count = rng.gen_range(1..=3usize).min(self.products as usize);
                // Distinct products: the contract refuses a product on two lines.
                let lines = sample(rng, self.products as usize, count)
                    .into_iter()
                    .map(|index| (index as i64 + 1, rng.gen_range(1..=2)))
                    .collect();
                self.keys_issued += 1;
                Planned::PlaceOrder {
                    customer,
                    lines,
                    idempotency_key: format!("demo-traffic-{:016x}-{}", self.run, self.keys_issued),
                }
            }
            20..=29 if !self.orders.is_empty() => {
                let (id, customer) = self.orders[rng.gen_range(0..self.orders.len())];
                Planned::Order { id, customer }
            }
            30..=33 => Planned::CustomerOrders { customer },
            _ => Planned::Product {
                id: rng.gen_range(1..=self.products),
                customer,
            },
        }
    }

    /// Remembers an order placed for `customer`, for later reads.
    pub fn remember(&mut self, order_id: i64, customer: i64) {
        if self.orders.len() == REMEMBERED_ORDERS {
            self.orders.pop_front();
        }
        self.orders.push_back((order_id, customer));
    }
}

/// What became of one request.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// An answer came, with its status and the facade's headers.
    Answered {
        status: u16,
        served_by: Option<String>,
        fallback: bool,
    },
    /// No answer: refused, reset or timed out.
    Failed,
}

/// Counts of outcomes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tally {
    /// Requests sent (skipped ones not included).
    pub sent: u64,
    /// 2xx answers.
    pub ok: u64,
    /// 4xx answers.
    pub client_errors: u64,
    /// 5xx answers.
    pub server_errors: u64,
    /// 1xx and 3xx answers.
    pub other: u64,
    /// No answer at all.
    pub failed: u64,
    /// Answers served by the monolith.
    pub legacy: u64,
    /// Answers served by the service.
    pub service: u64,
    /// Answers marked as fallbacks.
    pub fallbacks: u64,
    /// Ticks skipped because too many requests were in flight.
    pub skipped: u64,
}

impl Tally {
    /// Counts one outcome.
    pub fn record(&mut self, outcome: &Outcome) {
        self.sent += 1;
        let Outcome::Answered {
            status,
            served_by,
            fallback,
        } = outcome
        else {
            self.failed += 1;
            return;
        };
        match status / 100 {
            2 => self.ok += 1,
            4 => self.client_errors += 1,
            5 => self.server_errors += 1,
            _ => self.other += 1,
        }
        match served_by.as_deref() {
            Some("legacy") => self.legacy += 1,
            Some("service") => self.service += 1,
            _ => {}
        }
        if *fallback {
            self.fallbacks += 1;
        }
    }
}

impl fmt::Display for Tally {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} sent: 2xx {}, 4xx {}, 5xx {}, no answer {}",
            self.sent, self.ok, self.client_errors, self.server_errors, self.failed
        )?;
        if self.other > 0 {
            write!(f, ", other {}", self.other)?;
        }
        write!(
            f,
            "; served by legacy {}, service {}; fallbacks {}",
            self.legacy, self.service, self.fallbacks
        )?;
        if self.skipped > 0 {
            write!(f, "; skipped {} (too many in flight)", self.skipped)?;
        }
        Ok(())
    }
}

/// The planner and the counts, shared with the request tasks. The lock is
/// never held across an await.
struct Shared {
    planner: Planner,
    window: Tally,
    total: Tally,
}

fn lock(shared: &Mutex<Shared>) -> std::sync::MutexGuard<'_, Shared> {
    // A panicking request task cannot leave the counts half-updated in a way
    // that matters, so a poisoned lock is used as is.
    shared.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Sends `rate` requests per second to the facade at `facade` until `stop`,
/// logging a summary every 10 s and the totals at the end.
/// While `pause_file` exists nothing is sent; once what was in flight has
/// finished, its acknowledgment ([`paused_ack`]) is written, which
/// `strangler demo switch traffic off` waits for.
pub async fn run(
    facade: SocketAddr,
    products: i64,
    customers: i64,
    rate: f64,
    pause_file: std::path::PathBuf,
    stop: CancellationToken,
) {
    let client = match reqwest::Client::builder()
        .timeout(REQUEST_TIMEOUT)
        .connect_timeout(Duration::from_secs(2))
        .build()
    {
        Ok(client) => client,
        Err(error) => {
            tracing::error!(%error, "cannot build the HTTP client; no demo traffic");
            return;
        }
    };
    let base = Arc::new(format!("http://{facade}"));
    let mut rng = StdRng::from_entropy();
    let shared = Arc::new(Mutex::new(Shared {
        planner: Planner::new(products, customers, &mut rng),
        window: Tally::default(),
        total: Tally::default(),
    }));
    let mut ticks = interval(Duration::from_secs_f64(1.0 / rate));
    ticks.set_missed_tick_behavior(MissedTickBehavior::Skip);
    let mut reports = interval_at(Instant::now() + REPORT_EVERY, REPORT_EVERY);
    let limit = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    let mut in_flight = JoinSet::new();
    tracing::info!(rate, facade = %facade, "demo traffic started");
    loop {
        tokio::select! {
            () = stop.cancelled() => break,
            _ = reports.tick() => {
                let window = std::mem::take(&mut lock(&shared).window);
                tracing::info!("demo traffic, last {} s: {window}", REPORT_EVERY.as_secs());
            }
            _ = ticks.tick() => {
                while in_flight.try_join_next().is_some() {}
                let ack = paused_ack(&pause_file);
                if pause_file.exists() {
                    // Paused: finish what is in flight, then say so.
                    while in_flight.join_next().await.is_some() {}
                    if !ack.exists() {
                        if let Err(error) = std::fs::write(&ack, b"paused\n") {
                            tracing::warn!(%error, "cannot acknowledge the traffic pause");
                        }
                        tracing::info!("demo traffic paused");
                    }
                    continue;
                }
                if ack.exists() {
                    let _ = std::fs::remove_file(&ack);
                    tracing::info!("demo traffic resumed");
                }
                let Ok(permit) = Arc::clone(&limit).try_acquire_owned() else {
                    let mut shared = lock(&shared);
                    shared.window.skipped += 1;
                    shared.total.skipped += 1;
                    continue;
                };
                let planned = lock(&shared).planner.next(&mut rng);
                let (client, base, shared) = (client.clone(), Arc::clone(&base), Arc::clone(&shared));
                in_flight.spawn(async move {
                    let (outcome, created) = send(&client, &base, &planned).await;
                    let mut shared = lock(&shared);
                    shared.window.record(&outcome);
                    shared.total.record(&outcome);
                    if let Some(id) = created {
                        shared.planner.remember(id, planned.customer());
                    }
                    drop(permit);
                });
            }
        }
    }
    // Requests still in flight are abandoned: the servers are stopping too.
    in_flight.abort_all();
    let total = lock(&shared).total;
    tracing::info!("demo traffic stopped; in all {total}");
}

/// The file naming a pause of the traffic, in the demo's data folder.
pub fn pause_file(data_dir: &std::path::Path) -> std::path::PathBuf {
    data_dir.join("traffic-paused")
}

/// The file the traffic writes once it has paused.
pub fn paused_ack(pause_file: &std::path::Path) -> std::path::PathBuf {
    pause_file.with_extension("ack")
}

/// Sends one request; returns its outcome and, for a placed order, its id.
async fn send(client: &reqwest::Client, base: &str, planned: &Planned) -> (Outcome, Option<i64>) {
    let mut request = client
        .request(planned.method(), format!("{base}{}", planned.path()))
        .header("x-customer-id", planned.customer().to_string());
    if let Planned::PlaceOrder { idempotency_key, .. } = planned {
        request = request.header("idempotency-key", idempotency_key.as_str());
    }
    if let Some(body) = planned.body() {
        request = request.json(&body);
    }
    let response = match request.send().await {
        Ok(response) => response,
        Err(error) => {
            tracing::debug!(path = %planned.path(), %error, "demo traffic request failed");
            return (Outcome::Failed, None);
        }
    };
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let outcome = Outcome::Answered {
        status: response.status().as_u16(),
        served_by: header(SERVED_BY.as_str()),
        fallback: response.headers().contains_key(&FALLBACK),
    };
    let created = response.status() == reqwest::StatusCode::CREATED;
    // The body is read either way, so that the connection can be reused.
    let body: Option<Value> = response.json().await.ok();
    let id = if created && matches!(planned, Planned::PlaceOrder { .. }) {
        body.as_ref().and_then(|order| order["id"].as_i64())
    } else {
        None
    };
    (outcome, id)
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    #[test]
    fn the_mix_is_mostly_product_reads_with_one_order_in_five() {
        let mut rng = StdRng::seed_from_u64(7);
        let mut planner = Planner::new(300, 200, &mut rng);
        let mut orders = 0;
        let mut keys = HashSet::new();
        let mut order_reads = 0;
        for n in 0..10_000 {
            let planned = planner.next(&mut rng);
            assert!((1..=200).contains(&planned.customer()), "{planned:?}");
            match &planned {
                Planned::Product { id, .. } => assert!((1..=300).contains(id)),
                Planned::PlaceOrder {
                    lines,
                    idempotency_key,
                    customer,
                } => {
                    orders += 1;
                    assert!((1..=3).contains(&lines.len()), "{lines:?}");
                    let products: HashSet<i64> = lines.iter().map(|(p, _)| *p).collect();
                    assert_eq!(products.len(), lines.len(), "distinct products: {lines:?}");
                    assert!(lines
                        .iter()
                        .all(|(p, q)| (1..=300).contains(p) && (1..=2).contains(q)));
                    assert!(keys.insert(idempotency_key.clone()), "a fresh key each time");
                    assert_eq!(planned.method(), Method::POST);
                    assert_eq!(planned.path(), "/orders");
                    assert_eq!(planned.body().unwrap()["customer_id"], *customer);
                    planner.remember(1_000_000 + n, *customer);
                }
                Planned::Order { id, .. } => {
                    order_reads += 1;
                    assert!(*id >= 1_000_000, "only orders it placed: {id}");
                }
                Planned::CustomerOrders { customer } => {
                    assert_eq!(planned.path(), format!("/customers/{customer}/orders"));
                }
            }
        }
        assert!((1_800..=2_200).contains(&orders), "{orders} orders in 10,000");
        assert!(order_reads > 500, "{order_reads} order reads in 10,000");
    }

    #[test]
    fn no_order_is_read_before_one_was_placed() {
        let mut rng = StdRng::seed_from_u64(1);
        let mut planner = Planner::new(300, 200, &mut rng);
        for _ in 0..1_000 {
            assert!(!matches!(planner.next(&mut rng), Planned::Order { .. }));
        }
    }

    #[test]
    fn the_tally_counts_classes_sides_and_fallbacks() {
        let mut tally = Tally::default();
        let answered = |status, side: &str, fallback| Outcome::Answered {
            status,
            served_by: Some(side.to_owned()),
            fallback,
        };
        tally.record(&answered(200, "service", false));
        tally.record(&answered(201, "legacy", true));
        tally.record(&answered(404, "legacy", false));
        tally.record(&answered(503, "service", false));
        tally.record(&Outcome::Failed);
        assert_eq!(
            tally.to_string(),
            "5 sent: 2xx 2, 4xx 1, 5xx 1, no answer 1; served by legacy 2, service 2; fallbacks 1"
        );
    }

    #[test]
    fn rates_must_be_positive_and_modest() {
        assert_eq!(parse_rate("20"), Ok(20.0));
        assert_eq!(parse_rate("0.5"), Ok(0.5));
        assert!(parse_rate("0").is_err());
        assert!(parse_rate("-3").is_err());
        assert!(parse_rate("5000").is_err());
        assert!(parse_rate("fast").is_err());
    }
}
