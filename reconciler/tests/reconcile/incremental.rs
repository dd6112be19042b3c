//! Incremental runs: after a clean run, only the rows changed since (less
//! the overlap) are compared, row counts and key sums catch one-sided
//! deletes, and the store's watermark moves only with a clean run.

use chrono::{DateTime, Duration, Utc};
use reconciler::{reconcile, reconcile_and_record, Method, Mode, Options, RunKind, RunStore, Status};
use test_harness::Engine;
use toolkit_db::DatabaseUrl;

use crate::helpers::{assert_findings, exec, mapping, mapping_text, pair_holding, same};

const TABLES: &str = r#"CREATE TABLE "orders" ("id" {INT} PRIMARY KEY, "status" {TEXT} NOT NULL, "updated_at" {TS} NOT NULL);
CREATE TABLE "tags" ("id" {INT} PRIMARY KEY, "label" {TEXT} NOT NULL)"#;

/// `orders`, with a change time, and `tags`, without one.
fn text() -> String {
    let orders = mapping_text(
        "orders",
        ("orders", "orders"),
        &["id"],
        &same(&["id", "status", "updated_at"]),
        "normalize = { updated_at = \"timestamp_ms\" }\nupdated_at_column = \"updated_at\"\n",
    );
    let tags = mapping_text("orders", ("tags", "tags"), &["id"], &same(&["id", "label"]), "");
    format!("{orders}\n{tags}")
}

/// A change time as a literal of the `{TS}` column.
fn at(time: DateTime<Utc>) -> String {
    format!("'{}{{Z}}'", time.format("%Y-%m-%d %H:%M:%S%.3f"))
}

/// Orders 1 to `rows`, placed at `when`, in statements of 500 rows.
fn orders(rows: u32, when: DateTime<Utc>) -> String {
    (1..=rows)
        .collect::<Vec<_>>()
        .chunks(500)
        .map(|chunk| {
            let values: Vec<String> = chunk
                .iter()
                .map(|id| format!("({id}, 'placed', {})", at(when)))
                .collect();
            format!("INSERT INTO \"orders\" VALUES {}", values.join(", "))
        })
        .collect::<Vec<_>>()
        .join(";\n")
}

async fn incremental(legacy_engine: Engine, service_engine: Engine) {
    let Some((legacy, service)) = pair_holding(legacy_engine, service_engine, TABLES).await else {
        return;
    };
    let context = format!("{legacy_engine} → {service_engine}");
    let two_hours_ago = Utc::now() - Duration::hours(2);
    for db in [&legacy, &service] {
        exec(db, &orders(3000, two_hours_ago)).await;
        exec(db, r#"INSERT INTO "tags" VALUES (1, 'red'), (2, 'blue')"#).await;
    }
    let dir = tempfile::tempdir().unwrap();
    let store = RunStore::open(&DatabaseUrl::sqlite_file(&dir.path().join("toolkit.db")))
        .await
        .unwrap();
    let text = text();
    let mapping = mapping(&text);
    let capability = mapping.capability("orders").unwrap();
    let options = Options {
        mode: Mode::Incremental,
        bisect_leaf_rows: 100,
        ..Options::default()
    };
    let record = |options: Options| {
        let (store, legacy, service) = (&store, &legacy, &service);
        async move {
            reconcile_and_record(Some(store), capability, legacy.url(), service.url(), &options)
                .await
                .unwrap()
        }
    };

    // No clean run yet: the first is full, and says why.
    let first = record(options.clone()).await;
    assert_eq!(first.kind, RunKind::Full, "{context}");
    assert_eq!(first.status, Status::Clean, "{context}\n{}", first.to_human());
    let note = first.kind_note.clone().unwrap_or_default();
    assert!(
        note.starts_with("no clean run is recorded yet"),
        "{context}: {note}"
    );
    let watermark = store.watermark("orders").await.unwrap().unwrap();
    assert_eq!(watermark.full_at, Some(watermark.clean_from), "{context}");

    let now = Utc::now();
    let (now_at, behind) = (at(now), at(now - Duration::minutes(3)));
    exec(
        &legacy,
        &format!(
            "UPDATE \"orders\" SET \"status\" = 'shipped', \"updated_at\" = {now_at} WHERE \"id\" = 10;\n\
             UPDATE \"orders\" SET \"status\" = 'paid', \"updated_at\" = {now_at} WHERE \"id\" = 20;\n\
             INSERT INTO \"orders\" VALUES (5001, 'placed', {now_at});\n\
             DELETE FROM \"orders\" WHERE \"id\" IN (30, 40);\n\
             UPDATE \"orders\" SET \"status\" = 'late', \"updated_at\" = {behind} WHERE \"id\" = 50;\n\
             UPDATE \"tags\" SET \"label\" = 'green' WHERE \"id\" = 2"
        ),
    )
    .await;
    // An application server whose clock ran two hours behind: beyond the
    // overlap, so only a full run sees this change.
    let far_behind = at(now - Duration::hours(2));
    exec(
        &service,
        &format!(
            "UPDATE \"orders\" SET \"status\" = 'paid', \"updated_at\" = {now_at} WHERE \"id\" = 20;\n\
             INSERT INTO \"orders\" VALUES (5002, 'placed', {now_at});\n\
             DELETE FROM \"orders\" WHERE \"id\" IN (40, 2500);\n\
             UPDATE \"orders\" SET \"status\" = 'lost', \"updated_at\" = {far_behind} WHERE \"id\" = 2990"
        ),
    )
    .await;

    let second = record(options.clone()).await;
    let human = second.to_human();
    assert_eq!(second.kind, RunKind::Incremental, "{context}\n{human}");
    let since: DateTime<Utc> = second.since.as_deref().unwrap().parse().unwrap();
    assert_eq!(since, watermark.clean_from - Duration::minutes(5), "{context}");
    assert!(human.contains("incremental run: rows changed since"), "{human}");
    let orders = &second.tables[0];
    assert_eq!(orders.strategy, Method::Incremental, "{context}");
    // 30 and 2500, deleted on one side each, cancel in the counts; the key
    // sums tell them apart, and the ranges holding them are read.
    assert_findings(
        orders,
        [&["[2500]", "[5001]"], &["[30]", "[5002]"], &["[10]", "[50]"]],
        &format!("{context}\n{human}"),
    );
    assert_eq!(
        (orders.rows_legacy, orders.rows_service),
        (2999, 2999),
        "{context}"
    );
    assert!(
        orders.rows_fetched < 1000,
        "{context}: an incremental run read {} rows of 6000",
        orders.rows_fetched
    );
    let note = orders.strategy_note.clone().unwrap_or_default();
    assert!(note.starts_with("5 keys changed since"), "{context}: {note}");
    // The whole table's counts cancel; cut into sixteen, each delete lies
    // alone in a range where one side holds one row more: the key sums
    // name it, and no range is read.
    assert!(
        note.ends_with("; 2 rows on one side only found by key from the counts' key sums"),
        "{context}: {note}"
    );
    // A table without a change time is compared in full.
    let tags = &second.tables[1];
    assert_ne!(tags.strategy, Method::Incremental, "{context}");
    assert_findings(tags, [&[], &[], &["[2]"]], &context);
    // A diverged run leaves the watermark where the last clean run put it.
    assert_eq!(
        store.watermark("orders").await.unwrap(),
        Some(watermark),
        "{context}"
    );

    // Past the limit on changed keys held in memory, the table is merged
    // whole, and finds the same plus the change written two hours back.
    let limited = record(Options {
        changed_keys_limit: 3,
        ..options.clone()
    })
    .await;
    let orders = &limited.tables[0];
    assert_eq!(orders.strategy, Method::Merge, "{context}");
    let note = orders.strategy_note.clone().unwrap_or_default();
    assert!(
        note.starts_with("compared in full: more than 3 keys changed"),
        "{context}: {note}"
    );
    assert_findings(
        orders,
        [
            &["[2500]", "[5001]"],
            &["[30]", "[5002]"],
            &["[10]", "[50]", "[2990]"],
        ],
        &context,
    );

    // A full run sees the same, and the change written two hours back.
    let full = reconcile(capability, legacy.url(), service.url(), &Options::default())
        .await
        .unwrap();
    assert_eq!(full.kind, RunKind::Full);
    assert_findings(
        &full.tables[0],
        [
            &["[2500]", "[5001]"],
            &["[30]", "[5002]"],
            &["[10]", "[50]", "[2990]"],
        ],
        &context,
    );
}

#[tokio::test]
async fn incremental_runs_find_what_changed_since_the_last_clean_run_on_each_engine() {
    for (legacy, service) in [
        (Engine::Sqlite, Engine::Sqlite),
        (Engine::Postgres, Engine::Postgres),
        (Engine::MySql, Engine::MySql),
        (Engine::MySql, Engine::Postgres),
        (Engine::Sqlite, Engine::Postgres),
    ] {
        incremental(legacy, service).await;
    }
}

#[tokio::test]
async fn an_incremental_run_without_a_store_says_what_it_needs() {
    let Some((legacy, service)) = pair_holding(Engine::Sqlite, Engine::Sqlite, TABLES).await else {
        return;
    };
    let text = text();
    let mapping = mapping(&text);
    let options = Options {
        mode: Mode::Incremental,
        ..Options::default()
    };
    let error = reconcile(
        mapping.capability("orders").unwrap(),
        legacy.url(),
        service.url(),
        &options,
    )
    .await
    .unwrap_err()
    .chain();
    assert!(
        error.contains("an incremental run needs the toolkit store") && error.contains("--store-url"),
        "{error}"
    );
}

/// An `events` table of one integer key on both sides of a pair, the same
/// rows on each, its mapping, and a store of runs: what the delete checks
/// below work on.
struct Events {
    legacy: test_harness::TestDatabase,
    service: test_harness::TestDatabase,
    mapping: mapping::Mapping,
    store: RunStore,
    _dir: tempfile::TempDir,
}

impl Events {
    /// Rows with `ids` changed three hours ago on both sides of an `engine`
    /// pair, or `None` when its server is absent.
    async fn holding(engine: Engine, ids: impl Iterator<Item = i64>) -> Option<Self> {
        const EVENTS: &str = r#"CREATE TABLE "events" ("id" {INT} PRIMARY KEY, "kind" {TEXT} NOT NULL, "updated_at" {TS} NOT NULL)"#;
        let (legacy, service) = pair_holding(engine, engine, EVENTS).await?;
        let old = at(Utc::now() - Duration::hours(3));
        let rows: Vec<String> = ids.map(|id| format!("({id}, 'click', {old})")).collect();
        for db in [&legacy, &service] {
            exec(db, &format!("INSERT INTO \"events\" VALUES {}", rows.join(", "))).await;
        }
        let text = mapping_text(
            "events",
            ("events", "events"),
            &["id"],
            &same(&["id", "kind", "updated_at"]),
            "normalize = { updated_at = \"timestamp_ms\" }\nupdated_at_column = \"updated_at\"\n",
        );
        let dir = tempfile::tempdir().unwrap();
        let store = RunStore::open(&DatabaseUrl::sqlite_file(&dir.path().join("toolkit.db")))
            .await
            .unwrap();
        Some(Self {
            legacy,
            service,
            mapping: mapping(&text),
            store,
            _dir: dir,
        })
    }

    /// An incremental run (full when no clean run is recorded), ranges read
    /// whole from 20 rows.
    async fn run(&self) -> reconciler::Report {
        let options = Options {
            mode: Mode::Incremental,
            bisect_leaf_rows: 20,
            ..Options::default()
        };
        let capability = self.mapping.capability("events").unwrap();
        reconcile_and_record(
            Some(&self.store),
            capability,
            self.legacy.url(),
            self.service.url(),
            &options,
        )
        .await
        .unwrap()
    }
}

#[tokio::test]
async fn snowflake_keys_are_summed_without_overflow_and_a_lone_delete_is_found() {
    for engine in [Engine::Sqlite, Engine::Postgres, Engine::MySql] {
        // Ids near 10^18, as snowflake ids are: their plain sum overflows.
        let ids = (0..300).map(|i| 1_000_000_000_000_000_000i64 + i * 7_919);
        let Some(events) = Events::holding(engine, ids).await else {
            return;
        };
        assert_eq!(events.run().await.kind, RunKind::Full, "{engine}");
        let gone = 1_000_000_000_000_000_000i64 + 123 * 7_919;
        exec(
            &events.service,
            &format!("DELETE FROM \"events\" WHERE \"id\" = {gone}"),
        )
        .await;
        let report = events.run().await;
        assert_eq!(report.kind, RunKind::Incremental, "{engine}");
        let expected = format!("[{gone}]");
        assert_findings(
            &report.tables[0],
            [&[expected.as_str()], &[], &[]],
            &engine.to_string(),
        );
    }
}

/// One side holds one row more in a range, but not because of one row:
/// the key sums then name a key both sides hold, the lookup refuses it,
/// and the range is narrowed as before.
#[tokio::test]
async fn a_key_the_sums_name_wrongly_is_not_taken() {
    for engine in [Engine::Sqlite, Engine::Postgres] {
        let Some(events) = Events::holding(engine, 1..=2000).await else {
            return;
        };
        assert_eq!(events.run().await.kind, RunKind::Full, "{engine}");
        // The monolith holds one row more, in the whole table and in the
        // first of sixteen ranges, and the sums' difference, 10 + 20 - 5,
        // is 25, which both sides hold.
        exec(&events.service, "DELETE FROM \"events\" WHERE \"id\" IN (10, 20)").await;
        exec(&events.legacy, "DELETE FROM \"events\" WHERE \"id\" = 5").await;
        let report = events.run().await;
        assert_eq!(report.kind, RunKind::Incremental, "{engine}");
        let table = &report.tables[0];
        assert_findings(table, [&["[10]", "[20]"], &["[5]"], &[]], &engine.to_string());
        // Narrowed, the range's pieces hold one of them each, and there
        // the sums name each one rightly.
        let note = table.strategy_note.clone().unwrap_or_default();
        assert!(
            note.ends_with("; 3 rows on one side only found by key from the counts' key sums"),
            "{engine}: {note}"
        );
    }
}
