//! Sweeps: bisection of a table keyed by one integer column checksums long
//! stretches of keys in buckets of key values. Keys of uneven density
//! (negative ones, a dense run, a sparse tail), differences in each region
//! and at the stretches' edges: forced bisection, `auto` and the merge must
//! report the same rows, and bisection must read only a little of the table.
//! Keys spanning the whole 64-bit range fall back to segments.

use reconciler::{Method, Options, Strategy};
use test_harness::Engine;

use crate::helpers::{assert_findings, exec, findings, mapping_text, pair_holding, run, same};

/// Keys -3000..=-1 and 1..=20000 one apart, then 20,000 keys 1,000 apart
/// from 1,000,000, then 5,000 keys one apart from 30,000,001: 48,000 rows
/// whose density drops a thousandfold and rises again.
fn fill(engine: Engine) -> String {
    let series = |from: &str, to: u32, step: &str| {
        match engine {
        Engine::Postgres => format!(
            "INSERT INTO uneven (id, name, amount) SELECT {from} + g * {step}, 'row ' || g, 0 FROM generate_series(0, {to}) g"
        ),
        Engine::MySql => format!(
            "INSERT INTO uneven (id, name, amount) SELECT {from} + (CAST(seq AS SIGNED) - 1) * {step}, CONCAT('row ', seq - 1), 0 FROM seq_1_to_{}",
            to + 1
        ),
        Engine::Sqlite => unreachable!("SQLite has no checksums"),
    }
    };
    format!(
        "CREATE TABLE uneven (id {{INT}} PRIMARY KEY, name {{TEXT}} NOT NULL, amount {{INT}});\n{};\n{};\n{};\n{}",
        series("-3000", 2999, "1"),
        series("1", 19_999, "1"),
        series("1000000", 19_999, "1000"),
        series("30000001", 4_999, "1"),
    )
}

/// The differences, spread over the regions: keys that sit at the edges of
/// buckets and sweeps (multiples of 2,000 and their neighbours) among them.
const CHANGES: &str = "DELETE FROM uneven WHERE id IN (-3000, -1, 2000, 2001, 17999, 5000000, 20999000);
UPDATE uneven SET name = 'changed' WHERE id IN (-1500, 1, 4000, 4001, 20000, 1000000, 12345000);
UPDATE uneven SET amount = 1 WHERE id = 7000;
UPDATE uneven SET amount = NULL WHERE id = 9000;
UPDATE uneven SET name = 'changed' WHERE id = 30004000;
INSERT INTO uneven (id, name) VALUES (-5000, 'new'), (0, 'new'), (20001, 'new'), (999999, 'new'), (1000500, 'new'), (30000000, 'new')";

const MISSING: [&str; 7] = [
    "[-3000]",
    "[-1]",
    "[2000]",
    "[2001]",
    "[17999]",
    "[5000000]",
    "[20999000]",
];
const EXTRA: [&str; 6] = ["[-5000]", "[0]", "[20001]", "[999999]", "[1000500]", "[30000000]"];
// 7000 and 9000 differ in an integer column only (hashed as an integer):
// 0 against 1, and 0 against NULL.
const CHANGED: [&str; 10] = [
    "[-1500]",
    "[1]",
    "[4000]",
    "[4001]",
    "[7000]",
    "[9000]",
    "[20000]",
    "[1000000]",
    "[12345000]",
    "[30004000]",
];

fn forced(strategy: Strategy) -> Options {
    Options {
        strategy,
        segment_rows: 2_000,
        bisect_leaf_rows: 200,
        ..Options::default()
    }
}

async fn uneven_keys(engine: Engine) {
    let Some((legacy, service)) = pair_holding(engine, engine, &fill(engine)).await else {
        return;
    };
    exec(&service, CHANGES).await;
    let text = mapping_text(
        "uneven",
        ("uneven", "uneven"),
        &["id"],
        &same(&["id", "name", "amount"]),
        "",
    );
    let mut reports = Vec::new();
    for strategy in [Strategy::Merge, Strategy::Bisect, Strategy::Auto] {
        let report = run(&text, "uneven", &legacy, &service, &forced(strategy))
            .await
            .unwrap_or_else(|e| panic!("{engine} {strategy:?}: {e}"));
        let table = report.tables[0].clone();
        assert_findings(
            &table,
            [&MISSING, &EXTRA, &CHANGED],
            &format!("{engine} {strategy:?}"),
        );
        assert_eq!(table.rows_legacy, 48_000, "{engine} {strategy:?}");
        assert_eq!(table.rows_service, 48_000 - 7 + 6, "{engine} {strategy:?}");
        reports.push(table);
    }
    let bisect = &reports[1];
    assert_eq!(bisect.strategy, Method::Bisect, "{engine}");
    // Twenty-two differing keys, each in a bucket of about 200 rows.
    assert!(
        bisect.rows_fetched < 48_000 / 4,
        "{engine}: bisection read {} of 96,000 rows",
        bisect.rows_fetched
    );
    assert_eq!(
        findings(bisect),
        findings(&reports[0]),
        "{engine}: bisect against merge"
    );
}

#[tokio::test]
async fn postgres_sweeps_find_what_the_merge_finds_over_uneven_keys() {
    uneven_keys(Engine::Postgres).await;
}

#[tokio::test]
async fn mariadb_sweeps_find_what_the_merge_finds_over_uneven_keys() {
    uneven_keys(Engine::MySql).await;
}

/// Keys at both ends of the 64-bit range: their span does not fit the
/// sweep's arithmetic, so the table is bisected in segments, and still
/// exactly.
#[tokio::test]
async fn keys_spanning_all_64_bits_are_bisected_in_segments() {
    for engine in [Engine::Postgres, Engine::MySql] {
        let template = "CREATE TABLE edges (id {INT} PRIMARY KEY, name {TEXT} NOT NULL);
INSERT INTO edges (id, name) VALUES (-9223372036854775808, 'min'), (-1, 'a'), (0, 'b'), (1, 'c'), (9223372036854775806, 'd'), (9223372036854775807, 'max')";
        let Some((legacy, service)) = pair_holding(engine, engine, template).await else {
            return;
        };
        exec(
            &service,
            "UPDATE edges SET name = 'changed' WHERE id = 9223372036854775807;
DELETE FROM edges WHERE id = -9223372036854775808",
        )
        .await;
        let text = mapping_text("edges", ("edges", "edges"), &["id"], &same(&["id", "name"]), "");
        let options = Options {
            strategy: Strategy::Bisect,
            segment_rows: 2,
            bisect_leaf_rows: 1,
            ..Options::default()
        };
        let report = run(&text, "edges", &legacy, &service, &options).await.unwrap();
        let table = &report.tables[0];
        assert_eq!(table.strategy, Method::Bisect, "{engine}");
        assert_findings(
            table,
            [&["[-9223372036854775808]"], &[], &["[9223372036854775807]"]],
            &format!("{engine}"),
        );
    }
}
