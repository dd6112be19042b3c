//! The settle window: differences on rows changed within the last N seconds
//! are held back as settling, and judged once the window has passed.

use chrono::{DateTime, Duration, SecondsFormat, Utc};
use reconciler::report::Kind;
use reconciler::{Options, Report, Status};
use test_harness::{Engine, TestDatabase};

use crate::helpers::{assert_findings, each_pairing, exec, mapping_text, pair_holding, run, same};

const ORDERS: &str = r#"CREATE TABLE "orders" ("id" {INT} PRIMARY KEY, "status" {TEXT} NOT NULL, "updated_at" {TEXT} NOT NULL)"#;

/// Compares both sides' `orders`, settling for 30 s, as if at `now`.
async fn compare(legacy: &TestDatabase, service: &TestDatabase, now: Option<DateTime<Utc>>) -> Report {
    let text = mapping_text(
        "orders",
        ("orders", "orders"),
        &["id"],
        &same(&["id", "status", "updated_at"]),
        r#"ignore = ["updated_at"]
normalize = { updated_at = "timestamp_ms" }
settle_seconds = 30
updated_at_column = "updated_at"
"#,
    );
    let options = Options {
        now,
        ..Options::default()
    };
    run(&text, "orders", legacy, service, &options).await.unwrap()
}

async fn settle(legacy_engine: Engine, service_engine: Engine) {
    let Some((legacy, service)) = pair_holding(legacy_engine, service_engine, ORDERS).await else {
        return;
    };
    let now = Utc::now();
    let at = |seconds_ago: i64| {
        (now - Duration::seconds(seconds_ago)).to_rfc3339_opts(SecondsFormat::Millis, true)
    };
    exec(
        &legacy,
        &format!(
            r#"INSERT INTO "orders" VALUES (1, 'placed', '{}'), (2, 'placed', '{}'), (3, 'placed', '{}'), (4, 'placed', '{}')"#,
            at(2),
            at(3600),
            at(3600),
            at(3600)
        ),
    )
    .await;
    exec(
        &service,
        &format!(
            r#"INSERT INTO "orders" VALUES (3, 'cancelled', '{}'), (4, 'cancelled', '{}'), (5, 'placed', '{}')"#,
            at(1),
            at(3600),
            at(5)
        ),
    )
    .await;
    let report = compare(&legacy, &service, Some(now)).await;
    let table = &report.tables[0];
    let context = format!("{legacy_engine} → {service_engine}\n{}", report.to_human());
    assert_findings(table, [&["[2]"], &[], &["[4]"]], &context);
    let settling: Vec<(String, Kind)> = table
        .settling
        .iter()
        .map(|s| (serde_json::Value::Array(s.key.clone()).to_string(), s.kind))
        .collect();
    assert_eq!(
        settling,
        [
            ("[1]".to_owned(), Kind::Missing),
            ("[3]".to_owned(), Kind::Changed),
            ("[5]".to_owned(), Kind::Extra)
        ],
        "{context}"
    );
    assert_eq!(report.totals.settling, 3);

    // After the window the same rows are judged.
    let report = compare(&legacy, &service, Some(now + Duration::seconds(60))).await;
    let table = &report.tables[0];
    let context = format!("{legacy_engine} → {service_engine}, later\n{}", report.to_human());
    assert!(table.settling.is_empty(), "{context}");
    assert_findings(table, [&["[1]", "[2]"], &["[5]"], &["[3]", "[4]"]], &context);
    assert_eq!(report.status, Status::Diverged);
}

#[tokio::test]
async fn settle_window_holds_back_recent_rows_then_judges_them() {
    let pairings = [
        (Engine::Sqlite, Engine::Sqlite),
        (Engine::MySql, Engine::Postgres),
    ];
    each_pairing(&pairings, settle).await;
}

#[tokio::test]
async fn only_settling_rows_make_a_clean_run() {
    let Some((legacy, service)) = pair_holding(Engine::Sqlite, Engine::Sqlite, ORDERS).await else {
        return;
    };
    let now = Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true);
    exec(
        &legacy,
        &format!(r#"INSERT INTO "orders" VALUES (1, 'placed', '{now}')"#),
    )
    .await;
    let report = compare(&legacy, &service, None).await;
    assert_eq!(report.status, Status::Clean);
    assert_eq!(report.totals.settling, 1);
}
