//! The dual-write phase: every order the service places or cancels is also
//! written into the monolith's orders tables, through the monolith's API.
//!
//! The second write happens after the service's own commit and never fails
//! the client's request: a failure is logged and counted, and finding the
//! resulting divergence is the reconciler's job. A configurable fault rate
//! drops that second write on purpose, so that demos and tests can make the
//! two databases diverge; `PUT /internal/settings` changes it at runtime.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use axum::http::HeaderValue;
use rand::Rng;
use serde::Serialize;
use shop_api::{Order, OrderReplica, ReplicaLine};

use crate::monolith_client::MonolithClient;

/// Dual-write settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DualWriteConfig {
    /// Whether orders are written to the monolith as well.
    pub enabled: bool,
    /// Share of second writes dropped on purpose, 0.0 to 1.0.
    pub fault_rate: f64,
}

impl DualWriteConfig {
    /// Checks the fault rate's range.
    pub fn validate(&self) -> Result<(), String> {
        validate_fault_rate(self.fault_rate)
    }
}

/// Checks that `rate` is a share: 0.0 to 1.0, not NaN.
pub fn validate_fault_rate(rate: f64) -> Result<(), String> {
    if !(0.0..=1.0).contains(&rate) {
        return Err(format!(
            "dual-write fault rate must be between 0.0 and 1.0, got {rate}"
        ));
    }
    Ok(())
}

/// Counters of second writes, served at `GET /internal/dual-write`.
#[derive(Debug, Default)]
struct Counters {
    written: AtomicU64,
    failed: AtomicU64,
    dropped_by_fault_injection: AtomicU64,
}

/// A snapshot of the dual-write settings and counters.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct DualWriteStats {
    /// Whether dual writes are on.
    pub enabled: bool,
    /// The fault rate in force.
    pub fault_rate: f64,
    /// Second writes the monolith accepted.
    pub written: u64,
    /// Second writes that failed (monolith down, refused, timed out).
    pub failed: u64,
    /// Second writes dropped on purpose.
    pub dropped_by_fault_injection: u64,
}

/// Writes orders to the monolith after the service's own commit.
#[derive(Clone, Debug)]
pub struct DualWriter {
    client: MonolithClient,
    enabled: bool,
    // An `f64`'s bits, so that the rate can change at runtime without a
    // lock on the write path.
    fault_rate: Arc<AtomicU64>,
    counters: Arc<Counters>,
}

impl DualWriter {
    /// A writer with the given settings.
    pub fn new(client: MonolithClient, config: DualWriteConfig) -> Self {
        Self {
            client,
            enabled: config.enabled,
            fault_rate: Arc::new(AtomicU64::new(config.fault_rate.to_bits())),
            counters: Arc::default(),
        }
    }

    /// The share of second writes dropped on purpose now.
    pub fn fault_rate(&self) -> f64 {
        f64::from_bits(self.fault_rate.load(Ordering::Relaxed))
    }

    /// Changes the fault rate for every later write; refuses a rate outside
    /// 0.0 to 1.0 and then changes nothing.
    pub fn set_fault_rate(&self, rate: f64) -> Result<(), String> {
        validate_fault_rate(rate)?;
        self.fault_rate.store(rate.to_bits(), Ordering::Relaxed);
        Ok(())
    }

    /// Writes `order` to the monolith, unless dual writes are off or fault
    /// injection drops it. Never fails: the outcome is logged and counted.
    pub async fn replicate(&self, order: &Order, request_id: &HeaderValue) {
        if !self.enabled {
            return;
        }
        let fault_rate = self.fault_rate();
        if fault_rate > 0.0 && rand::thread_rng().gen_bool(fault_rate) {
            self.counters
                .dropped_by_fault_injection
                .fetch_add(1, Ordering::Relaxed);
            tracing::warn!(
                order_id = order.id,
                "dual write to the monolith dropped by fault injection"
            );
            return;
        }
        match self
            .client
            .write_replica(order.id, &replica_of(order), request_id)
            .await
        {
            Ok(()) => {
                self.counters.written.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(order_id = order.id, "dual write to the monolith done");
            }
            Err(error) => {
                self.counters.failed.fetch_add(1, Ordering::Relaxed);
                tracing::error!(
                    order_id = order.id,
                    error = %service_runtime::api_error::error_chain(&error),
                    "dual write to the monolith failed; the databases now differ until reconciled"
                );
            }
        }
    }

    /// Current settings and counters.
    pub fn stats(&self) -> DualWriteStats {
        DualWriteStats {
            enabled: self.enabled,
            fault_rate: self.fault_rate(),
            written: self.counters.written.load(Ordering::Relaxed),
            failed: self.counters.failed.load(Ordering::Relaxed),
            dropped_by_fault_injection: self.counters.dropped_by_fault_injection.load(Ordering::Relaxed),
        }
    }
}

/// The monolith's view of an order.
pub fn replica_of(order: &Order) -> OrderReplica {
    OrderReplica {
        customer_id: order.customer_id,
        status: order.status,
        total_cents: order.total_cents,
        created_at: order.created_at.clone(),
        updated_at: order.updated_at.clone(),
        lines: (1i64..)
            .zip(&order.lines)
            .map(|(line_no, line)| ReplicaLine {
                line_no,
                product_id: line.product_id,
                quantity: line.quantity,
                unit_price_cents: line.unit_price_cents,
            })
            .collect(),
    }
}
