//! SQLite columns declared `BOOLEAN`, `DATETIME`, `DATE` and `TIMESTAMP`, as
//! Rails and Django schemas declare them, compared with PostgreSQL's,
//! MariaDB's and SQLite's own under every strategy: equal rows are clean,
//! and one changed value of each type is reported.

use reconciler::{Options, Report, Status, Strategy};
use test_harness::{Engine, TestDatabase};

use crate::helpers::{exec, keys, mapping_text, pair, run, same};

/// Compares both sides' `people` with `strategy`: the report, and what a
/// failed assertion shows (the case, and the report for people).
async fn compare(legacy: &TestDatabase, service: &TestDatabase, strategy: Strategy) -> (Report, String) {
    let case = format!("{} → {} {strategy}", legacy.engine(), service.engine());
    let text = mapping_text(
        "people",
        ("people", "people"),
        &["id"],
        &same(&["id", "active", "created_at", "born_on", "seen_at"]),
        r#"normalize = { created_at = "timestamp_ms", seen_at = "timestamp_ms" }"#,
    );
    let options = Options {
        strategy,
        ..Options::default()
    };
    let report = run(&text, "people", legacy, service, &options)
        .await
        .unwrap_or_else(|e| panic!("{case}: {}", e.chain()));
    let context = format!("{case}\n{}", report.to_human());
    (report, context)
}

/// The table in `db`'s engine's own types.
async fn create(db: &TestDatabase) {
    let (boolean, datetime, date, timestamp) = match db.engine() {
        Engine::Sqlite => ("BOOLEAN", "DATETIME", "DATE", "TIMESTAMP"),
        Engine::Postgres => ("BOOLEAN", "TIMESTAMP", "DATE", "TIMESTAMPTZ"),
        Engine::MySql => ("BOOLEAN", "DATETIME(6)", "DATE", "DATETIME(6)"),
    };
    exec(
        db,
        &format!(
            r#"CREATE TABLE "people" ("id" {{INT}} PRIMARY KEY, "active" {boolean}, "created_at" {datetime},
  "born_on" {date}, "seen_at" {timestamp})"#
        ),
    )
    .await;
    // SQLite holds what the frameworks write: booleans as 1/0 (older Rails:
    // 't'/'f'), times as text without a zone. The servers get literals.
    let rows = if db.engine() == Engine::Sqlite {
        r#"INSERT INTO "people" VALUES
  (1, 1, '2026-01-02 03:04:05.123456', '1990-05-06', '2026-01-02 03:04:05'),
  (2, 0, '2026-01-02 03:04:06', '1991-05-06', '2026-01-02 03:04:06.5'),
  (3, 't', '2026-01-02 03:04:07.1', '1992-05-06', '2026-01-02 03:04:07'),
  (4, NULL, NULL, NULL, NULL),
  (5, 1, '2026-01-02 03:04:08', '1993-05-06', '2026-01-02 03:04:08'),
  (6, 0, '2026-01-02 03:04:09', '1994-05-06', '2026-01-02 03:04:09'),
  (7, 'f', '2026-01-02 03:04:10', '1995-05-06', '2026-01-02 03:04:10'),
  (8, 1, '2026-01-02 03:04:11', '1996-05-06', '2026-01-02 03:04:11')"#
    } else {
        r#"INSERT INTO "people" VALUES
  (1, TRUE, '2026-01-02 03:04:05.123456', '1990-05-06', '2026-01-02 03:04:05{Z}'),
  (2, FALSE, '2026-01-02 03:04:06', '1991-05-06', '2026-01-02 03:04:06.5{Z}'),
  (3, TRUE, '2026-01-02 03:04:07.1', '1992-05-06', '2026-01-02 03:04:07{Z}'),
  (4, NULL, NULL, NULL, NULL),
  (5, TRUE, '2026-01-02 03:04:08', '1993-05-06', '2026-01-02 03:04:08{Z}'),
  (6, FALSE, '2026-01-02 03:04:09', '1994-05-06', '2026-01-02 03:04:09{Z}'),
  (7, FALSE, '2026-01-02 03:04:10', '1995-05-06', '2026-01-02 03:04:10{Z}'),
  (8, TRUE, '2026-01-02 03:04:11', '1996-05-06', '2026-01-02 03:04:11{Z}')"#
    };
    exec(db, rows).await;
}

async fn declared_types(legacy_engine: Engine, service_engine: Engine) {
    let Some((legacy, service)) = pair(legacy_engine, service_engine).await else {
        return;
    };
    create(&legacy).await;
    create(&service).await;
    let strategies = [Strategy::Merge, Strategy::Bisect, Strategy::Auto];
    for strategy in strategies {
        let (report, context) = compare(&legacy, &service, strategy).await;
        assert_eq!(report.status, Status::Clean, "{context}");
        assert_eq!(report.tables[0].rows_compared, 8, "{context}");
    }
    exec(
        &service,
        r#"UPDATE "people" SET "active" = NOT "active" WHERE "id" = 5;
UPDATE "people" SET "created_at" = '2026-01-02 03:04:19' WHERE "id" = 6;
UPDATE "people" SET "born_on" = '1999-12-31' WHERE "id" = 7;
UPDATE "people" SET "seen_at" = '2026-01-02 03:04:21{Z}' WHERE "id" = 8"#,
    )
    .await;
    for strategy in strategies {
        let (report, context) = compare(&legacy, &service, strategy).await;
        let table = &report.tables[0];
        assert_eq!(
            keys(table.changed.iter().map(|c| c.key.clone())),
            ["[5]", "[6]", "[7]", "[8]"],
            "{context}"
        );
        let columns: Vec<(&str, String, String)> = table
            .changed
            .iter()
            .flat_map(|c| &c.columns)
            .map(|d| (d.column.as_str(), d.legacy.to_string(), d.service.to_string()))
            .collect();
        let text = |s: &str| format!("\"{s}\"");
        assert_eq!(
            columns,
            [
                ("active", "1".to_owned(), "0".to_owned()),
                (
                    "created_at",
                    text("2026-01-02T03:04:09.000Z"),
                    text("2026-01-02T03:04:19.000Z")
                ),
                ("born_on", text("1995-05-06"), text("1999-12-31")),
                (
                    "seen_at",
                    text("2026-01-02T03:04:11.000Z"),
                    text("2026-01-02T03:04:21.000Z")
                ),
            ],
            "{context}"
        );
        assert!(table.missing.is_empty() && table.extra.is_empty(), "{context}");
    }
}

#[tokio::test]
async fn sqlite_booleans_dates_and_timestamps_compare_with_postgres() {
    declared_types(Engine::Sqlite, Engine::Postgres).await;
    declared_types(Engine::Postgres, Engine::Sqlite).await;
}

#[tokio::test]
async fn sqlite_booleans_dates_and_timestamps_compare_with_sqlite_and_mariadb() {
    declared_types(Engine::Sqlite, Engine::Sqlite).await;
    declared_types(Engine::Sqlite, Engine::MySql).await;
}
