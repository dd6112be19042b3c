//! The machinery behind the speed: segments checksummed on several
//! connections at once must find exactly what one connection finds, `Auto`
//! must leave bisection for the merge when differences are dense, and rows
//! read as PostgreSQL `COPY` text must compare like decoded rows.

use reconciler::{Method, Options, Report, Strategy};
use test_harness::{Engine, TestDatabase};

use crate::helpers::{assert_findings, exec, findings, keys, mapping_text, pair, pair_holding, run, same};

/// Compares both sides' table `table`, keyed on its first column `columns[0]`.
async fn compare(
    table: &str,
    columns: &[&str],
    legacy: &TestDatabase,
    service: &TestDatabase,
    options: &Options,
) -> Report {
    let text = mapping_text(table, (table, table), &columns[..1], &same(columns), "");
    run(&text, table, legacy, service, options).await.unwrap()
}

/// Compares both sides' `orders`.
async fn compare_orders(legacy: &TestDatabase, service: &TestDatabase, options: &Options) -> Report {
    compare(
        "orders",
        &["id", "status", "total", "note"],
        legacy,
        service,
        options,
    )
    .await
}

const ROWS: u32 = 20_000;

/// Both sides filled alike, then `changes` applied to the service.
async fn orders(
    engine: Engine,
    changes: &str,
) -> Option<(test_harness::TestDatabase, test_harness::TestDatabase)> {
    let fill = match engine {
        Engine::Postgres => format!(
            "INSERT INTO orders SELECT g, 'placed', g * 7, 'note ' || g FROM generate_series(1, {ROWS}) g"
        ),
        _ => format!(
            "INSERT INTO orders SELECT seq, 'placed', seq * 7, CONCAT('note ', seq) FROM seq_1_to_{ROWS}"
        ),
    };
    let table = format!(
        "CREATE TABLE orders (id {{INT}} PRIMARY KEY, status {{TEXT}} NOT NULL, total {{INT}}, note {{TEXT}});\n{fill}"
    );
    let (legacy, service) = pair_holding(engine, engine, &table).await?;
    exec(&service, changes).await;
    Some((legacy, service))
}

const SPARSE: &str = "DELETE FROM orders WHERE id IN (3, 9000);\n\
    UPDATE orders SET total = -1 WHERE id IN (4500, 19999);\n\
    INSERT INTO orders VALUES (20500, 'placed', 1, 'extra')";

/// Forced bisection with small segments and leaves, on `parallel` lanes.
fn on_lanes(parallel: usize) -> Options {
    Options {
        strategy: Strategy::Bisect,
        segment_rows: 1500,
        bisect_leaf_rows: 100,
        batch_size: 50,
        parallel,
        ..Options::default()
    }
}

async fn parallel_bisection_matches_sequential(engine: Engine) {
    let Some((legacy, service)) = orders(engine, SPARSE).await else {
        return;
    };
    let one = compare_orders(&legacy, &service, &on_lanes(1)).await;
    let three = compare_orders(&legacy, &service, &on_lanes(3)).await;
    assert_eq!(three.tables[0].strategy, Method::Bisect);
    assert_eq!(findings(&one.tables[0]), findings(&three.tables[0]));
    assert_findings(
        &three.tables[0],
        [&["[3]", "[9000]"], &["[20500]"], &["[4500]", "[19999]"]],
        &format!("{engine}"),
    );
    assert_eq!(three.tables[0].rows_compared, u64::from(ROWS) + 1);
    assert!(
        three.tables[0].rows_fetched < u64::from(ROWS),
        "bisection read the whole table"
    );
}

/// The orders keyed by text (`o000001`, …): bisected in segments, several
/// at once on `parallel` lanes, where an integer key is swept on one.
async fn parallel_segments_match_sequential(engine: Engine) {
    let code = |n: &str| match engine {
        Engine::Postgres => format!("'o' || lpad(CAST({n} AS TEXT), 6, '0')"),
        _ => format!("CONCAT('o', LPAD({n}, 6, '0'))"),
    };
    let series = match engine {
        Engine::Postgres => format!("FROM generate_series(1, {ROWS}) g"),
        _ => format!("FROM (SELECT seq AS g FROM seq_1_to_{ROWS}) s"),
    };
    let table = format!(
        "CREATE TABLE coded (code {{KEY}} PRIMARY KEY, id {{INT}} NOT NULL, total {{INT}});
         INSERT INTO coded SELECT {}, g, g * 7 {series}",
        code("g")
    );
    let Some((legacy, service)) = pair_holding(engine, engine, &table).await else {
        return;
    };
    exec(
        &service,
        "DELETE FROM coded WHERE id IN (3, 9000);\n\
         UPDATE coded SET total = -1 WHERE id IN (4500, 19999);\n\
         INSERT INTO coded VALUES ('o020500', 20500, 1)",
    )
    .await;
    let columns = ["code", "id", "total"];
    let one = compare("coded", &columns, &legacy, &service, &on_lanes(1)).await;
    let three = compare("coded", &columns, &legacy, &service, &on_lanes(3)).await;
    assert_eq!(three.tables[0].strategy, Method::Bisect, "{engine}");
    assert_eq!(findings(&one.tables[0]), findings(&three.tables[0]), "{engine}");
    assert_findings(
        &three.tables[0],
        [
            &["[\"o000003\"]", "[\"o009000\"]"],
            &["[\"o020500\"]"],
            &["[\"o004500\"]", "[\"o019999\"]"],
        ],
        &format!("{engine}"),
    );
    assert!(
        three.tables[0].rows_fetched < u64::from(ROWS),
        "{engine}: bisection read the whole table"
    );
}

#[tokio::test]
async fn postgres_parallel_bisection_finds_what_one_connection_finds() {
    parallel_bisection_matches_sequential(Engine::Postgres).await;
    parallel_segments_match_sequential(Engine::Postgres).await;
}

#[tokio::test]
async fn mariadb_parallel_bisection_finds_what_one_connection_finds() {
    parallel_bisection_matches_sequential(Engine::MySql).await;
    parallel_segments_match_sequential(Engine::MySql).await;
}

#[tokio::test]
async fn auto_merges_the_rest_when_differences_are_dense() {
    // One changed row in every 50: every segment differs.
    let Some((legacy, service)) = orders(
        Engine::Postgres,
        "UPDATE orders SET status = 'paid' WHERE id % 50 = 0",
    )
    .await
    else {
        return;
    };
    let options = Options {
        segment_rows: 500,
        bisect_leaf_rows: 100,
        ..Options::default()
    };
    let report = compare_orders(&legacy, &service, &options).await;
    let table = &report.tables[0];
    assert_eq!(table.changed.len(), (ROWS / 50) as usize);
    assert_eq!(table.rows_compared, u64::from(ROWS));
    assert_eq!(table.strategy, Method::Merge, "{:?}", table.strategy_note);
    assert!(
        table
            .strategy_note
            .as_deref()
            .is_some_and(|n| n.contains("switched to the merge")),
        "{:?}",
        table.strategy_note
    );
    let forced = Options {
        strategy: Strategy::Merge,
        ..Options::default()
    };
    let merged = compare_orders(&legacy, &service, &forced).await;
    assert_eq!(findings(&report.tables[0]), findings(&merged.tables[0]));
}

#[tokio::test]
async fn copy_text_compares_like_decoded_rows() {
    // Tabs, newlines, backslashes, quotes and NULLs, in keys and values:
    // the COPY text escapes them all, and keyset bounds spell them as
    // literals.
    let table = "CREATE TABLE t (k TEXT PRIMARY KEY, v TEXT, n BIGINT, b BYTEA, f DOUBLE PRECISION, ok BOOLEAN);\n\
        INSERT INTO t VALUES (E'a\\tb', E'x\\ny', 1, '\\x00ff', 1.5, true), (E'q''s\\\\', NULL, NULL, NULL, NULL, NULL), \
        ('plain', '', 3, '\\x', -0.25, false)";
    let Some((legacy, service)) = pair_holding(Engine::Postgres, Engine::Postgres, table).await else {
        return;
    };
    exec(
        &service,
        "UPDATE t SET v = E'x\\n\\\\y' WHERE k = E'a\\tb';\nDELETE FROM t WHERE k = 'plain'",
    )
    .await;
    // Batches of one row: every bound is a literal of a tricky key.
    let options = Options {
        strategy: Strategy::Merge,
        batch_size: 1,
        ..Options::default()
    };
    let report = compare("t", &["k", "v", "n", "b", "f", "ok"], &legacy, &service, &options).await;
    let table = &report.tables[0];
    assert_eq!(keys(table.missing.iter().map(|m| m.key.clone())), ["[\"plain\"]"]);
    assert_eq!(table.changed.len(), 1);
    assert_eq!(table.changed[0].key, vec![serde_json::json!("a\tb")]);
    assert_eq!(table.changed[0].columns.len(), 1);
    assert_eq!(table.changed[0].columns[0].legacy, "x\ny");
    assert_eq!(table.changed[0].columns[0].service, "x\n\\y");
    assert_eq!(table.rows_compared, 3);
}

#[tokio::test]
async fn native_readers_decode_like_the_any_driver() {
    // MySQL rows come through the native driver, PostgreSQL rows as COPY
    // text, SQLite rows through the `Any` driver: the same values must
    // compare equal in every pairing.
    let create = |engine: Engine| {
        match engine {
        Engine::MySql => "CREATE TABLE v (id BIGINT PRIMARY KEY, f FLOAT, d DOUBLE, b BLOB, flag TINYINT(1), u INT UNSIGNED, t TEXT)",
        Engine::Postgres => "CREATE TABLE v (id BIGINT PRIMARY KEY, f REAL, d DOUBLE PRECISION, b BYTEA, flag BOOLEAN, u BIGINT, t TEXT)",
        Engine::Sqlite => "CREATE TABLE v (id INTEGER PRIMARY KEY, f REAL, d REAL, b BLOB, flag INTEGER, u INTEGER, t TEXT)",
    }
    };
    let fill = |engine: Engine| {
        match engine {
        Engine::Postgres => "INSERT INTO v VALUES (1, 0.5, 0.25, '\\x00ff', true, 4000000000, E'tab\\there'), (2, NULL, NULL, NULL, NULL, NULL, NULL)",
        Engine::MySql => "INSERT INTO v VALUES (1, 0.5, 0.25, X'00FF', 1, 4000000000, 'tab\\there'), (2, NULL, NULL, NULL, NULL, NULL, NULL)",
        Engine::Sqlite => "INSERT INTO v VALUES (1, 0.5, 0.25, X'00FF', 1, 4000000000, 'tab\there'), (2, NULL, NULL, NULL, NULL, NULL, NULL)",
    }
    };
    for (l, s) in [
        (Engine::MySql, Engine::Sqlite),
        (Engine::Postgres, Engine::Sqlite),
        (Engine::MySql, Engine::Postgres),
    ] {
        let Some((legacy, service)) = pair(l, s).await else {
            continue;
        };
        for db in [&legacy, &service] {
            exec(db, create(db.engine())).await;
            exec(db, fill(db.engine())).await;
        }
        let options = Options {
            strategy: Strategy::Merge,
            ..Options::default()
        };
        let columns = ["id", "f", "d", "b", "flag", "u", "t"];
        let report = compare("v", &columns, &legacy, &service, &options).await;
        let table = &report.tables[0];
        assert!(
            table.changed.is_empty() && table.missing.is_empty() && table.extra.is_empty(),
            "{l} vs {s}: {:?}",
            table.changed
        );
        assert_eq!(table.rows_compared, 2);
    }
}
