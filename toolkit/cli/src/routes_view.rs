//! How `strangler routes …` prints what the admin API answers: aligned
//! tables for people, the API's JSON untouched for scripts.

use crate::output::say;
use facade::admin::{ChangeOutcome, Listing, ShadowReport};
use facade::route_store::Transition;
use serde_json::Value;

pub fn print_json(body: &Value) -> anyhow::Result<()> {
    say!("{}", serde_json::to_string_pretty(body)?);
    Ok(())
}

pub fn print_listing(listing: &Listing) {
    say!(
        "{:<14} {:<14} {:<10} {:<10} {:<12} ROUTES",
        "CAPABILITY",
        "STAGE",
        "LEGACY",
        "SERVICE",
        "ERRORS"
    );
    for c in &listing.capabilities {
        let (failures, requests) = c.error_budget;
        say!(
            "{:<14} {:<14} {:<10} {:<10} {:<12} {}",
            c.name,
            c.stage.to_string(),
            c.legacy_backend,
            c.service_backend,
            format!("{failures}/{requests}"),
            c.routes.join(", ")
        );
    }
    say!("");
    say!("{:<14} {:<10} {:<14} RETRIES", "BACKEND", "BREAKER", "IN FLIGHT");
    for b in &listing.backends {
        let (requests, retries) = b.retry_budget;
        say!(
            "{:<14} {:<10} {:<14} {}",
            b.name,
            b.breaker,
            format!("{}/{}", b.in_flight, b.max_concurrent),
            format!("{retries}/{requests}")
        );
    }
    say!(
        "(route table revision {}; unmatched requests go to {}; ERRORS: service failures/requests in the \
         rollback window; RETRIES: retries/requests in the last 10s)",
        listing.revision,
        listing.default_backend.as_deref().unwrap_or("nowhere: 404")
    );
    if !listing.store_reachable {
        say!("warning: the route store is unreachable; the facade serves its last good table");
    }
}

pub fn print_history(transitions: &[Transition]) {
    say!(
        "{:<25} {:<12} {:<28} {:<14} REASON",
        "AT",
        "CAPABILITY",
        "CHANGE",
        "ACTOR"
    );
    for t in transitions {
        let from = t.from.map_or("(new)".to_owned(), |s| s.to_string());
        let change = format!("{from} → {}", t.to);
        let forced = if t.forced { " [forced past a gate]" } else { "" };
        say!(
            "{:<25} {:<12} {:<28} {:<14} {}{forced}",
            t.at,
            t.capability,
            change,
            t.actor,
            t.reason
        );
    }
}

pub fn print_change(body: Value, json: bool) -> anyhow::Result<()> {
    if json {
        return print_json(&body);
    }
    let outcome: ChangeOutcome = serde_json::from_value(body)?;
    let t = &outcome.transition;
    let from = t.from.map_or("(new)".to_owned(), |s| s.to_string());
    if outcome.applied {
        say!(
            "{}: {from} → {} (by {}{})",
            t.capability,
            t.to,
            t.actor,
            reason_suffix(&t.reason)
        );
    } else {
        say!(
            "dry run: would move {}: {from} → {}; nothing changed",
            t.capability,
            t.to
        );
    }
    for refusal in &outcome.overridden {
        say!("forced past a gate (recorded): {refusal}");
    }
    Ok(())
}

pub fn print_shadow_report(report: &ShadowReport) {
    let t = &report.totals;
    say!(
        "{}: {} — shadow over the last {}s",
        report.capability,
        report.stage,
        report.window_seconds
    );
    say!(
        "compared {}  mismatched {}  rate {:.2}% (gate: at most {:.2}% over at least {} comparisons)",
        t.compared,
        t.mismatched,
        report.mismatch_rate * 100.0,
        report.max_mismatch_rate * 100.0,
        report.min_comparisons
    );
    say!(
        "not compared: {} dropped (queue full), {} skipped (body over the cap, unsafe method, incomplete)",
        t.dropped,
        t.skipped
    );
    if !report.top_fields.is_empty() {
        say!("");
        say!("fields that differ most often:");
        for field in &report.top_fields {
            say!("  {:>6}  {}", field.mismatches, field.field);
        }
    }
    if !report.learned_noise.is_empty() {
        say!("");
        say!(
            "learned noise (differs between two monolith answers; not counted): {}",
            report.learned_noise.join(", ")
        );
    }
    for sample in &report.samples {
        say!("");
        say!(
            "{} {} {} (request {}): monolith {}, service {}",
            sample.at,
            sample.method,
            sample.path,
            sample.request_id,
            sample.legacy_status,
            sample.service_status
        );
        crate::output::say_raw!("{}", sample.diff);
    }
}

fn reason_suffix(reason: &str) -> String {
    if reason.is_empty() {
        String::new()
    } else {
        format!(": {reason}")
    }
}
