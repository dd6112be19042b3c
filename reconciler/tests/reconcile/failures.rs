//! Runs that cannot finish: a database unreachable or going down mid-run,
//! a mapping that does not match the schema. Each is a clear error naming
//! the side, never a password, and the run is recorded as failed.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use reconciler::{reconcile_and_record, Options, ReconcileError, RunStatus, RunStore};
use test_harness::{Engine, TestDatabase};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use toolkit_db::DatabaseUrl;

use crate::helpers::{exec, fresh, mapping, mapping_text, pair, run};

/// The mapping of `people`'s `id` and `name`: `legacy` the monolith's
/// table, `name` the service's name of the column, `more` added as it is.
fn people_mapping(legacy: &str, name: &str, more: &str) -> String {
    mapping_text(
        "people",
        (legacy, "people"),
        &["id"],
        &[("id", "id"), ("name", name)],
        more,
    )
}

async fn store() -> (tempfile::TempDir, RunStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = RunStore::open(&DatabaseUrl::sqlite_file(&dir.path().join("toolkit.db")))
        .await
        .unwrap();
    (dir, store)
}

async fn people(db: &TestDatabase, rows: u32) {
    exec(
        db,
        r#"CREATE TABLE "people" ("id" {INT} PRIMARY KEY, "name" {TEXT})"#,
    )
    .await;
    let fill = match db.engine() {
        Engine::Postgres => {
            format!("INSERT INTO people SELECT g, 'person number ' || g FROM generate_series(1, {rows}) g")
        }
        Engine::MySql => {
            format!("INSERT INTO people SELECT seq, CONCAT('person number ', seq) FROM seq_1_to_{rows}")
        }
        Engine::Sqlite => format!(
            "WITH RECURSIVE s(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM s WHERE n < {rows}) \
             INSERT INTO people SELECT n, 'person number ' || n FROM s"
        ),
    };
    exec(db, &fill).await;
}

/// The mapping of `people` as both sides have it.
fn plain() -> String {
    people_mapping("people", "name", "")
}

/// Both databases of a pairing, each with `rows` people, or `None` when a
/// server is absent.
async fn people_on_both(legacy: Engine, service: Engine, rows: u32) -> Option<(TestDatabase, TestDatabase)> {
    let (legacy, service) = pair(legacy, service).await?;
    people(&legacy, rows).await;
    people(&service, rows).await;
    Some((legacy, service))
}

/// Compares `people` as `text` maps it and records the run in `store`.
async fn record(
    store: &RunStore,
    text: &str,
    legacy: &DatabaseUrl,
    service: &DatabaseUrl,
    options: &Options,
) -> Result<reconciler::Report, ReconcileError> {
    let mapping = mapping(text);
    reconcile_and_record(
        Some(store),
        mapping.capability("people").unwrap(),
        legacy,
        service,
        options,
    )
    .await
}

#[tokio::test]
async fn an_unreachable_database_fails_clearly_without_its_password_and_is_recorded() {
    let legacy = fresh(Engine::Sqlite).await.unwrap();
    people(&legacy, 3).await;
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let (_dir, store) = store().await;
    for url in [
        format!("postgres://app:s3cret@127.0.0.1:{port}/shop"),
        format!("mariadb://app:s3cret@127.0.0.1:{port}/shop"),
    ] {
        let service = DatabaseUrl::parse(&url).unwrap();
        let error = record(&store, &plain(), legacy.url(), &service, &Options::default())
            .await
            .unwrap_err();
        let text = error.chain();
        assert!(matches!(error, ReconcileError::Connect { .. }), "{text}");
        assert!(
            text.contains("service database") && text.contains("app:***@"),
            "{text}"
        );
        assert!(!text.contains("s3cret"), "{text}");
    }
    let runs = store.runs("people").await.unwrap();
    assert_eq!(runs.len(), 2);
    for run in runs {
        assert_eq!(run.status, RunStatus::Failed);
        let error = run.error.unwrap();
        assert!(
            error.contains("cannot connect to the service database"),
            "{error}"
        );
        assert!(!error.contains("s3cret"), "{error}");
    }
}

/// Forwards connections to `target` and cuts every one of them once the
/// server has sent `limit` bytes in total: a database going down mid-run.
async fn cutting_proxy(target: String, limit: usize) -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let sent = Arc::new(AtomicUsize::new(0));
    tokio::spawn(async move {
        while let Ok((mut client, _)) = listener.accept().await {
            let Ok(mut server) = TcpStream::connect(&target).await else {
                continue;
            };
            let sent = sent.clone();
            tokio::spawn(async move {
                let (mut client_read, mut client_write) = client.split();
                let (mut server_read, mut server_write) = server.split();
                let upstream = tokio::io::copy(&mut client_read, &mut server_write);
                let downstream = async {
                    let mut buffer = vec![0; 8192];
                    loop {
                        let n = server_read.read(&mut buffer).await.unwrap_or(0);
                        if n == 0 || sent.fetch_add(n, Ordering::SeqCst) + n > limit {
                            return;
                        }
                        if client_write.write_all(&buffer[..n]).await.is_err() {
                            return;
                        }
                    }
                };
                tokio::select! {
                    _ = upstream => {}
                    () = downstream => {}
                }
            });
        }
    });
    address
}

#[tokio::test]
async fn a_database_going_down_mid_run_fails_the_run_and_is_recorded() {
    let Some((legacy, service)) = people_on_both(Engine::Sqlite, Engine::Postgres, 5000).await else {
        return;
    };
    // The service's URL, pointed at the proxy.
    let real = service.url().expose().to_owned();
    let after_scheme = &real["postgres://".len()..];
    let (user, rest) = after_scheme.split_once('@').unwrap();
    let (host, database) = rest.split_once('/').unwrap();
    let proxy = cutting_proxy(host.to_owned(), 60_000).await;
    let through_proxy = DatabaseUrl::parse(&format!("postgres://{user}@{proxy}/{database}")).unwrap();
    let (_dir, store) = store().await;
    let options = Options {
        batch_size: 100,
        ..Options::default()
    };
    let error = record(&store, &plain(), legacy.url(), &through_proxy, &options)
        .await
        .unwrap_err();
    let text = error.chain();
    assert!(
        matches!(error, ReconcileError::Query { .. }),
        "expected a failed query, got: {text}"
    );
    assert!(
        text.contains("the service database failed while reading table `people`"),
        "{text}"
    );
    let runs = store.runs("people").await.unwrap();
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].status, RunStatus::Failed);
    assert!(runs[0].report.is_none());
}

#[tokio::test]
async fn unknown_tables_and_columns_are_refused_before_comparing() {
    let Some((legacy, service)) = people_on_both(Engine::MySql, Engine::Sqlite, 3).await else {
        return;
    };
    let (_dir, store) = store().await;
    for (case, text, expected) in [
        (
            "an unknown service column",
            people_mapping("people", "full_name", ""),
            &["the service table `people` has no column `full_name`", "id, name"][..],
        ),
        (
            "an unknown monolith table",
            people_mapping("persons", "name", ""),
            &["the monolith database has no table `persons`"],
        ),
    ] {
        let error = record(&store, &text, legacy.url(), service.url(), &Options::default())
            .await
            .unwrap_err()
            .to_string();
        for part in expected {
            assert!(error.contains(part), "{case}: `{part}` not in: {error}");
        }
    }
    let runs = store.runs("people").await.unwrap();
    assert!(runs
        .iter()
        .all(|r| r.status == RunStatus::Failed && r.report.is_none()));
}

#[tokio::test]
async fn a_missing_sqlite_file_is_an_error_not_an_empty_table() {
    let dir = tempfile::tempdir().unwrap();
    let missing = DatabaseUrl::parse(dir.path().join("nope.db").to_str().unwrap()).unwrap();
    let (_store_dir, store) = store().await;
    let error = record(&store, &plain(), &missing, &missing, &Options::default())
        .await
        .unwrap_err();
    assert!(error.to_string().contains("monolith database") && error.to_string().contains("does not exist"));
    assert!(!dir.path().join("nope.db").exists());
}

#[tokio::test]
async fn finished_runs_are_recorded_with_counts_and_report() {
    let (legacy, service) = people_on_both(Engine::Sqlite, Engine::Sqlite, 10).await.unwrap();
    let (_dir, store) = store().await;
    record(&store, &plain(), legacy.url(), service.url(), &Options::default())
        .await
        .unwrap();
    exec(&service, "DELETE FROM people WHERE id = 3").await;
    exec(&service, "UPDATE people SET name = 'x' WHERE id = 4").await;
    record(&store, &plain(), legacy.url(), service.url(), &Options::default())
        .await
        .unwrap();
    let runs = store.runs("people").await.unwrap();
    assert_eq!(runs[0].status, RunStatus::Clean);
    assert_eq!(runs[0].rows_compared, Some(10));
    assert_eq!(runs[1].status, RunStatus::Diverged);
    assert_eq!(
        (runs[1].missing, runs[1].extra, runs[1].changed),
        (Some(1), Some(0), Some(1))
    );
    let report: serde_json::Value = serde_json::from_str(runs[1].report.as_deref().unwrap()).unwrap();
    assert_eq!(report["tables"][0]["changed"][0]["key"][0], 4);
}

#[tokio::test]
async fn sessions_are_read_only_and_statements_time_out() {
    let Some((legacy, service)) = people_on_both(Engine::Postgres, Engine::MySql, 3).await else {
        return;
    };
    exec(&legacy, "CREATE SEQUENCE s").await;
    let timeout = std::time::Duration::from_secs(1);
    for (case, filter, statement_timeout, expected) in [
        // A filter that would write is refused by the read-only session.
        (
            "a writing filter",
            "legacy_filter = \"nextval('s') > 0\"",
            None,
            &["monolith database", "read-only"][..],
        ),
        // A slow statement is cut off by the statement timeout.
        (
            "a slow monolith statement",
            "legacy_filter = \"(SELECT 1 FROM pg_sleep(5)) = 1\"",
            Some(timeout),
            &["the monolith database"],
        ),
        (
            "a slow service statement",
            "service_filter = \"SLEEP(5) = 0\"",
            Some(timeout),
            &["the service database"],
        ),
    ] {
        let options = Options {
            statement_timeout: statement_timeout.unwrap_or(Options::default().statement_timeout),
            ..Options::default()
        };
        let text = people_mapping("people", "name", filter);
        let started = std::time::Instant::now();
        let error = run(&text, "people", &legacy, &service, &options)
            .await
            .unwrap_err()
            .chain();
        if statement_timeout.is_some() {
            assert!(
                started.elapsed() < std::time::Duration::from_secs(4),
                "{case}: {error}"
            );
        }
        for part in expected {
            assert!(error.contains(part), "{case}: `{part}` not in: {error}");
        }
    }
}
