//! `strangler backfill <capability>`.

use crate::output::say;
use std::path::PathBuf;

use anyhow::{bail, Context};
use backfill::{backfill, BackfillOptions, TableReport};
use clap::{Args, ValueEnum};
use mapping::Mapping;
use toolkit_db::{Database, DatabaseUrl};

/// Output style of commands that report.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum Output {
    /// Readable lines.
    Human,
    /// One JSON document, for scripts.
    Json,
}

#[derive(Args)]
pub struct BackfillArgs {
    /// The capability to copy, as named in the mapping file.
    capability: String,
    /// The mapping file: tables, keys and column names per capability.
    #[arg(long, env = "STRANGLER_MAPPING", default_value = "demo/mapping.toml")]
    mapping: PathBuf,
    /// The monolith's database (read only); by default the capability's
    /// `legacy_database_url` in the mapping file.
    #[arg(long, env = "STRANGLER_LEGACY_DATABASE_URL")]
    legacy_database_url: Option<DatabaseUrl>,
    /// The service's database (written; its schema must already exist); by
    /// default the capability's `service_database_url` in the mapping file.
    #[arg(long, env = "STRANGLER_SERVICE_DATABASE_URL")]
    service_database_url: Option<DatabaseUrl>,
    /// Rows per batch and per transaction.
    #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    batch_size: u32,
    /// Output style.
    #[arg(long, value_enum, default_value = "human")]
    output: Output,
}

pub async fn run(args: BackfillArgs) -> anyhow::Result<()> {
    let mapping = Mapping::load(&args.mapping)?;
    let capability = mapping.capability(&args.capability)?;
    let pick = |given: &Option<DatabaseUrl>, mapped: &Option<mapping::DatabaseSource>, field: &str| match (
        given, mapped,
    ) {
        (Some(url), _) => Ok(url.clone()),
        (None, Some(source)) => source
            .resolve()
            .map_err(|message| anyhow::anyhow!("{field} of capability `{}`: {message}", args.capability)),
        (None, None) => Err(anyhow::anyhow!(
            "no --{} given, and capability `{}` has no {field} in {}",
            field.replace('_', "-"),
            args.capability,
            args.mapping.display()
        )),
    };
    let legacy_url = pick(
        &args.legacy_database_url,
        &capability.legacy_database,
        "legacy_database_url",
    )?;
    let service_url = pick(
        &args.service_database_url,
        &capability.service_database,
        "service_database_url",
    )?;
    let legacy = open_existing(&legacy_url, "monolith").await?;
    let service = open_existing(&service_url, "service").await?;
    let reports = backfill(
        capability,
        &legacy,
        &service,
        BackfillOptions {
            batch_size: args.batch_size as usize,
            max_batches: None,
        },
    )
    .await
    .with_context(|| format!("backfilling capability `{}`", args.capability))?;
    match args.output {
        Output::Json => say!("{}", serde_json::to_string_pretty(&reports)?),
        Output::Human => print_reports(&args.capability, &reports),
    }
    Ok(())
}

/// Opens a database that must already exist: a typo in a SQLite path must
/// not silently create an empty file and copy nothing.
pub async fn open_existing(url: &DatabaseUrl, role: &str) -> anyhow::Result<Database> {
    if let Some(path) = url.sqlite_path() {
        if !path.exists() {
            bail!(
                "the {role} database {} does not exist; check the path",
                path.display()
            );
        }
    }
    Database::open(url)
        .await
        .with_context(|| format!("opening the {role} database"))
}

pub fn print_reports(capability: &str, reports: &[TableReport]) {
    say!("backfill of `{capability}`, monolith → service:");
    for report in reports {
        say!(
            "  {:<14} → {:<14} {:>7} rows in {} batch{}{}{}",
            report.legacy_table,
            report.service_table,
            report.rows_copied,
            report.batches,
            if report.batches == 1 { "" } else { "es" },
            if report.resumed { ", resumed" } else { "" },
            if report.complete {
                ", complete"
            } else {
                ", INCOMPLETE"
            },
        );
    }
}
