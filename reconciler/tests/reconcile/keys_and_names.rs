//! Composite keys in byte order whatever the server's collation, names that
//! need quoting or are SQL-injection attempts, and empty tables.

use reconciler::{Method, Options, Status, Strategy};
use test_harness::{Database, Engine, TestDatabase};

use crate::helpers::{
    assert_findings, batches_of, each_pairing, exec, keys, mapping_text, pair, pair_holding, run, same,
};

const TABLE: &str = "Line Items\"; DROP TABLE keep; --";
const ORDER: &str = "Order Id";
const LINE: &str = "line`no\"; DELETE FROM keep; --";

fn quote(engine: Engine, name: &str) -> String {
    match engine {
        Engine::MySql => format!("`{}`", name.replace('`', "``")),
        _ => format!("\"{}\"", name.replace('"', "\"\"")),
    }
}

/// `keep`, and the table of lines holding `rows`, an SQL `VALUES` list.
async fn create_lines(db: &TestDatabase, rows: &str) {
    let e = db.engine();
    let key_type = if e == Engine::MySql {
        "VARCHAR(100)"
    } else {
        "TEXT"
    };
    let database = Database::open(db.url()).await.unwrap();
    let statements = [
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
        format!("INSERT INTO {} VALUES {rows}", quote(e, TABLE)),
    ];
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

async fn composite(legacy_engine: Engine, service_engine: Engine) {
    let Some((legacy, service)) = pair(legacy_engine, service_engine).await else {
        return;
    };
    for (db, rows) in [
        (
            &legacy,
            "('B', 1, 1), ('a', 1, 1), ('a', 2, 2), ('é', 1, 3), ('Z', 3, NULL), ('a', 10, 4)",
        ),
        (
            &service,
            "('B', 1, 1), ('a', 1, 1), ('é', 1, 30), ('Z', 3, NULL), ('b', 9, 9), ('a', 10, 4)",
        ),
    ] {
        create_lines(db, rows).await;
    }
    let text = mapping_text(
        "lines",
        (TABLE, TABLE),
        &[ORDER, LINE],
        &same(&[ORDER, LINE, "qty"]),
        "",
    );
    for strategy in [Strategy::Merge, Strategy::Bisect] {
        let report = run(&text, "lines", &legacy, &service, &batches_of(strategy, 1))
            .await
            .unwrap();
        let context = format!(
            "{legacy_engine} → {service_engine} {strategy}\n{}",
            report.to_human()
        );
        let table = &report.tables[0];
        assert_findings(
            table,
            [&[r#"["a",2]"#], &[r#"["b",9]"#], &[r#"["é",1]"#]],
            &context,
        );
        assert_eq!(table.key_columns, [ORDER, LINE], "{context}");
        assert_eq!(table.rows_compared, 7, "{context}");
    }
    keep_survives(&legacy).await;
    keep_survives(&service).await;
}

#[tokio::test]
async fn composite_keys_and_hostile_names_in_several_pairings() {
    let pairings = [
        (Engine::Postgres, Engine::MySql),
        (Engine::MySql, Engine::Sqlite),
        (Engine::Sqlite, Engine::Postgres),
        (Engine::Postgres, Engine::Postgres),
        (Engine::MySql, Engine::MySql),
    ];
    each_pairing(&pairings, composite).await;
}

#[tokio::test]
async fn empty_tables_are_clean_and_an_empty_side_reports_every_key() {
    for (legacy_engine, service_engine) in [
        (Engine::Sqlite, Engine::MySql),
        (Engine::Postgres, Engine::Postgres),
    ] {
        let ddl = r#"CREATE TABLE "people" ("id" {INT} PRIMARY KEY, "name" {TEXT})"#;
        let Some((legacy, service)) = pair_holding(legacy_engine, service_engine, ddl).await else {
            return;
        };
        let text = mapping_text(
            "people",
            ("people", "people"),
            &["id"],
            &same(&["id", "name"]),
            "",
        );
        let report = run(&text, "people", &legacy, &service, &Options::default())
            .await
            .unwrap();
        assert_eq!(report.status, Status::Clean);
        assert_eq!(report.totals.rows_compared, 0);
        exec(&service, r#"INSERT INTO "people" VALUES (1, 'a'), (2, NULL)"#).await;
        let report = run(&text, "people", &legacy, &service, &Options::default())
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
