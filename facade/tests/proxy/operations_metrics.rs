//! What `/metrics` says for the shipped alerts and dashboard (`deploy/`):
//! each capability's stage and how often it changed, and its latest
//! reconciliation as the reconciler recorded it in the store (a reconciler
//! run as a one-shot job serves no metrics of its own). The reconciliation
//! is read from the store, so these cases run on SQLite and PostgreSQL.

use reqwest::StatusCode;
use serde_json::json;
use test_harness::{on_each_engine, Engine, TestDatabase};

use crate::gates::record_reconciliation;
use crate::helpers::{eventually, metric_value, Cutover, Settings, CAPABILITY, WAIT_LIMIT};

on_each_engine!(
    the_latest_finished_comparison_is_exported_per_capability,
    the_stage_and_its_changes_are_exported,
);

const AGE: &str = "strangler_facade_reconciliation_age_seconds";
const DIVERGENCES: &str = "strangler_facade_reconciliation_divergences";

fn divergences(exposition: &str, kind: &str) -> f64 {
    metric_value(
        exposition,
        DIVERGENCES,
        &[("capability", CAPABILITY), ("kind", kind)],
    )
}

async fn the_latest_finished_comparison_is_exported_per_capability(engine: Engine) {
    let Some(store) = TestDatabase::fresh(engine).await else {
        return;
    };
    let (_cutover, facade) = Cutover::start_on(store.url(), Settings::default()).await;
    let series = format!("{AGE}{{capability=\"{CAPABILITY}\"}}");

    // Never reconciled: no series (an age of 0 would say "just now").
    let text = facade.metrics().await;
    assert!(!text.contains(&series), "{text}");
    assert!(!text.contains(DIVERGENCES), "{text}");

    // A diverged run two minutes ago (2 missing, 1 changed).
    record_reconciliation(store.url(), CAPABILITY, "diverged", 120).await;
    let text = facade.metrics().await;
    assert_eq!(divergences(&text, "missing"), 2.0, "{text}");
    assert_eq!(divergences(&text, "extra"), 0.0, "{text}");
    assert_eq!(divergences(&text, "changed"), 1.0, "{text}");
    let age = metric_value(&text, AGE, &[("capability", CAPABILITY)]);
    assert!((120.0..180.0).contains(&age), "age {age} in\n{text}");

    // A failed run compared nothing: neither cleared nor refreshed.
    record_reconciliation(store.url(), CAPABILITY, "failed", 10).await;
    let text = facade.metrics().await;
    assert_eq!(divergences(&text, "missing"), 2.0, "{text}");
    let age = metric_value(&text, AGE, &[("capability", CAPABILITY)]);
    assert!(age >= 120.0, "a failed run refreshed the age to {age}:\n{text}");

    // A clean run half a minute ago clears the divergence.
    record_reconciliation(store.url(), CAPABILITY, "clean", 30).await;
    let text = facade.metrics().await;
    for kind in ["missing", "extra", "changed"] {
        assert_eq!(divergences(&text, kind), 0.0, "{kind} in\n{text}");
    }
    let age = metric_value(&text, AGE, &[("capability", CAPABILITY)]);
    assert!((30.0..90.0).contains(&age), "age {age} in\n{text}");
}

async fn the_stage_and_its_changes_are_exported(engine: Engine) {
    let Some(store) = TestDatabase::fresh(engine).await else {
        return;
    };
    let settings = Settings {
        initial: "canary 25%",
        ..Settings::default()
    };
    let (_cutover, facade) = Cutover::start_on(store.url(), settings).await;
    let stage = |text: &str, name: &str| {
        metric_value(
            text,
            "strangler_facade_capability_stage",
            &[("capability", CAPABILITY), ("stage", name)],
        )
    };
    let changes = |text: &str| {
        metric_value(
            text,
            "strangler_facade_stage_changes_total",
            &[("capability", CAPABILITY)],
        )
    };
    let permille = |text: &str| {
        metric_value(
            text,
            "strangler_facade_capability_canary_permille",
            &[("capability", CAPABILITY)],
        )
    };

    let text = facade.metrics().await;
    for (name, expected) in [
        ("legacy", 0.0),
        ("shadow", 0.0),
        ("canary", 1.0),
        ("service", 0.0),
        ("retired", 0.0),
    ] {
        assert_eq!(stage(&text, name), expected, "stage {name} in\n{text}");
    }
    assert_eq!(permille(&text), 250.0, "{text}");
    // Counters exposed at zero before the first event, so that it counts.
    for counter in [
        "strangler_facade_stage_changes_total",
        "strangler_facade_auto_rollbacks_total",
    ] {
        let zero = format!("{counter}{{capability=\"{CAPABILITY}\"}} 0");
        assert!(text.contains(&zero), "no `{zero}` in\n{text}");
    }

    let (status, outcome) = facade
        .flip(CAPABILITY, json!({"to": "legacy", "reason": "metrics test"}))
        .await;
    assert_eq!(status, StatusCode::OK, "{outcome}");
    let text = eventually(
        "the move back in /metrics",
        WAIT_LIMIT,
        std::time::Duration::from_millis(20),
        async || {
            let text = facade.metrics().await;
            if stage(&text, "legacy") == 1.0 {
                Ok(text)
            } else {
                Err(text)
            }
        },
    )
    .await;
    assert_eq!(stage(&text, "canary"), 0.0, "{text}");
    assert_eq!(permille(&text), 0.0, "{text}");
    assert_eq!(changes(&text), 1.0, "{text}");
}
