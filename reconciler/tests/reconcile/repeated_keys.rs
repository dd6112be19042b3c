//! A key held by more than one row never passes as clean: not at a keyset
//! batch boundary, on either side, under any strategy, and not inside a
//! range whose checksums match because both sides hold the same repeat.
//! The run stops with an error naming the side, the table and the key as a
//! user writes it. A key the catalog proves unique costs no extra reads.

use reconciler::{Options, ReconcileError, Status, Strategy};
use test_harness::{Engine, TestDatabase};

use crate::helpers::{each_pairing, exec, expect_error, mapping_text, pair, pair_holding, run, same};

/// Compares both sides' `customers`, keyed on `code`.
async fn compare(
    legacy: &TestDatabase,
    service: &TestDatabase,
    options: &Options,
) -> Result<reconciler::Report, ReconcileError> {
    let text = mapping_text(
        "customers",
        ("customers", "customers"),
        &["code"],
        &same(&["code", "name"]),
        "",
    );
    run(&text, "customers", legacy, service, options).await
}

/// `customers` with codes `C0001`…`C{rows}` and no primary key or unique
/// index, unless `constraint` adds one.
async fn customers(db: &TestDatabase, rows: u32, constraint: &str) {
    exec(
        db,
        &format!(r#"CREATE TABLE "customers" ("code" {{KEY}} NOT NULL, "name" {{TEXT}}{constraint})"#),
    )
    .await;
    let fill = match db.engine() {
        Engine::Postgres => format!(
            "INSERT INTO customers SELECT 'C' || lpad(g::text, 4, '0'), 'customer ' || g FROM generate_series(1, {rows}) g"
        ),
        Engine::MySql => format!(
            "INSERT INTO customers SELECT CONCAT('C', LPAD(seq, 4, '0')), CONCAT('customer ', seq) FROM seq_1_to_{rows}"
        ),
        Engine::Sqlite => format!(
            "WITH RECURSIVE s(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM s WHERE n < {rows}) \
             INSERT INTO customers SELECT printf('C%04d', n), 'customer ' || n FROM s"
        ),
    };
    exec(db, &fill).await;
}

const STRATEGIES: [Strategy; 3] = [Strategy::Merge, Strategy::Bisect, Strategy::Auto];

/// Asserts that `result` is the repeated-key error for `side` and `key`.
fn assert_repeated(result: Result<reconciler::Report, ReconcileError>, side: &str, key: &str, context: &str) {
    let error = expect_error(result, "a repeated key", context);
    let text = error.to_string();
    assert!(
        matches!(error, ReconcileError::KeyNotUnique { .. }),
        "{context}: {text}"
    );
    assert!(
        text.contains(&format!(
            "table `customers` in the {side} database has more than one row with key {key};"
        )),
        "{context}: {text}"
    );
}

async fn repeated_at_a_batch_boundary(legacy_engine: Engine, service_engine: Engine) {
    let Some((legacy, service)) = pair(legacy_engine, service_engine).await else {
        return;
    };
    customers(&legacy, 1500, "").await;
    customers(&service, 1500, "").await;
    let clean = compare(&legacy, &service, &Options::default()).await.unwrap();
    assert_eq!(clean.status, Status::Clean);
    // Batches of 15 rows end on the 15th key, the default batches of 1000
    // on the 1000th: the repeat is the next batch's first row.
    for (batch_size, key) in [(15, "C0015"), (Options::default().batch_size, "C1000")] {
        for (side, db) in [("monolith", &legacy), ("service", &service)] {
            exec(db, &format!("INSERT INTO customers VALUES ('{key}', 'again')")).await;
            for strategy in STRATEGIES {
                let options = Options {
                    strategy,
                    batch_size,
                    ..Options::default()
                };
                let context = format!("{legacy_engine} → {service_engine}, {side} repeats {key}, {strategy}, batches of {batch_size}");
                let result = compare(&legacy, &service, &options).await;
                assert_repeated(result, side, &format!("code = {key}"), &context);
            }
            exec(db, "DELETE FROM customers WHERE name = 'again'").await;
        }
    }
}

#[tokio::test]
async fn a_key_repeated_at_a_batch_boundary_stops_the_run_on_either_side() {
    let pairings = [
        (Engine::Postgres, Engine::Postgres),
        (Engine::MySql, Engine::MySql),
        (Engine::Sqlite, Engine::Sqlite),
        (Engine::Sqlite, Engine::Postgres),
        (Engine::MySql, Engine::Sqlite),
    ];
    each_pairing(&pairings, repeated_at_a_batch_boundary).await;
}

#[tokio::test]
async fn the_same_repeated_row_on_both_sides_is_found_inside_matching_checksums() {
    for engine in [Engine::Postgres, Engine::MySql] {
        let Some((legacy, service)) = pair(engine, engine).await else {
            return;
        };
        for db in [&legacy, &service] {
            customers(db, 5000, "").await;
            exec(db, "INSERT INTO customers VALUES ('C2500', 'customer 2500')").await;
        }
        // Several segments, each checksummed alike on both sides; before,
        // the one holding the repeat was counted as equal and never read.
        for (segment_rows, leaf_rows) in [(1000, 100), (10_000, 2000)] {
            let options = Options {
                strategy: Strategy::Bisect,
                segment_rows,
                bisect_leaf_rows: leaf_rows,
                ..Options::default()
            };
            let result = compare(&legacy, &service, &options).await;
            let context = format!("{engine}, segments of {segment_rows}");
            assert_repeated(result, "monolith", "code = C2500", &context);
        }
    }
}

#[tokio::test]
async fn a_repeated_composite_key_is_named_with_its_columns() {
    for engine in [Engine::Postgres, Engine::MySql] {
        let table = r#"CREATE TABLE "lines" ("order_id" {INT} NOT NULL, "line_no" {INT} NOT NULL, "qty" {INT});
INSERT INTO "lines" VALUES (7, 1, 1), (7, 2, 1), (7, 2, 1), (8, 1, 5)"#;
        let Some((legacy, service)) = pair_holding(engine, engine, table).await else {
            return;
        };
        let options = Options {
            strategy: Strategy::Bisect,
            ..Options::default()
        };
        let text = mapping_text(
            "lines",
            ("lines", "lines"),
            &["order_id", "line_no"],
            &same(&["order_id", "line_no", "qty"]),
            "",
        );
        let error = run(&text, "lines", &legacy, &service, &options)
            .await
            .unwrap_err();
        assert_eq!(
            error.to_string(),
            "table `lines` in the monolith database has more than one row with key (order_id, line_no) = (7, 2); \
             the mapped key must be unique: remove the duplicate rows or map columns that are unique (nothing was reported)",
            "{engine}"
        );
    }
}

#[tokio::test]
async fn a_key_the_catalog_proves_unique_is_read_once() {
    for engine in [Engine::Postgres, Engine::MySql, Engine::Sqlite] {
        for constraint in [", PRIMARY KEY (\"code\")", ", UNIQUE (\"code\")", ""] {
            let Some((legacy, service)) = pair(engine, engine).await else {
                return;
            };
            customers(&legacy, 100, constraint).await;
            customers(&service, 100, constraint).await;
            let options = Options {
                strategy: Strategy::Merge,
                batch_size: 15,
                ..Options::default()
            };
            let report = compare(&legacy, &service, &options).await.unwrap();
            assert_eq!(report.status, Status::Clean);
            let fetched = report.tables[0].rows_fetched;
            if constraint.is_empty() {
                // Without proof, each batch after the first re-reads one row.
                assert!(fetched > 200, "{engine}: {fetched}");
            } else {
                assert_eq!(fetched, 200, "{engine}{constraint}");
            }
        }
    }
}

#[tokio::test]
async fn a_sqlite_rowid_primary_key_proves_the_key_unique() {
    let table = r#"CREATE TABLE "customers" ("code" INTEGER PRIMARY KEY, "name" TEXT);
WITH RECURSIVE s(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM s WHERE n < 100) INSERT INTO customers SELECT n, 'c' FROM s"#;
    let Some((legacy, service)) = pair_holding(Engine::Sqlite, Engine::Sqlite, table).await else {
        return;
    };
    let options = Options {
        batch_size: 15,
        ..Options::default()
    };
    let report = compare(&legacy, &service, &options).await.unwrap();
    assert_eq!(report.tables[0].rows_fetched, 200);
}
