//! `strangler reconcile schedule`: every capability with a `schedule` in the
//! mapping file is compared on its cron expression until shutdown.
//!
//! - Each pass is recorded in the toolkit store (clean, diverged or failed
//!   with the reason) and, with a report folder, written there as JSON,
//!   Markdown and HTML, plus `latest.*` copies.
//! - Two passes of one capability never run at once: a tick that finds the
//!   previous pass still running (or still waiting) is skipped and logged.
//!   Passes run one after another in the caller's task; the cron jobs only
//!   queue them.
//! - A database being down fails that pass only; the next tick runs as usual.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use mapping::{CapabilityMapping, Mapping};
use tokio_cron_scheduler::{Job, JobScheduler};
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
    /// The scheduler itself failed.
    #[error("the scheduler failed: {0}")]
    Scheduler(String),
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
        let Some(expression) = &capability.schedule else {
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
        passes.push((expression.clone(), pass));
    }
    if passes.is_empty() {
        return Err(ScheduleError::NothingScheduled);
    }
    let scheduler_error =
        |e: tokio_cron_scheduler::JobSchedulerError| ScheduleError::Scheduler(e.to_string());
    let (queue, mut due) = tokio::sync::mpsc::unbounded_channel::<Arc<Pass>>();
    let mut scheduler = JobScheduler::new().await.map_err(scheduler_error)?;
    for (expression, pass) in passes {
        tracing::info!(capability = %pass.capability.name, schedule = %expression, "scheduled");
        let queue = queue.clone();
        let job = Job::new_async(expression.as_str(), move |_, _| {
            let pass = Arc::clone(&pass);
            let queue = queue.clone();
            Box::pin(async move {
                if pass.busy.swap(true, Ordering::AcqRel) {
                    tracing::warn!(capability = %pass.capability.name, "the previous pass is still running; this tick is skipped");
                } else if queue.send(pass).is_err() {
                    tracing::debug!("the schedule is shutting down; tick dropped");
                }
            })
        })
        .map_err(scheduler_error)?;
        scheduler.add(job).await.map_err(scheduler_error)?;
    }
    drop(queue);
    scheduler.start().await.map_err(scheduler_error)?;
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
    scheduler.shutdown().await.map_err(scheduler_error)
}
