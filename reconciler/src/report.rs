//! The result of a reconciliation: a [`Report`] with a stable JSON form and
//! a terminal summary.
//!
//! # JSON schema (`schema_version` 1)
//!
//! Fields are only ever added within a schema version; renaming or removing
//! one bumps it.
//!
//! ```text
//! {
//!   "schema_version": 1,
//!   "capability": "orders",
//!   "source_of_truth": "legacy" | "service",
//!   "legacy_engine": "postgres" | "mysql" | "sqlite",
//!   "service_engine": "postgres" | "mysql" | "sqlite",
//!   "started_at": RFC 3339 UTC, "finished_at": RFC 3339 UTC,
//!   "status": "clean" | "diverged",
//!   "kind": "full" | "incremental",         // absent in older reports: full
//!   "since": RFC 3339 UTC,                  // incremental: rows changed from then on (overlap included)
//!   "kind_note": string,                    // why a run asked to be incremental was full
//!   "shard": { "group", "index", "count" }, // one of N processes; absent otherwise
//!   "totals": { "rows_legacy", "rows_service", "rows_compared",
//!               "missing", "extra", "changed", "settling" },   // integers
//!   "tables": [{
//!     "legacy_table", "service_table": string,
//!     "key_columns": [legacy column names, in key order],
//!     "strategy": "merge" | "bisect" | "incremental",
//!     "strategy_note": string | null,       // why a strategy was not used
//!     "rows_legacy", "rows_service": rows on each side after the filters,
//!     "rows_compared": distinct keys on either side,
//!     "rows_fetched": rows read out of both databases,
//!     "missing": [{ "key": [values], "fingerprint": hex }],   // in the monolith, not in the service
//!     "extra":   [{ "key": [values], "fingerprint": hex }],   // in the service, not in the monolith
//!     "changed": [{ "key": [values], "columns": [{ "column": legacy name,
//!                   "service_column": service name,
//!                   "legacy": value, "service": value }],      // normalized values
//!                   "legacy_fingerprint": hex, "service_fingerprint": hex }],
//!     "settling": [{ "key": [values], "kind": "missing" | "extra" | "changed" }]
//!   }]
//! }
//! ```
//!
//! Values are JSON `null`, numbers, strings, or `{"bytes_hex": "…"}`.
//! A fingerprint is 16 hex digits standing for the whole row as read on
//! that side (FNV-1a over its raw values); a repair checks the follower's row
//! against it. Reports written before fingerprints existed lack them.
//! "missing" and "extra" are always relative to the monolith, whichever
//! side is the source of truth. Settling rows (changed within the settle
//! window) are not divergences and do not make a run diverged.

use mapping::SourceOfTruth;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use toolkit_db::sql_value::SqlValue;

use crate::key_text::key_text;

/// The version of the JSON schema above.
pub const SCHEMA_VERSION: u32 = 1;

/// The outcome of a comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// No divergence (settling rows aside).
    Clean,
    /// At least one missing, extra or changed row.
    Diverged,
}

impl Status {
    /// Its name in the JSON report, and in the store as a
    /// [`RunStatus`](crate::RunStatus).
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Clean => "clean",
            Status::Diverged => "diverged",
        }
    }
}

/// How a table was compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Method {
    /// A streaming merge of both sides in key order.
    Merge,
    /// Checksums of key ranges in each database, merging only ranges that differ.
    Bisect,
    /// Only the rows changed since the last clean run, and a count check.
    Incremental,
}

impl Method {
    /// Its name in the JSON report: `merge`, `bisect` or `incremental`.
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Merge => "merge",
            Method::Bisect => "bisect",
            Method::Incremental => "incremental",
        }
    }
}

/// Whether a run compared whole tables or what changed since the last
/// clean run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunKind {
    /// Every row.
    #[default]
    Full,
    /// The rows changed since the last clean run, where a table has an
    /// `updated_at_column`; its other tables in full.
    Incremental,
}

impl RunKind {
    /// Its name in the JSON report and the store.
    pub fn as_str(self) -> &'static str {
        match self {
            RunKind::Full => "full",
            RunKind::Incremental => "incremental",
        }
    }
}

/// Which part of a sharded run a report covers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shard {
    /// The run group all shards share.
    pub group: String,
    /// This shard, from 1.
    pub index: u32,
    /// How many shards.
    pub count: u32,
}

/// A key that exists on one side only.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KeyEntry {
    /// Key values, in key order.
    pub key: Vec<Value>,
    /// The row as read on the side that has it, fingerprinted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fingerprint: Option<String>,
}

/// One column that differs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ColumnDiff {
    /// Legacy column name.
    pub column: String,
    /// Service column name.
    pub service_column: String,
    /// The monolith's value, normalized.
    pub legacy: Value,
    /// The service's value, normalized.
    pub service: Value,
}

/// A row whose key exists on both sides but whose columns differ.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChangedRow {
    /// Key values, in key order.
    pub key: Vec<Value>,
    /// The differing columns.
    pub columns: Vec<ColumnDiff>,
    /// The monolith's row as read, fingerprinted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub legacy_fingerprint: Option<String>,
    /// The service's row as read, fingerprinted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_fingerprint: Option<String>,
}

/// What kind of difference a settling row would have been.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// In the monolith only.
    Missing,
    /// In the service only.
    Extra,
    /// On both sides, different.
    Changed,
}

/// A difference held back because the row changed within the settle window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SettlingRow {
    /// Key values, in key order.
    pub key: Vec<Value>,
    /// What it would be reported as.
    pub kind: Kind,
}

/// One table's result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TableReport {
    /// Table in the monolith.
    pub legacy_table: String,
    /// Table in the service.
    pub service_table: String,
    /// Legacy key column names.
    pub key_columns: Vec<String>,
    /// How it was compared.
    pub strategy: Method,
    /// Why the requested or preferred strategy was not used, if so.
    pub strategy_note: Option<String>,
    /// Rows in the monolith's table (after `legacy_filter`).
    pub rows_legacy: u64,
    /// Rows in the service's table (after `service_filter`).
    pub rows_service: u64,
    /// Distinct keys on either side.
    pub rows_compared: u64,
    /// Rows read out of both databases.
    pub rows_fetched: u64,
    /// Keys in the monolith only.
    pub missing: Vec<KeyEntry>,
    /// Keys in the service only.
    pub extra: Vec<KeyEntry>,
    /// Keys on both sides with differing columns.
    pub changed: Vec<ChangedRow>,
    /// Differences held back by the settle window.
    pub settling: Vec<SettlingRow>,
}

/// Sums over all tables.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Totals {
    /// Rows in the monolith's tables.
    pub rows_legacy: u64,
    /// Rows in the service's tables.
    pub rows_service: u64,
    /// Distinct keys compared.
    pub rows_compared: u64,
    /// Keys in the monolith only.
    pub missing: u64,
    /// Keys in the service only.
    pub extra: u64,
    /// Keys whose rows differ.
    pub changed: u64,
    /// Differences held back by the settle window.
    pub settling: u64,
}

/// A whole run's result; see the module documentation for its JSON.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// [`SCHEMA_VERSION`].
    pub schema_version: u32,
    /// The capability compared.
    pub capability: String,
    /// Which side is right when they disagree.
    pub source_of_truth: SourceOfTruth,
    /// Engine of the monolith's database.
    pub legacy_engine: String,
    /// Engine of the service's database.
    pub service_engine: String,
    /// When the run started (RFC 3339, UTC).
    pub started_at: String,
    /// When it finished.
    pub finished_at: String,
    /// Clean or diverged.
    pub status: Status,
    /// Full or incremental.
    #[serde(default)]
    pub kind: RunKind,
    /// Of an incremental run: rows changed from then on were compared.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<String>,
    /// Why a run asked to be incremental was full.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind_note: Option<String>,
    /// Of one process of a sharded run: which part.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shard: Option<Shard>,
    /// Sums over all tables.
    pub totals: Totals,
    /// Per table, in mapping order.
    pub tables: Vec<TableReport>,
}

impl Report {
    /// Fills `totals` and `status` from the tables.
    pub fn finish(&mut self) {
        let mut totals = Totals::default();
        for t in &self.tables {
            totals.rows_legacy += t.rows_legacy;
            totals.rows_service += t.rows_service;
            totals.rows_compared += t.rows_compared;
            totals.missing += t.missing.len() as u64;
            totals.extra += t.extra.len() as u64;
            totals.changed += t.changed.len() as u64;
            totals.settling += t.settling.len() as u64;
        }
        self.status = if totals.missing + totals.extra + totals.changed == 0 {
            Status::Clean
        } else {
            Status::Diverged
        };
        self.totals = totals;
    }

    /// What kind of run this was, when there is more to say than "full":
    /// incremental since when, why a run asked to be incremental was full,
    /// which shard.
    pub fn kind_line(&self) -> Option<String> {
        let mut parts = Vec::new();
        match (&self.kind, &self.since, &self.kind_note) {
            (RunKind::Incremental, Some(since), _) => {
                parts.push(format!("incremental run: rows changed since {since}"))
            }
            (_, _, Some(note)) => parts.push(format!("full run: {note}")),
            _ => {}
        }
        if let Some(shard) = &self.shard {
            parts.push(format!(
                "shard {} of {} in run group `{}`",
                shard.index, shard.count, shard.group
            ));
        }
        (!parts.is_empty()).then(|| parts.join("; "))
    }

    /// A terminal summary: one line per table, then each divergence.
    pub fn to_human(&self) -> String {
        let mut out = format!(
            "reconciliation of `{}` ({} → {}): {}\n",
            self.capability,
            self.legacy_engine,
            self.service_engine,
            self.status.as_str().to_uppercase()
        );
        if let Some(line) = self.kind_line() {
            out.push_str(&format!("  {line}\n"));
        }
        for t in &self.tables {
            out.push_str(&format!(
                "  {} → {} [{}]: {} keys, {} missing, {} extra, {} changed, {} settling\n",
                t.legacy_table,
                t.service_table,
                t.strategy.as_str(),
                t.rows_compared,
                t.missing.len(),
                t.extra.len(),
                t.changed.len(),
                t.settling.len()
            ));
            for m in &t.missing {
                out.push_str(&format!("    missing in service: {}\n", key_text(&m.key)));
            }
            for e in &t.extra {
                out.push_str(&format!("    extra in service:   {}\n", key_text(&e.key)));
            }
            for c in &t.changed {
                out.push_str(&format!("    changed:            {}\n", key_text(&c.key)));
                for d in &c.columns {
                    out.push_str(&format!(
                        "      {} / {}: monolith {} ≠ service {}\n",
                        d.column, d.service_column, d.legacy, d.service
                    ));
                }
            }
        }
        out
    }
}

/// A value as it appears in the JSON report.
pub fn json_value(value: &SqlValue) -> Value {
    match value {
        SqlValue::Null => Value::Null,
        SqlValue::Int(i) => Value::from(*i),
        SqlValue::Float(f) => {
            serde_json::Number::from_f64(*f).map_or_else(|| Value::from(f.to_string()), Value::Number)
        }
        SqlValue::Text(t) => Value::from(t.clone()),
        SqlValue::Bytes(b) => {
            let hex: String = b.iter().map(|byte| format!("{byte:02x}")).collect();
            serde_json::json!({ "bytes_hex": hex })
        }
    }
}

/// A key as it appears in the JSON report.
pub fn json_key(key: &[SqlValue]) -> Vec<Value> {
    key.iter().map(json_value).collect()
}
