//! One differing row in a 100,000-row table: found by bisection on
//! same-engine server pairs, reading only a few thousand rows, and by the
//! merge on SQLite.

use reconciler::{Method, Status, Strategy};
use test_harness::Engine;

use crate::helpers::{assert_findings, batches_of, exec, mapping_text, pair_holding, run, same};

const ROWS: u64 = 100_000;

fn fill(engine: Engine) -> &'static str {
    match engine {
        Engine::Postgres => {
            "INSERT INTO big (id, name, amount) SELECT g, 'name ' || g, g * 3 FROM generate_series(1, 100000) g"
        }
        Engine::MySql => "INSERT INTO big (id, name, amount) SELECT seq, CONCAT('name ', seq), seq * 3 FROM seq_1_to_100000",
        Engine::Sqlite => {
            "WITH RECURSIVE s(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM s WHERE n < 100000) \
             INSERT INTO big (id, name, amount) SELECT n, 'name ' || n, n * 3 FROM s"
        }
    }
}

async fn one_row_in_100k(engine: Engine, change: &str, expect_missing: bool) {
    let table = format!(
        "CREATE TABLE big (id {{INT}} PRIMARY KEY, name {{TEXT}} NOT NULL, amount {{INT}});\n{}",
        fill(engine)
    );
    let Some((legacy, service)) = pair_holding(engine, engine, &table).await else {
        return;
    };
    exec(&service, change).await;
    // Forced: `Auto` would first merge a probe of the table to measure it.
    let text = mapping_text(
        "big",
        ("big", "big"),
        &["id"],
        &same(&["id", "name", "amount"]),
        "",
    );
    let report = run(
        &text,
        "big",
        &legacy,
        &service,
        &batches_of(Strategy::Bisect, 1000),
    )
    .await
    .unwrap();
    let table = &report.tables[0];
    assert_eq!(report.status, Status::Diverged);
    if expect_missing {
        assert_findings(table, [&["[77777]"], &[], &[]], &format!("{engine}"));
        assert_eq!(table.rows_service, ROWS - 1);
    } else {
        assert_findings(table, [&[], &[], &["[77777]"]], &format!("{engine}"));
        assert_eq!(table.changed[0].columns[0].service, "changed");
        assert_eq!(table.rows_service, ROWS);
    }
    assert_eq!(table.rows_legacy, ROWS);
    assert_eq!(table.rows_compared, ROWS);
    println!("{engine}: {:?} read {} rows", table.strategy, table.rows_fetched);
    if engine == Engine::Sqlite {
        assert_eq!(table.strategy, Method::Merge);
        assert_eq!(table.rows_fetched, 2 * ROWS - u64::from(expect_missing));
    } else {
        assert_eq!(table.strategy, Method::Bisect);
        assert!(
            table.rows_fetched <= 2_000,
            "bisection read {} rows",
            table.rows_fetched
        );
    }
}

#[tokio::test]
async fn postgres_bisection_finds_one_changed_row_in_100k() {
    one_row_in_100k(
        Engine::Postgres,
        "UPDATE big SET name = 'changed' WHERE id = 77777",
        false,
    )
    .await;
}

#[tokio::test]
async fn mariadb_bisection_finds_one_missing_row_in_100k() {
    one_row_in_100k(Engine::MySql, "DELETE FROM big WHERE id = 77777", true).await;
}

#[tokio::test]
async fn sqlite_merge_finds_one_changed_row_in_100k() {
    one_row_in_100k(
        Engine::Sqlite,
        "UPDATE big SET name = 'changed' WHERE id = 77777",
        false,
    )
    .await;
}
