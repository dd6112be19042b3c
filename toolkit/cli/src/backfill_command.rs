//! `strangler backfill <capability>`.

use crate::databases::DatabaseArgs;
use crate::output::say;
use crate::table::{Column, TextTable};

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
    #[command(flatten)]
    databases: DatabaseArgs,
    /// Rows per batch and per transaction.
    #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    batch_size: u32,
    /// Output style.
    #[arg(long, value_enum, default_value = "human")]
    output: Output,
}

pub async fn run(args: BackfillArgs) -> anyhow::Result<()> {
    let mapping = Mapping::load(&args.databases.mapping)?;
    let capability = mapping.capability(&args.capability)?;
    let (legacy_url, service_url) = args.databases.resolve(capability)?;
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
    report_table(reports).print();
}

/// One line per table, aligned.
fn report_table(reports: &[TableReport]) -> TextTable {
    let columns = [
        Column::left("MONOLITH", 14),
        Column::left("", 1),
        Column::left("SERVICE", 14),
        Column::right("ROWS", 7),
        Column::left("", 0),
    ];
    TextTable::without_header(&columns)
        .indent("  ")
        .rows(reports, |report| {
            [
                report.legacy_table.clone(),
                "→".to_owned(),
                report.service_table.clone(),
                report.rows_copied.to_string(),
                format!(
                    "rows in {} batch{}{}{}",
                    report.batches,
                    if report.batches == 1 { "" } else { "es" },
                    if report.resumed { ", resumed" } else { "" },
                    if report.complete {
                        ", complete"
                    } else {
                        ", INCOMPLETE"
                    },
                ),
            ]
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(legacy: &str, service: &str, rows: u64, batches: u64) -> TableReport {
        TableReport {
            legacy_table: legacy.to_owned(),
            service_table: service.to_owned(),
            rows_copied: rows,
            batches,
            resumed: false,
            complete: true,
        }
    }

    #[test]
    fn reports_keep_their_layout_and_widen_for_long_names() {
        assert_eq!(
            report_table(&[report("products", "products", 200, 1)]).lines(),
            ["  products       → products           200 rows in 1 batch, complete"]
        );
        assert_eq!(
            report_table(&[
                report("order_lines", "order_lines", 12, 2),
                report("customer_loyalty_accounts", "loyalty_accounts", 3, 1),
            ])
            .lines(),
            [
                "  order_lines               → order_lines           12 rows in 2 batches, complete",
                "  customer_loyalty_accounts → loyalty_accounts       3 rows in 1 batch, complete",
            ]
        );
        assert!(report_table(&[]).lines().is_empty());
    }
}
