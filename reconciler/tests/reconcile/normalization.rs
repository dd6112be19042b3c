//! Normalization: decimal vs integer cents, timestamp precision and zone,
//! enum value maps, trimming and case, NULL vs empty string, ignored columns.

use reconciler::{Options, Status};
use test_harness::Engine;

use crate::helpers::{assert_findings, each_pairing, exec, mapping_text, pair, run};

/// `orders`, the service the source of truth: `total` in cents, `status`
/// as `state` in capitals, `note` trimmed and lower-cased, `internal` ignored.
fn orders_mapping() -> String {
    let table = mapping_text(
        "orders",
        ("orders", "orders"),
        &["id"],
        &[
            ("id", "id"),
            ("total", "total_cents"),
            ("placed_at", "placed_at"),
            ("status", "state"),
            ("note", "note"),
            ("code", "code"),
            ("internal", "internal"),
        ],
        r#"ignore = ["internal"]
normalize = { total = "cents_from_decimal", placed_at = "timestamp_ms", note = ["trim", "lower"], code = "empty_is_null" }
values = { status = { placed = "PLACED", cancelled = "CANCELLED" } }
"#,
    );
    format!("[capabilities.orders]\nsource_of_truth = \"service\"\n{table}")
}

async fn normalization(legacy_engine: Engine, service_engine: Engine) {
    let Some((legacy, service)) = pair(legacy_engine, service_engine).await else {
        return;
    };
    exec(
        &legacy,
        r#"CREATE TABLE "orders" ("id" {INT} PRIMARY KEY, "total" {DEC} NOT NULL, "placed_at" {TS} NOT NULL,
  "status" {TEXT} NOT NULL, "note" {TEXT}, "code" {TEXT}, "internal" {TEXT});
INSERT INTO "orders" VALUES
  (1, 12.34, '2026-11-23 14:08:28.123456{Z}', 'placed', '  Hello ', '', 'x'),
  (2, 5.00, '2026-11-23 14:08:29{Z}', 'cancelled', 'a', NULL, 'y'),
  (3, 7.50, '2026-11-23 14:08:30.5{Z}', 'placed', 'b', 'k', 'z'),
  (4, 1.00, '2026-11-23 14:08:31{Z}', 'placed', 'c', 'k', 'z'),
  (5, 2.00, '2026-11-23 14:08:32{Z}', 'placed', 'd', 'k', 'z')"#,
    )
    .await;
    exec(
        &service,
        r#"CREATE TABLE "orders" ("id" {INT} PRIMARY KEY, "total_cents" {INT} NOT NULL, "placed_at" {TEXT} NOT NULL,
  "state" {TEXT} NOT NULL, "note" {TEXT}, "code" {TEXT}, "internal" {TEXT});
INSERT INTO "orders" VALUES
  (1, 1234, '2026-11-23T14:08:28.123Z', 'PLACED', 'hello', NULL, 'different'),
  (2, 500, '2026-11-23T15:08:29+01:00', 'CANCELLED', 'A', '', 'w'),
  (3, 751, '2026-11-23T14:08:30.500Z', 'PLACED', 'b', 'k', 'z'),
  (4, 100, '2026-11-23T14:08:31.000Z', 'CANCELLED', 'c', 'k', 'z'),
  (5, 200, '2026-11-23T14:08:32.001Z', 'PLACED', 'd', 'k', 'z')"#,
    )
    .await;
    let report = run(
        &orders_mapping(),
        "orders",
        &legacy,
        &service,
        &Options::default(),
    )
    .await
    .unwrap();
    let table = &report.tables[0];
    let context = format!("{legacy_engine} → {service_engine}\n{}", report.to_human());
    assert_eq!(report.status, Status::Diverged, "{context}");
    assert_findings(table, [&[], &[], &["[3]", "[4]", "[5]"]], &context);
    let total = &table.changed[0].columns;
    assert_eq!(total.len(), 1, "{context}");
    assert_eq!(
        (total[0].legacy.clone(), total[0].service.clone()),
        (750.into(), 751.into())
    );
    let state = &table.changed[1].columns[0];
    assert_eq!(
        (state.column.as_str(), state.service_column.as_str()),
        ("status", "state")
    );
    assert_eq!(
        (state.legacy.clone(), state.service.clone()),
        ("PLACED".into(), "CANCELLED".into())
    );
    let at = &table.changed[2].columns[0];
    assert_eq!(at.legacy, "2026-11-23T14:08:32.000Z", "{context}");
    assert_eq!(at.service, "2026-11-23T14:08:32.001Z");
    assert_eq!(
        serde_json::to_value(&report).unwrap()["source_of_truth"],
        "service"
    );
}

#[tokio::test]
async fn normalized_columns_compare_equal_across_engines() {
    let pairings = [
        (Engine::MySql, Engine::Postgres),
        (Engine::Postgres, Engine::Sqlite),
        (Engine::Sqlite, Engine::MySql),
        (Engine::Postgres, Engine::Postgres),
    ];
    each_pairing(&pairings, normalization).await;
}
