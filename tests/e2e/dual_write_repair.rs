//! The orders capability's dual-write loop, end to end, with the shipped
//! mapping: the orders service drops dual writes on purpose, the reconciler
//! reports exactly the dropped orders, the repair writes them into the
//! monolith as the service's, and the next run is clean. The reconciler is
//! called as `strangler reconcile run|repair` calls it, recording each run
//! in a toolkit store.

use mapping::Mapping;
use orders_service::dual_write::DualWriteConfig;
use reconciler::repair::{apply_repair, plan_repair, Action};
use reconciler::report::Status;
use reconciler::{reconcile_and_record, Options, Report, RunStore};
use serde_json::{json, Value};
use test_harness::{workspace_path, Engine};
use toolkit_db::DatabaseUrl;

use crate::helpers::{count, ints, spawn_stack, Stack};

/// Drops about half of the dual writes.
const FAULTY: DualWriteConfig = DualWriteConfig {
    enabled: true,
    fault_rate: 0.5,
};

fn mapping() -> Mapping {
    Mapping::load(&workspace_path("demo/mapping.toml")).unwrap()
}

async fn reconcile(stack: &Stack, store: &RunStore) -> Report {
    let mapping = mapping();
    reconcile_and_record(
        Some(store),
        mapping.capability("orders").unwrap(),
        &stack.monolith_url,
        &stack.orders_url,
        &Options::default(),
    )
    .await
    .unwrap()
}

/// Plans the repair of `report` and, with `apply`, applies it to the
/// monolith (the follower); returns the plan.
async fn repair(stack: &Stack, report: &Report, apply: bool) -> reconciler::repair::RepairPlan {
    let mapping = mapping();
    let capability = mapping.capability("orders").unwrap();
    let timeout = Options::default().statement_timeout;
    let plan = plan_repair(
        capability,
        report,
        &stack.monolith_url,
        &stack.orders_url,
        timeout,
    )
    .await
    .unwrap();
    if apply {
        let applied = apply_repair(&plan, &stack.monolith_url, 100).await.unwrap();
        assert_eq!(applied, plan.statements.len());
    }
    plan
}

async fn store(dir: &tempfile::TempDir) -> RunStore {
    RunStore::open(&DatabaseUrl::sqlite_file(&dir.path().join("toolkit.db")))
        .await
        .unwrap()
}

/// Places an order through the orders service; returns its id and lines.
async fn place(stack: &Stack, customer_id: i64, lines: usize) -> (i64, usize) {
    let lines: Vec<Value> = (0..lines)
        .map(|i| json!({ "product_id": 1 + (i as i64 % 10), "quantity": 1 }))
        .collect();
    let response = stack
        .client
        .post(format!("{}/orders", stack.orders))
        .json(&json!({ "customer_id": customer_id, "lines": lines }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let order: Value = response.json().await.unwrap();
    (order["id"].as_i64().unwrap(), lines.len())
}

async fn in_monolith(stack: &Stack, id: i64) -> bool {
    ints(
        &stack.monolith_db,
        "SELECT COUNT(*) FROM orders WHERE id = $1",
        id,
    )
    .await
        == [1]
}

/// Keys as the report lists them.
fn keys(report: &Report, table: &str, extra: bool) -> Vec<Value> {
    let table = report.tables.iter().find(|t| t.legacy_table == table).unwrap();
    let list = if extra { &table.extra } else { &table.missing };
    list.iter().map(|k| Value::from(k.key.clone())).collect()
}

async fn dropped_dual_writes_are_reported_and_repaired(engine: Engine) {
    let Some(stack) = spawn_stack(engine, FAULTY).await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let store = store(&dir).await;
    // Place orders until some dual writes were dropped and some went through.
    let (mut dropped, mut written) = (Vec::new(), 0);
    for n in 0..60 {
        let (id, lines) = place(&stack, 1 + n % 5, 1 + (n as usize % 3)).await;
        if in_monolith(&stack, id).await {
            written += 1;
        } else {
            dropped.push((id, lines));
        }
        if dropped.len() >= 2 && written >= 2 {
            break;
        }
    }
    assert!(
        dropped.len() >= 2 && written >= 2,
        "{dropped:?}, {written} written"
    );
    let dual: Value = stack
        .client
        .get(format!("{}/internal/dual-write", stack.orders))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(dual["dropped_by_fault_injection"], dropped.len());

    // Exactly the dropped orders and their lines: only in the service.
    let report = reconcile(&stack, &store).await;
    assert_eq!(report.status, Status::Diverged);
    let line_count: usize = dropped.iter().map(|(_, lines)| lines).sum();
    assert_eq!(
        (report.totals.missing, report.totals.extra, report.totals.changed),
        (0, (dropped.len() + line_count) as u64, 0),
        "{report:?}"
    );
    let expected: Vec<Value> = dropped.iter().map(|(id, _)| json!([id])).collect();
    assert_eq!(keys(&report, "orders", true), expected);
    let expected_lines: Vec<Value> = dropped
        .iter()
        .flat_map(|(id, lines)| (1..=*lines as i64).map(move |n| json!([id, n])))
        .collect();
    assert_eq!(keys(&report, "order_lines", true), expected_lines);

    // The plan inserts them into the monolith, orders before their lines,
    // and a dry run changes nothing.
    let plan = repair(&stack, &report, false).await;
    assert_eq!(plan.follower, mapping::Side::Legacy);
    assert!(plan.skipped.is_empty(), "{:?}", plan.skipped);
    assert_eq!(plan.statements.len(), dropped.len() + line_count);
    assert!(plan.statements.iter().all(|s| s.action == Action::Insert));
    let tables: Vec<&str> = plan.statements.iter().map(|s| s.table.as_str()).collect();
    let first_line = tables.iter().position(|t| *t == "order_lines").unwrap();
    assert!(tables[..first_line].iter().all(|t| *t == "orders"), "{tables:?}");
    assert!(
        plan.statements[0].display.contains("'orders-service'"),
        "{}",
        plan.statements[0].display
    );
    assert!(!in_monolith(&stack, dropped[0].0).await);

    let plan = repair(&stack, &report, true).await;
    let after = reconcile(&stack, &store).await;
    assert_eq!(after.status, Status::Clean, "{after:?}");
    assert_eq!(after.totals.rows_compared, report.totals.rows_compared);
    // Repaired orders are the service's, as their dual writes would have
    // made them, and the monolith serves them exactly as the service does.
    assert_eq!(
        count(
            &stack.monolith_db,
            "SELECT COUNT(*) FROM orders WHERE origin = $1",
            "orders-service"
        )
        .await,
        (dropped.len() + written) as i64
    );
    for (id, _) in &dropped {
        let from = |base: &str| {
            let url = format!("{base}/orders/{id}");
            let client = stack.client.clone();
            async move {
                client
                    .get(url)
                    .send()
                    .await
                    .unwrap()
                    .json::<Value>()
                    .await
                    .unwrap()
            }
        };
        assert_eq!(from(&stack.monolith).await, from(&stack.orders).await);
    }
    assert!(!plan.statements.is_empty());
    // Every run is recorded: the gate reads the latest one.
    let runs = store.runs("orders").await.unwrap();
    let statuses: Vec<&str> = runs.iter().map(|r| r.status.as_str()).collect();
    assert_eq!(statuses, ["diverged", "clean"]);
}

async fn a_repair_never_touches_an_order_the_monolith_placed(engine: Engine) {
    let Some(stack) = spawn_stack(engine, FAULTY).await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let store = store(&dir).await;
    // An order placed in the monolith after the backfill: the service lacks
    // it, but it is the monolith's own, so no repair may delete it.
    let response = stack
        .client
        .post(format!("{}/orders", stack.monolith))
        .json(&json!({ "customer_id": 2, "lines": [{ "product_id": 3, "quantity": 1 }] }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let id = response.json::<Value>().await.unwrap()["id"].as_i64().unwrap();
    let report = reconcile(&stack, &store).await;
    assert_eq!(keys(&report, "orders", false), [json!([id])]);
    assert_eq!(keys(&report, "order_lines", false), [json!([id, 1])]);
    let plan = repair(&stack, &report, true).await;
    assert!(plan.statements.is_empty(), "{:?}", plan.statements);
    let skipped: Vec<(&str, Action, Value)> = plan
        .skipped
        .iter()
        .map(|s| (s.table.as_str(), s.action, Value::from(s.key.clone())))
        .collect();
    assert_eq!(
        skipped,
        [
            ("orders", Action::Delete, json!([id])),
            ("order_lines", Action::Delete, json!([id, 1])),
        ]
    );
    assert!(plan.skipped[0].reason.contains("repair_filter"));
    assert!(in_monolith(&stack, id).await);
    // The backfill is what copies the monolith's own orders.
    let mapping = mapping();
    let copied = backfill::backfill(
        mapping.capability("orders").unwrap(),
        &stack.monolith_db,
        &stack.orders_db,
        backfill::BackfillOptions::default(),
    )
    .await
    .unwrap();
    assert!(copied.iter().all(|r| r.complete));
    assert_eq!(reconcile(&stack, &store).await.status, Status::Clean);
}

test_harness::on_each_engine!(
    dropped_dual_writes_are_reported_and_repaired,
    a_repair_never_touches_an_order_the_monolith_placed,
);
