//! Saga recovery: orders a dead process left `pending` are compensated.
//!
//! A process killed in the middle of [`crate::saga::place_order`] leaves its
//! order pending, perhaps with stock held and a payment captured in the
//! monolith, and its idempotency key in progress. Nothing else ever finishes
//! such an order, so every instance runs [`SagaRecovery::run_periodically`]
//! beside its server: a pass at start and then every
//! [`RecoveryConfig::interval`]. A pass takes the pending orders older than
//! [`RecoveryConfig::pending_timeout`] and, for each:
//!
//! 1. claims it with one conditional UPDATE that sets a lease
//!    (`recovery_claimed_until`), so that of several instances exactly one
//!    goes on, and the saga that created it can no longer mark it placed;
//! 2. refunds its payment and releases its stock in the monolith, by the
//!    order's reference: both are idempotent and count a payment or
//!    reservation that never happened as done, so this is right whichever
//!    step the saga reached;
//! 3. marks it `failed` and frees its idempotency key, in one transaction,
//!    so that the client's retry places the order afresh.
//!
//! A claimed order whose compensation fails (the monolith is down) stays
//! pending; when its lease runs out a later pass, here or on another
//! instance, claims it again. A recoverer that dies mid-way is the same case.
//!
//! **Recovery always compensates; it never drives an order forward.** The
//! client that started the saga never got a 201 (the process died first),
//! so it does not count on the order; a client without an idempotency key
//! may well have placed it again, and finishing the first would charge it
//! twice. A saga that is merely slow and outlives the timeout is refused at
//! its last step and compensates itself as well.
//!
//! Each pass is logged, and its counts are served at
//! `GET /internal/recovery`. The pass also purges idempotency keys older
//! than their retention.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::http::HeaderValue;
use serde::Serialize;
use service_runtime::api_error::error_chain;
use service_runtime::idempotency;
use service_runtime::timestamp::{self, DateTime, Utc};

use crate::monolith_client::MonolithClient;
use crate::order_store::OrderStore;
use crate::saga::reference_of;

/// Default age after which a pending order is taken for dead: far above the
/// longest a live saga takes (four monolith calls of at most 2 s each by
/// default, plus compensations).
pub const DEFAULT_PENDING_TIMEOUT: Duration = Duration::from_secs(60);
/// Default time between two passes.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(15);
/// Default time a claim holds an order for one recoverer.
pub const DEFAULT_CLAIM_LEASE: Duration = Duration::from_secs(60);
/// Orders claimed per query; a pass goes on until none is left.
const BATCH: i64 = 100;

/// When and how recovery runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecoveryConfig {
    /// A pending order older than this is recovered.
    pub pending_timeout: Duration,
    /// Time between two passes (the first runs at start).
    pub interval: Duration,
    /// How long a claim keeps other recoverers off an order; it must cover
    /// the compensation's two monolith calls.
    pub claim_lease: Duration,
}

impl Default for RecoveryConfig {
    fn default() -> Self {
        Self {
            pending_timeout: DEFAULT_PENDING_TIMEOUT,
            interval: DEFAULT_INTERVAL,
            claim_lease: DEFAULT_CLAIM_LEASE,
        }
    }
}

impl RecoveryConfig {
    /// Checks the settings against the monolith timeout of the calls a
    /// recovery makes.
    pub fn validate(&self, monolith_timeout: Duration) -> Result<(), String> {
        if self.pending_timeout.is_zero() {
            return Err("the saga recovery timeout must be above zero".to_owned());
        }
        if self.interval.is_zero() {
            return Err("the saga recovery interval must be above zero".to_owned());
        }
        if self.claim_lease <= monolith_timeout.saturating_mul(2) {
            return Err(format!(
                "the saga recovery lease ({:?}) must be longer than two monolith calls ({:?} each)",
                self.claim_lease, monolith_timeout
            ));
        }
        Ok(())
    }
}

/// What one pass did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PassReport {
    /// Orders this pass compensated and marked failed.
    pub compensated: Vec<i64>,
    /// Stale orders another recoverer claimed first, or that settled
    /// (placed or failed) before this pass could claim or finish them.
    pub skipped: Vec<i64>,
    /// Claimed orders whose compensation failed; retried once the lease ends.
    pub failed: Vec<i64>,
}

/// How the compensation of one claimed order ended.
enum Compensation {
    /// Refunded, released and marked failed by this recoverer.
    Done,
    /// Compensated, but the order had already left `pending`.
    Settled,
    /// The monolith refused or did not answer, or the database failed: the
    /// order stays pending and claimed until the lease ends.
    Failed,
}

#[derive(Debug, Default)]
struct Counters {
    passes: AtomicU64,
    compensated: AtomicU64,
    skipped: AtomicU64,
    failed: AtomicU64,
    pass_errors: AtomicU64,
    keys_purged: AtomicU64,
}

/// The settings and counters served at `GET /internal/recovery`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RecoveryStats {
    /// [`RecoveryConfig::pending_timeout`] in milliseconds.
    pub pending_timeout_ms: u64,
    /// [`RecoveryConfig::interval`] in milliseconds.
    pub interval_ms: u64,
    /// Passes run.
    pub passes: u64,
    /// Orders compensated and marked failed.
    pub compensated: u64,
    /// Orders left to another recoverer or already settled.
    pub skipped: u64,
    /// Compensations that failed (each is retried later).
    pub compensation_failures: u64,
    /// Passes that stopped on a database error.
    pub pass_errors: u64,
    /// Expired idempotency keys purged.
    pub keys_purged: u64,
}

/// Recovers the orders of sagas that died; cheap to clone, clones share
/// their counters.
#[derive(Debug, Clone)]
pub struct SagaRecovery {
    orders: OrderStore,
    monolith: MonolithClient,
    config: RecoveryConfig,
    counters: Arc<Counters>,
}

impl SagaRecovery {
    /// Recovery over `orders`, compensating through `monolith`.
    pub fn new(orders: OrderStore, monolith: MonolithClient, config: RecoveryConfig) -> Self {
        Self {
            orders,
            monolith,
            config,
            counters: Arc::default(),
        }
    }

    /// The settings in force.
    pub fn config(&self) -> RecoveryConfig {
        self.config
    }

    /// One pass at time `now`: every pending order created before
    /// `now - pending_timeout` and not held by a live claim is claimed,
    /// compensated and marked failed. Fails only on a database error while
    /// looking for or claiming orders (the next pass starts over); an order
    /// that cannot be compensated is reported in [`PassReport::failed`].
    pub async fn run_once(&self, now: DateTime<Utc>) -> Result<PassReport, sqlx::Error> {
        let cutoff = timestamp::before(now, self.config.pending_timeout);
        let now_text = timestamp::format(now);
        let lease_until = timestamp::after(now, self.config.claim_lease);
        let mut report = PassReport::default();
        loop {
            let stale = self.orders.stale_pending(&cutoff, &now_text, BATCH).await?;
            let full = i64::try_from(stale.len()).is_ok_and(|n| n == BATCH);
            for id in stale {
                if !self
                    .orders
                    .claim_for_recovery(id, &cutoff, &now_text, &lease_until)
                    .await?
                {
                    tracing::debug!(order_id = id, "stale order claimed elsewhere or settled; skipped");
                    report.skipped.push(id);
                    continue;
                }
                match self.compensate(id).await {
                    Compensation::Done => report.compensated.push(id),
                    Compensation::Settled => report.skipped.push(id),
                    Compensation::Failed => report.failed.push(id),
                }
            }
            // Claimed and failed orders hold a lease, so a full batch is
            // followed by fresh ones; a short batch was the last.
            if !full {
                break;
            }
        }
        self.count(&report);
        if !report.compensated.is_empty() || !report.failed.is_empty() {
            tracing::warn!(
                compensated = ?report.compensated,
                failed = ?report.failed,
                skipped = report.skipped.len(),
                "saga recovery pass"
            );
        }
        Ok(report)
    }

    /// Refunds, releases and marks one claimed order failed.
    async fn compensate(&self, id: i64) -> Compensation {
        let reference = reference_of(id);
        let request_id = HeaderValue::from_str(&format!("saga-recovery-{id}"))
            .unwrap_or_else(|_| HeaderValue::from_static("saga-recovery"));
        tracing::info!(
            order_id = id,
            "recovering an interrupted saga: refunding and releasing"
        );
        for (step, outcome) in [
            (
                "refund payment",
                self.monolith.refund(&reference, &request_id).await,
            ),
            (
                "release stock",
                self.monolith.release(&reference, &request_id).await,
            ),
        ] {
            if let Err(error) = outcome {
                tracing::warn!(
                    order_id = id,
                    step,
                    error = %error_chain(&error),
                    "saga recovery could not compensate; retrying when the claim's lease ends"
                );
                return Compensation::Failed;
            }
        }
        let reason = "saga recovery: the saga was interrupted; payment refunded and stock released";
        match self.orders.mark_failed(id, reason, &timestamp::now()).await {
            Ok(true) => {
                tracing::warn!(order_id = id, "interrupted saga compensated; order marked failed");
                Compensation::Done
            }
            Ok(false) => Compensation::Settled,
            Err(error) => {
                tracing::warn!(
                    order_id = id,
                    error = %error_chain(&error),
                    "saga recovery compensated but could not mark the order failed; retrying later"
                );
                Compensation::Failed
            }
        }
    }

    fn count(&self, report: &PassReport) {
        let add = |counter: &AtomicU64, items: &[i64]| {
            counter.fetch_add(u64::try_from(items.len()).unwrap_or(u64::MAX), Ordering::Relaxed);
        };
        self.counters.passes.fetch_add(1, Ordering::Relaxed);
        add(&self.counters.compensated, &report.compensated);
        add(&self.counters.skipped, &report.skipped);
        add(&self.counters.failed, &report.failed);
    }

    /// Runs a pass now and then every [`RecoveryConfig::interval`], forever,
    /// purging expired idempotency keys too: the background task of every
    /// instance. Errors are logged and counted; the next pass tries again.
    pub async fn run_periodically(self) {
        let mut ticker = tokio::time::interval(self.config.interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            let now = Utc::now();
            if let Err(error) = self.run_once(now).await {
                self.counters.pass_errors.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(error = %error_chain(&error), "saga recovery pass failed; trying again later");
            }
            match idempotency::purge_expired(self.orders.database(), now).await {
                Ok(purged) => {
                    self.counters.keys_purged.fetch_add(purged, Ordering::Relaxed);
                }
                Err(error) => {
                    tracing::warn!(error = %error_chain(&error), "cannot purge expired idempotency keys");
                }
            }
        }
    }

    /// Current settings and counters.
    pub fn stats(&self) -> RecoveryStats {
        let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        let millis = |duration: Duration| u64::try_from(duration.as_millis()).unwrap_or(u64::MAX);
        RecoveryStats {
            pending_timeout_ms: millis(self.config.pending_timeout),
            interval_ms: millis(self.config.interval),
            passes: load(&self.counters.passes),
            compensated: load(&self.counters.compensated),
            skipped: load(&self.counters.skipped),
            compensation_failures: load(&self.counters.failed),
            pass_errors: load(&self.counters.pass_errors),
            keys_purged: load(&self.counters.keys_purged),
        }
    }
}
