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

use crate::helpers::{exec, fresh, mapping, pair};

const MAPPING: &str = r#"
[[capabilities.people.tables]]
legacy = "people"
service = "people"
key = ["id"]
columns = { id = "id", name = "name" }
"#;

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

async fn record(
    store: &RunStore,
    legacy: &DatabaseUrl,
    service: &DatabaseUrl,
    options: &Options,
) -> Result<reconciler::Report, ReconcileError> {
    let mapping = mapping(MAPPING);
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
        let error = record(&store, legacy.url(), &service, &Options::default())
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
    let Some((legacy, service)) = pair(Engine::Sqlite, Engine::Postgres).await else {
        return;
    };
    people(&legacy, 5000).await;
    people(&service, 5000).await;
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
    let error = record(&store, legacy.url(), &through_proxy, &options)
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
    let Some((legacy, service)) = pair(Engine::MySql, Engine::Sqlite).await else {
        return;
    };
    people(&legacy, 3).await;
    people(&service, 3).await;
    let (_dir, store) = store().await;
    let mapping_text = MAPPING.replace(r#"name = "name""#, r#"name = "full_name""#);
    let parsed = mapping(&mapping_text);
    let error = reconcile_and_record(
        Some(&store),
        parsed.capability("people").unwrap(),
        legacy.url(),
        service.url(),
        &Options::default(),
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(
        error.contains("the service table `people` has no column `full_name`") && error.contains("id, name"),
        "{error}"
    );
    let mapping_text = MAPPING.replace(r#"legacy = "people""#, r#"legacy = "persons""#);
    let parsed = mapping(&mapping_text);
    let error = reconcile_and_record(
        Some(&store),
        parsed.capability("people").unwrap(),
        legacy.url(),
        service.url(),
        &Options::default(),
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(
        error.contains("the monolith database has no table `persons`"),
        "{error}"
    );
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
    let error = record(&store, &missing, &missing, &Options::default())
        .await
        .unwrap_err();
    assert!(error.to_string().contains("monolith database") && error.to_string().contains("does not exist"));
    assert!(!dir.path().join("nope.db").exists());
}

#[tokio::test]
async fn finished_runs_are_recorded_with_counts_and_report() {
    let (legacy, service) = (
        fresh(Engine::Sqlite).await.unwrap(),
        fresh(Engine::Sqlite).await.unwrap(),
    );
    people(&legacy, 10).await;
    people(&service, 10).await;
    let (_dir, store) = store().await;
    record(&store, legacy.url(), service.url(), &Options::default())
        .await
        .unwrap();
    exec(&service, "DELETE FROM people WHERE id = 3").await;
    exec(&service, "UPDATE people SET name = 'x' WHERE id = 4").await;
    record(&store, legacy.url(), service.url(), &Options::default())
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
    let Some((legacy, service)) = pair(Engine::Postgres, Engine::MySql).await else {
        return;
    };
    people(&legacy, 3).await;
    people(&service, 3).await;
    exec(&legacy, "CREATE SEQUENCE s").await;
    // A filter that would write is refused by the read-only session.
    let writing = MAPPING.replace(
        r#"columns = { id = "id", name = "name" }"#,
        "columns = { id = \"id\", name = \"name\" }\nlegacy_filter = \"nextval('s') > 0\"",
    );
    let parsed = mapping(&writing);
    let options = Options::default();
    let error = reconciler::reconcile(
        parsed.capability("people").unwrap(),
        legacy.url(),
        service.url(),
        &options,
    )
    .await
    .unwrap_err()
    .chain();
    assert!(
        error.contains("monolith database") && error.contains("read-only"),
        "{error}"
    );
    // A slow statement is cut off by the statement timeout.
    for (side, filter) in [
        ("monolith", "legacy_filter = \"(SELECT 1 FROM pg_sleep(5)) = 1\""),
        ("service", "service_filter = \"SLEEP(5) = 0\""),
    ] {
        let slow = MAPPING.replace(
            r#"columns = { id = "id", name = "name" }"#,
            &format!("columns = {{ id = \"id\", name = \"name\" }}\n{filter}"),
        );
        let parsed = mapping(&slow);
        let options = Options {
            statement_timeout: std::time::Duration::from_secs(1),
            ..Options::default()
        };
        let started = std::time::Instant::now();
        let error = reconciler::reconcile(
            parsed.capability("people").unwrap(),
            legacy.url(),
            service.url(),
            &options,
        )
        .await
        .unwrap_err()
        .chain();
        assert!(started.elapsed() < std::time::Duration::from_secs(4), "{error}");
        assert!(error.contains(&format!("the {side} database")), "{error}");
    }
}
