//! Backfill against real databases: SQLite and PostgreSQL, same-engine and
//! cross-engine, with interruption, failure and resumption.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed unwrap is a failed test

use std::path::Path;

use backfill::{backfill, BackfillError, BackfillOptions, TableReport};
use legacy_monolith::seed::{seed_if_empty, SeedSize};
use mapping::Mapping;
use test_harness::{Engine, TestDatabase};
use toolkit_db::sql_value::{decode_row, SqlValue};
use toolkit_db::Database;

const CATALOG: &str = r#"
[[capabilities.catalog.tables]]
legacy = "products"
service = "products"
key = ["id"]
columns = { id = "id", sku = "sku", name = "title", description = "description", price_cents = "unit_price_cents", updated_at = "updated_at" }

[[capabilities.orders.tables]]
legacy = "orders"
service = "orders"
key = ["id"]
columns = { id = "id", customer_id = "customer_id", status = "state", total_cents = "total_cents", created_at = "created_at", updated_at = "updated_at" }
legacy_filter = "origin = 'monolith'"

[[capabilities.orders.tables]]
legacy = "order_lines"
service = "order_lines"
key = ["order_id", "line_no"]
columns = { order_id = "order_id", line_no = "line_no", product_id = "product_id", quantity = "quantity", unit_price_cents = "unit_price_cents" }
"#;

const SERVICE_TABLES: &[&str] = &[
    "CREATE TABLE products (id BIGINT PRIMARY KEY, sku TEXT NOT NULL UNIQUE, title TEXT NOT NULL, \
     description TEXT NOT NULL, unit_price_cents BIGINT NOT NULL, updated_at TEXT NOT NULL)",
    "CREATE TABLE orders (id BIGINT PRIMARY KEY, customer_id BIGINT NOT NULL, state TEXT NOT NULL, \
     total_cents BIGINT NOT NULL, created_at TEXT NOT NULL, updated_at TEXT NOT NULL)",
    "CREATE TABLE order_lines (order_id BIGINT NOT NULL REFERENCES orders (id), line_no BIGINT NOT NULL, \
     product_id BIGINT NOT NULL, quantity BIGINT NOT NULL, unit_price_cents BIGINT NOT NULL, \
     PRIMARY KEY (order_id, line_no))",
];

struct Pair {
    legacy: Database,
    service: Database,
    _dbs: (TestDatabase, TestDatabase),
}

/// A seeded monolith database on `legacy` and an empty service schema on `service`.
async fn pair(legacy: Engine, service: Engine) -> Option<Pair> {
    let legacy_db = TestDatabase::fresh(legacy).await?;
    let service_db = TestDatabase::fresh(service).await?;
    let legacy = Database::connect(legacy_db.url(), &legacy_monolith::MIGRATIONS)
        .await
        .unwrap();
    seed_if_empty(
        &legacy,
        SeedSize {
            products: 25,
            customers: 5,
            orders: 30,
        },
    )
    .await
    .unwrap();
    let service = Database::open(service_db.url()).await.unwrap();
    for ddl in SERVICE_TABLES {
        execute(&service, ddl).await;
    }
    Some(Pair {
        legacy,
        service,
        _dbs: (legacy_db, service_db),
    })
}

fn mapping() -> Mapping {
    Mapping::parse(Path::new("mapping.toml"), CATALOG).unwrap()
}

/// Copies `capability` of the test mapping in batches of `batch_size`, at
/// most `max_batches` of them per table.
async fn copy(
    pair: &Pair,
    capability: &str,
    batch_size: usize,
    max_batches: Option<u64>,
) -> Result<Vec<TableReport>, BackfillError> {
    let options = BackfillOptions {
        batch_size,
        max_batches,
    };
    let mapping = mapping();
    backfill(
        mapping.capability(capability).unwrap(),
        &pair.legacy,
        &pair.service,
        options,
    )
    .await
}

/// Runs `sql` on `db`.
async fn execute(db: &Database, sql: &str) {
    sqlx::query(sql).execute(db.pool()).await.unwrap();
}

async fn rows(db: &Database, sql: &str) -> Vec<Vec<SqlValue>> {
    sqlx::query(sql)
        .fetch_all(db.pool())
        .await
        .unwrap()
        .iter()
        .map(|r| decode_row(r).unwrap())
        .collect()
}

async fn assert_catalog_copied(pair: &Pair) {
    let legacy = rows(
        &pair.legacy,
        "SELECT id, sku, name, description, price_cents, updated_at FROM products ORDER BY id",
    )
    .await;
    let service = rows(
        &pair.service,
        "SELECT id, sku, title, description, unit_price_cents, updated_at FROM products ORDER BY id",
    )
    .await;
    assert_eq!(legacy.len(), 25);
    assert_eq!(legacy, service);
}

/// Asserts that `report` resumed the catalog where a first run stopped,
/// after its first 10 rows, and finished it.
async fn assert_rest_copied(pair: &Pair, report: &[TableReport]) {
    assert_eq!(
        (report[0].rows_copied, report[0].resumed, report[0].complete),
        (15, true, true)
    );
    assert_catalog_copied(pair).await;
}

async fn copies_every_row_in_batches_and_again_idempotently(legacy: Engine, service: Engine) {
    let Some(pair) = pair(legacy, service).await else {
        return;
    };
    let report = copy(&pair, "catalog", 10, None).await.unwrap();
    assert_eq!(
        (
            report[0].rows_copied,
            report[0].batches,
            report[0].complete,
            report[0].resumed
        ),
        (25, 3, true, false)
    );
    assert_catalog_copied(&pair).await;

    // A change in the monolith, then a second run: a fresh pass that
    // upserts, so the change arrives and nothing is duplicated.
    execute(&pair.legacy, "UPDATE products SET price_cents = 1 WHERE id = 7").await;
    let again = copy(&pair, "catalog", 10, None).await.unwrap();
    assert_eq!((again[0].rows_copied, again[0].resumed), (25, false));
    assert_catalog_copied(&pair).await;
}

async fn resumes_after_an_interruption(legacy: Engine, service: Engine) {
    let Some(pair) = pair(legacy, service).await else {
        return;
    };
    let first = copy(&pair, "catalog", 10, Some(1)).await.unwrap();
    assert_eq!((first[0].rows_copied, first[0].complete), (10, false));
    assert_eq!(
        rows(&pair.service, "SELECT COUNT(*) FROM products").await,
        vec![vec![SqlValue::Int(10)]]
    );

    let rest = copy(&pair, "catalog", 10, None).await.unwrap();
    assert_rest_copied(&pair, &rest).await;
}

async fn a_failing_batch_keeps_earlier_batches_and_the_rerun_resumes(legacy: Engine, service: Engine) {
    let Some(pair) = pair(legacy, service).await else {
        return;
    };
    // A service row that steals product 15's SKU makes the batch holding
    // product 15 (ids 11..=20) violate the unique constraint.
    execute(
        &pair.service,
        "INSERT INTO products (id, sku, title, description, unit_price_cents, updated_at) \
         VALUES (999, 'SKU-00015', 'squatter', '', 1, 'x')",
    )
    .await;
    let error = copy(&pair, "catalog", 10, None).await.unwrap_err();
    assert!(
        matches!(
            &error,
            BackfillError::Batch {
                side: mapping::Side::Service,
                rows_copied: 10,
                ..
            }
        ),
        "{error:?}"
    );
    // The first batch stayed, the failed one left nothing behind.
    assert_eq!(
        rows(&pair.service, "SELECT COUNT(*) FROM products WHERE id < 999").await,
        vec![vec![SqlValue::Int(10)]]
    );

    execute(&pair.service, "DELETE FROM products WHERE id = 999").await;
    let report = copy(&pair, "catalog", 10, None).await.unwrap();
    assert_rest_copied(&pair, &report).await;
}

async fn copies_composite_keys_with_a_filter_parents_first(legacy: Engine, service: Engine) {
    let Some(pair) = pair(legacy, service).await else {
        return;
    };
    // An order dual-written by the service must not be copied back.
    execute(
        &pair.legacy,
        "INSERT INTO orders (id, customer_id, status, total_cents, origin, created_at, updated_at) \
         VALUES (1000001, 1, 'placed', 0, 'orders-service', 'x', 'x')",
    )
    .await;
    let report = copy(&pair, "orders", 7, None).await.unwrap();
    assert_eq!(report.len(), 2);
    assert_eq!(report[0].rows_copied, 30);
    let legacy_lines = rows(
        &pair.legacy,
        "SELECT order_id, line_no, product_id, quantity, unit_price_cents FROM order_lines ORDER BY 1, 2",
    )
    .await;
    let service_lines = rows(
        &pair.service,
        "SELECT order_id, line_no, product_id, quantity, unit_price_cents FROM order_lines ORDER BY 1, 2",
    )
    .await;
    assert!(legacy_lines.len() >= 30);
    assert_eq!(legacy_lines, service_lines);
    assert_eq!(report[1].rows_copied as usize, legacy_lines.len());
    assert_eq!(
        rows(&pair.service, "SELECT COUNT(*) FROM orders WHERE id = 1000001").await,
        vec![vec![SqlValue::Int(0)]]
    );
}

async fn an_unknown_column_is_refused_before_anything_is_written(legacy: Engine, service: Engine) {
    let Some(pair) = pair(legacy, service).await else {
        return;
    };
    let text = CATALOG.replace("price_cents = \"unit_price_cents\"", "price_cents = \"price\"");
    let mapping = Mapping::parse(Path::new("mapping.toml"), &text).unwrap();
    let error = backfill(
        mapping.capability("catalog").unwrap(),
        &pair.legacy,
        &pair.service,
        BackfillOptions::default(),
    )
    .await
    .unwrap_err();
    let message = error.to_string();
    assert!(
        message.contains("service database") && message.contains("price"),
        "{message}"
    );
    assert_eq!(
        rows(&pair.service, "SELECT COUNT(*) FROM products").await,
        vec![vec![SqlValue::Int(0)]]
    );
}

async fn copies_nulls_and_names_that_need_quoting(legacy: Engine, service: Engine) {
    let Some(legacy_db) = TestDatabase::fresh(legacy).await else {
        return;
    };
    let Some(service_db) = TestDatabase::fresh(service).await else {
        return;
    };
    let legacy = Database::open(legacy_db.url()).await.unwrap();
    let service = Database::open(service_db.url()).await.unwrap();
    execute(
        &legacy,
        r#"CREATE TABLE "Order Notes" ("id" BIGINT PRIMARY KEY, "select" TEXT, "weight" BIGINT)"#,
    )
    .await;
    execute(
        &service,
        r#"CREATE TABLE "notes; DROP TABLE x" ("id" BIGINT PRIMARY KEY, "body" TEXT, "weight" BIGINT)"#,
    )
    .await;
    execute(
        &legacy,
        r#"INSERT INTO "Order Notes" VALUES (1, 'a', NULL), (2, NULL, 5), (3, 'it''s', 7)"#,
    )
    .await;
    let text = r#"
[[capabilities.notes.tables]]
legacy = "Order Notes"
service = "notes; DROP TABLE x"
key = ["id"]
columns = { id = "id", "select" = "body", weight = "weight" }
"#;
    let mapping = Mapping::parse(Path::new("m.toml"), text).unwrap();
    backfill(
        mapping.capability("notes").unwrap(),
        &legacy,
        &service,
        BackfillOptions::default(),
    )
    .await
    .unwrap();
    assert_eq!(
        rows(
            &service,
            r#"SELECT "id", "body", "weight" FROM "notes; DROP TABLE x" ORDER BY 1"#
        )
        .await,
        vec![
            vec![SqlValue::Int(1), SqlValue::Text("a".into()), SqlValue::Null],
            vec![SqlValue::Int(2), SqlValue::Null, SqlValue::Int(5)],
            vec![SqlValue::Int(3), SqlValue::Text("it's".into()), SqlValue::Int(7)],
        ]
    );
}

/// Generates one test per (legacy engine, service engine) pairing.
macro_rules! on_each_pairing {
    ($($case:ident),* $(,)?) => {$(
        mod $case {
            use test_harness::Engine::{Postgres, Sqlite};
            #[tokio::test]
            async fn sqlite_to_sqlite() { super::$case(Sqlite, Sqlite).await }
            #[tokio::test]
            async fn postgres_to_postgres() { super::$case(Postgres, Postgres).await }
            #[tokio::test]
            async fn sqlite_to_postgres() { super::$case(Sqlite, Postgres).await }
        }
    )*};
}

on_each_pairing!(
    copies_every_row_in_batches_and_again_idempotently,
    resumes_after_an_interruption,
    a_failing_batch_keeps_earlier_batches_and_the_rerun_resumes,
    copies_composite_keys_with_a_filter_parents_first,
    an_unknown_column_is_refused_before_anything_is_written,
    copies_nulls_and_names_that_need_quoting,
);
