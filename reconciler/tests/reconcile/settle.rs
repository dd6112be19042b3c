//! The settle window: differences on rows changed within the last N seconds
//! are held back as settling, and judged once the window has passed.

use chrono::{Duration, SecondsFormat, Utc};
use reconciler::report::Kind;
use reconciler::{Options, Status};
use test_harness::Engine;

use crate::helpers::{exec, keys, pair, run};

const MAPPING: &str = r#"
[[capabilities.orders.tables]]
legacy = "orders"
service = "orders"
key = ["id"]
columns = { id = "id", status = "status", updated_at = "updated_at" }
ignore = ["updated_at"]
normalize = { updated_at = "timestamp_ms" }
settle_seconds = 30
updated_at_column = "updated_at"
"#;

async fn settle(legacy_engine: Engine, service_engine: Engine) {
    let Some((legacy, service)) = pair(legacy_engine, service_engine).await else {
        return;
    };
    let now = Utc::now();
    let at = |seconds_ago: i64| {
        (now - Duration::seconds(seconds_ago)).to_rfc3339_opts(SecondsFormat::Millis, true)
    };
    let ddl = r#"CREATE TABLE "orders" ("id" {INT} PRIMARY KEY, "status" {TEXT} NOT NULL, "updated_at" {TEXT} NOT NULL)"#;
    exec(&legacy, ddl).await;
    exec(&service, ddl).await;
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
    let options = Options {
        now: Some(now),
        ..Options::default()
    };
    let report = run(MAPPING, "orders", &legacy, &service, &options).await.unwrap();
    let table = &report.tables[0];
    let context = report.to_human();
    assert_eq!(
        keys(table.missing.iter().map(|m| m.key.clone())),
        ["[2]"],
        "{context}"
    );
    assert_eq!(
        keys(table.changed.iter().map(|m| m.key.clone())),
        ["[4]"],
        "{context}"
    );
    assert!(table.extra.is_empty(), "{context}");
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
        ]
    );
    assert_eq!(report.totals.settling, 3);

    // After the window the same rows are judged.
    let later = Options {
        now: Some(now + Duration::seconds(60)),
        ..Options::default()
    };
    let report = run(MAPPING, "orders", &legacy, &service, &later).await.unwrap();
    let table = &report.tables[0];
    assert!(table.settling.is_empty());
    assert_eq!(keys(table.missing.iter().map(|m| m.key.clone())), ["[1]", "[2]"]);
    assert_eq!(keys(table.extra.iter().map(|m| m.key.clone())), ["[5]"]);
    assert_eq!(keys(table.changed.iter().map(|m| m.key.clone())), ["[3]", "[4]"]);
    assert_eq!(report.status, Status::Diverged);
}

#[tokio::test]
async fn settle_window_holds_back_recent_rows_then_judges_them() {
    for (legacy, service) in [
        (Engine::Sqlite, Engine::Sqlite),
        (Engine::MySql, Engine::Postgres),
    ] {
        settle(legacy, service).await;
    }
}

#[tokio::test]
async fn only_settling_rows_make_a_clean_run() {
    let Some((legacy, service)) = pair(Engine::Sqlite, Engine::Sqlite).await else {
        return;
    };
    let ddl = r#"CREATE TABLE "orders" ("id" {INT} PRIMARY KEY, "status" {TEXT} NOT NULL, "updated_at" {TEXT} NOT NULL)"#;
    exec(&legacy, ddl).await;
    exec(&service, ddl).await;
    let now = Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true);
    exec(
        &legacy,
        &format!(r#"INSERT INTO "orders" VALUES (1, 'placed', '{now}')"#),
    )
    .await;
    let report = run(MAPPING, "orders", &legacy, &service, &Options::default())
        .await
        .unwrap();
    assert_eq!(report.status, Status::Clean);
    assert_eq!(report.totals.settling, 1);
}
