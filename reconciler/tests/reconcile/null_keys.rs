//! A row whose key is NULL never passes as clean. No comparison would read
//! it (keyset batches and bounded ranges exclude NULL, PostgreSQL sorts it
//! last), so unless the catalog proves the key columns NOT NULL, each side
//! is asked once for such a row before anything is compared, and one stops
//! the run with an error naming the side, the table and the key columns.
//! A key the catalog proves NOT NULL costs no query.

use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use reconciler::{Options, ReconcileError, Report, Status, Strategy};
use test_harness::{Engine, TestDatabase};
use tracing::field::{Field, Visit};
use tracing::instrument::WithSubscriber as _;
use tracing::span;

use crate::helpers::{exec, expect_error, mapping_text, pair, pair_holding, run, same};

const STRATEGIES: [Strategy; 3] = [Strategy::Merge, Strategy::Bisect, Strategy::Auto];

/// Compares both sides' `customers`, keyed on `code`; `more` is added to
/// the table's mapping.
async fn compare(
    legacy: &TestDatabase,
    service: &TestDatabase,
    options: &Options,
    more: &str,
) -> Result<Report, ReconcileError> {
    let text = mapping_text(
        "customers",
        ("customers", "customers"),
        &["code"],
        &same(&["code", "name"]),
        more,
    );
    run(&text, "customers", legacy, service, options).await
}

/// `customers` with codes `C001`…`C100` (1…100 in a SQLite `INTEGER`
/// column), `code` declared as `code_column` says (its type, then any
/// constraint).
async fn customers(db: &TestDatabase, code_column: &str) {
    exec(
        db,
        &format!(r#"CREATE TABLE "customers" ("code" {code_column}, "name" {{TEXT}})"#),
    )
    .await;
    let fill = match db.engine() {
        Engine::Postgres => {
            "INSERT INTO customers SELECT 'C' || lpad(g::text, 3, '0'), 'customer ' || g FROM generate_series(1, 100) g"
        }
        Engine::MySql => {
            "INSERT INTO customers SELECT CONCAT('C', LPAD(seq, 3, '0')), CONCAT('customer ', seq) FROM seq_1_to_100"
        }
        // The rowid holds integers only.
        Engine::Sqlite if code_column.starts_with("INTEGER") => {
            "WITH RECURSIVE s(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM s WHERE n < 100) \
             INSERT INTO customers SELECT n, 'customer ' || n FROM s"
        }
        Engine::Sqlite => {
            "WITH RECURSIVE s(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM s WHERE n < 100) \
             INSERT INTO customers SELECT printf('C%03d', n), 'customer ' || n FROM s"
        }
    };
    exec(db, fill).await;
}

/// Asserts that `result` is the NULL-key error for `side` and `key`.
fn assert_null_key(result: Result<Report, ReconcileError>, side: &str, key: &str, context: &str) {
    let error = expect_error(result, "a NULL key", context);
    let text = error.to_string();
    assert!(
        matches!(error, ReconcileError::NullKey { .. }),
        "{context}: {text}"
    );
    assert!(
        text.contains(&format!(
            "table `customers` in the {side} database has a row with NULL in its key {key};"
        )) && text.contains("map key columns that are never NULL, or fill or remove those rows"),
        "{context}: {text}"
    );
}

async fn null_key_on_either_side(legacy_engine: Engine, service_engine: Engine) {
    let Some((legacy, service)) = pair(legacy_engine, service_engine).await else {
        return;
    };
    // Unique, but a unique index lets NULL in.
    customers(&legacy, "{KEY} UNIQUE").await;
    customers(&service, "{KEY} UNIQUE").await;
    let clean = compare(&legacy, &service, &Options::default(), "").await.unwrap();
    assert_eq!(clean.status, Status::Clean);
    for (side, db) in [("monolith", &legacy), ("service", &service)] {
        exec(db, "INSERT INTO customers VALUES (NULL, 'nameless')").await;
        for strategy in STRATEGIES {
            let options = Options {
                strategy,
                batch_size: 15,
                bisect_leaf_rows: 15,
                segment_rows: 30,
                ..Options::default()
            };
            let context = format!("{legacy_engine} → {service_engine}, NULL in the {side}, {strategy:?}");
            let result = compare(&legacy, &service, &options, "").await;
            assert_null_key(result, side, "`code`", &context);
        }
        // A row the table's filter leaves out is not compared, NULL or not.
        let filter = match side {
            "monolith" => "legacy_filter = \"name <> 'nameless'\"",
            _ => "service_filter = \"name <> 'nameless'\"",
        };
        let filtered = compare(&legacy, &service, &Options::default(), filter).await;
        assert_eq!(
            filtered.unwrap().status,
            Status::Clean,
            "{legacy_engine} → {service_engine}, filtered out of the {side}"
        );
        exec(db, "DELETE FROM customers WHERE name = 'nameless'").await;
    }
}

#[tokio::test]
async fn a_null_key_stops_the_run_on_either_side_under_every_strategy() {
    let pairings = [
        (Engine::Postgres, Engine::Postgres),
        (Engine::MySql, Engine::MySql),
        (Engine::Sqlite, Engine::Sqlite),
        (Engine::Postgres, Engine::MySql),
        (Engine::Sqlite, Engine::Postgres),
    ];
    crate::helpers::each_pairing(&pairings, null_key_on_either_side).await;
}

#[tokio::test]
async fn a_null_in_any_column_of_a_composite_key_is_named_with_the_key_columns() {
    for engine in [Engine::Postgres, Engine::MySql, Engine::Sqlite] {
        let table = r#"CREATE TABLE "lines" ("order_id" {INT} NOT NULL, "line_no" {INT}, "qty" {INT}, UNIQUE ("order_id", "line_no"));
INSERT INTO "lines" VALUES (7, 1, 1), (7, 2, 1), (8, 1, 5)"#;
        let Some((legacy, service)) = pair_holding(engine, engine, table).await else {
            return;
        };
        exec(&service, r#"INSERT INTO "lines" VALUES (8, NULL, 1)"#).await;
        let text = mapping_text(
            "lines",
            ("lines", "lines"),
            &["order_id", "line_no"],
            &same(&["order_id", "line_no", "qty"]),
            "",
        );
        let error = run(&text, "lines", &legacy, &service, &Options::default())
            .await
            .unwrap_err();
        assert_eq!(
            error.to_string(),
            "table `lines` in the service database has a row with NULL in its key (`order_id`, `line_no`); \
             the mapped key must never be NULL: map key columns that are never NULL, or fill or remove those rows (nothing was reported)",
            "{engine}"
        );
    }
}

/// The message of the event the reconciler logs before each look for a
/// NULL key in the data.
const NULL_KEY_QUERY: &str = "looking for a NULL key in the data";

/// A subscriber that counts the reconciler's [`NULL_KEY_QUERY`] events.
struct QueryCounter(Arc<AtomicUsize>);

struct Message(String);

impl Visit for Message {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if field.name() == "message" {
            self.0 = format!("{value:?}");
        }
    }
}

impl tracing::Subscriber for QueryCounter {
    fn enabled(&self, metadata: &tracing::Metadata<'_>) -> bool {
        metadata.target().starts_with("reconciler")
    }
    fn new_span(&self, _: &span::Attributes<'_>) -> span::Id {
        span::Id::from_u64(1)
    }
    fn record(&self, _: &span::Id, _: &span::Record<'_>) {}
    fn record_follows_from(&self, _: &span::Id, _: &span::Id) {}
    fn event(&self, event: &tracing::Event<'_>) {
        let mut message = Message(String::new());
        event.record(&mut message);
        if message.0 == NULL_KEY_QUERY {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }
    fn enter(&self, _: &span::Id) {}
    fn exit(&self, _: &span::Id) {}
}

#[tokio::test]
async fn a_key_the_catalog_proves_not_null_costs_no_query() {
    for engine in [Engine::Postgres, Engine::MySql, Engine::Sqlite] {
        // How `code` is declared, and how many sides must look for NULL.
        let mut cases = vec![
            ("{KEY} PRIMARY KEY", 0),
            ("{KEY} NOT NULL", 0),
            ("{KEY} NOT NULL UNIQUE", 0),
            ("{KEY} UNIQUE", 2),
            ("{KEY}", 2),
        ];
        if engine == Engine::Sqlite {
            // SQLite lets NULL into a primary key other than the rowid.
            cases[0].1 = 2;
            cases.push(("INTEGER PRIMARY KEY", 0));
            cases.push(("INTEGER PRIMARY KEY DESC", 2));
        }
        for (declared, queries) in cases {
            let Some((legacy, service)) = pair(engine, engine).await else {
                return;
            };
            for db in [&legacy, &service] {
                customers(db, declared).await;
            }
            let count = Arc::new(AtomicUsize::new(0));
            let report = compare(&legacy, &service, &Options::default(), "")
                .with_subscriber(QueryCounter(count.clone()))
                .await
                .unwrap();
            assert_eq!(report.status, Status::Clean, "{engine} {declared}");
            assert_eq!(count.load(Ordering::SeqCst), queries, "{engine} {declared}");
        }
    }
}

#[tokio::test]
async fn a_sqlite_primary_key_that_holds_null_stops_the_run() {
    let Some((legacy, service)) = pair(Engine::Sqlite, Engine::Sqlite).await else {
        return;
    };
    for db in [&legacy, &service] {
        customers(db, "TEXT PRIMARY KEY").await;
    }
    exec(&legacy, "INSERT INTO customers VALUES (NULL, 'nameless')").await;
    for strategy in STRATEGIES {
        let options = Options {
            strategy,
            ..Options::default()
        };
        let result = compare(&legacy, &service, &options, "").await;
        assert_null_key(result, "monolith", "`code`", &format!("{strategy:?}"));
    }
}
