//! The load of `bench/soak.sh`: shop clients through the facade for a set
//! time, counting every failure a client would see.
//!
//! Two kinds of client run at once, both sending `x-customer-id` (the
//! canary's sticky key):
//! - **the shopper**, the mix of `strangler demo --traffic` (which lives in
//!   the CLI binary, so it is played here): at a fixed rate, two thirds
//!   product reads, one in five a new order, one in ten a read of an order
//!   it placed, now and then a customer's order list;
//! - **workers**, a few closed loops with a short pause: product pages and
//!   reads, order reads, order lists and orders.
//!
//! Every order carries a fresh `Idempotency-Key`. After a transport error,
//! a 5xx or a 409 with `Retry-After` (a saga still running), the same key
//! and the same body are sent again, with backoff, until the order is
//! acknowledged (201, or 200 for a replay) or the drain time after the run
//! is over, as a real client with idempotency keys does. Any other 4xx is
//! the shop refusing the order (stock, credit limit): counted, not retried.
//! Each acknowledged order is written to the `--acked` file as one line,
//! `key<TAB>order id<TAB>customer<TAB>side that served it<TAB>fallback`
//! (the facade's `x-strangler-fallback`, `-` when none), at once.
//!
//! Reads are not retried: a read that gets no answer, a 5xx, or a 4xx it
//! should not (only an order read may be a 404: that order may live on the
//! other side only) is a failed request. Every request has a timeout.
//!
//! At the end it prints its counts as one JSON document on standard output;
//! progress goes to standard error every 10 s.
//!
//! ```text
//! cargo run --release -p end-to-end --example soak-load -- \
//!     --facade http://127.0.0.1:8080 --seconds 600 --acked acked.tsv
//! ```

#![allow(clippy::expect_used)] // only for a malformed command line

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use rand::rngs::StdRng;
use rand::seq::index::sample;
use rand::{Rng, SeedableRng};
use reqwest::{Client, Response, StatusCode};
use serde_json::{json, Value};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio::time::{interval, sleep, Instant, MissedTickBehavior};

/// The most one request may take, connecting and reading the body included.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// The shopper's requests in flight at most; a tick beyond is skipped.
const SHOPPER_IN_FLIGHT: usize = 256;
/// Orders remembered for later reads.
const REMEMBERED_ORDERS: usize = 2000;
/// Failures described on standard error at most.
const DESCRIBED_FAILURES: u64 = 30;
/// The first and the longest wait between two tries of an order.
const BACKOFF: (Duration, Duration) = (Duration::from_millis(200), Duration::from_secs(2));

const SERVED_BY: &str = "x-strangler-served-by";
const FALLBACK: &str = "x-strangler-fallback";
const REPLAYED: &str = "idempotent-replayed";

/// The command line.
struct Options {
    facade: String,
    seconds: u64,
    drain_seconds: u64,
    workers: usize,
    shopper_rate: f64,
    pause_ms: u64,
    products: i64,
    customers: i64,
    acked: PathBuf,
}

impl Options {
    fn parse() -> Self {
        let mut options = Self {
            facade: "http://127.0.0.1:8080".to_owned(),
            seconds: 60,
            drain_seconds: 60,
            workers: 4,
            shopper_rate: 20.0,
            pause_ms: 100,
            products: 300,
            customers: 200,
            acked: PathBuf::from("acked.tsv"),
        };
        let mut args = std::env::args().skip(1);
        while let Some(flag) = args.next() {
            let value = args
                .next()
                .unwrap_or_else(|| usage(&format!("{flag} needs a value")));
            let number = |text: &str| -> u64 {
                text.parse()
                    .unwrap_or_else(|_| usage(&format!("{flag}: `{text}` is not a whole number")))
            };
            match flag.as_str() {
                "--facade" => options.facade = value.trim_end_matches('/').to_owned(),
                "--seconds" => options.seconds = number(&value),
                "--drain-seconds" => options.drain_seconds = number(&value),
                "--workers" => options.workers = number(&value) as usize,
                "--shopper-rate" => {
                    options.shopper_rate = value
                        .parse()
                        .ok()
                        .filter(|rate: &f64| *rate >= 0.0 && *rate <= 1000.0)
                        .unwrap_or_else(|| usage(&format!("--shopper-rate: `{value}` is not 0 to 1000")))
                }
                "--pause-ms" => options.pause_ms = number(&value),
                "--products" => options.products = number(&value).max(1) as i64,
                "--customers" => options.customers = number(&value).max(1) as i64,
                "--acked" => options.acked = PathBuf::from(value),
                _ => usage(&format!("unknown option {flag}")),
            }
        }
        options
    }
}

fn usage(problem: &str) -> ! {
    eprintln!(
        "error: {problem}\nusage: soak-load [--facade URL] [--seconds N] [--drain-seconds N] [--workers N] \
         [--shopper-rate PER_SECOND] [--pause-ms N] [--products N] [--customers N] [--acked FILE]"
    );
    std::process::exit(2)
}

/// Counts, shared by every client.
#[derive(Default)]
struct Counters {
    requests: AtomicU64,
    reads: AtomicU64,
    reads_ok: AtomicU64,
    reads_not_found: AtomicU64,
    reads_failed: AtomicU64,
    order_attempts: AtomicU64,
    order_retries: AtomicU64,
    orders: AtomicU64,
    orders_acknowledged: AtomicU64,
    orders_replayed: AtomicU64,
    orders_refused: AtomicU64,
    orders_unacknowledged: AtomicU64,
    transport_errors: AtomicU64,
    server_errors: AtomicU64,
    in_progress: AtomicU64,
    served_by_legacy: AtomicU64,
    served_by_service: AtomicU64,
    fallbacks: AtomicU64,
    shopper_skipped: AtomicU64,
    described: AtomicU64,
}

fn add(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

fn get(counter: &AtomicU64) -> u64 {
    counter.load(Ordering::Relaxed)
}

/// What every client shares.
struct Load {
    client: Client,
    facade: String,
    products: i64,
    customers: i64,
    counters: Counters,
    /// Orders acknowledged so far, `(id, customer)`, for reads.
    orders: Mutex<VecDeque<(i64, i64)>>,
    acked: Mutex<BufWriter<File>>,
    /// A prefix that makes this run's keys unique.
    run: u64,
    keys: AtomicU64,
    /// No new request starts after this.
    end: Instant,
    /// Orders are retried until this.
    drain_end: Instant,
}

/// What one client does next.
enum Step {
    Product(i64),
    ProductPage(i64),
    Order(i64),
    CustomerOrders(i64),
    PlaceOrder,
}

impl Load {
    fn lock_orders(&self) -> std::sync::MutexGuard<'_, VecDeque<(i64, i64)>> {
        self.orders.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn known_order(&self, rng: &mut impl Rng) -> Option<(i64, i64)> {
        let orders = self.lock_orders();
        (!orders.is_empty()).then(|| orders[rng.gen_range(0..orders.len())])
    }

    /// The shopper's mix, as `strangler demo --traffic` plans it.
    fn shopper_step(&self, rng: &mut impl Rng) -> (Step, i64) {
        let customer = rng.gen_range(1..=self.customers);
        let step = match rng.gen_range(0..100) {
            0..=19 => Step::PlaceOrder,
            20..=29 => match self.known_order(rng) {
                Some((id, owner)) => return (Step::Order(id), owner),
                None => Step::Product(rng.gen_range(1..=self.products)),
            },
            30..=33 => Step::CustomerOrders(customer),
            _ => Step::Product(rng.gen_range(1..=self.products)),
        };
        (step, customer)
    }

    /// A worker's mix: more pages and reads, fewer orders.
    fn worker_step(&self, rng: &mut impl Rng) -> (Step, i64) {
        let customer = rng.gen_range(1..=self.customers);
        let step = match rng.gen_range(0..100) {
            0..=14 => Step::PlaceOrder,
            15..=39 => match self.known_order(rng) {
                Some((id, owner)) => return (Step::Order(id), owner),
                None => Step::ProductPage(rng.gen_range(0..self.products)),
            },
            40..=49 => Step::CustomerOrders(customer),
            50..=59 => Step::ProductPage(rng.gen_range(0..self.products)),
            _ => Step::Product(rng.gen_range(1..=self.products)),
        };
        (step, customer)
    }

    async fn run_step(&self, step: Step, customer: i64, rng: &mut StdRng) {
        match step {
            Step::Product(id) => self.read(&format!("/products/{id}"), customer, false).await,
            Step::ProductPage(after) => {
                self.read(&format!("/products?cursor={after}&limit=20"), customer, false)
                    .await
            }
            Step::Order(id) => self.read(&format!("/orders/{id}"), customer, true).await,
            Step::CustomerOrders(id) => {
                self.read(&format!("/customers/{id}/orders?limit=20"), customer, false)
                    .await
            }
            Step::PlaceOrder => {
                let count = rng.gen_range(1..=2usize).min(self.products as usize);
                // Distinct products: the contract refuses a product on two lines.
                let lines: Vec<Value> = sample(rng, self.products as usize, count)
                    .into_iter()
                    .map(|index| json!({ "product_id": index as i64 + 1, "quantity": 1 }))
                    .collect();
                let body = json!({ "customer_id": customer, "lines": lines });
                let key = format!(
                    "soak-{:016x}-{}",
                    self.run,
                    self.keys.fetch_add(1, Ordering::Relaxed) + 1
                );
                self.place_order(&key, customer, &body).await;
            }
        }
    }

    fn note_answer(&self, response: &Response) {
        match response.headers().get(SERVED_BY).and_then(|v| v.to_str().ok()) {
            Some("legacy") => add(&self.counters.served_by_legacy),
            Some("service") => add(&self.counters.served_by_service),
            _ => {}
        }
        if response.headers().contains_key(FALLBACK) {
            add(&self.counters.fallbacks);
        }
    }

    fn describe(&self, what: &str, path: &str, outcome: &str) {
        if self.counters.described.fetch_add(1, Ordering::Relaxed) < DESCRIBED_FAILURES {
            eprintln!("soak-load: {what} {path}: {outcome}");
        }
    }

    /// One read; a failure is counted, never retried.
    async fn read(&self, path: &str, customer: i64, may_be_missing: bool) {
        add(&self.counters.requests);
        add(&self.counters.reads);
        let sent = self
            .client
            .get(format!("{}{path}", self.facade))
            .header("x-customer-id", customer.to_string())
            .send()
            .await;
        let response = match sent {
            Ok(response) => response,
            Err(error) => {
                add(&self.counters.reads_failed);
                add(&self.counters.transport_errors);
                self.describe("failed read", path, &format!("no answer: {error}"));
                return;
            }
        };
        self.note_answer(&response);
        let status = response.status();
        let served_by = header(&response, SERVED_BY);
        // Read to the end, so that the connection is reused, and so that a
        // body cut short counts as the failure it is.
        let body = response.bytes().await;
        match (status, body) {
            (_, Err(error)) => {
                add(&self.counters.reads_failed);
                add(&self.counters.transport_errors);
                self.describe("failed read", path, &format!("{status}, body cut short: {error}"));
            }
            (status, Ok(_)) if status.is_success() => add(&self.counters.reads_ok),
            (StatusCode::NOT_FOUND, Ok(_)) if may_be_missing => add(&self.counters.reads_not_found),
            (status, Ok(body)) => {
                add(&self.counters.reads_failed);
                if status.is_server_error() {
                    add(&self.counters.server_errors);
                }
                self.describe(
                    "failed read",
                    path,
                    &format!(
                        "{status} served by {served_by}: {}",
                        String::from_utf8_lossy(&body[..body.len().min(300)])
                    ),
                );
            }
        }
    }

    /// Places an order under `key`, trying again until it is acknowledged,
    /// refused, or the drain time is over.
    async fn place_order(&self, key: &str, customer: i64, body: &Value) {
        add(&self.counters.orders);
        let body = body.to_string();
        let mut backoff = BACKOFF.0;
        let mut tries = 0u32;
        loop {
            if tries > 0 {
                if Instant::now() + backoff > self.drain_end {
                    add(&self.counters.orders_unacknowledged);
                    self.describe(
                        "unacknowledged order",
                        key,
                        &format!("gave up after {tries} tries"),
                    );
                    return;
                }
                add(&self.counters.order_retries);
                sleep(backoff).await;
                backoff = (backoff * 2).min(BACKOFF.1);
            }
            tries += 1;
            add(&self.counters.requests);
            add(&self.counters.order_attempts);
            let sent = self
                .client
                .post(format!("{}/orders", self.facade))
                .header("x-customer-id", customer.to_string())
                .header("idempotency-key", key)
                .header("content-type", "application/json")
                .body(body.clone())
                .send()
                .await;
            let response = match sent {
                Ok(response) => response,
                Err(error) => {
                    add(&self.counters.transport_errors);
                    self.describe("order try", key, &format!("no answer: {error}"));
                    continue;
                }
            };
            self.note_answer(&response);
            let status = response.status();
            let served_by = header(&response, SERVED_BY);
            let fallback = header(&response, FALLBACK);
            let replayed = response.headers().contains_key(REPLAYED);
            let retry_after = response.headers().contains_key("retry-after");
            let answer: Result<Value, _> = response.json().await;
            match (status, answer) {
                (StatusCode::CREATED | StatusCode::OK, Ok(order)) => {
                    let Some(id) = order["id"].as_i64() else {
                        self.describe("order try", key, &format!("{status} without an id: {order}"));
                        continue;
                    };
                    if replayed {
                        add(&self.counters.orders_replayed);
                    }
                    self.acknowledge(key, id, customer, &served_by, &fallback);
                    return;
                }
                (status, _) if status.is_server_error() => {
                    add(&self.counters.server_errors);
                    self.describe("order try", key, &format!("{status} served by {served_by}"));
                }
                (StatusCode::CONFLICT, _) if retry_after => add(&self.counters.in_progress),
                (status, Err(error)) if status.is_success() => {
                    add(&self.counters.transport_errors);
                    self.describe("order try", key, &format!("{status}, body unreadable: {error}"));
                }
                (status, answer) => {
                    add(&self.counters.orders_refused);
                    let reason = answer.map(|a| a["error"].to_string()).unwrap_or_default();
                    self.describe(
                        "refused order",
                        key,
                        &format!("{status} by {served_by}: {reason}"),
                    );
                    return;
                }
            }
        }
    }

    fn acknowledge(&self, key: &str, id: i64, customer: i64, served_by: &str, fallback: &str) {
        add(&self.counters.orders_acknowledged);
        {
            let mut orders = self.lock_orders();
            if orders.len() == REMEMBERED_ORDERS {
                orders.pop_front();
            }
            orders.push_back((id, customer));
        }
        let mut file = self.acked.lock().unwrap_or_else(PoisonError::into_inner);
        // Written at once: the file is the record the soak checks the
        // databases against, even if this program dies.
        let written =
            writeln!(file, "{key}\t{id}\t{customer}\t{served_by}\t{fallback}").and_then(|()| file.flush());
        if let Err(error) = written {
            eprintln!("soak-load: cannot record acknowledged order {id}: {error}");
            std::process::exit(1);
        }
    }

    fn summary(&self) -> Value {
        let c = &self.counters;
        json!({
            "requests": get(&c.requests),
            "failed": get(&c.reads_failed) + get(&c.orders_unacknowledged),
            "reads": {
                "sent": get(&c.reads),
                "ok": get(&c.reads_ok),
                "not_found_orders": get(&c.reads_not_found),
                "failed": get(&c.reads_failed),
            },
            "orders": {
                "placed": get(&c.orders),
                "attempts": get(&c.order_attempts),
                "retries": get(&c.order_retries),
                "acknowledged": get(&c.orders_acknowledged),
                "replayed": get(&c.orders_replayed),
                "refused": get(&c.orders_refused),
                "unacknowledged": get(&c.orders_unacknowledged),
                "in_progress_answers": get(&c.in_progress),
            },
            "transport_errors": get(&c.transport_errors),
            "server_errors": get(&c.server_errors),
            "served_by": { "legacy": get(&c.served_by_legacy), "service": get(&c.served_by_service) },
            "fallbacks": get(&c.fallbacks),
            "shopper_skipped": get(&c.shopper_skipped),
        })
    }

    fn progress(&self) -> String {
        let c = &self.counters;
        let mut line = String::new();
        let _ = write!(
            line,
            "{} requests, {} failed reads, {} orders acknowledged ({} refused, {} retries), {} transport errors, {} 5xx",
            get(&c.requests),
            get(&c.reads_failed),
            get(&c.orders_acknowledged),
            get(&c.orders_refused),
            get(&c.order_retries),
            get(&c.transport_errors),
            get(&c.server_errors),
        );
        line
    }
}

fn header(response: &Response, name: &str) -> String {
    response
        .headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-")
        .to_owned()
}

async fn worker(load: Arc<Load>, pause: Duration) {
    let mut rng = StdRng::from_entropy();
    while Instant::now() < load.end {
        let (step, customer) = load.worker_step(&mut rng);
        load.run_step(step, customer, &mut rng).await;
        sleep(pause).await;
    }
}

async fn shopper(load: Arc<Load>, rate: f64) {
    if rate <= 0.0 {
        return;
    }
    let mut rng = StdRng::from_entropy();
    let mut ticks = interval(Duration::from_secs_f64(1.0 / rate));
    ticks.set_missed_tick_behavior(MissedTickBehavior::Skip);
    let limit = Arc::new(Semaphore::new(SHOPPER_IN_FLIGHT));
    let mut in_flight = JoinSet::new();
    loop {
        ticks.tick().await;
        if Instant::now() >= load.end {
            break;
        }
        while in_flight.try_join_next().is_some() {}
        let Ok(permit) = Arc::clone(&limit).try_acquire_owned() else {
            add(&load.counters.shopper_skipped);
            continue;
        };
        let (step, customer) = load.shopper_step(&mut rng);
        let load = Arc::clone(&load);
        let mut task_rng = StdRng::from_rng(&mut rng).unwrap_or_else(|_| StdRng::from_entropy());
        in_flight.spawn(async move {
            load.run_step(step, customer, &mut task_rng).await;
            drop(permit);
        });
    }
    // Orders still being retried finish (or give up) by the drain's end.
    while in_flight.join_next().await.is_some() {}
}

#[tokio::main]
async fn main() {
    let options = Options::parse();
    let acked = File::create(&options.acked).unwrap_or_else(|error| {
        eprintln!("error: cannot create {}: {error}", options.acked.display());
        std::process::exit(1);
    });
    let client = Client::builder()
        .timeout(REQUEST_TIMEOUT)
        .connect_timeout(Duration::from_secs(2))
        .build()
        .expect("building the HTTP client");
    let start = Instant::now();
    let end = start + Duration::from_secs(options.seconds);
    let load = Arc::new(Load {
        client,
        facade: options.facade.clone(),
        products: options.products,
        customers: options.customers,
        counters: Counters::default(),
        orders: Mutex::new(VecDeque::new()),
        acked: Mutex::new(BufWriter::new(acked)),
        run: rand::random(),
        keys: AtomicU64::new(0),
        end,
        drain_end: end + Duration::from_secs(options.drain_seconds),
    });
    eprintln!(
        "soak-load: {} workers and a shopper at {}/s against {} for {} s (+ up to {} s to finish orders)",
        options.workers, options.shopper_rate, options.facade, options.seconds, options.drain_seconds
    );
    let mut clients = JoinSet::new();
    for _ in 0..options.workers {
        clients.spawn(worker(Arc::clone(&load), Duration::from_millis(options.pause_ms)));
    }
    clients.spawn(shopper(Arc::clone(&load), options.shopper_rate));
    let progress = {
        let load = Arc::clone(&load);
        tokio::spawn(async move {
            let mut every = interval(Duration::from_secs(10));
            every.tick().await;
            loop {
                every.tick().await;
                eprintln!(
                    "soak-load: {:>4} s: {}",
                    start.elapsed().as_secs(),
                    load.progress()
                );
            }
        })
    };
    while clients.join_next().await.is_some() {}
    progress.abort();
    eprintln!(
        "soak-load: done after {} s: {}",
        start.elapsed().as_secs(),
        load.progress()
    );
    println!("{}", load.summary());
}
