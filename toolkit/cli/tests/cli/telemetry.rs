//! Traces of `strangler reconcile run`, exported over OTLP/HTTP to a real
//! receiver started by the test: one span per table, with the rows compared
//! and the differences found, under the run's span; and JSON log lines that
//! carry the trace's ids.

use test_harness::otlp::OtlpReceiver;
use test_harness::workspace_path;

use super::{databases, run, with_databases};

#[tokio::test]
async fn a_reconciliation_exports_one_span_per_table_and_its_logs_join_them() {
    let receiver = OtlpReceiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    // Twelve products in the monolith, none yet in the catalog service.
    let (monolith, catalog) = databases(dir.path()).await;
    let mut command = with_databases(
        &[
            "--log-format",
            "json",
            "reconcile",
            "run",
            "catalog",
            "--output",
            "json",
        ],
        &workspace_path("demo/mapping.toml"),
        monolith.expose(),
        catalog.expose(),
    );
    command
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.base_url())
        .env("OTEL_TRACES_SAMPLER", "always_on")
        .env("RUST_LOG", "info,sqlx=warn");
    // The receiver answers on this runtime while the command runs.
    let (code, stdout, stderr) = tokio::task::spawn_blocking(move || run(&mut command))
        .await
        .unwrap();
    assert_eq!(code, 1, "diverged: {stdout}{stderr}");

    // The command exports what is queued before it exits.
    let spans = receiver.spans();
    let run_span = spans
        .iter()
        .find(|span| span.name == "reconcile")
        .unwrap_or_else(|| panic!("no run span in {spans:#?}"));
    assert_eq!(run_span.service, "strangler-reconciler");
    assert_eq!(run_span.attribute("capability"), Some("catalog"));
    let tables: Vec<_> = spans
        .iter()
        .filter(|span| span.name == "reconcile_table")
        .collect();
    assert_eq!(tables.len(), 1, "one table in the catalog's mapping: {spans:#?}");
    let table = tables[0];
    assert_eq!(table.trace_id, run_span.trace_id);
    assert_eq!(table.parent_span_id, run_span.span_id);
    assert_eq!(table.attribute("table"), Some("products"));
    assert_eq!(table.attribute("differences"), Some("12"));
    assert!(table.attribute("rows_compared").is_some(), "{table:?}");
    assert!(table.attribute("strategy").is_some(), "{table:?}");

    // The run's summary line was logged inside the run's span.
    let finished = stderr
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .find(|line| line["message"] == "reconciliation finished")
        .unwrap_or_else(|| panic!("no summary line in {stderr}"));
    assert_eq!(finished["trace_id"], run_span.trace_id.as_str(), "{finished}");
    assert_eq!(finished["span_id"], run_span.span_id.as_str(), "{finished}");
}
