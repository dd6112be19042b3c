//! Repair: planned from a fresh report, applied to the follower, verified
//! clean by the next comparison; refused where values cannot be derived.

use mapping::Mapping;
use reconciler::repair::{apply_repair, plan_repair, Action};
use reconciler::{Options, Status};
use std::path::Path;
use std::time::Duration;
use test_harness::Engine;

use crate::helpers::{exec, pair, run, PAIRINGS};

fn mapping_text(source_of_truth: &str) -> String {
    format!(
        r#"
[capabilities.people]
source_of_truth = "{source_of_truth}"
[[capabilities.people.tables]]
legacy = "customers"
service = "clients"
key = ["id"]
columns = {{ id = "client_id", name = "full_name", email = "email", score = "score" }}
"#
    )
}

async fn diverged(
    legacy_engine: Engine,
    service_engine: Engine,
) -> Option<(test_harness::TestDatabase, test_harness::TestDatabase)> {
    let (legacy, service) = pair(legacy_engine, service_engine).await?;
    exec(
        &legacy,
        r#"CREATE TABLE "customers" ("id" {INT} PRIMARY KEY, "name" {TEXT} NOT NULL, "email" {TEXT}, "score" {INT});
INSERT INTO "customers" VALUES (1, 'ann', 'a@x', 10), (2, 'bob', NULL, 20), (3, 'it''s cid', 'c@x', NULL), (4, 'dan', 'd@x', 40)"#,
    )
    .await;
    exec(
        &service,
        r#"CREATE TABLE "clients" ("client_id" {INT} PRIMARY KEY, "full_name" {TEXT} NOT NULL, "email" {TEXT}, "score" {INT});
INSERT INTO "clients" VALUES (1, 'ann', 'a@x', 10), (2, 'bob', 'b@x', 20), (3, 'it''s cid', 'c@x', 30), (5, 'eve', 'e@x', 50)"#,
    )
    .await;
    Some((legacy, service))
}

async fn repair_makes_the_follower_match(legacy_engine: Engine, service_engine: Engine) {
    for truth in ["legacy", "service"] {
        let Some((legacy, service)) = diverged(legacy_engine, service_engine).await else {
            return;
        };
        let text = mapping_text(truth);
        let mapping = Mapping::parse(Path::new("m.toml"), &text).unwrap();
        let capability = mapping.capability("people").unwrap();
        let report = run(&text, "people", &legacy, &service, &Options::default())
            .await
            .unwrap();
        assert_eq!(
            (report.totals.missing, report.totals.extra, report.totals.changed),
            (1, 1, 2)
        );

        let plan = plan_repair(
            capability,
            &report,
            legacy.url(),
            service.url(),
            Duration::from_secs(10),
        )
        .await
        .unwrap();
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
    for (legacy, service) in PAIRINGS {
        repair_makes_the_follower_match(legacy, service).await;
    }
}

#[tokio::test]
async fn normalized_columns_are_not_repaired_automatically() {
    let Some((legacy, service)) = diverged(Engine::Sqlite, Engine::Sqlite).await else {
        return;
    };
    let text = format!("{}normalize = {{ name = \"lower\" }}\n", mapping_text("legacy"));
    let mapping = Mapping::parse(Path::new("m.toml"), &text).unwrap();
    let report = run(&text, "people", &legacy, &service, &Options::default())
        .await
        .unwrap();
    let error = plan_repair(
        mapping.capability("people").unwrap(),
        &report,
        legacy.url(),
        service.url(),
        Duration::from_secs(10),
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(
        error.contains("`customers`") && error.contains("`name`") && error.contains("by hand"),
        "{error}"
    );
}
