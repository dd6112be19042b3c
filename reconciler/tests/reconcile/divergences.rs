//! Missing, extra and changed rows, and NULLs, in every pairing of engines.

use reconciler::{Method, Options, Status, Strategy};
use test_harness::Engine;

use crate::helpers::{
    assert_findings, batches_of, clients_mapping, customers_and_clients, each_pairing, pair, run, PAIRINGS,
};

async fn divergences(legacy_engine: Engine, service_engine: Engine) {
    let Some((legacy, service)) = pair(legacy_engine, service_engine).await else {
        return;
    };
    customers_and_clients(
        &legacy,
        &service,
        "(1, 'ann', 'a@x', 10), (2, 'bob', NULL, 20), (3, 'cid', 'c@x', NULL),
  (4, 'dan', 'd@x', 40), (6, 'fay', NULL, NULL), (7, 'gil', 'g@x', 70)",
        "(1, 'ann', 'a@x', 10), (2, 'bob', 'b@x', 20), (3, 'cid', 'c@x', 30),
  (5, 'eve', 'e@x', 50), (6, 'fay', NULL, NULL), (7, 'Gil', 'g@x', 70)",
    )
    .await;
    let text = clients_mapping("");
    for strategy in [Strategy::Merge, Strategy::Auto] {
        let report = run(&text, "people", &legacy, &service, &batches_of(strategy, 2))
            .await
            .unwrap();
        let context = format!("{legacy_engine} → {service_engine} {strategy}");
        let table = &report.tables[0];
        assert_eq!(report.status, Status::Diverged, "{context}");
        assert_findings(table, [&["[4]"], &["[5]"], &["[2]", "[3]", "[7]"]], &context);
        let email = &table.changed[0].columns;
        assert_eq!(email.len(), 1);
        assert_eq!(email[0].column, "email");
        assert_eq!(email[0].legacy, serde_json::Value::Null);
        assert_eq!(email[0].service, "b@x");
        assert_eq!(table.changed[1].columns[0].service_column, "score");
        assert_eq!(table.changed[2].columns[0].legacy, "gil");
        assert_eq!(
            (table.rows_legacy, table.rows_service, table.rows_compared),
            (6, 6, 7)
        );
        assert_eq!(
            (report.totals.missing, report.totals.extra, report.totals.changed),
            (1, 1, 3)
        );
        let same_server = legacy_engine == service_engine && legacy_engine != Engine::Sqlite;
        let expected = if strategy == Strategy::Auto && same_server {
            Method::Bisect
        } else {
            Method::Merge
        };
        assert_eq!(table.strategy, expected, "{context}");
        let json = serde_json::to_value(&report).unwrap();
        assert_eq!(json["schema_version"], 1);
        assert_eq!(json["status"], "diverged");
        assert_eq!(json["tables"][0]["missing"][0]["key"][0], 4);
    }
}

#[tokio::test]
async fn every_pairing_finds_missing_extra_and_changed_rows() {
    each_pairing(&PAIRINGS, divergences).await;
}

#[tokio::test]
async fn identical_tables_are_clean_and_forced_bisection_across_engines_says_why() {
    let Some((legacy, service)) = pair(Engine::Sqlite, Engine::Postgres).await else {
        return;
    };
    let rows = "(1, 'ann', NULL, 10), (2, 'bob', 'b@x', NULL)";
    customers_and_clients(&legacy, &service, rows, rows).await;
    let options = Options {
        strategy: Strategy::Bisect,
        ..Options::default()
    };
    let report = run(&clients_mapping(""), "people", &legacy, &service, &options)
        .await
        .unwrap();
    assert_eq!(report.status, Status::Clean, "{}", report.to_human());
    assert_eq!(report.tables[0].strategy, Method::Merge);
    assert!(report.tables[0]
        .strategy_note
        .as_deref()
        .unwrap()
        .contains("same engine"));
    assert!(report.to_human().contains("CLEAN"));
}
