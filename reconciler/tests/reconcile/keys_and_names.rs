//! Composite keys in byte order whatever the server's collation, names that
//! need quoting or are SQL-injection attempts, and empty tables.

use reconciler::{Method, Options, Status, Strategy};
use test_harness::{Database, Engine, TestDatabase};

use crate::helpers::{exec, keys, pair, run};

const TABLE: &str = "Line Items\"; DROP TABLE keep; --";
const ORDER: &str = "Order Id";
const LINE: &str = "line`no\"; DELETE FROM keep; --";

fn quote(engine: Engine, name: &str) -> String {
    match engine {
        Engine::MySql => format!("`{}`", name.replace('`', "``")),
        _ => format!("\"{}\"", name.replace('"', "\"\"")),
    }
}

async fn create_lines(db: &TestDatabase, rows: &[(&str, i64, &str)]) {
    let e = db.engine();
    let key_type = if e == Engine::MySql {
        "VARCHAR(100)"
    } else {
        "TEXT"
    };
    let database = Database::open(db.url()).await.unwrap();
    let mut statements = vec![
        "CREATE TABLE keep (id BIGINT PRIMARY KEY)".to_owned(),
        "INSERT INTO keep VALUES (1)".to_owned(),
        format!(
            "CREATE TABLE {} ({} {key_type} NOT NULL, {} BIGINT NOT NULL, qty BIGINT, PRIMARY KEY ({}, {}))",
            quote(e, TABLE),
            quote(e, ORDER),
            quote(e, LINE),
            quote(e, ORDER),
            quote(e, LINE)
        ),
    ];
    for (order, line, qty) in rows {
        statements.push(format!(
            "INSERT INTO {} VALUES ('{order}', {line}, {qty})",
            quote(e, TABLE)
        ));
    }
    for statement in statements {
        sqlx::raw_sql(&statement).execute(database.pool()).await.unwrap();
    }
    database.close().await;
}

async fn keep_survives(db: &TestDatabase) {
    let database = Database::open(db.url()).await.unwrap();
    let count: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM keep")
        .fetch_one(database.pool())
        .await
        .unwrap();
    assert_eq!(count, 1);
    database.close().await;
}

const MAPPING: &str = r#"
[[capabilities.lines.tables]]
legacy = 'Line Items"; DROP TABLE keep; --'
service = 'Line Items"; DROP TABLE keep; --'
key = ['Order Id', 'line`no"; DELETE FROM keep; --']
columns = { 'Order Id' = 'Order Id', 'line`no"; DELETE FROM keep; --' = 'line`no"; DELETE FROM keep; --', qty = 'qty' }
"#;

async fn composite(legacy_engine: Engine, service_engine: Engine) {
    let Some((legacy, service)) = pair(legacy_engine, service_engine).await else {
        return;
    };
    create_lines(
        &legacy,
        &[
            ("B", 1, "1"),
            ("a", 1, "1"),
            ("a", 2, "2"),
            ("é", 1, "3"),
            ("Z", 3, "NULL"),
            ("a", 10, "4"),
        ],
    )
    .await;
    create_lines(
        &service,
        &[
            ("B", 1, "1"),
            ("a", 1, "1"),
            ("é", 1, "30"),
            ("Z", 3, "NULL"),
            ("b", 9, "9"),
            ("a", 10, "4"),
        ],
    )
    .await;
    for strategy in [Strategy::Merge, Strategy::Bisect] {
        let options = Options {
            strategy,
            batch_size: 1,
            bisect_leaf_rows: 1,
            ..Options::default()
        };
        let report = run(MAPPING, "lines", &legacy, &service, &options).await.unwrap();
        let context = format!(
            "{legacy_engine} → {service_engine} {strategy}\n{}",
            report.to_human()
        );
        let table = &report.tables[0];
        assert_eq!(
            keys(table.missing.iter().map(|m| m.key.clone())),
            [r#"["a",2]"#],
            "{context}"
        );
        assert_eq!(
            keys(table.extra.iter().map(|m| m.key.clone())),
            [r#"["b",9]"#],
            "{context}"
        );
        assert_eq!(
            keys(table.changed.iter().map(|m| m.key.clone())),
            [r#"["é",1]"#],
            "{context}"
        );
        assert_eq!(table.key_columns, [ORDER, LINE]);
        assert_eq!(table.rows_compared, 7, "{context}");
    }
    keep_survives(&legacy).await;
    keep_survives(&service).await;
}

#[tokio::test]
async fn composite_keys_and_hostile_names_in_several_pairings() {
    for (legacy, service) in [
        (Engine::Postgres, Engine::MySql),
        (Engine::MySql, Engine::Sqlite),
        (Engine::Sqlite, Engine::Postgres),
        (Engine::Postgres, Engine::Postgres),
        (Engine::MySql, Engine::MySql),
    ] {
        composite(legacy, service).await;
    }
}

const PEOPLE: &str = r#"
[[capabilities.people.tables]]
legacy = "people"
service = "people"
key = ["id"]
columns = { id = "id", name = "name" }
"#;

#[tokio::test]
async fn empty_tables_are_clean_and_an_empty_side_reports_every_key() {
    for (legacy_engine, service_engine) in [
        (Engine::Sqlite, Engine::MySql),
        (Engine::Postgres, Engine::Postgres),
    ] {
        let Some((legacy, service)) = pair(legacy_engine, service_engine).await else {
            return;
        };
        let ddl = r#"CREATE TABLE "people" ("id" {INT} PRIMARY KEY, "name" {TEXT})"#;
        exec(&legacy, ddl).await;
        exec(&service, ddl).await;
        let report = run(PEOPLE, "people", &legacy, &service, &Options::default())
            .await
            .unwrap();
        assert_eq!(report.status, Status::Clean);
        assert_eq!(report.totals.rows_compared, 0);
        exec(&service, r#"INSERT INTO "people" VALUES (1, 'a'), (2, NULL)"#).await;
        let report = run(PEOPLE, "people", &legacy, &service, &Options::default())
            .await
            .unwrap();
        assert_eq!(
            keys(report.tables[0].extra.iter().map(|m| m.key.clone())),
            ["[1]", "[2]"]
        );
        let expected = if legacy_engine == Engine::Postgres {
            Method::Bisect
        } else {
            Method::Merge
        };
        assert_eq!(report.tables[0].strategy, expected);
    }
}
