//! The schedule: passes on a cron expression, recorded and written out,
//! surviving a database that is down.

use std::path::Path;
use std::time::{Duration, Instant};

use reconciler::schedule::run_schedule;
use reconciler::{Options, RunStatus, RunStore};
use toolkit_db::{Database, DatabaseUrl};

use crate::helpers::{mapping, mapping_text, same};

async fn sqlite_table(path: &Path, rows: &[(i64, &str)]) -> DatabaseUrl {
    let url = DatabaseUrl::sqlite_file(path);
    let db = Database::open(&url).await.unwrap();
    sqlx::query("CREATE TABLE items (id BIGINT PRIMARY KEY, name TEXT NOT NULL)")
        .execute(db.pool())
        .await
        .unwrap();
    for (id, name) in rows {
        sqlx::query("INSERT INTO items (id, name) VALUES ($1, $2)")
            .bind(id)
            .bind(*name)
            .execute(db.pool())
            .await
            .unwrap();
    }
    db.close().await;
    url
}

#[tokio::test]
async fn scheduled_passes_are_recorded_written_and_survive_a_database_being_down() {
    let dir = tempfile::tempdir().unwrap();
    let legacy = sqlite_table(&dir.path().join("legacy.db"), &[(1, "a"), (2, "b"), (3, "c")]).await;
    let service = sqlite_table(&dir.path().join("service.db"), &[(1, "a"), (2, "B")]).await;
    let missing = dir.path().join("gone.db");
    // Both compare `items`; `down`'s monolith database does not exist.
    let capability = |name: &str, legacy_url: &str, service_url: &str| {
        format!(
            "[capabilities.{name}]\nschedule = \"* * * * * *\"\n\
             legacy_database_url = \"{legacy_url}\"\nservice_database_url = \"{service_url}\"\n{}",
            mapping_text(name, ("items", "items"), &["id"], &same(&["id", "name"]), "")
        )
    };
    let text = capability(
        "items",
        legacy.expose(),
        "env:STRANGLER_TEST_SCHEDULE_SERVICE_URL",
    ) + &capability("down", &missing.display().to_string(), service.expose());
    // The service's URL comes from the environment, as a password would.
    std::env::set_var("STRANGLER_TEST_SCHEDULE_SERVICE_URL", service.expose());
    let mapping = mapping(&text);
    let store_url = DatabaseUrl::sqlite_file(&dir.path().join("toolkit.db"));
    let store = RunStore::open(&store_url).await.unwrap();
    let reports = dir.path().join("reports");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    // The schedule and the checks run side by side in this task (the
    // comparison's future is not `Send`, so it is not spawned).
    let metrics = std::sync::Arc::new(reconciler::metrics::ScheduleMetrics::new());
    let schedule = run_schedule(
        &mapping,
        Some(store.clone()),
        Some(reports.clone()),
        Options::default(),
        Some(metrics.clone()),
        async {
            let _ = stopped.await;
        },
    );
    let checks = async {
        // Wait (bounded) until both capabilities have at least two passes.
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let items = store.runs("items").await.unwrap();
            let down = store.runs("down").await.unwrap();
            let finished = |runs: &[reconciler::RunRecord]| {
                runs.iter().filter(|r| r.status != RunStatus::Running).count()
            };
            if finished(&items) >= 2 && finished(&down) >= 2 {
                assert!(
                    items
                        .iter()
                        .filter(|r| r.status != RunStatus::Running)
                        .all(|r| r.status == RunStatus::Diverged),
                    "{items:?}"
                );
                let last = items
                    .iter()
                    .rev()
                    .find(|r| r.status == RunStatus::Diverged)
                    .unwrap();
                assert_eq!(
                    (last.missing, last.extra, last.changed),
                    (Some(1), Some(0), Some(1))
                );
                // The database that is down fails every pass, and passes go on.
                assert!(
                    down.iter()
                        .filter(|r| r.status != RunStatus::Running)
                        .all(|r| r.status == RunStatus::Failed),
                    "{down:?}"
                );
                assert!(
                    down[0].error.as_deref().unwrap_or("").contains("does not exist"),
                    "{down:?}"
                );
                break;
            }
            assert!(
                Instant::now() < deadline,
                "two passes each within 15 s: items {items:?}, down {down:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let latest = std::fs::read_to_string(reports.join("items").join("latest.html")).unwrap();
        assert!(latest.contains("Changed (1)") && latest.contains("Missing in the service (1)"));
        assert!(
            reports.join("items").join("latest.json").exists()
                && reports.join("items").join("latest.md").exists()
        );
        assert!(
            !reports.join("down").exists(),
            "a failed pass has no report to write"
        );
        let text = metrics.render();
        for line in [
            "strangler_reconcile_divergences{capability=\"items\",kind=\"missing\"} 1",
            "strangler_reconcile_divergences{capability=\"items\",kind=\"changed\"} 1",
            "strangler_reconcile_last_run_failed{capability=\"down\"} 1",
            "strangler_reconcile_last_run_failed{capability=\"items\"} 0",
            "strangler_reconcile_last_run_age_seconds{capability=\"items\"}",
        ] {
            assert!(text.contains(line), "{line} missing from:\n{text}");
        }
        stop.send(()).unwrap();
    };
    let (result, ()) =
        tokio::time::timeout(Duration::from_secs(30), async { tokio::join!(schedule, checks) })
            .await
            .expect("the schedule stops when told to");
    result.unwrap();
}

#[tokio::test]
async fn a_schedule_without_databases_or_schedules_is_refused() {
    // Why the schedule of `items`, with `head` added to the capability,
    // is refused.
    let refused = |head: &str| {
        let table = mapping_text("items", ("items", "items"), &["id"], &same(&["id"]), "");
        let mapping = mapping(&format!("[capabilities.items]\n{head}\n{table}"));
        async move {
            run_schedule(&mapping, None, None, Options::default(), None, async {})
                .await
                .unwrap_err()
        }
    };
    let error = refused("schedule = \"0 * * * * *\"").await.to_string();
    assert!(
        error.contains("`items` is scheduled but has no legacy_database_url"),
        "{error}"
    );
    let error = refused("").await.to_string();
    assert!(error.contains("no capability"), "{error}");
    // 30 February never comes: refused at the start, with croner's reason.
    let error = refused(
        "schedule = \"0 0 0 30 2 *\"\nlegacy_database_url = \"a.db\"\nservice_database_url = \"b.db\"",
    )
    .await;
    assert!(
        error
            .to_string()
            .starts_with("capability `items`: schedule `0 0 0 30 2 *` never comes due"),
        "{error}"
    );
    assert!(std::error::Error::source(&error).is_some(), "{error:?}");
}

#[tokio::test]
async fn incremental_passes_start_full_and_then_read_what_changed() {
    let dir = tempfile::tempdir().unwrap();
    let mut urls = Vec::new();
    for side in ["legacy", "service"] {
        let url = DatabaseUrl::sqlite_file(&dir.path().join(format!("{side}.db")));
        let db = Database::open(&url).await.unwrap();
        sqlx::raw_sql(
            "CREATE TABLE items (id BIGINT PRIMARY KEY, name TEXT NOT NULL, updated_at TEXT NOT NULL); \
             INSERT INTO items VALUES (1, 'a', '2026-01-01 00:00:00'), (2, 'b', '2026-01-01 00:00:00')",
        )
        .execute(db.pool())
        .await
        .unwrap();
        db.close().await;
        urls.push(url);
    }
    let text = format!(
        "[capabilities.items]\nschedule = \"* * * * * *\"\n\
         legacy_database_url = \"{}\"\nservice_database_url = \"{}\"\n{}",
        urls[0].expose(),
        urls[1].expose(),
        mapping_text(
            "items",
            ("items", "items"),
            &["id"],
            &same(&["id", "name", "updated_at"]),
            "updated_at_column = \"updated_at\"\n"
        )
    );
    let mapping = mapping(&text);
    let store = RunStore::open(&DatabaseUrl::sqlite_file(&dir.path().join("toolkit.db")))
        .await
        .unwrap();
    let options = Options {
        mode: reconciler::Mode::Incremental,
        ..Options::default()
    };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let schedule = run_schedule(&mapping, Some(store.clone()), None, options, None, async {
        let _ = stopped.await;
    });
    let checks = async {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let runs = store.runs("items").await.unwrap();
            let finished: Vec<_> = runs.iter().filter(|r| r.status != RunStatus::Running).collect();
            if finished.len() >= 2 {
                let kinds: Vec<&str> = finished.iter().map(|r| r.kind.as_str()).collect();
                assert_eq!(kinds[..2], ["full", "incremental"], "{runs:?}");
                assert!(finished.iter().all(|r| r.status == RunStatus::Clean), "{runs:?}");
                break;
            }
            assert!(Instant::now() < deadline, "two passes within 15 s: {runs:?}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let _ = stop.send(());
    };
    let (result, ()) = tokio::join!(schedule, checks);
    result.unwrap();
}
