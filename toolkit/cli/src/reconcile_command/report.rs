//! `strangler reconcile report <capability>`: the latest recorded run of a
//! capability and the trend of the runs before it, from the toolkit store.
//! Its exit code is that of the latest run (a failed or unfinished one is 2).

use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use reconciler::render::{self, TrendPoint};
use reconciler::{Report, RunRecord, RunStatus, RunStore};
use toolkit_db::DatabaseUrl;

use super::{Format, EXIT_CLEAN, EXIT_DIVERGED, EXIT_ERROR};
use crate::output::{say, say_raw};
use crate::table::{Column, TextTable};

// No doc comment: clap would show it instead of the subcommand's own.
#[derive(Args)]
pub(crate) struct ReportArgs {
    /// The capability.
    capability: String,
    /// The toolkit store the runs were recorded in.
    #[arg(long, env = "STRANGLER_STORE_URL")]
    store_url: DatabaseUrl,
    /// How many runs the trend shows.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=1000))]
    last: u32,
    /// Output style.
    #[arg(long, value_enum, default_value = "human")]
    output: Format,
    /// Merge the latest run of every shard of this run group (`reconcile
    /// run --shard I/N --group …`) into one report, instead of showing the
    /// latest run.
    #[arg(long, value_parser = super::group_name)]
    group: Option<String>,
}

/// Shows the latest run and the trend; the exit code is the latest run's.
pub(crate) async fn report(args: ReportArgs) -> anyhow::Result<ExitCode> {
    if let Some(path) = args.store_url.sqlite_path() {
        anyhow::ensure!(
            path.exists(),
            "the toolkit store {} does not exist; check the path",
            path.display()
        );
    }
    let store = RunStore::open(&args.store_url)
        .await
        .with_context(|| format!("opening the toolkit store {}", args.store_url))?;
    if let Some(group) = &args.group {
        return merged(&store, &args, group).await;
    }
    let runs = store.runs(&args.capability).await?;
    let Some(latest) = runs.last() else {
        anyhow::bail!(
            "no recorded runs of `{0}` in {1}; record one with `strangler reconcile run {0} --store-url …`",
            args.capability,
            args.store_url
        );
    };
    let trend = &runs[runs.len().saturating_sub(args.last as usize)..];
    let latest_report: Option<Report> = latest
        .report
        .as_deref()
        .and_then(|json| serde_json::from_str(json).ok());
    let points: Vec<TrendPoint> = trend.iter().map(TrendPoint::from).collect();
    match (args.output, &latest_report) {
        (Format::Markdown, Some(report)) => say_raw!("{}", render::markdown(report, &points)),
        (Format::Html, Some(report)) => say_raw!("{}", render::html(report, &points)),
        (Format::Markdown | Format::Html, None) => anyhow::bail!(
            "the latest run of `{}` (#{}) has no report to render: {}",
            args.capability,
            latest.id,
            latest.error.as_deref().unwrap_or("it has not finished")
        ),
        (Format::Json, _) => {
            let trend: Vec<serde_json::Value> = trend
                .iter()
                .map(|run| {
                    serde_json::json!({
                        "id": run.id,
                        "status": run.status,
                        "started_at": run.started_at,
                        "finished_at": run.finished_at,
                        "rows_compared": run.rows_compared,
                        "missing": run.missing,
                        "extra": run.extra,
                        "changed": run.changed,
                        "error": run.error,
                        "kind": run.kind,
                        "shard": run.shard,
                    })
                })
                .collect();
            let body = serde_json::json!({ "latest": latest_report, "trend": trend });
            say!("{}", serde_json::to_string_pretty(&body)?);
        }
        (Format::Human, _) => {
            say!(
                "latest run of `{}`: #{} {} (started {})",
                args.capability,
                latest.id,
                latest.status,
                latest.started_at
            );
            match (&latest_report, &latest.error) {
                (Some(report), _) => say_raw!("{}", report.to_human()),
                (None, Some(error)) => say!("  failed: {error}"),
                (None, None) => say!("  (still running, or ended without a report)"),
            }
            say!("trend, oldest first:");
            trend_table(trend).print();
        }
    }
    Ok(ExitCode::from(match latest.status {
        RunStatus::Clean => EXIT_CLEAN,
        RunStatus::Diverged => EXIT_DIVERGED,
        RunStatus::Running | RunStatus::Failed => EXIT_ERROR,
    }))
}

/// The merged report of run group `group`; the exit code is its status's.
async fn merged(store: &RunStore, args: &ReportArgs, group: &str) -> anyhow::Result<ExitCode> {
    let runs = store.group_runs(&args.capability, group).await?;
    let report = reconciler::shard::merge_shards(&args.capability, group, &runs)?;
    match args.output {
        Format::Json => say!("{}", serde_json::to_string_pretty(&report)?),
        Format::Human => {
            say!(
                "run group `{group}` of `{}`: {} shards merged",
                args.capability,
                runs_count(&runs)
            );
            say_raw!("{}", report.to_human());
        }
        Format::Markdown => say_raw!("{}", render::markdown(&report, &[])),
        Format::Html => say_raw!("{}", render::html(&report, &[])),
    }
    Ok(ExitCode::from(match report.status {
        reconciler::Status::Clean => EXIT_CLEAN,
        reconciler::Status::Diverged => EXIT_DIVERGED,
    }))
}

/// How many shards a group's runs were cut into.
fn runs_count(runs: &[reconciler::ShardRun]) -> u32 {
    runs.first().map_or(0, |run| run.shard.count)
}

/// `reconcile report`'s trend, for people.
fn trend_table(trend: &[RunRecord]) -> TextTable {
    let columns = [
        Column::right("RUN", 6).gap(2),
        Column::left("STARTED", 25),
        Column::left("STATUS", 9),
        Column::left("KIND", 11),
        Column::right("COMPARED", 9),
        Column::right("MISSING", 8),
        Column::right("EXTRA", 8),
        Column::right("CHANGED", 8),
    ];
    let count = |n: Option<i64>| n.map_or("-".to_owned(), |n| n.to_string());
    TextTable::new(&columns).indent("  ").rows(trend, |run| {
        [
            format!("#{}", run.id),
            run.started_at.clone(),
            run.status.to_string(),
            match &run.shard {
                Some(shard) => format!("shard {shard}"),
                None => run.kind.clone(),
            },
            count(run.rows_compared),
            count(run.missing),
            count(run.extra),
            count(run.changed),
        ]
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(id: i64, status: RunStatus, counts: Option<i64>) -> RunRecord {
        RunRecord {
            id,
            capability: "catalog".to_owned(),
            status,
            started_at: "2026-01-01T00:00:00.000Z".to_owned(),
            finished_at: None,
            rows_compared: counts.map(|n| n * 1000),
            missing: counts,
            extra: counts,
            changed: counts,
            error: None,
            report: None,
            kind: "full".to_owned(),
            shard: None,
        }
    }

    #[test]
    fn the_trend_keeps_its_layout_and_widens_for_long_values() {
        let lines = trend_table(&[
            run(1, RunStatus::Clean, Some(0)),
            run(12, RunStatus::Failed, None),
        ])
        .lines();
        assert_eq!(
            lines,
            [
                "     RUN  STARTED                   STATUS    KIND         COMPARED  MISSING    EXTRA  CHANGED",
                "      #1  2026-01-01T00:00:00.000Z  clean     full                0        0        0        0",
                "     #12  2026-01-01T00:00:00.000Z  failed    full                -        -        -        -",
            ]
        );
        let lines = trend_table(&[run(1, RunStatus::Diverged, Some(123_456_789))]).lines();
        assert_eq!(
            lines,
            [
                "     RUN  STARTED                   STATUS    KIND            COMPARED   MISSING     EXTRA   CHANGED",
                "      #1  2026-01-01T00:00:00.000Z  diverged  full        123456789000 123456789 123456789 123456789",
            ]
        );
        // Each run says which kind it was, or which shard.
        let incremental = RunRecord {
            kind: "incremental".to_owned(),
            ..run(2, RunStatus::Clean, Some(1))
        };
        let shard = RunRecord {
            shard: Some("2/4".to_owned()),
            ..run(3, RunStatus::Clean, Some(1))
        };
        let lines = trend_table(&[incremental, shard]).lines();
        assert!(lines[1].contains("  clean     incremental  "), "{lines:?}");
        assert!(lines[2].contains("  clean     shard 2/4    "), "{lines:?}");
    }
}
