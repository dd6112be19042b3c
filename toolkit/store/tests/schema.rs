//! The toolkit schema applies on both engines, twice without harm, and
//! enforces its own rules.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed unwrap is a failed test

use test_harness::{Engine, TestDatabase};
use toolkit_store::StateStore;

async fn applies_and_enforces_its_rules(engine: Engine) {
    let Some(db) = TestDatabase::fresh(engine).await else {
        return;
    };
    let store = StateStore::open(db.url()).await.unwrap();
    // Opening again finds every migration applied and changes nothing.
    let again = StateStore::open(db.url()).await.unwrap();
    let pool = again.database().pool();
    sqlx::query("INSERT INTO route_state (capability, target, revision, updated_at) VALUES ('catalog', 'legacy', 1, 'now')")
        .execute(pool)
        .await
        .unwrap();
    sqlx::query(
        "INSERT INTO route_transitions (capability, from_target, to_target, actor, reason, at) \
         VALUES ('catalog', 'legacy', 'service', 'ops', 'cut over', 'now') RETURNING id",
    )
    .fetch_one(pool)
    .await
    .unwrap();
    let bad_share = sqlx::query(
        "INSERT INTO route_state (capability, target, canary_permille, revision, updated_at) VALUES ('orders', 'canary', 1001, 2, 'now')",
    )
    .execute(pool)
    .await;
    assert!(bad_share.is_err(), "a canary share above 100% must be refused");
    let bad_status = sqlx::query(
        "INSERT INTO reconciliation_runs (capability, status, started_at) VALUES ('orders', 'maybe', 'now')",
    )
    .execute(pool)
    .await;
    assert!(bad_status.is_err(), "an unknown run status must be refused");
    let (count,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM route_transitions")
        .fetch_one(store.database().pool())
        .await
        .unwrap();
    assert_eq!(count, 1);
}

test_harness::on_each_engine!(applies_and_enforces_its_rules);
