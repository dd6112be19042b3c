//! Repair: planned from a fresh report, applied to the follower, verified
//! clean by the next comparison; refused where values cannot be derived.

use reconciler::repair::{apply_repair, plan_repair, Action, RepairPlan};
use reconciler::{Options, ReconcileError, Report, Status};
use std::time::Duration;
use test_harness::{Database, Engine, TestDatabase};

use crate::helpers::{clients_mapping, customers_and_clients, each_pairing, mapping, pair, run, PAIRINGS};

/// [`clients_mapping`] with `source_of_truth` its capability's, and `more`.
fn truth_mapping(source_of_truth: &str, more: &str) -> String {
    format!(
        "[capabilities.people]\nsource_of_truth = \"{source_of_truth}\"\n{}",
        clients_mapping(more)
    )
}

async fn diverged(legacy_engine: Engine, service_engine: Engine) -> Option<(TestDatabase, TestDatabase)> {
    let (legacy, service) = pair(legacy_engine, service_engine).await?;
    customers_and_clients(
        &legacy,
        &service,
        "(1, 'ann', 'a@x', 10), (2, 'bob', NULL, 20), (3, 'it''s cid', 'c@x', NULL), (4, 'dan', 'd@x', 40)",
        "(1, 'ann', 'a@x', 10), (2, 'bob', 'b@x', 20), (3, 'it''s cid', 'c@x', 30), (5, 'eve', 'e@x', 50)",
    )
    .await;
    Some((legacy, service))
}

/// Compares `people` as `text` maps it, and plans its repair from the report.
async fn compare_and_plan(
    text: &str,
    legacy: &TestDatabase,
    service: &TestDatabase,
) -> (Report, Result<RepairPlan, ReconcileError>) {
    let report = run(text, "people", legacy, service, &Options::default())
        .await
        .unwrap();
    let mapping = mapping(text);
    let capability = mapping.capability("people").unwrap();
    let plan = plan_repair(
        capability,
        &report,
        legacy.url(),
        service.url(),
        Duration::from_secs(10),
    )
    .await;
    (report, plan)
}

async fn repair_makes_the_follower_match(legacy_engine: Engine, service_engine: Engine) {
    for truth in ["legacy", "service"] {
        let Some((legacy, service)) = diverged(legacy_engine, service_engine).await else {
            return;
        };
        let text = truth_mapping(truth, "");
        let (report, plan) = compare_and_plan(&text, &legacy, &service).await;
        assert_eq!(
            (report.totals.missing, report.totals.extra, report.totals.changed),
            (1, 1, 2)
        );
        let plan = plan.unwrap();
        let actions: Vec<Action> = plan.statements.iter().map(|s| s.action).collect();
        assert_eq!(
            actions,
            [Action::Delete, Action::Insert, Action::Update, Action::Update],
            "{plan:?}"
        );
        // The plan reads as SQL with the values in it, quotes doubled.
        let shown: Vec<&str> = plan.statements.iter().map(|s| s.display.as_str()).collect();
        assert!(shown.iter().any(|s| s.contains("'it''s cid'")), "{shown:?}");

        // Nothing was written by planning.
        let again = run(&text, "people", &legacy, &service, &Options::default())
            .await
            .unwrap();
        assert_eq!(again.totals, report.totals);

        let follower = if truth == "legacy" {
            service.url()
        } else {
            legacy.url()
        };
        assert_eq!(apply_repair(&plan, follower, 2).await.unwrap(), 4);
        let after = run(&text, "people", &legacy, &service, &Options::default())
            .await
            .unwrap();
        assert_eq!(
            after.status,
            Status::Clean,
            "{legacy_engine} → {service_engine}, truth {truth}: {}",
            after.to_human()
        );
    }
}

#[tokio::test]
async fn every_pairing_is_repaired_in_either_direction() {
    each_pairing(&PAIRINGS, repair_makes_the_follower_match).await;
}

#[tokio::test]
async fn normalized_columns_are_not_repaired_automatically() {
    let Some((legacy, service)) = diverged(Engine::Sqlite, Engine::Sqlite).await else {
        return;
    };
    let text = truth_mapping("legacy", r#"normalize = { name = "lower" }"#);
    let error = compare_and_plan(&text, &legacy, &service)
        .await
        .1
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("`customers`") && error.contains("`name`") && error.contains("by hand"),
        "{error}"
    );
}

/// Applies the plan of `service`'s repair (the monolith being the source
/// of truth) in batches of `batch` while another connection holds client 2
/// locked, under a statement timeout of 1 s; returns the error.
async fn apply_while_locked(legacy: &TestDatabase, service: &TestDatabase, batch: usize) -> ReconcileError {
    let text = truth_mapping("legacy", "");
    let report = run(&text, "people", legacy, service, &Options::default())
        .await
        .unwrap();
    let mapping = mapping(&text);
    let plan = plan_repair(
        mapping.capability("people").unwrap(),
        &report,
        legacy.url(),
        service.url(),
        Duration::from_secs(1),
    )
    .await
    .unwrap();
    // Delete 5, insert 4, update 2, update 3: the first update waits.
    let locker = Database::open(service.url()).await.unwrap();
    let mut lock = locker.pool().begin().await.unwrap();
    sqlx::query(r#"UPDATE clients SET score = score WHERE client_id = 2"#)
        .execute(&mut *lock)
        .await
        .unwrap();
    let result = tokio::time::timeout(Duration::from_secs(10), apply_repair(&plan, service.url(), batch))
        .await
        .expect("the repair outlived its timeout");
    lock.rollback().await.unwrap();
    locker.close().await;
    result.unwrap_err()
}

#[tokio::test]
async fn a_repair_that_waits_on_a_lock_times_out_and_says_what_was_applied() {
    for engine in [Engine::Postgres, Engine::MySql, Engine::Sqlite] {
        let Some((legacy, service)) = diverged(Engine::Sqlite, engine).await else {
            return;
        };
        let text = truth_mapping("legacy", "");
        let error = apply_while_locked(&legacy, &service, 100).await;
        let message = error.to_string();
        assert!(
            matches!(error, ReconcileError::ApplyTimeout { .. }),
            "{engine}: {message}"
        );
        assert!(
            message.starts_with("the service database did not answer within 1 s while applying the repair")
                && message.ends_with("nothing was applied: the transaction was rolled back"),
            "{engine}: {message}"
        );
        // Indeed nothing: the same divergences as before.
        let after = run(&text, "people", &legacy, &service, &Options::default())
            .await
            .unwrap();
        assert_eq!(
            (after.totals.missing, after.totals.extra, after.totals.changed),
            (1, 1, 2),
            "{engine}"
        );
        if engine == Engine::Sqlite {
            // The lock holds the whole file: the first batch waits too.
            continue;
        }
        // In batches of 2, the delete and the insert are committed first.
        let error = apply_while_locked(&legacy, &service, 2).await.to_string();
        assert!(
            error.contains("(running `UPDATE")
                && error.ends_with(
                    "the 2 statements committed before it stay applied, and the 2 statements of the transaction \
                     that timed out were rolled back; re-run to plan the rest"
                ),
            "{engine}: {error}"
        );
        let after = run(&text, "people", &legacy, &service, &Options::default())
            .await
            .unwrap();
        assert_eq!(
            (after.totals.missing, after.totals.extra, after.totals.changed),
            (0, 0, 2),
            "{engine}"
        );
    }
}
