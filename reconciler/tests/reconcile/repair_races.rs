//! A repair while the application keeps writing: every statement is
//! compare-and-set, so a write to the follower after the report (before
//! the plan, between plan and apply, or while the repair runs) is never
//! overwritten. The rows it touched are listed as changed since the report,
//! and a fresh repair once the writes stop converges to clean.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use reconciler::repair::{apply_plan, plan_repair, Action, Applied, ApplyOptions, RepairPlan, SkipCause};
use reconciler::{Options, Report, Status};
use test_harness::{Database, Engine, SqlValue, TestDatabase};

use crate::helpers::{clients_mapping, customers_and_clients, exec, mapping, pair, run};

/// The monolith is the source of truth; the service's `clients` follow.
fn people() -> String {
    format!(
        "[capabilities.people]\nsource_of_truth = \"legacy\"\n{}",
        clients_mapping("")
    )
}

/// Five divergences: 2 and 3 changed, 4 and 6 missing from the service, 5
/// extra there.
async fn diverged(service_engine: Engine) -> Option<(TestDatabase, TestDatabase)> {
    let (legacy, service) = pair(Engine::Sqlite, service_engine).await?;
    customers_and_clients(
        &legacy,
        &service,
        "(1, 'ann', 'a@x', 10), (2, 'bob', NULL, 20), (3, 'cid', 'c@x', NULL), (4, 'dan', 'd@x', 40), (6, 'fay', 'f@x', 60)",
        "(1, 'ann', 'a@x', 10), (2, 'bob', 'b@x', 20), (3, 'cid', 'c@x', 30), (5, 'eve', 'e@x', 50)",
    )
    .await;
    Some((legacy, service))
}

async fn compare(text: &str, legacy: &TestDatabase, service: &TestDatabase) -> Report {
    run(text, "people", legacy, service, &Options::default())
        .await
        .unwrap()
}

async fn plan(text: &str, report: &Report, legacy: &TestDatabase, service: &TestDatabase) -> RepairPlan {
    let mapping = mapping(text);
    plan_repair(
        mapping.capability("people").unwrap(),
        report,
        legacy.url(),
        service.url(),
        Duration::from_secs(10),
    )
    .await
    .unwrap()
}

async fn apply(plan: &RepairPlan, follower: &TestDatabase, batch: usize) -> Applied {
    let options = ApplyOptions {
        batch,
        ..ApplyOptions::default()
    };
    apply_plan(plan, follower.url(), &options).await.unwrap()
}

/// The writes another client makes to the service: client 2 gets a new
/// email, 3 is deleted, 4 is inserted with its own values, 5 gets a new
/// score. Client 6 is left alone.
const WRITES: &str = "UPDATE \"clients\" SET \"email\" = 'new@x' WHERE \"client_id\" = 2;\n\
    DELETE FROM \"clients\" WHERE \"client_id\" = 3;\n\
    INSERT INTO \"clients\" VALUES (4, 'dan (service)', 'd@service', 44);\n\
    UPDATE \"clients\" SET \"score\" = 55 WHERE \"client_id\" = 5";

/// Every client of the service, by id: name, email, score.
async fn clients(service: &TestDatabase) -> BTreeMap<i64, (String, Option<String>, Option<i64>)> {
    let db = Database::open(service.url()).await.unwrap();
    let rows = test_harness::snapshot(&db, &["clients"]).await;
    db.close().await;
    // MySQL's TEXT comes back as bytes.
    let text = |value: &SqlValue| match value {
        SqlValue::Text(text) => Some(text.clone()),
        SqlValue::Bytes(bytes) => Some(String::from_utf8_lossy(bytes).into_owned()),
        _ => None,
    };
    rows[0]
        .1
        .iter()
        .map(|row| match row.as_slice() {
            [SqlValue::Int(id), name, email, score] => {
                let score = match score {
                    SqlValue::Int(s) => Some(*s),
                    _ => None,
                };
                (*id, (text(name).unwrap_or_default(), text(email), score))
            }
            other => panic!("unexpected row {other:?}"),
        })
        .collect()
}

/// The writes of [`WRITES`] are all still there.
async fn assert_writes_kept(service: &TestDatabase, context: &str) {
    let clients = clients(service).await;
    assert_eq!(clients[&2].1.as_deref(), Some("new@x"), "{context}: {clients:?}");
    assert!(!clients.contains_key(&3), "{context}: {clients:?}");
    assert_eq!(clients[&4].0, "dan (service)", "{context}: {clients:?}");
    assert_eq!(clients[&5].2, Some(55), "{context}: {clients:?}");
}

/// `(key, action, cause)` of skipped entries, sorted.
fn skipped(entries: &[reconciler::repair::Skipped]) -> Vec<(String, Action, SkipCause)> {
    let mut list: Vec<_> = entries
        .iter()
        .map(|s| (reconciler::key_text::key_text(&s.key), s.action, s.cause))
        .collect();
    list.sort_by(|a, b| a.0.cmp(&b.0));
    list
}

/// The four divergences [`WRITES`] touches, changed since the report.
fn touched() -> Vec<(String, Action, SkipCause)> {
    let changed = SkipCause::ChangedSinceReport;
    vec![
        ("2".to_owned(), Action::Update, changed),
        ("3".to_owned(), Action::Update, changed),
        ("4".to_owned(), Action::Insert, changed),
        ("5".to_owned(), Action::Delete, changed),
    ]
}

/// Once the writes stop, compare again and repair afresh: clean.
async fn converges(text: &str, legacy: &TestDatabase, service: &TestDatabase, context: &str) {
    let report = compare(text, legacy, service).await;
    let plan = plan(text, &report, legacy, service).await;
    assert!(plan.skipped.is_empty(), "{context}: {:?}", plan.skipped);
    let applied = apply(&plan, service, 100).await;
    assert_eq!(applied.repaired, plan.statements.len(), "{context}: {applied:?}");
    let after = compare(text, legacy, service).await;
    assert_eq!(after.status, Status::Clean, "{context}: {}", after.to_human());
}

#[tokio::test]
async fn writes_between_plan_and_apply_are_not_overwritten() {
    for engine in [Engine::Postgres, Engine::MySql, Engine::Sqlite] {
        let Some((legacy, service)) = diverged(engine).await else {
            return;
        };
        let text = people();
        let report = compare(&text, &legacy, &service).await;
        let plan = plan(&text, &report, &legacy, &service).await;
        assert_eq!(plan.statements.len(), 5, "{engine}: {plan:?}");
        assert!(plan.skipped.is_empty(), "{engine}");
        // Each statement finds its row by what the plan read, NULL-safe.
        let update_2 = plan
            .statements
            .iter()
            .find(|s| s.action == Action::Update && s.key == [serde_json::json!(2)])
            .unwrap();
        assert!(
            update_2.display.contains("'b@x'"),
            "{engine}: {}",
            update_2.display
        );

        exec(&service, WRITES).await;
        let applied = apply(&plan, &service, 2).await;
        assert_eq!(
            (applied.statements, applied.repaired, applied.changed_since_report),
            (5, 1, 4),
            "{engine}: {applied:?}"
        );
        assert_eq!(skipped(&applied.skipped), touched(), "{engine}");
        assert!(
            applied
                .skipped
                .iter()
                .all(|s| s.reason.starts_with("changed since the report, not repaired")),
            "{engine}: {:?}",
            applied.skipped
        );
        assert_writes_kept(&service, &engine.to_string()).await;
        // The untouched divergence was repaired.
        assert_eq!(clients(&service).await[&6].0, "fay", "{engine}");
        converges(&text, &legacy, &service, &engine.to_string()).await;
    }
}

#[tokio::test]
async fn writes_between_report_and_plan_are_left_alone_by_the_plan() {
    for engine in [Engine::Postgres, Engine::MySql, Engine::Sqlite] {
        let Some((legacy, service)) = diverged(engine).await else {
            return;
        };
        let text = people();
        let report = compare(&text, &legacy, &service).await;
        exec(&service, WRITES).await;
        let plan = plan(&text, &report, &legacy, &service).await;
        // Only client 6 is left to insert.
        let planned: Vec<_> = plan
            .statements
            .iter()
            .map(|s| (s.action, s.key.clone()))
            .collect();
        assert_eq!(
            planned,
            [(Action::Insert, vec![serde_json::json!(6)])],
            "{engine}"
        );
        assert_eq!(skipped(&plan.skipped), touched(), "{engine}");
        let mut reasons: Vec<&str> = plan.skipped.iter().map(|s| s.reason.as_str()).collect();
        reasons.sort_unstable();
        assert_eq!(
            reasons,
            [
                "changed since the report, not repaired: the service database has a row with this key now",
                "changed since the report, not repaired: the service row is gone",
                "changed since the report, not repaired: the service row no longer holds what the report saw",
                "changed since the report, not repaired: the service row no longer holds what the report saw",
            ],
            "{engine}"
        );
        let applied = apply(&plan, &service, 100).await;
        assert_eq!((applied.repaired, applied.skipped.len()), (1, 0), "{engine}");
        assert_writes_kept(&service, &engine.to_string()).await;
        converges(&text, &legacy, &service, &engine.to_string()).await;
    }
}

/// Whether a session of `db`'s database waits for a lock.
async fn someone_waits(db: &Database, engine: Engine) -> bool {
    let sql = match engine {
        Engine::Postgres => {
            "SELECT COUNT(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
        }
        _ => {
            "SELECT COUNT(*) FROM information_schema.innodb_trx WHERE trx_state = 'LOCK WAIT' \
             AND trx_mysql_thread_id IN (SELECT id FROM information_schema.processlist WHERE db = DATABASE())"
        }
    };
    let waiting: i64 = sqlx::query_scalar(sql).fetch_one(db.pool()).await.unwrap();
    waiting > 0
}

/// Applies the plan of [`diverged`]'s repair after `committed` was written
/// and while another transaction, which made `writes` (both [`WRITES`]-like
/// templates), holds their rows (the whole file, on SQLite): the repair
/// waits for it, then finds every row it was planned against changed, or
/// its key taken. Returns what it did.
async fn apply_beside(
    engine: Engine,
    committed: &str,
    writes: &str,
) -> Option<(Applied, TestDatabase, TestDatabase)> {
    let (legacy, service) = diverged(engine).await?;
    let text = people();
    let report = compare(&text, &legacy, &service).await;
    let plan = plan(&text, &report, &legacy, &service).await;
    let writer = Database::open(service.url()).await.unwrap();
    for statement in crate::helpers::spell(engine, committed)
        .split(";\n")
        .filter(|s| !s.is_empty())
    {
        sqlx::query(statement).execute(writer.pool()).await.unwrap();
    }
    let mut tx = writer.pool().begin().await.unwrap();
    for statement in crate::helpers::spell(engine, writes).split(";\n") {
        sqlx::query(statement).execute(&mut *tx).await.unwrap();
    }
    let repair = tokio::spawn({
        let (plan, url) = (plan.clone(), service.url().clone());
        async move { apply_plan(&plan, &url, &ApplyOptions::default()).await }
    });
    if engine != Engine::Sqlite {
        // Seen waiting on the server, so that the race is the one tested.
        let observer = Database::open(service.url()).await.unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while !someone_waits(&observer, engine).await {
            if repair.is_finished() {
                panic!("{engine}: the repair did not wait: {:?}", repair.await);
            }
            assert!(Instant::now() < deadline, "{engine}: the repair never waited");
            // Polled, not slept on: a check every 150 ms, because MariaDB
            // refreshes `innodb_trx` only once nobody has read it for 100 ms.
            tokio::time::sleep(Duration::from_millis(150)).await;
        }
        observer.close().await;
    }
    tx.commit().await.unwrap();
    writer.close().await;
    Some((repair.await.unwrap().unwrap(), legacy, service))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repair_that_waits_for_a_writer_leaves_its_writes_alone() {
    for engine in [Engine::Postgres, Engine::MySql, Engine::Sqlite] {
        let Some((applied, legacy, service)) = apply_beside(engine, "", WRITES).await else {
            return;
        };
        assert_eq!(skipped(&applied.skipped), touched(), "{engine}: {applied:?}");
        assert_eq!(applied.repaired, 1, "{engine}");
        assert_writes_kept(&service, &engine.to_string()).await;
        converges(&people(), &legacy, &service, &engine.to_string()).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_insert_racing_the_writers_insert_of_the_same_key_does_nothing() {
    // The repair's first statements run until its insert of client 4 waits
    // on the writer's uncommitted insert: the key's unique index on
    // PostgreSQL (ON CONFLICT DO NOTHING), the record lock on MariaDB.
    let insert = "INSERT INTO \"clients\" VALUES (4, 'dan (service)', 'd@service', 44)";
    for engine in [Engine::Postgres, Engine::MySql, Engine::Sqlite] {
        let Some((applied, legacy, service)) = apply_beside(engine, "", insert).await else {
            return;
        };
        let expected = vec![("4".to_owned(), Action::Insert, SkipCause::ChangedSinceReport)];
        assert_eq!(skipped(&applied.skipped), expected, "{engine}: {applied:?}");
        assert_eq!(applied.repaired, 4, "{engine}");
        assert_eq!(clients(&service).await[&4].0, "dan (service)", "{engine}");
        converges(&people(), &legacy, &service, &engine.to_string()).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_insert_racing_a_writer_after_the_transaction_read_its_snapshot_does_nothing() {
    // Client 4 is there before the repair starts, so its insert changes
    // nothing and the probe that tells why reads first in the transaction:
    // on MariaDB that fixes the transaction's snapshot before the writer
    // commits client 6. The insert of 6 then waits, sees the writer's row
    // and changes nothing; a probe on the snapshot would not see that row
    // and mistake the race for another unique value clashing.
    let earlier = "INSERT INTO \"clients\" VALUES (4, 'dan (service)', 'd@service', 44)";
    let insert = "INSERT INTO \"clients\" VALUES (6, 'fay (service)', 'f@service', 66)";
    for engine in [Engine::Postgres, Engine::MySql, Engine::Sqlite] {
        let Some((applied, legacy, service)) = apply_beside(engine, earlier, insert).await else {
            return;
        };
        let expected = vec![
            ("4".to_owned(), Action::Insert, SkipCause::ChangedSinceReport),
            ("6".to_owned(), Action::Insert, SkipCause::ChangedSinceReport),
        ];
        assert_eq!(skipped(&applied.skipped), expected, "{engine}: {applied:?}");
        assert_eq!(applied.repaired, 3, "{engine}");
        assert_eq!(clients(&service).await[&6].0, "fay (service)", "{engine}");
        converges(&people(), &legacy, &service, &engine.to_string()).await;
    }
}

/// Clients 1000 to 1599 on the monolith; in the service a third of them
/// changed, a third missing and as many extra.
async fn many_diverged(engine: Engine) -> Option<(TestDatabase, TestDatabase)> {
    let (legacy, service) = pair(Engine::Sqlite, engine).await?;
    let row = |id: u32, name: &str| format!("({id}, '{name}', 'mail {id}', {id})");
    let legacy_rows: Vec<String> = (1000..1600).map(|id| row(id, "c")).collect();
    let service_rows: Vec<String> = (1000..1600)
        .filter_map(|id| match id % 3 {
            0 => Some(row(id, "c")),
            1 => Some(row(id, "stale")),
            _ => None,
        })
        .chain((2000..2200).map(|id| row(id, "extra")))
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

/// What the writer did last to a client.
#[derive(Debug, Clone, PartialEq)]
enum Last {
    Name(String),
    Deleted,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_writer_running_beside_the_repair_never_loses_a_write() {
    for engine in [Engine::Postgres, Engine::MySql, Engine::Sqlite] {
        let Some((legacy, service)) = many_diverged(engine).await else {
            return;
        };
        let text = people();
        let report = compare(&text, &legacy, &service).await;
        let plan = plan(&text, &report, &legacy, &service).await;
        assert_eq!(plan.statements.len(), 600, "{engine}");
        let stop = Arc::new(AtomicBool::new(false));
        // Updates, deletes and inserts of diverged clients, each under a
        // name never written before, until the repair is done.
        let writer = tokio::spawn({
            let (stop, url) = (Arc::clone(&stop), service.url().clone());
            async move {
                let db = Database::open(&url).await.unwrap();
                let mut last: BTreeMap<i64, Last> = BTreeMap::new();
                let mut n: i64 = 0;
                while !stop.load(Ordering::Relaxed) {
                    n += 1;
                    let k = (n / 3) % 200;
                    let name = format!("writer {n}");
                    // Missing keys are inserted or renamed; changed and
                    // extra ones renamed or deleted. A key the plan saw
                    // absent is never deleted again, nor one it saw present
                    // re-created: that would bring back the very state the
                    // plan read, which no compare-and-set can tell apart.
                    let (id, write) = match n % 3 {
                        0 => (1001 + 3 * k, n % 2 == 0),
                        1 => (1000 + 3 * k, n % 4 == 1),
                        _ => (2000 + k, n % 4 == 2),
                    };
                    let (sql, outcome) = if n % 3 == 0 && write {
                        (
                            format!("INSERT INTO clients VALUES ({id}, '{name}', NULL, {n})"),
                            Last::Name(name.clone()),
                        )
                    } else if n % 3 != 0 && write {
                        (
                            format!("DELETE FROM clients WHERE client_id = {id}"),
                            Last::Deleted,
                        )
                    } else {
                        (
                            format!("UPDATE clients SET full_name = '{name}' WHERE client_id = {id}"),
                            Last::Name(name.clone()),
                        )
                    };
                    let changed = match sqlx::query(&sql).execute(db.pool()).await {
                        Ok(done) => done.rows_affected(),
                        // The repair inserted the key first.
                        Err(error) if error.as_database_error().is_some_and(|e| e.is_unique_violation()) => 0,
                        Err(error) => panic!("{sql}: {error}"),
                    };
                    if changed > 0 {
                        last.insert(id, outcome);
                    }
                }
                db.close().await;
                last
            }
        });
        let applied = apply(&plan, &service, 5).await;
        stop.store(true, Ordering::Relaxed);
        let last = writer.await.unwrap();
        assert!(!last.is_empty(), "{engine}: the writer wrote nothing");
        let clients = clients(&service).await;
        for (id, outcome) in &last {
            let now = clients.get(id).map_or(Last::Deleted, |c| Last::Name(c.0.clone()));
            assert_eq!(
                &now, outcome,
                "{engine}: client {id} lost the writer's last write"
            );
        }
        assert_eq!(applied.statements, 600, "{engine}");
        assert_eq!(
            applied.repaired + applied.changed_since_report,
            600,
            "{engine}: {:?}",
            applied
                .skipped
                .iter()
                .find(|s| s.cause != SkipCause::ChangedSinceReport)
        );
        converges(&text, &legacy, &service, &engine.to_string()).await;
    }
}

#[tokio::test]
async fn a_row_touched_only_in_columns_not_compared_is_kept_by_its_updated_at() {
    // `note` is copied but not compared, and `updated_at` (a timestamp type
    // on PostgreSQL and MariaDB, read as text) is the mapping's
    // `updated_at_column`: a write that changes only those leaves every
    // compared value as it was, and the guard on `updated_at` still sees it.
    let table = "CREATE TABLE \"orders\" (\"id\" {INT} PRIMARY KEY, \"status\" {TEXT} NOT NULL, \
                 \"note\" {TEXT}, \"updated_at\" {TS} NOT NULL)";
    let text = format!(
        "[capabilities.orders]\nsource_of_truth = \"legacy\"\n{}",
        crate::helpers::mapping_text(
            "orders",
            ("orders", "orders"),
            &["id"],
            &crate::helpers::same(&["id", "status", "note", "updated_at"]),
            "ignore = [\"note\", \"updated_at\"]\nsettle_seconds = 30\nupdated_at_column = \"updated_at\"\n",
        )
    );
    for engine in [Engine::Postgres, Engine::MySql, Engine::Sqlite] {
        let Some((legacy, service)) = crate::helpers::pair_holding(Engine::Sqlite, engine, table).await
        else {
            return;
        };
        exec(
            &legacy,
            "INSERT INTO \"orders\" VALUES (1, 'placed', NULL, '2020-01-01 00:00:00')",
        )
        .await;
        exec(
            &service,
            "INSERT INTO \"orders\" VALUES (1, 'placed', NULL, '2020-01-01 00:00:00{Z}'), \
             (9, 'placed', 'n', '2020-01-01 00:00:00.123456{Z}')",
        )
        .await;
        let report = run(&text, "orders", &legacy, &service, &Options::default())
            .await
            .unwrap();
        let mapping = mapping(&text);
        let plan = plan_repair(
            mapping.capability("orders").unwrap(),
            &report,
            legacy.url(),
            service.url(),
            Duration::from_secs(10),
        )
        .await
        .unwrap();
        let [delete] = plan.statements.as_slice() else {
            panic!("{engine}: {plan:?}");
        };
        assert!(
            delete.display.contains("00:00:00.123456"),
            "{engine}: {}",
            delete.display
        );
        exec(
            &service,
            "UPDATE \"orders\" SET \"note\" = 'touched', \"updated_at\" = '2021-01-01 00:00:00{Z}' WHERE \"id\" = 9",
        )
        .await;
        let applied = apply(&plan, &service, 100).await;
        assert_eq!(applied.changed_since_report, 1, "{engine}: {applied:?}");
        let report = run(&text, "orders", &legacy, &service, &Options::default())
            .await
            .unwrap();
        assert_eq!(report.totals.extra, 1, "{engine}: row 9 is still there");
    }
}
