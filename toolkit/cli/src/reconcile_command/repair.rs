//! `strangler reconcile repair <capability> [--apply]`: compares, plans the
//! statements that bring the follower in line with the source of truth,
//! shows them, and with `--apply` runs them and compares again.
//!
//! Every statement is compare-and-set (see `reconciler::repair`): a row the
//! application changed since the report is left alone and listed as
//! "changed since the report, not repaired", in the plan when the planner
//! saw it and in the apply's summary when the statement did. With
//! `--output json` the plan is one JSON document, and with `--apply` the
//! same document also carries `applied` (counts and the rows left alone)
//! and `after` (the report of the comparison that follows).

use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use mapping::{Mapping, Side};
use reconciler::key_text::key_text;
use reconciler::repair::{apply_plan, plan_repair, Applied, ApplyOptions, RepairPlan, SkipCause, Skipped};
use reconciler::{reconcile_and_record, Report, Status};

use super::{open_store, plural, Format, RunArgs, EXIT_CLEAN, EXIT_DIVERGED};
use crate::output::{say, say_raw};

// No doc comment: clap would show it instead of the subcommand's own.
#[derive(Args)]
pub(crate) struct RepairArgs {
    #[command(flatten)]
    pub(crate) run: RunArgs,
    /// Execute the plan (in transactions of 100 statements) instead of only
    /// showing it.
    #[arg(long)]
    apply: bool,
}

/// What `--apply --output json` prints: the plan's own fields, then what
/// applying it did (`applied`) and the comparison after it (`after`).
fn applied_json(plan: &RepairPlan, applied: &Applied, after: &Report) -> anyhow::Result<serde_json::Value> {
    let mut document = serde_json::to_value(plan)?;
    if let serde_json::Value::Object(fields) = &mut document {
        fields.insert("applied".to_owned(), serde_json::to_value(applied)?);
        fields.insert("after".to_owned(), serde_json::to_value(after)?);
    }
    Ok(document)
}

/// Plans, shows and (with `--apply`) applies the repair; exit code 0 when
/// nothing is (left) to repair, 1 when divergence remains.
pub(crate) async fn repair(args: RepairArgs) -> anyhow::Result<ExitCode> {
    let run = &args.run;
    let mapping = Mapping::load(&run.databases.mapping)?;
    let capability = mapping.capability(&run.capability)?;
    let store = open_store(run.store_url.as_ref(), "this run is").await?;
    let options = run.options();
    let (legacy, service) = &run.databases.resolve(capability)?;
    let report = reconcile_and_record(store.as_ref(), capability, legacy, service, &options)
        .await
        .with_context(|| format!("reconciling capability `{}`", run.capability))?;
    let plan = plan_repair(capability, &report, legacy, service, options.statement_timeout)
        .await
        .with_context(|| format!("planning the repair of `{}`", run.capability))?;
    let json = matches!(run.output, Format::Json);
    if plan.statements.is_empty() && plan.skipped.is_empty() {
        say!("nothing to repair: `{}` is clean", run.capability);
        return Ok(ExitCode::from(EXIT_CLEAN));
    }
    // With statements to apply, JSON waits for the outcome: one document.
    let applying = args.apply && !plan.statements.is_empty();
    if !json {
        show_plan(&plan, &run.capability);
    } else if !applying {
        say!("{}", serde_json::to_string_pretty(&plan)?);
    }
    if plan.statements.is_empty() {
        return Ok(ExitCode::from(EXIT_DIVERGED));
    }
    if !args.apply {
        if !json {
            say!("dry run: nothing was changed; add --apply to execute these statements");
        }
        return Ok(ExitCode::from(EXIT_DIVERGED));
    }
    let follower = match plan.follower {
        Side::Service => service,
        Side::Legacy => legacy,
    };
    let apply_options = ApplyOptions {
        progress: options.progress.clone(),
        ..ApplyOptions::default()
    };
    let applied = apply_plan(&plan, follower, &apply_options)
        .await
        .with_context(|| {
            format!(
                "applying the repair of `{}` to the {} database",
                run.capability, plan.follower
            )
        })?;
    if !json {
        show_applied(&applied);
    }
    let after = reconcile_and_record(store.as_ref(), capability, legacy, service, &options)
        .await
        .with_context(|| format!("verifying the repair of `{}`", run.capability))?;
    if json {
        let document = applied_json(&plan, &applied, &after)?;
        say!("{}", serde_json::to_string_pretty(&document)?);
    } else {
        say_raw!("{}", after.to_human());
    }
    Ok(ExitCode::from(match after.status {
        Status::Clean => EXIT_CLEAN,
        Status::Diverged => EXIT_DIVERGED,
    }))
}

/// The plan as people read it: the statements, then the divergences left
/// alone, grouped by why.
fn show_plan(plan: &RepairPlan, capability: &str) {
    say!(
        "{} to the {} database make `{capability}` match its source of truth:",
        plural(plan.statements.len(), "statement"),
        plan.follower,
    );
    for statement in &plan.statements {
        say!("  {};", statement.display);
    }
    let (changed, outside): (Vec<&Skipped>, Vec<&Skipped>) = plan
        .skipped
        .iter()
        .partition(|s| s.cause == SkipCause::ChangedSinceReport);
    if !outside.is_empty() {
        say!(
            "{} left alone (repair it by hand, or from the other side):",
            plural(outside.len(), "divergence")
        );
        show_skipped(&outside);
    }
    if !changed.is_empty() {
        say!(
            "{} changed since the report, not repaired (compare again once the writes settle):",
            plural(changed.len(), "divergence")
        );
        show_skipped(&changed);
    }
}

/// One line per row left alone: table, key as a user writes it, action,
/// and why.
fn show_skipped(skipped: &[&Skipped]) {
    for s in skipped {
        say!(
            "  {} {} ({}): {}",
            s.table,
            key_text(&s.key),
            s.action.as_str(),
            s.reason
        );
    }
}

/// What applying did: how many statements ran and, when some changed
/// nothing, which rows and why.
fn show_applied(applied: &Applied) {
    if applied.skipped.is_empty() {
        say!(
            "applied {}; comparing again:",
            plural(applied.statements, "statement")
        );
        return;
    }
    let mut counts = vec![format!("{} repaired", applied.repaired)];
    if applied.changed_since_report > 0 {
        counts.push(format!(
            "{} changed since the report, not repaired",
            applied.changed_since_report
        ));
    }
    let others = applied.skipped.len() - applied.changed_since_report;
    if others > 0 {
        counts.push(format!("{others} not inserted"));
    }
    say!(
        "applied {} ({}):",
        plural(applied.statements, "statement"),
        counts.join(", ")
    );
    show_skipped(&applied.skipped.iter().collect::<Vec<_>>());
    say!("comparing again:");
}
