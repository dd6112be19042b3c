//! Gates on forward moves: the evidence a capability must show before it
//! goes further toward the service.
//!
//! - Leaving `shadow` forward: the shadow mismatch rate over the last window
//!   must be at most the threshold, over at least the minimum number of
//!   comparisons (no comparisons is no evidence).
//! - Reaching `service` or `retired` from an earlier stage: the latest
//!   reconciliation of the capability's tables must be clean and younger
//!   than the configured age.
//!
//! Moves back never meet a gate. `--force` overrides a refusal; the
//! transition then records `forced` and what the gates found.

use chrono::{DateTime, Utc};
use serde_json::{json, Value};
use toolkit_db::Database;

use crate::decision::policy::GatePolicy;
use crate::decision::stage::Stage;
use crate::flow::shadow::recorder::current_bucket;
use crate::flow::shadow::store;

/// What the gates found for one move.
#[derive(Debug, Clone, PartialEq)]
pub struct GateCheck {
    /// Why the move is refused; empty when it may go ahead.
    pub refusals: Vec<String>,
    /// The measurements, kept with the transition.
    pub evidence: Value,
}

impl GateCheck {
    /// Whether every gate passed.
    pub fn passed(&self) -> bool {
        self.refusals.is_empty()
    }
}

/// Checks the gates on moving `capability` from `from` to `to`.
pub async fn check(
    db: &Database,
    capability: &str,
    policy: &GatePolicy,
    from: Stage,
    to: Stage,
) -> Result<GateCheck, sqlx::Error> {
    let mut refusals = Vec::new();
    let mut evidence = serde_json::Map::new();
    if !from.is_forward_to(to) {
        return Ok(GateCheck {
            refusals,
            evidence: Value::Object(evidence),
        });
    }
    if from == Stage::Shadow {
        let window = policy.shadow_window.as_secs();
        let since = current_bucket() - i64::try_from(window / 10).unwrap_or(i64::MAX);
        let totals = store::totals(db, capability, since).await?;
        let rate = totals.mismatch_rate();
        evidence.insert(
            "shadow".to_owned(),
            json!({
                "window_seconds": window,
                "compared": totals.compared,
                "mismatched": totals.mismatched,
                "mismatch_rate": rate,
                "max_mismatch_rate": policy.shadow_max_mismatch_rate,
                "min_comparisons": policy.shadow_min_comparisons,
            }),
        );
        if u64::try_from(totals.compared).unwrap_or(0) < policy.shadow_min_comparisons {
            refusals.push(format!(
                "only {} shadow comparisons in the last {window}s; at least {} are needed as evidence \
                 (send traffic through the facade and try again)",
                totals.compared, policy.shadow_min_comparisons
            ));
        } else if rate > policy.shadow_max_mismatch_rate {
            refusals.push(format!(
                "the shadow mismatch rate over the last {window}s is {:.2}% ({} of {}), above the {:.2}% \
                 threshold; see `strangler routes diff {capability}`",
                rate * 100.0,
                totals.mismatched,
                totals.compared,
                policy.shadow_max_mismatch_rate * 100.0
            ));
        }
    }
    let reaches_service = matches!(to, Stage::Service | Stage::Retired) && !matches!(from, Stage::Service);
    if reaches_service && policy.reconciliation {
        let latest = latest_reconciliation(db, capability).await?;
        let max_age = policy.reconciliation_max_age.as_secs();
        match latest {
            None => refusals.push(format!(
                "no reconciliation of `{capability}` has finished; run `strangler reconcile run {capability}` \
                 and repair any divergence first"
            )),
            Some(run) => {
                let age = run.age_seconds();
                evidence.insert(
                    "reconciliation".to_owned(),
                    json!({
                        "run": run.id,
                        "status": run.status,
                        "finished_at": run.finished_at,
                        "age_seconds": age,
                        "max_age_seconds": max_age,
                        "missing": run.missing,
                        "extra": run.extra,
                        "changed": run.changed,
                    }),
                );
                if run.status != "clean" {
                    refusals.push(format!(
                        "the latest reconciliation of `{capability}` (run {}) is {}: {} missing, {} extra, {} changed; \
                         repair with `strangler reconcile repair {capability} --apply` and run it again",
                        run.id,
                        run.status,
                        run.missing.unwrap_or(0),
                        run.extra.unwrap_or(0),
                        run.changed.unwrap_or(0)
                    ));
                } else if age.is_none_or(|age| age > max_age) {
                    refusals.push(format!(
                        "the latest clean reconciliation of `{capability}` (run {}) finished at {}, more than \
                         {max_age}s ago; run `strangler reconcile run {capability}` again",
                        run.id, run.finished_at
                    ));
                }
            }
        }
    }
    Ok(GateCheck {
        refusals,
        evidence: Value::Object(evidence),
    })
}

#[derive(Debug, sqlx::FromRow)]
struct Run {
    id: i64,
    status: String,
    finished_at: String,
    missing: Option<i64>,
    extra: Option<i64>,
    changed: Option<i64>,
}

impl Run {
    fn age_seconds(&self) -> Option<u64> {
        let finished = DateTime::parse_from_rfc3339(&self.finished_at).ok()?;
        let age = Utc::now().signed_duration_since(finished).num_seconds();
        Some(u64::try_from(age).unwrap_or(0))
    }
}

/// What `/metrics` shows of a capability's latest finished comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct LatestComparison {
    /// Rows only the source of truth has.
    pub(crate) missing: i64,
    /// Rows only the follower has.
    pub(crate) extra: i64,
    /// Rows whose values differ.
    pub(crate) changed: i64,
    /// Seconds since the comparison ended.
    pub(crate) age_seconds: u64,
}

/// The latest comparison of `capability` that finished, clean or diverged
/// (a failed run compared nothing, so it neither clears nor refreshes the
/// evidence); `None` when there is none. One shard of a sharded run saw
/// part of the keys and is never evidence for the whole capability.
pub(crate) async fn latest_comparison(
    db: &Database,
    capability: &str,
) -> Result<Option<LatestComparison>, sqlx::Error> {
    let run: Option<Run> = sqlx::query_as(
        "SELECT id, status, finished_at, missing, extra, changed FROM reconciliation_runs \
         WHERE capability = $1 AND status IN ('clean', 'diverged') AND finished_at IS NOT NULL \
         AND run_group IS NULL ORDER BY id DESC LIMIT 1",
    )
    .bind(capability)
    .fetch_optional(db.pool())
    .await?;
    Ok(run.and_then(|run| {
        Some(LatestComparison {
            missing: run.missing.unwrap_or(0),
            extra: run.extra.unwrap_or(0),
            changed: run.changed.unwrap_or(0),
            age_seconds: run.age_seconds()?,
        })
    }))
}

async fn latest_reconciliation(db: &Database, capability: &str) -> Result<Option<Run>, sqlx::Error> {
    sqlx::query_as(
        "SELECT id, status, finished_at, missing, extra, changed FROM reconciliation_runs \
         WHERE capability = $1 AND status <> 'running' AND finished_at IS NOT NULL AND run_group IS NULL \
         ORDER BY id DESC LIMIT 1",
    )
    .bind(capability)
    .fetch_optional(db.pool())
    .await
}
