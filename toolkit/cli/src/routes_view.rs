//! How `strangler routes …` prints what the admin API answers: aligned
//! tables for people, the API's JSON untouched for scripts.

use crate::output::say;
use crate::table::{Column, TextTable};
use facade::admin::{ChangeOutcome, Listing, ShadowReport};
use facade::route_store::Transition;
use serde_json::Value;

pub fn print_json(body: &Value) -> anyhow::Result<()> {
    say!("{}", serde_json::to_string_pretty(body)?);
    Ok(())
}

fn capability_table(listing: &Listing) -> TextTable {
    let columns = [
        Column::left("CAPABILITY", 14),
        Column::left("STAGE", 14),
        Column::left("LEGACY", 10),
        Column::left("SERVICE", 10),
        Column::left("ERRORS", 12),
        Column::left("ROUTES", 0),
    ];
    TextTable::new(&columns).rows(&listing.capabilities, |c| {
        let (failures, requests) = c.error_budget;
        [
            c.name.clone(),
            c.stage.to_string(),
            c.legacy_backend.clone(),
            c.service_backend.clone(),
            format!("{failures}/{requests}"),
            c.routes.join(", "),
        ]
    })
}

fn backend_table(listing: &Listing) -> TextTable {
    let columns = [
        Column::left("BACKEND", 14),
        Column::left("BREAKER", 10),
        Column::left("IN FLIGHT", 14),
        Column::left("RETRIES", 0),
    ];
    TextTable::new(&columns).rows(&listing.backends, |b| {
        let (requests, retries) = b.retry_budget;
        [
            b.name.clone(),
            b.breaker.clone(),
            format!("{}/{}", b.in_flight, b.max_concurrent),
            format!("{retries}/{requests}"),
        ]
    })
}

pub fn print_listing(listing: &Listing) {
    capability_table(listing).print();
    say!("");
    backend_table(listing).print();
    say!(
        "(replica {}, route table revision {}; unmatched requests go to {}; ERRORS: service failures/requests \
         in the rollback window; RETRIES: retries/requests in the last 10s)",
        listing.replica_id,
        listing.revision,
        listing.default_backend.as_deref().unwrap_or("nowhere: 404")
    );
    if !listing.store_reachable {
        say!("warning: the route store is unreachable; the facade serves its last good table");
    }
}

fn history_table(transitions: &[Transition]) -> TextTable {
    let columns = [
        Column::left("AT", 25),
        Column::left("CAPABILITY", 12),
        Column::left("CHANGE", 28),
        Column::left("ACTOR", 14),
        Column::left("REPLICA", 12),
        Column::left("REASON", 0),
    ];
    TextTable::new(&columns).rows(transitions, |t| {
        let from = t.from.map_or("(new)".to_owned(), |s| s.to_string());
        let forced = if t.forced { " [forced past a gate]" } else { "" };
        [
            t.at.clone(),
            t.capability.clone(),
            format!("{from} → {}", t.to),
            t.actor.clone(),
            t.replica.clone().unwrap_or_else(|| "-".to_owned()),
            format!("{}{forced}", t.reason),
        ]
    })
}

pub fn print_history(transitions: &[Transition]) {
    history_table(transitions).print();
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const LONG: &str = "loyalty-points-and-gift-card-balances";

    fn capability(name: &str, stage: &str) -> Value {
        json!({
            "name": name,
            "stage": stage,
            "legacy_backend": "legacy",
            "service_backend": "catalog",
            "routes": ["GET /products"],
            "error_budget": [1, 20],
        })
    }

    /// Where each of `header`'s column titles starts, in characters.
    fn starts(header: &str, titles: &[&str]) -> Vec<usize> {
        titles
            .iter()
            .map(|title| header[..header.find(title).unwrap()].chars().count())
            .collect()
    }

    /// Checks that every row has a value starting exactly where each
    /// column's title does, after a space.
    fn assert_aligned(lines: &[String], titles: &[&str]) {
        let columns = starts(&lines[0], titles);
        for line in &lines[1..] {
            let chars: Vec<char> = line.chars().collect();
            for &at in &columns {
                assert!(
                    chars[at - 1] == ' ' && chars[at] != ' ',
                    "column at {at} misaligned in:\n{}",
                    lines.join("\n")
                );
            }
        }
    }

    #[test]
    fn the_listing_keeps_its_layout_for_short_names() {
        let listing: Listing = serde_json::from_value(json!({
            "revision": 3,
            "store_reachable": true,
            "default_backend": "legacy",
            "capabilities": [capability("catalog", "legacy")],
            "backends": [{ "name": "legacy", "breaker": "closed", "in_flight": 0,
                           "max_concurrent": 64, "retry_budget": [10, 1] }],
        }))
        .unwrap();
        assert_eq!(
            capability_table(&listing).lines(),
            [
                "CAPABILITY     STAGE          LEGACY     SERVICE    ERRORS       ROUTES",
                "catalog        legacy         legacy     catalog    1/20         GET /products",
            ]
        );
        assert_eq!(
            backend_table(&listing).lines(),
            [
                "BACKEND        BREAKER    IN FLIGHT      RETRIES",
                "legacy         closed     0/64           1/10",
            ]
        );
    }

    #[test]
    fn a_long_capability_name_keeps_the_columns_aligned() {
        let listing: Listing = serde_json::from_value(json!({
            "revision": 3,
            "store_reachable": true,
            "default_backend": null,
            "capabilities": [capability("catalog", "canary 50%"), capability(LONG, "legacy")],
            "backends": [{ "name": LONG, "breaker": "half_open", "in_flight": 12,
                           "max_concurrent": 64, "retry_budget": [100, 7] }],
        }))
        .unwrap();
        let lines = capability_table(&listing).lines();
        assert_eq!(lines.len(), 3);
        assert!(lines[2].starts_with(&format!("{LONG} legacy")), "{lines:?}");
        assert_aligned(&lines, &["STAGE", "LEGACY", "SERVICE", "ERRORS", "ROUTES"]);
        assert_aligned(
            &backend_table(&listing).lines(),
            &["BREAKER", "IN FLIGHT", "RETRIES"],
        );

        let transitions: Vec<Transition> = serde_json::from_value(json!([
            { "id": 1, "capability": "orders", "from": "legacy", "to": "canary 50%",
              "actor": "cli", "reason": "first orders", "at": "2026-01-01T00:00:00.000Z" },
            { "id": 2, "capability": LONG, "from": null, "to": "legacy",
              "actor": "auto-rollback", "reason": "error budget", "forced": true,
              "at": "2026-01-01T00:00:01.000Z", "replica": "facade-7d9c-x2" },
        ]))
        .unwrap();
        let lines = history_table(&transitions).lines();
        assert_aligned(&lines, &["CAPABILITY", "CHANGE", "ACTOR", "REPLICA", "REASON"]);
        assert!(lines[2].contains("facade-7d9c-x2"), "{lines:?}");
        assert!(
            lines[2].ends_with("error budget [forced past a gate]"),
            "{lines:?}"
        );
    }
}
