//! `strangler reconcile schedule`: every capability with a `schedule` in the
//! mapping file is compared on its cron expression until shutdown.
//!
//! - Each pass is recorded in the toolkit store (clean, diverged or failed
//!   with the reason) and, with a report folder, written there as JSON,
//!   Markdown and HTML, plus `latest.*` copies.
//! - Each capability's cron expression, parsed once by the mapping
//!   ([`mapping::Schedule`]), gives its next occurrence; a task per
//!   capability sleeps until then and queues a pass. Occurrences are whole
//!   seconds in UTC.
//! - Two passes of one capability never run at once: a tick that finds the
//!   previous pass still running (or still waiting) is skipped and logged.
//!   Passes run one after another in the caller's task; the timers only
//!   queue them. Occurrences missed meanwhile are not made up for.
//! - A database being down fails that pass only; the next tick runs as usual.

use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, SubsecRound, Utc};
use croner::errors::CronError;
use mapping::{CapabilityMapping, Mapping, Schedule};
use tokio::sync::mpsc::UnboundedSender;
use tokio::task::JoinSet;
use toolkit_db::DatabaseUrl;

use crate::metrics::ScheduleMetrics;
use crate::render::{self, TrendPoint};
use crate::{reconcile_and_record, Options, RunStore};

/// Why the schedule could not start.
#[derive(Debug, thiserror::Error)]
pub enum ScheduleError {
    /// No capability has a schedule.
    #[error(
        "no capability in the mapping file has a `schedule`; add one like `schedule = \"0 */5 * * * *\"`"
    )]
    NothingScheduled,
    /// A scheduled capability lacks a database.
    #[error("capability `{capability}` is scheduled but has no {which}; add it to the mapping file (a URL, or env:NAME)")]
    MissingDatabase {
        /// The capability.
        capability: String,
        /// `legacy_database_url` or `service_database_url`.
        which: &'static str,
    },
    /// A database source could not be resolved.
    #[error("capability `{capability}`: {message}")]
    Database {
        /// The capability.
        capability: String,
        /// What is wrong.
        message: String,
    },
    /// The report folder could not be created.
    #[error("cannot create the report folder {path}")]
    ReportDir {
        /// The folder.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A schedule has no next occurrence (it names a date that never
    /// comes, like 30 February).
    #[error("capability `{capability}`: schedule `{schedule}` never comes due; fix it in the mapping file")]
    Scheduler {
        /// The capability.
        capability: String,
        /// Its cron expression.
        schedule: String,
        /// Why no occurrence was found.
        #[source]
        source: CronError,
    },
}

/// One scheduled capability and what a pass needs.
struct Pass {
    capability: CapabilityMapping,
    legacy: DatabaseUrl,
    service: DatabaseUrl,
    store: Option<RunStore>,
    report_dir: Option<PathBuf>,
    options: Options,
    metrics: Option<Arc<ScheduleMetrics>>,
    // Set from the tick that queues a pass until that pass has finished.
    busy: AtomicBool,
}

impl Pass {
    async fn run(&self) {
        let name = &self.capability.name;
        let result = reconcile_and_record(
            self.store.as_ref(),
            &self.capability,
            &self.legacy,
            &self.service,
            &self.options,
        )
        .await;
        match result {
            Ok(report) => {
                if let Some(metrics) = &self.metrics {
                    metrics.finished(&report);
                }
                tracing::info!(
                    capability = %name,
                    status = report.status.as_str(),
                    missing = report.totals.missing,
                    extra = report.totals.extra,
                    changed = report.totals.changed,
                    "scheduled reconciliation finished"
                );
                if let Some(dir) = &self.report_dir {
                    let trend = match &self.store {
                        Some(store) => store
                            .runs(name)
                            .await
                            .map(|runs| runs.iter().map(TrendPoint::from).collect())
                            .unwrap_or_default(),
                        None => Vec::new(),
                    };
                    if let Err(error) = write_reports(dir, &report, &trend) {
                        tracing::error!(capability = %name, %error, "cannot write the report files");
                    }
                }
            }
            // Recorded as failed in the store by `reconcile_and_record`.
            Err(error) => {
                if let Some(metrics) = &self.metrics {
                    metrics.failed(name);
                }
                tracing::error!(capability = %name, error = %error.chain(), "scheduled reconciliation failed");
            }
        }
        self.busy.store(false, Ordering::Release);
    }
}

fn write_reports(dir: &Path, report: &crate::Report, trend: &[TrendPoint]) -> std::io::Result<()> {
    let folder = dir.join(&report.capability);
    std::fs::create_dir_all(&folder)?;
    let stamp = report.started_at.replace(':', "-");
    let json = serde_json::to_string_pretty(report).map_err(std::io::Error::other)?;
    for (extension, text) in [
        ("json", json),
        ("md", render::markdown(report, trend)),
        ("html", render::html(report, trend)),
    ] {
        std::fs::write(folder.join(format!("{stamp}.{extension}")), &text)?;
        std::fs::write(folder.join(format!("latest.{extension}")), &text)?;
    }
    Ok(())
}

/// The longest a timer sleeps before it reads the wall clock again, so that
/// a clock change, or a machine that was suspended, delays a tick by at most
/// this much.
const LONGEST_NAP: Duration = Duration::from_secs(1);

/// The first occurrence of `schedule` after `after`'s second: a whole
/// second, in UTC.
fn next_occurrence(schedule: &Schedule, after: DateTime<Utc>) -> Result<DateTime<Utc>, CronError> {
    // croner keeps the start's fraction of a second; occurrences are whole
    // seconds.
    schedule
        .cron()
        .find_next_occurrence(&after.trunc_subsecs(0), false)
}

/// Calls `tick` at each occurrence of `schedule` by the clock `now`, until
/// `tick` breaks. Occurrences missed while this was not polled (or while the
/// clock jumped ahead) are not made up for: the next tick is the first
/// occurrence after the present.
async fn every_occurrence(
    schedule: &Schedule,
    now: impl Fn() -> DateTime<Utc>,
    mut tick: impl FnMut() -> ControlFlow<()>,
) -> Result<(), CronError> {
    let mut after = now();
    loop {
        let next = next_occurrence(schedule, after)?;
        // A timer that fires before the clock says it is time sleeps again.
        while let Ok(left) = (next - now()).to_std() {
            if left.is_zero() {
                break;
            }
            tokio::time::sleep(left.min(LONGEST_NAP)).await;
        }
        if tick().is_break() {
            return Ok(());
        }
        after = next.max(now());
    }
}

/// A tick of `pass`'s schedule: queues the pass unless its previous pass is
/// still queued or running. Breaks once the queue is gone.
fn queue_pass(pass: &Arc<Pass>, queue: &UnboundedSender<Arc<Pass>>) -> ControlFlow<()> {
    if pass.busy.swap(true, Ordering::AcqRel) {
        tracing::warn!(capability = %pass.capability.name, "the previous pass is still running; this tick is skipped");
        return ControlFlow::Continue(());
    }
    if queue.send(Arc::clone(pass)).is_err() {
        tracing::debug!("the schedule is shutting down; tick dropped");
        return ControlFlow::Break(());
    }
    ControlFlow::Continue(())
}

/// Checks every scheduled capability and runs the schedule until `shutdown`.
pub async fn run_schedule(
    mapping: &Mapping,
    store: Option<RunStore>,
    report_dir: Option<PathBuf>,
    options: Options,
    metrics: Option<Arc<ScheduleMetrics>>,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), ScheduleError> {
    if let Some(dir) = &report_dir {
        std::fs::create_dir_all(dir).map_err(|source| ScheduleError::ReportDir {
            path: dir.clone(),
            source,
        })?;
    }
    let mut passes = Vec::new();
    for capability in mapping.capabilities() {
        let Some(schedule) = &capability.schedule else {
            continue;
        };
        let resolve = |source: &Option<mapping::DatabaseSource>, which| {
            source
                .as_ref()
                .ok_or_else(|| ScheduleError::MissingDatabase {
                    capability: capability.name.clone(),
                    which,
                })?
                .resolve()
                .map_err(|message| ScheduleError::Database {
                    capability: capability.name.clone(),
                    message,
                })
        };
        let pass = Arc::new(Pass {
            legacy: resolve(&capability.legacy_database, "legacy_database_url")?,
            service: resolve(&capability.service_database, "service_database_url")?,
            capability: capability.clone(),
            store: store.clone(),
            report_dir: report_dir.clone(),
            options: options.clone(),
            metrics: metrics.clone(),
            busy: AtomicBool::new(false),
        });
        next_occurrence(schedule, Utc::now()).map_err(|source| ScheduleError::Scheduler {
            capability: capability.name.clone(),
            schedule: schedule.to_string(),
            source,
        })?;
        passes.push((schedule.clone(), pass));
    }
    if passes.is_empty() {
        return Err(ScheduleError::NothingScheduled);
    }
    let (queue, mut due) = tokio::sync::mpsc::unbounded_channel::<Arc<Pass>>();
    // The timers run on tasks of their own, so that they tick (and skip)
    // while a pass runs here.
    let mut timers = JoinSet::new();
    for (schedule, pass) in passes {
        tracing::info!(capability = %pass.capability.name, schedule = %schedule, "scheduled");
        let queue = queue.clone();
        timers.spawn(async move {
            let ticks = every_occurrence(&schedule, Utc::now, || queue_pass(&pass, &queue)).await;
            if let Err(error) = ticks {
                tracing::error!(
                    capability = %pass.capability.name,
                    %schedule,
                    %error,
                    "the schedule has no next occurrence; this capability is not compared again"
                );
            }
        });
    }
    drop(queue);
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            next = due.recv() => match next {
                Some(pass) => pass.run().await,
                None => break,
            },
        }
    }
    timers.shutdown().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;
    use std::path::Path;

    use chrono::TimeDelta;

    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        text.parse().unwrap()
    }

    /// A wall clock that starts at `origin` and runs with tokio's clock
    /// (paused in these tests), plus `jump`.
    fn clock(origin: DateTime<Utc>, jump: &Cell<TimeDelta>) -> impl Fn() -> DateTime<Utc> + '_ {
        let started = tokio::time::Instant::now();
        move || origin + TimeDelta::from_std(started.elapsed()).unwrap() + jump.get()
    }

    /// The first `count` ticks of `*/10 * * * * *` on a wall clock that
    /// starts at `origin`, and how long they took on tokio's clock;
    /// `at_tick` runs at each tick, given the clock's jump to set.
    async fn first_ticks(
        origin: &str,
        count: usize,
        at_tick: impl Fn(&Cell<TimeDelta>),
    ) -> (Vec<DateTime<Utc>>, Duration) {
        let schedule = Schedule::parse("*/10 * * * * *").unwrap();
        let jump = Cell::new(TimeDelta::zero());
        let now = clock(at(origin), &jump);
        let started = tokio::time::Instant::now();
        let mut ticks = Vec::new();
        every_occurrence(&schedule, &now, || {
            ticks.push(now());
            at_tick(&jump);
            if ticks.len() == count {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        })
        .await
        .unwrap();
        (ticks, started.elapsed())
    }

    #[tokio::test(start_paused = true)]
    async fn ticks_fall_on_each_occurrence_in_whole_seconds() {
        let (ticks, took) = first_ticks("2026-03-01T00:00:03.250Z", 3, |_| {}).await;
        assert_eq!(
            ticks,
            [
                at("2026-03-01T00:00:10Z"),
                at("2026-03-01T00:00:20Z"),
                at("2026-03-01T00:00:30Z")
            ]
        );
        assert_eq!(took, Duration::from_millis(26_750));
    }

    #[tokio::test(start_paused = true)]
    async fn missed_occurrences_collapse_into_the_next_one() {
        // The first tick is held up for 35 s, past three occurrences.
        let (ticks, _) =
            first_ticks("2026-03-01T00:00:00Z", 2, |jump| jump.set(TimeDelta::seconds(35))).await;
        assert_eq!(ticks, [at("2026-03-01T00:00:10Z"), at("2026-03-01T00:00:50Z")]);
    }

    #[test]
    fn a_schedule_that_never_comes_due_is_an_error() {
        let never = Schedule::parse("0 0 0 30 2 *").unwrap();
        assert!(next_occurrence(&never, at("2026-03-01T00:00:00Z")).is_err());
    }

    #[tokio::test]
    async fn a_tick_is_skipped_while_the_previous_pass_is_queued_or_running() {
        let table = r#"{ legacy = "items", service = "items", key = ["id"], columns = { id = "id" } }"#;
        let text = format!("capabilities.items = {{ schedule = \"* * * * * *\", tables = [{table}] }}");
        let mapping = Mapping::parse(Path::new("m.toml"), &text).unwrap();
        let url = DatabaseUrl::parse("unused.db").unwrap();
        let pass = Arc::new(Pass {
            capability: mapping.capability("items").unwrap().clone(),
            legacy: url.clone(),
            service: url,
            store: None,
            report_dir: None,
            options: Options::default(),
            metrics: None,
            busy: AtomicBool::new(false),
        });
        let (queue, mut due) = tokio::sync::mpsc::unbounded_channel();
        assert_eq!(queue_pass(&pass, &queue), ControlFlow::Continue(()));
        assert_eq!(queue_pass(&pass, &queue), ControlFlow::Continue(()));
        assert!(due.try_recv().is_ok(), "the first tick queues the pass");
        assert!(
            due.try_recv().is_err(),
            "the second finds it queued and is skipped"
        );
        // Taken off the queue it is running, and still busy until it ends.
        assert_eq!(queue_pass(&pass, &queue), ControlFlow::Continue(()));
        assert!(due.try_recv().is_err());
        pass.busy.store(false, Ordering::Release);
        assert_eq!(queue_pass(&pass, &queue), ControlFlow::Continue(()));
        assert!(due.try_recv().is_ok());
        drop(due);
        pass.busy.store(false, Ordering::Release);
        assert_eq!(queue_pass(&pass, &queue), ControlFlow::Break(()));
    }
}
