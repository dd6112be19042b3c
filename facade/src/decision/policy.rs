//! The safe-cutover settings in `strangler.toml`: per capability, how its
//! shadow traffic is compared, its error budget for automatic rollback and
//! its gates; per backend, retries, circuit breaker and bulkhead.
//!
//! ```toml
//! [capabilities.orders]
//! legacy = "legacy"
//! service = "orders"
//! sticky = "header:x-customer-id"   # canary key: header:<name>, cookie:<name> or client
//!
//! [capabilities.orders.shadow]
//! ignore = ["$.updated_at", "date"] # JSON paths, and header names
//! headers = ["content-type"]        # headers compared besides the status
//! learn_noise = true                # a second monolith call shows its own noise
//! max_body_bytes = 1048576          # bodies over it are not shadowed (counted)
//! service_writes_own_database = false
//!
//! [capabilities.orders.rollback]    # automatic rollback to legacy
//! max_error_rate = 0.05
//! window_seconds = 60
//! min_requests = 20
//!
//! [capabilities.orders.gates]
//! shadow_max_mismatch_rate = 0.01   # to leave shadow forward
//! shadow_window_seconds = 300
//! shadow_min_comparisons = 20
//! reconciliation = true             # to reach `service`: a clean reconciliation
//! reconciliation_max_age_seconds = 3600
//!
//! [facade]
//! shadow_queue = 1000               # copies waiting; beyond, dropped and counted
//! shadow_concurrency = 32           # copies in flight to services
//! shadow_max_per_second = 500       # copies made at most (the rest: sampled_out)
//!
//! [backends.orders]
//! retries = 2                       # only for requests safe to repeat
//! retry_budget = 0.2                # retries at most 20% of requests (10 s window)
//! breaker_failures = 5
//! breaker_open_ms = 5000
//! max_concurrent = 1000
//! ```
//!
//! Every value has a default that is safe for production; a value out of
//! range is refused at load with its line, like the rest of the file.

use std::sync::Arc;
use std::time::Duration;

use resilience::{Backoff, BreakerConfig};
use response_diff::Rules;
use serde::Deserialize;

/// How shadow copies of one capability are compared.
#[derive(Debug, Clone)]
pub struct ShadowPolicy {
    /// Ignore rules and compared headers.
    pub rules: Arc<Rules>,
    /// Whether a second monolith call learns which fields are noise.
    pub learn_noise: bool,
    /// Largest request or response body compared; larger ones are skipped.
    pub max_body_bytes: usize,
}

/// When the facade moves a capability back to legacy by itself.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RollbackPolicy {
    /// Whether automatic rollback is on.
    pub enabled: bool,
    /// Highest share of failed service requests (5xx, timeouts, refused).
    pub max_error_rate: f64,
    /// Sliding window the rate is measured over.
    pub window: Duration,
    /// Fewest service requests in the window before the rate counts.
    pub min_requests: u64,
}

/// What a forward move must show.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GatePolicy {
    /// Highest shadow mismatch rate that lets a capability leave shadow.
    pub shadow_max_mismatch_rate: f64,
    /// The window the rate is measured over.
    pub shadow_window: Duration,
    /// Fewest comparisons in the window: less is not evidence.
    pub shadow_min_comparisons: u64,
    /// Whether a move to `service` needs a clean, recent reconciliation.
    pub reconciliation: bool,
    /// How recent that reconciliation must be.
    pub reconciliation_max_age: Duration,
}

/// A capability's safe-cutover settings.
#[derive(Debug, Clone)]
pub struct CapabilityPolicy {
    /// Shadow comparison.
    pub shadow: ShadowPolicy,
    /// Automatic rollback.
    pub rollback: RollbackPolicy,
    /// Gates.
    pub gates: GatePolicy,
}

/// A backend's resilience settings.
#[derive(Debug, Clone, Copy)]
pub struct ResiliencePolicy {
    /// Extra attempts for a request that is safe to repeat.
    pub retries: u32,
    /// Highest share of retries to requests over [`RETRY_BUDGET_WINDOW`].
    pub retry_budget: f64,
    /// Backoff between attempts.
    pub backoff: Backoff,
    /// Limit on all attempts of one request together.
    pub total_timeout: Duration,
    /// Circuit breaker thresholds.
    pub breaker: BreakerConfig,
    /// Most requests in flight to the backend at once (the bulkhead).
    pub max_concurrent: usize,
}

/// The window the retry budget is measured over.
pub const RETRY_BUDGET_WINDOW: Duration = Duration::from_secs(10);

/// `[capabilities.<name>.shadow]`, `.rollback`, `.gates` as written.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawPolicy {
    #[serde(default)]
    pub(crate) shadow: RawShadow,
    #[serde(default)]
    pub(crate) rollback: RawRollback,
    #[serde(default)]
    pub(crate) gates: RawGates,
}

#[derive(Deserialize, Default, Clone)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawShadow {
    #[serde(default)]
    ignore: Vec<String>,
    headers: Option<Vec<String>>,
    learn_noise: Option<bool>,
    max_body_bytes: Option<usize>,
    service_writes_own_database: Option<bool>,
}

#[derive(Deserialize, Default, Clone)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRollback {
    enabled: Option<bool>,
    max_error_rate: Option<f64>,
    window_seconds: Option<u64>,
    min_requests: Option<u64>,
}

#[derive(Deserialize, Default, Clone)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawGates {
    shadow_max_mismatch_rate: Option<f64>,
    shadow_window_seconds: Option<u64>,
    shadow_min_comparisons: Option<u64>,
    reconciliation: Option<bool>,
    reconciliation_max_age_seconds: Option<u64>,
}

fn rate(value: Option<f64>, default: f64, what: &str) -> Result<f64, String> {
    match value.unwrap_or(default) {
        r if (0.0..=1.0).contains(&r) => Ok(r),
        r => Err(format!(
            "{what} must be a share between 0.0 and 1.0 (0.05 is 5%), got {r}"
        )),
    }
}

fn seconds(value: Option<u64>, default: u64, what: &str) -> Result<Duration, String> {
    match value.unwrap_or(default) {
        0 => Err(format!("{what} must be above zero")),
        s => Ok(Duration::from_secs(s)),
    }
}

impl RawPolicy {
    /// Whether the service may receive copies of non-idempotent requests.
    pub(crate) fn shadow_writes(&self) -> bool {
        self.shadow.service_writes_own_database.unwrap_or(false)
    }

    /// Validates; errors name the setting of capability `name`.
    pub(crate) fn check(&self, name: &str) -> Result<CapabilityPolicy, String> {
        let prefix = |m: String| format!("capability `{name}`: {m}");
        let headers = self
            .shadow
            .headers
            .clone()
            .unwrap_or_else(|| vec!["content-type".to_owned()]);
        let rules = Rules::new(&self.shadow.ignore, &headers).map_err(|e| prefix(format!("shadow: {e}")))?;
        let max_body_bytes = match self.shadow.max_body_bytes.unwrap_or(1024 * 1024) {
            n if (1..=64 * 1024 * 1024).contains(&n) => n,
            n => {
                return Err(prefix(format!(
                    "shadow.max_body_bytes must be between 1 and 67108864, got {n}"
                )))
            }
        };
        let rollback = RollbackPolicy {
            enabled: self.rollback.enabled.unwrap_or(true),
            max_error_rate: rate(self.rollback.max_error_rate, 0.05, "rollback.max_error_rate")
                .map_err(prefix)?,
            window: seconds(self.rollback.window_seconds, 60, "rollback.window_seconds").map_err(prefix)?,
            min_requests: self.rollback.min_requests.unwrap_or(20).max(1),
        };
        let gates = GatePolicy {
            shadow_max_mismatch_rate: rate(
                self.gates.shadow_max_mismatch_rate,
                0.01,
                "gates.shadow_max_mismatch_rate",
            )
            .map_err(prefix)?,
            shadow_window: seconds(
                self.gates.shadow_window_seconds,
                300,
                "gates.shadow_window_seconds",
            )
            .map_err(prefix)?,
            shadow_min_comparisons: self.gates.shadow_min_comparisons.unwrap_or(20),
            reconciliation: self.gates.reconciliation.unwrap_or(true),
            reconciliation_max_age: seconds(
                self.gates.reconciliation_max_age_seconds,
                3600,
                "gates.reconciliation_max_age_seconds",
            )
            .map_err(prefix)?,
        };
        Ok(CapabilityPolicy {
            shadow: ShadowPolicy {
                rules: Arc::new(rules),
                learn_noise: self.shadow.learn_noise.unwrap_or(false),
                max_body_bytes,
            },
            rollback,
            gates,
        })
    }
}

/// The resilience part of `[backends.<name>]` as written.
#[derive(Deserialize, Default, Clone, Copy)]
pub(crate) struct RawResilience {
    pub(crate) retries: Option<u32>,
    pub(crate) retry_budget: Option<f64>,
    pub(crate) retry_backoff_ms: Option<u64>,
    pub(crate) total_timeout_ms: Option<u64>,
    pub(crate) breaker_failures: Option<u32>,
    pub(crate) breaker_open_ms: Option<u64>,
    pub(crate) max_concurrent: Option<usize>,
}

impl RawResilience {
    /// Validates; `request_timeout` bounds one attempt and sets the default
    /// total. Errors name the setting of backend `name`.
    pub(crate) fn check(&self, name: &str, request_timeout: Duration) -> Result<ResiliencePolicy, String> {
        let prefix = |m: String| format!("backend `{name}`: {m}");
        let retries = match self.retries.unwrap_or(2) {
            n if n <= 10 => n,
            n => return Err(prefix(format!("retries must be at most 10, got {n}"))),
        };
        let base = Duration::from_millis(self.retry_backoff_ms.unwrap_or(25).max(1));
        let total_timeout = match self.total_timeout_ms {
            None => request_timeout.saturating_mul(2),
            Some(0) => return Err(prefix("total_timeout_ms must be above zero".to_owned())),
            Some(ms) => Duration::from_millis(ms),
        };
        let failure_threshold = match self.breaker_failures.unwrap_or(5) {
            0 => return Err(prefix("breaker_failures must be at least 1".to_owned())),
            n => n,
        };
        let max_concurrent = match self.max_concurrent.unwrap_or(10_000) {
            0 => return Err(prefix("max_concurrent must be at least 1".to_owned())),
            n => n,
        };
        Ok(ResiliencePolicy {
            retries,
            retry_budget: rate(self.retry_budget, 0.2, "retry_budget").map_err(prefix)?,
            backoff: Backoff {
                base,
                cap: Duration::from_secs(1).max(base),
            },
            total_timeout,
            breaker: BreakerConfig {
                failure_threshold,
                open_for: Duration::from_millis(self.breaker_open_ms.unwrap_or(5_000).max(1)),
            },
            max_concurrent,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_pass_their_own_checks() {
        let policy = RawPolicy::default().check("c").unwrap();
        assert_eq!(policy.gates.shadow_window, Duration::from_secs(300));
        assert!(policy.rollback.enabled);
        let backend = RawResilience::default()
            .check("b", Duration::from_secs(30))
            .unwrap();
        assert_eq!(backend.retries, 2);
        assert_eq!(backend.total_timeout, Duration::from_secs(60));
    }

    #[test]
    fn out_of_range_values_are_named() {
        let raw: RawPolicy = toml::from_str("[rollback]\nmax_error_rate = 5.0\n").unwrap();
        let error = raw.check("orders").unwrap_err();
        assert!(
            error.contains("capability `orders`: rollback.max_error_rate"),
            "{error}"
        );
        let raw: RawResilience = toml::from_str("breaker_failures = 0\n").unwrap();
        assert!(raw
            .check("orders", Duration::from_secs(1))
            .unwrap_err()
            .contains("breaker_failures"));
    }
}
