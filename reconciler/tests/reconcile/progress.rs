//! The progress hook: told each table's start with the catalogs' row
//! estimate, keys in steps that add up to the table's `rows_compared`
//! whatever the strategy, and an applied repair's statements.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use reconciler::progress::KEYS_PER_STEP;
use reconciler::repair::{apply_plan, plan_repair, ApplyOptions};
use reconciler::{Options, Progress, ProgressHook, Strategy};
use test_harness::{Engine, TestDatabase};

use crate::helpers::{exec, mapping, mapping_text, pair_holding, run, same};

/// What the hook was told, in order.
#[derive(Debug, Clone, PartialEq)]
enum Told {
    Started(String, Option<u64>),
    Keys(u64),
    Finished(u64),
    RepairStarted(u64),
    Statements(u64),
    RepairFinished,
}

#[derive(Default)]
struct Recorder(Mutex<Vec<Told>>);

impl Recorder {
    fn tell(&self, told: Told) {
        self.0.lock().unwrap().push(told);
    }

    fn told(&self) -> Vec<Told> {
        self.0.lock().unwrap().clone()
    }
}

impl Progress for Recorder {
    fn table_started(&self, table: &str, estimated_keys: Option<u64>) {
        self.tell(Told::Started(table.to_owned(), estimated_keys));
    }
    fn keys_compared(&self, keys: u64) {
        self.tell(Told::Keys(keys));
    }
    fn table_finished(&self, keys: u64) {
        self.tell(Told::Finished(keys));
    }
    fn repair_started(&self, statements: u64) {
        self.tell(Told::RepairStarted(statements));
    }
    fn statements_applied(&self, statements: u64) {
        self.tell(Told::Statements(statements));
    }
    fn repair_finished(&self) {
        self.tell(Told::RepairFinished);
    }
}

const ROWS: u32 = 20_000;

/// `big` (20,000 rows) and `small` (3 rows) on both sides; the service's
/// `big` lacks 10 rows and has one changed.
async fn tables(engine: Engine) -> Option<(TestDatabase, TestDatabase)> {
    let fill = match engine {
        Engine::Postgres => {
            format!("INSERT INTO big SELECT g, 'row ' || g FROM generate_series(1, {ROWS}) g")
        }
        Engine::MySql => format!("INSERT INTO big SELECT seq, CONCAT('row ', seq) FROM seq_1_to_{ROWS}"),
        Engine::Sqlite => format!(
            "WITH RECURSIVE g(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM g WHERE n < {ROWS}) \
             INSERT INTO big SELECT n, 'row ' || n FROM g"
        ),
    };
    let schema = format!(
        "CREATE TABLE big (id {{INT}} PRIMARY KEY, note {{TEXT}});\n{fill};\n\
         CREATE TABLE small (id {{INT}} PRIMARY KEY, note {{TEXT}});\n\
         INSERT INTO small VALUES (1, 'a'), (2, 'b'), (3, 'c')"
    );
    let (legacy, service) = pair_holding(engine, engine, &schema).await?;
    exec(
        &service,
        "DELETE FROM big WHERE id BETWEEN 5000 AND 5009;\nUPDATE big SET note = 'changed' WHERE id = 7",
    )
    .await;
    if engine == Engine::Postgres {
        // Fills `reltuples`, the estimate, which a new table lacks.
        for db in [&legacy, &service] {
            exec(db, "ANALYZE big;\nANALYZE small").await;
        }
    }
    Some((legacy, service))
}

fn two_tables() -> String {
    let table = |name: &str| mapping_text("p", (name, name), &["id"], &same(&["id", "note"]), "");
    format!("{}\n{}", table("big"), table("small"))
}

/// Per table: its name, estimate, the steps told, and the final count.
fn per_table(told: &[Told]) -> Vec<(String, Option<u64>, Vec<u64>, u64)> {
    let mut tables = Vec::new();
    for event in told {
        match event {
            Told::Started(name, estimate) => tables.push((name.clone(), *estimate, Vec::new(), 0)),
            Told::Keys(keys) => tables.last_mut().unwrap().2.push(*keys),
            Told::Finished(keys) => tables.last_mut().unwrap().3 = *keys,
            other => panic!("unexpected {other:?} during a comparison"),
        }
    }
    tables
}

#[tokio::test]
async fn the_hook_is_told_keys_that_add_up_to_each_tables_count() {
    for (engine, strategy) in [
        (Engine::Sqlite, Strategy::Merge),
        (Engine::Postgres, Strategy::Merge),
        (Engine::Postgres, Strategy::Bisect),
        (Engine::MySql, Strategy::Auto),
    ] {
        let Some((legacy, service)) = tables(engine).await else {
            return;
        };
        let recorder = Arc::new(Recorder::default());
        let options = Options {
            strategy,
            progress: Some(ProgressHook::new(recorder.clone())),
            ..Options::default()
        };
        let report = run(&two_tables(), "p", &legacy, &service, &options)
            .await
            .unwrap();
        assert_eq!(
            report.totals.missing + report.totals.changed,
            11,
            "{engine} {strategy}"
        );
        let tables = per_table(&recorder.told());
        assert_eq!(tables.len(), 2, "{engine} {strategy}: {tables:?}");
        for ((name, estimate, steps, finished), table) in tables.iter().zip(&report.tables) {
            let context = format!("{engine} {strategy} {name}");
            assert_eq!(name, &table.legacy_table, "{context}");
            assert_eq!(
                steps.iter().sum::<u64>(),
                table.rows_compared,
                "{context}: {steps:?}"
            );
            assert_eq!(*finished, table.rows_compared, "{context}");
            if strategy == Strategy::Merge {
                // Row by row, in steps, never per row.
                assert!(steps.iter().all(|s| *s <= KEYS_PER_STEP), "{context}: {steps:?}");
            }
            if name == "big" {
                assert!(steps.len() > 1, "{context}: told once only");
                // SQLite's estimate is the largest rowid; MariaDB's
                // `table_rows` is a sampled guess.
                match engine {
                    Engine::Sqlite | Engine::Postgres => {
                        assert_eq!(*estimate, Some(u64::from(ROWS)), "{context}")
                    }
                    Engine::MySql => assert!(estimate.is_some(), "{context}"),
                }
            }
        }
    }
}

#[tokio::test]
async fn an_applied_repair_tells_its_statements() {
    let Some((legacy, service)) = tables(Engine::Sqlite).await else {
        return;
    };
    let text = two_tables();
    let report = run(&text, "p", &legacy, &service, &Options::default())
        .await
        .unwrap();
    let mapping = mapping(&text);
    let plan = plan_repair(
        mapping.capability("p").unwrap(),
        &report,
        legacy.url(),
        service.url(),
        Duration::from_secs(10),
    )
    .await
    .unwrap();
    let recorder = Arc::new(Recorder::default());
    let options = ApplyOptions {
        batch: 4,
        progress: Some(ProgressHook::new(recorder.clone())),
    };
    let applied = apply_plan(&plan, service.url(), &options).await.unwrap();
    assert_eq!(applied.statements, 11);
    assert_eq!(
        recorder.told(),
        [
            Told::RepairStarted(11),
            Told::Statements(4),
            Told::Statements(4),
            Told::Statements(3),
            Told::RepairFinished
        ]
    );
}
