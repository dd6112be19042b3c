//! MariaDB columns the merge reads in the server's binary form: signed
//! integers as stored, and `DATE`, `DATETIME(fsp)` and `TIMESTAMP(fsp)` as
//! binary values that the reconciler spells itself. Whatever it spells must
//! be exactly what `CAST(… AS CHAR)` spells (and `CAST(… AS SIGNED)` for
//! integers), zero dates and the calendar's edges included: the test asks
//! the server for those texts and expects the report to hold every
//! difference between them, and nothing else.

use std::collections::BTreeMap;
use std::time::Duration;

use reconciler::{Options, Status, Strategy};
use serde_json::{json, Value};
use sqlx::Row;
use test_harness::{Engine, TestDatabase};
use toolkit_db::Database;

use crate::helpers::{exec, keys, mapping_text, pair, run, same};

const COLUMNS: [&str; 9] = ["id", "d", "dt0", "dt3", "dt6", "ts", "si", "ui", "big"];

const TABLE: &str = r#"CREATE TABLE "moments" ("id" BIGINT PRIMARY KEY, "d" DATE NULL, "dt0" DATETIME NULL,
  "dt3" DATETIME(3) NULL, "dt6" DATETIME(6) NULL, "ts" TIMESTAMP(6) NULL DEFAULT NULL, "si" INT NULL,
  "ui" INT UNSIGNED NULL, "big" BIGINT UNSIGNED NULL);
"#;

/// Rows with zero dates, zero days and months, the calendar's ends, a
/// leap day, every fractional precision and integers at their types'
/// ends. `SET STATEMENT` lets the zero dates in whatever the server's
/// `sql_mode`.
const LEGACY_ROWS: &str = r#"SET STATEMENT sql_mode = '' FOR INSERT INTO "moments" VALUES
  (1, '2024-02-29', '2024-02-29 23:59:58', '2024-02-29 23:59:58.123', '2024-02-29 23:59:58.123456',
      '2024-02-29 23:59:58.123456', -5, 5, 18446744073709551615),
  (2, '0000-00-00', '0000-00-00 00:00:00', '0000-00-00 00:00:00', '0000-00-00 00:00:00',
      '1970-01-01 00:00:01', 0, 0, 0),
  (3, '2024-02-00', '2024-00-00 10:11:12', '2024-02-00 00:00:00.5', '2024-00-01 00:00:00.000001',
      '0000-00-00 00:00:00', 7, 7, 7),
  (4, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL),
  (5, '1000-01-01', '9999-12-31 23:59:59', '9999-12-31 23:59:59.999', '9999-12-31 23:59:59.999999',
      '2038-01-19 03:14:07.999999', -2147483648, 4294967295, 9223372036854775808),
  (6, '2024-01-02', '2024-01-02 03:04:05', '2024-01-02 03:04:05.1', '2024-01-02 03:04:05.000001',
      '2024-01-02 03:04:05.5', 1, 1, 1),
  (7, '1969-12-31', '1969-12-31 23:59:59', '1969-12-31 23:59:59.999', '1969-12-31 23:59:59.999999',
      '1999-12-31 23:59:59', 2147483647, 0, 1)"#;

/// The same rows with differences: a microsecond and an unsigned value
/// past `i64` (row 1), a zero date against a real one (2), a zero day and
/// a zero time stamp (3), the last millisecond (5), a time stamp and an
/// integer (6), a second of a `DATETIME` without fractions (7); row 4
/// equal.
const SERVICE_ROWS: &str = r#"SET STATEMENT sql_mode = '' FOR INSERT INTO "moments" VALUES
  (1, '2024-02-29', '2024-02-29 23:59:58', '2024-02-29 23:59:58.123', '2024-02-29 23:59:58.123457',
      '2024-02-29 23:59:58.123456', -5, 5, 18446744073709551614),
  (2, '2024-01-01', '0000-00-00 00:00:00', '0000-00-00 00:00:00', '0000-00-00 00:00:00',
      '1970-01-01 00:00:01', 0, 0, 0),
  (3, '2024-02-01', '2024-00-00 10:11:12', '2024-02-00 00:00:00.5', '2024-00-01 00:00:00.000001',
      '1970-01-01 00:00:02', 7, 7, 7),
  (4, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL),
  (5, '1000-01-01', '9999-12-31 23:59:59', '9999-12-31 23:59:59.998', '9999-12-31 23:59:59.999999',
      '2038-01-19 03:14:07.999999', -2147483648, 4294967295, 9223372036854775808),
  (6, '2024-01-02', '2024-01-02 03:04:05', '2024-01-02 03:04:05.1', '2024-01-02 03:04:05.000001',
      '2024-01-02 03:04:05.6', 2, 1, 1),
  (7, '1969-12-31', '1969-12-31 23:59:58', '1969-12-31 23:59:59.999', '1969-12-31 23:59:59.999999',
      '1999-12-31 23:59:59', 2147483647, 0, 1)"#;

/// Each row of `moments` as the converting select list reads it, by key:
/// dates and times `CAST(… AS CHAR)`, integers `CAST(… AS SIGNED)`.
async fn as_cast(db: &TestDatabase) -> BTreeMap<i64, Vec<Value>> {
    let database = Database::open(db.url()).await.unwrap();
    let sql = "SELECT id, CAST(d AS CHAR), CAST(dt0 AS CHAR), CAST(dt3 AS CHAR), CAST(dt6 AS CHAR), \
               CAST(ts AS CHAR), CAST(si AS SIGNED), CAST(ui AS SIGNED), CAST(big AS SIGNED) FROM moments";
    let rows = tokio::time::timeout(
        Duration::from_secs(30),
        sqlx::query(sql).fetch_all(database.pool()),
    )
    .await
    .expect("reading the casts timed out")
    .unwrap();
    database.close().await;
    rows.iter()
        .map(|row| {
            let mut values = Vec::new();
            for i in 1..=5 {
                values.push(json!(row.try_get::<Option<String>, _>(i).unwrap()));
            }
            for i in 6..=8 {
                values.push(json!(row.try_get::<Option<i64>, _>(i).unwrap()));
            }
            (row.try_get::<i64, _>(0).unwrap(), values)
        })
        .collect()
}

#[tokio::test]
async fn binary_dates_times_and_integers_read_as_the_server_casts_them() {
    let Some((legacy, service)) = pair(Engine::MySql, Engine::MySql).await else {
        return;
    };
    for (db, rows) in [(&legacy, LEGACY_ROWS), (&service, SERVICE_ROWS)] {
        exec(db, TABLE).await;
        exec(db, rows).await;
    }
    let (legacy_casts, service_casts) = (as_cast(&legacy).await, as_cast(&service).await);
    assert_eq!(legacy_casts.len(), 7, "the rows went in: {legacy_casts:?}");
    // What the report must say, from the server's own spelling.
    let mut expected: BTreeMap<i64, Vec<(String, Value, Value)>> = BTreeMap::new();
    for (id, l) in &legacy_casts {
        let s = &service_casts[id];
        for ((name, l), s) in COLUMNS[1..].iter().zip(l).zip(s) {
            if l != s {
                expected
                    .entry(*id)
                    .or_default()
                    .push(((*name).to_owned(), l.clone(), s.clone()));
            }
        }
    }
    for columns in expected.values_mut() {
        columns.sort_by(|a, b| a.0.cmp(&b.0));
    }
    assert_eq!(
        expected.keys().copied().collect::<Vec<_>>(),
        [1, 2, 3, 5, 6, 7],
        "the server sees the differences the rows hold: {expected:?}"
    );
    let text = mapping_text("moments", ("moments", "moments"), &["id"], &same(&COLUMNS), "");
    for strategy in [Strategy::Merge, Strategy::Bisect, Strategy::Auto] {
        let options = Options {
            strategy,
            ..Options::default()
        };
        let report = run(&text, "moments", &legacy, &service, &options)
            .await
            .unwrap_or_else(|e| panic!("{strategy}: {}", e.chain()));
        let context = format!("{strategy}\n{}", report.to_human());
        assert_eq!(report.status, Status::Diverged, "{context}");
        let table = &report.tables[0];
        assert!(table.missing.is_empty() && table.extra.is_empty(), "{context}");
        let found: BTreeMap<i64, Vec<(String, Value, Value)>> = table
            .changed
            .iter()
            .map(|row| {
                let mut columns: Vec<_> = row
                    .columns
                    .iter()
                    .map(|c| (c.column.clone(), c.legacy.clone(), c.service.clone()))
                    .collect();
                columns.sort_by(|a, b| a.0.cmp(&b.0));
                (row.key[0].as_i64().unwrap(), columns)
            })
            .collect();
        assert_eq!(found, expected, "{context}");
    }
}

/// With instants compared to the millisecond, against PostgreSQL and
/// against MariaDB columns of another precision: the binary values'
/// instants must be those of their text, and a zero date, which is no
/// instant, must be reported as the server spells it.
#[tokio::test]
async fn binary_time_stamps_compare_as_instants() {
    for service in [Engine::Postgres, Engine::MySql] {
        instants(service).await;
    }
}

async fn instants(service_engine: Engine) {
    let Some((legacy, service)) = pair(Engine::MySql, service_engine).await else {
        return;
    };
    exec(
        &legacy,
        r#"CREATE TABLE "stamps" ("id" BIGINT PRIMARY KEY, "at" DATETIME(6) NULL, "at0" DATETIME NULL)"#,
    )
    .await;
    exec(
        &legacy,
        r#"SET STATEMENT sql_mode = '' FOR INSERT INTO "stamps" VALUES
  (1, '2024-02-29 23:59:58.123456', '2024-02-29 23:59:58'),
  (2, '2024-02-29 23:59:58.123456', '2024-02-29 23:59:58'),
  (3, '2024-02-29 23:59:58.123456', '2024-02-29 23:59:58'),
  (4, '0000-00-00 00:00:00', '0000-00-00 00:00:00'),
  (5, '1969-12-31 23:59:59.999999', '1969-12-31 23:59:59'),
  (6, NULL, NULL)"#,
    )
    .await;
    let (table, rows) = if service_engine == Engine::Postgres {
        (
            r#"CREATE TABLE "stamps" ("id" BIGINT PRIMARY KEY, "at" TIMESTAMPTZ NULL, "at0" TIMESTAMPTZ NULL)"#,
            r#"INSERT INTO "stamps" VALUES
  (1, '2024-02-29 23:59:58.123+00', '2024-02-29 23:59:58+00'),
  (2, '2024-02-29 23:59:58.124+00', '2024-02-29 23:59:58+00'),
  (3, '2024-02-29 23:59:58.123999+00', '2024-02-29 23:59:59+00'),
  (4, '2024-01-01 00:00:00+00', NULL),
  (5, '1969-12-31 23:59:59.999+00', '1969-12-31 23:59:59+00'),
  (6, NULL, NULL)"#,
        )
    } else {
        // Other precisions: equal instants, other binary values.
        (
            r#"CREATE TABLE "stamps" ("id" BIGINT PRIMARY KEY, "at" DATETIME(3) NULL, "at0" DATETIME(2) NULL)"#,
            r#"INSERT INTO "stamps" VALUES
  (1, '2024-02-29 23:59:58.123', '2024-02-29 23:59:58'),
  (2, '2024-02-29 23:59:58.124', '2024-02-29 23:59:58'),
  (3, '2024-02-29 23:59:58.123', '2024-02-29 23:59:59'),
  (4, '2024-01-01 00:00:00', NULL),
  (5, '1969-12-31 23:59:59.999', '1969-12-31 23:59:59'),
  (6, NULL, NULL)"#,
        )
    };
    exec(&service, table).await;
    exec(&service, rows).await;
    let text = mapping_text(
        "stamps",
        ("stamps", "stamps"),
        &["id"],
        &same(&["id", "at", "at0"]),
        r#"normalize = { at = "timestamp_ms", at0 = "timestamp_ms" }"#,
    );
    let report = run(&text, "stamps", &legacy, &service, &Options::default())
        .await
        .unwrap_or_else(|e| panic!("{service_engine}: {}", e.chain()));
    let context = format!("{service_engine}\n{}", report.to_human());
    let table = &report.tables[0];
    assert_eq!(
        keys(table.changed.iter().map(|row| row.key.clone())),
        ["[2]", "[3]", "[4]"],
        "a millisecond apart, a second apart, and a zero date are differences; \
         the same millisecond is not\n{context}"
    );
    let zero = |name: &str| {
        let columns = &table.changed[2].columns;
        let column = columns.iter().find(|c| c.column == name);
        column.map(|c| (c.legacy.clone(), c.service.clone()))
    };
    assert_eq!(
        zero("at").map(|(legacy, _)| legacy),
        Some(json!("0000-00-00 00:00:00.000000")),
        "{context}"
    );
    assert_eq!(
        zero("at0"),
        Some((json!("0000-00-00 00:00:00"), Value::Null)),
        "{context}"
    );
}
