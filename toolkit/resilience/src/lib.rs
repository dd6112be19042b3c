//! Per-backend resilience primitives for the strangler-fig facade. The facade sits in front of the
//! legacy monolith and the extracted services, and these primitives keep one struggling backend from
//! dragging the rest down, and a bad migration step from staying live:
//!
//! - [`SlidingWindow`] ([`window`]): success/failure counts over a bucketed rolling window (Hystrix-style
//!   ring of buckets); the building block of the two budgets below.
//! - [`RetryBudget`] ([`retry_budget`]): retries limited to a fraction of requests over a window
//!   (Finagle's `RetryBudget`, Envoy's `retry_budget`), so retries cannot multiply load in an outage.
//! - [`Backoff`] ([`backoff`]): exponential backoff with full jitter (AWS Architecture Blog,
//!   "Exponential Backoff And Jitter") to spread retries out in time.
//! - [`CircuitBreaker`] ([`circuit_breaker`]): closed / open / half-open with a single probe (Nygard's
//!   *Release It!*), with generation numbers against stale outcomes (as in `sony/gobreaker`); fails fast
//!   while a backend is down.
//! - [`Bulkhead`] ([`bulkhead`]): a non-waiting cap on concurrent requests per backend (*Release It!*,
//!   Hystrix semaphore isolation), so a slow backend cannot absorb all of the facade's capacity.
//! - [`ErrorBudget`] ([`error_budget`]): a failure-rate threshold over a window with a minimum sample
//!   size, the trigger for automatically rolling a capability back to the monolith (SRE error budgets,
//!   automated canary analysis).
//!
//! The crate does no I/O and reads no clock for its decisions: time is passed in as [`std::time::Instant`]
//! arguments, so behaviour is deterministic and tests never sleep. (The one exception is a half-open
//! probe dropped without an outcome, see [`Attempt`].) Every type is `Send + Sync` and meant to be shared
//! behind an `Arc` by many tasks; internal locks are `std::sync::Mutex` held for a few instructions and
//! never across an `.await`.

pub mod backoff;
pub mod bulkhead;
pub mod circuit_breaker;
pub mod error_budget;
pub mod retry_budget;
pub mod window;

pub use backoff::Backoff;
pub use bulkhead::{Bulkhead, BulkheadPermit};
pub use circuit_breaker::{Attempt, BreakerConfig, BreakerState, CircuitBreaker, Rejected, TransitionCounts};
pub use error_budget::{ErrorBudget, Exceeded};
pub use retry_budget::{BudgetSnapshot, RetryBudget};
pub use window::{SlidingWindow, MAX_BUCKETS};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_types_are_send_sync() {
        fn check<T: Send + Sync>() {}
        check::<SlidingWindow>();
        check::<RetryBudget>();
        check::<Backoff>();
        check::<CircuitBreaker>();
        check::<Attempt>();
        check::<Bulkhead>();
        check::<BulkheadPermit<'static>>();
        check::<ErrorBudget>();
    }
}
