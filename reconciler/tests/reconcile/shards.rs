//! Sharded runs: N processes compare disjoint key ranges of the same tables
//! under one run group, and their merged report equals one process's.

use reconciler::shard::merge_shards;
use reconciler::{
    reconcile_and_record, Options, Report, RunStore, ShardIndex, ShardSpec, Strategy, TableReport,
};
use test_harness::{Engine, TestDatabase};
use toolkit_db::DatabaseUrl;

use crate::helpers::{clients_mapping, customers_and_clients, mapping, pair};

/// 5,000 clients; in the service every 97th changed, every 89th missing,
/// and 40 extra ones past the monolith's last key and among its keys.
async fn diverged(legacy_engine: Engine, service_engine: Engine) -> Option<(TestDatabase, TestDatabase)> {
    let (legacy, service) = pair(legacy_engine, service_engine).await?;
    let row = |id: u32, name: &str| format!("({id}, '{name}', 'mail {id}', {id})");
    let legacy_rows: Vec<String> = (1..=5000).map(|id| row(id * 2, "c")).collect();
    let service_rows: Vec<String> = (1..=5000)
        .filter(|id| id % 89 != 0)
        .map(|id| row(id * 2, if id % 97 == 0 { "changed" } else { "c" }))
        .chain((1..=20).map(|i| row(i * 250 + 1, "extra")))
        .chain((1..=20).map(|i| row(20_000 + i, "extra")))
        .collect();
    customers_and_clients(
        &legacy,
        &service,
        &legacy_rows.join(", "),
        &service_rows.join(", "),
    )
    .await;
    Some((legacy, service))
}

/// A table's report without what depends on how it was read: rows read
/// and the strategy `auto` or bisection settled on per range.
fn findings_of(table: &TableReport) -> TableReport {
    let mut table = table.clone();
    table.rows_fetched = 0;
    table.strategy = reconciler::Method::Merge;
    table.strategy_note = None;
    table
}

async fn sharded(legacy_engine: Engine, service_engine: Engine, strategy: Strategy) {
    let Some((legacy, service)) = diverged(legacy_engine, service_engine).await else {
        return;
    };
    let context = format!("{legacy_engine} → {service_engine}, {strategy}");
    let dir = tempfile::tempdir().unwrap();
    let store = RunStore::open(&DatabaseUrl::sqlite_file(&dir.path().join("toolkit.db")))
        .await
        .unwrap();
    let text = clients_mapping("");
    let mapping = mapping(&text);
    let capability = mapping.capability("people").unwrap();
    let options = Options {
        strategy,
        batch_size: 300,
        bisect_leaf_rows: 100,
        segment_rows: 500,
        ..Options::default()
    };
    let whole = reconcile_and_record(Some(&store), capability, legacy.url(), service.url(), &options)
        .await
        .unwrap();
    // Four processes at once, as four hosts would start them.
    let shards = (1..=4).map(|index| {
        let options = Options {
            shard: Some(ShardSpec {
                group: "nightly".to_owned(),
                shard: ShardIndex { index, count: 4 },
                store: None,
            }),
            ..options.clone()
        };
        let (store, legacy, service) = (&store, &legacy, &service);
        async move {
            reconcile_and_record(Some(store), capability, legacy.url(), service.url(), &options)
                .await
                .unwrap()
        }
    });
    let parts: Vec<Report> = futures::future::join_all(shards).await;
    for (i, part) in parts.iter().enumerate() {
        let shard = part.shard.as_ref().unwrap();
        assert_eq!((shard.index, shard.count), (i as u32 + 1, 4), "{context}");
        // Every shard compared a quarter or so, not everything.
        let compared = part.totals.rows_compared;
        assert!(
            (1000..=1600).contains(&compared),
            "{context}: shard {} compared {compared} keys of {}",
            i + 1,
            whole.totals.rows_compared
        );
    }
    let runs = store.group_runs("people", "nightly").await.unwrap();
    assert_eq!(runs.len(), 4, "{context}");
    let merged = merge_shards("people", "nightly", &runs).unwrap();
    assert_eq!(merged.status, whole.status, "{context}");
    assert_eq!(merged.totals, whole.totals, "{context}\n{}", merged.to_human());
    if strategy == Strategy::Merge {
        // Read the same way, the tables' reports are equal field by field.
        assert_eq!(merged.tables, whole.tables, "{context}");
    } else {
        let tables = |report: &Report| report.tables.iter().map(findings_of).collect::<Vec<_>>();
        assert_eq!(tables(&merged), tables(&whole), "{context}");
    }
    assert!(
        whole.totals.missing > 50 && whole.totals.extra == 40,
        "{context}: {:?}",
        whole.totals
    );
    // The shards' runs leave the watermark alone: each saw part of the keys.
    assert_eq!(
        store.watermark("people").await.unwrap().map(|w| w.run_id),
        None,
        "{context}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_merged_report_of_four_shards_equals_one_process_report() {
    for (legacy, service, strategy) in [
        (Engine::Sqlite, Engine::Sqlite, Strategy::Merge),
        (Engine::Postgres, Engine::Postgres, Strategy::Merge),
        (Engine::Postgres, Engine::Postgres, Strategy::Bisect),
        (Engine::MySql, Engine::MySql, Strategy::Auto),
        (Engine::MySql, Engine::Postgres, Strategy::Merge),
    ] {
        sharded(legacy, service, strategy).await;
    }
}

#[tokio::test]
async fn a_group_with_a_shard_missing_or_cut_differently_is_not_merged() {
    let Some((legacy, service)) = diverged(Engine::Sqlite, Engine::Sqlite).await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let store = RunStore::open(&DatabaseUrl::sqlite_file(&dir.path().join("toolkit.db")))
        .await
        .unwrap();
    let text = clients_mapping("");
    let mapping = mapping(&text);
    let capability = mapping.capability("people").unwrap();
    let run = |index, count| {
        let options = Options {
            shard: Some(ShardSpec {
                group: "g".to_owned(),
                shard: ShardIndex { index, count },
                store: None,
            }),
            ..Options::default()
        };
        let (store, legacy, service) = (&store, &legacy, &service);
        async move { reconcile_and_record(Some(store), capability, legacy.url(), service.url(), &options).await }
    };
    for index in [1, 3] {
        run(index, 3).await.unwrap();
    }
    let runs = store.group_runs("people", "g").await.unwrap();
    let error = merge_shards("people", "g", &runs).unwrap_err().chain();
    assert!(
        error.contains("shard 2/3 has no run") && error.contains("--shard I/3 --group g"),
        "{error}"
    );
    // A process started as one of four in a group cut into three is refused
    // before it compares anything.
    let error = run(2, 4).await.unwrap_err().chain();
    assert!(error.contains("was cut into 3 shards"), "{error}");
    let error = merge_shards("people", "none", &[]).unwrap_err().chain();
    assert!(
        error.contains("no run of `people` is recorded in run group `none`"),
        "{error}"
    );
}
