//! Prometheus metrics of scheduled reconciliation: divergences found by the
//! latest pass of each capability, and how long ago its last pass finished.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::report::Report;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DivergenceLabels {
    capability: String,
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CapabilityLabels {
    capability: String,
}

/// The schedule's metrics, shared between the passes and the `/metrics`
/// endpoint.
pub struct ScheduleMetrics {
    registry: Registry,
    divergences: Family<DivergenceLabels, Gauge>,
    last_run_age: Family<CapabilityLabels, Gauge>,
    failed: Family<CapabilityLabels, Gauge>,
    finished: Mutex<HashMap<String, Instant>>,
}

impl std::fmt::Debug for ScheduleMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ScheduleMetrics")
    }
}

impl Default for ScheduleMetrics {
    fn default() -> Self {
        Self::new()
    }
}

impl ScheduleMetrics {
    /// Registers every metric.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("strangler_reconcile");
        let divergences = Family::<DivergenceLabels, Gauge>::default();
        registry.register(
            "divergences",
            "Rows found missing, extra or changed by the latest finished pass",
            divergences.clone(),
        );
        let last_run_age = Family::<CapabilityLabels, Gauge>::default();
        registry.register(
            "last_run_age_seconds",
            "Seconds since the capability's last pass ended, successful or not",
            last_run_age.clone(),
        );
        let failed = Family::<CapabilityLabels, Gauge>::default();
        registry.register(
            "last_run_failed",
            "1 when the capability's last pass failed",
            failed.clone(),
        );
        Self {
            registry,
            divergences,
            last_run_age,
            failed,
            finished: Mutex::new(HashMap::new()),
        }
    }

    /// Records a pass that produced a report.
    pub fn finished(&self, report: &Report) {
        let capability = report.capability.clone();
        for (kind, count) in [
            ("missing", report.totals.missing),
            ("extra", report.totals.extra),
            ("changed", report.totals.changed),
            ("settling", report.totals.settling),
        ] {
            self.divergences
                .get_or_create(&DivergenceLabels {
                    capability: capability.clone(),
                    kind,
                })
                .set(i64::try_from(count).unwrap_or(i64::MAX));
        }
        self.failed
            .get_or_create(&CapabilityLabels {
                capability: capability.clone(),
            })
            .set(0);
        self.ended(capability);
    }

    /// Records a pass that failed; the last divergence counts stay as they were.
    pub fn failed(&self, capability: &str) {
        self.failed
            .get_or_create(&CapabilityLabels {
                capability: capability.to_owned(),
            })
            .set(1);
        self.ended(capability.to_owned());
    }

    fn ended(&self, capability: String) {
        if let Ok(mut finished) = self.finished.lock() {
            finished.insert(capability, Instant::now());
        }
    }

    /// The Prometheus text exposition, ages computed now.
    pub fn render(&self) -> String {
        if let Ok(finished) = self.finished.lock() {
            for (capability, at) in finished.iter() {
                self.last_run_age
                    .get_or_create(&CapabilityLabels {
                        capability: capability.clone(),
                    })
                    .set(i64::try_from(at.elapsed().as_secs()).unwrap_or(i64::MAX));
            }
        }
        let mut text = String::new();
        if prometheus_client::encoding::text::encode(&mut text, &self.registry).is_err() {
            text.clear();
        }
        text
    }
}
