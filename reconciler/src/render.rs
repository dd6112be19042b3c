//! Reports for people: Markdown (for a pull request or a ticket) and a
//! self-contained HTML page (for a browser, no network needed) with
//! side-by-side values of every changed row, character-level differences
//! of text values (the `similar` crate), and the divergence trend across
//! past runs.
//!
//! Both show everything the report holds: exactness is the point, so no
//! divergence is summarized away.

use std::fmt::Write as _;

// Escapes `&`, `<`, `>`, `"` and `'`: safe in element text and in quoted
// attribute values alike.
use html_escape::encode_quoted_attribute as escape;
use serde_json::Value;
use similar::{ChangeTag, TextDiff};

use crate::key_text::key_text;
use crate::report::{ChangedRow, ColumnDiff, KeyEntry, Kind, Report, SettlingRow, TableReport};
use crate::run_store::{RunRecord, RunStatus};

/// One past run, for the trend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrendPoint {
    /// Run id in the store.
    pub id: i64,
    /// When it started.
    pub started_at: String,
    /// Running, clean, diverged or failed.
    pub status: RunStatus,
    /// Keys in the monolith only (none for a failed run).
    pub missing: Option<i64>,
    /// Keys in the service only.
    pub extra: Option<i64>,
    /// Changed rows.
    pub changed: Option<i64>,
}

impl TrendPoint {
    fn divergences(&self) -> Option<i64> {
        Some(self.missing? + self.extra? + self.changed?)
    }

    /// Missing, extra and changed as shown: `-` for a run without counts.
    fn counts(&self) -> [String; 3] {
        [self.missing, self.extra, self.changed].map(|n| n.map_or("-".to_owned(), |n| n.to_string()))
    }
}

impl From<&RunRecord> for TrendPoint {
    fn from(run: &RunRecord) -> Self {
        Self {
            id: run.id,
            started_at: run.started_at.clone(),
            status: run.status,
            missing: run.missing,
            extra: run.extra,
            changed: run.changed,
        }
    }
}

fn value_text(value: &Value) -> String {
    match value {
        Value::Null => "NULL".to_owned(),
        Value::String(text) => text.clone(),
        other => other.to_string(),
    }
}

/// Writes a part of a report only when it has `items`: `head` given their
/// count, then each item's text, then `end`. Both renderings show the same
/// parts in the same order; only their markup differs.
fn section<T>(
    out: &mut String,
    items: &[T],
    head: impl FnOnce(usize) -> String,
    item: impl Fn(&T) -> String,
    end: &str,
) {
    if items.is_empty() {
        return;
    }
    out.push_str(&head(items.len()));
    for each in items {
        out.push_str(&item(each));
    }
    out.push_str(end);
}

/// Escapes text for a Markdown table cell inside a code span.
fn md_cell(text: &str) -> String {
    let text = text.replace('|', "\\|").replace('`', "'").replace('\n', " ");
    format!("`{text}`")
}

/// The Markdown report.
pub fn markdown(report: &Report, trend: &[TrendPoint]) -> String {
    let mut out = String::new();
    let t = &report.totals;
    let _ = writeln!(
        out,
        "# Reconciliation of `{}`: {}\n",
        report.capability,
        report.status.as_str().to_uppercase()
    );
    let _ = writeln!(
        out,
        "{} → {}, {} to {}. Source of truth: {:?}.\n",
        report.legacy_engine,
        report.service_engine,
        report.started_at,
        report.finished_at,
        report.source_of_truth
    );
    if let Some(line) = report.kind_line() {
        let _ = writeln!(out, "{}\n", md_cell(&line));
    }
    let _ = writeln!(
        out,
        "| compared | missing in service | extra in service | changed | settling |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|");
    let _ = writeln!(
        out,
        "| {} | {} | {} | {} | {} |\n",
        t.rows_compared, t.missing, t.extra, t.changed, t.settling
    );
    for table in &report.tables {
        table_parts::<Markdown>(&mut out, table);
    }
    section(
        &mut out,
        trend,
        |_| {
            "## Trend\n\n| run | started | status | missing | extra | changed |\n|---|---|---|---|---|---|\n"
                .to_owned()
        },
        |point| {
            let [missing, extra, changed] = point.counts();
            format!(
                "| #{} | {} | {} | {missing} | {extra} | {changed} |\n",
                point.id, point.started_at, point.status
            )
        },
        "",
    );
    out
}

/// How a rendering marks up the parts of a table's report: [`table_parts`] walks
/// the parts, the same for both renderings.
trait Markup {
    /// What ends each part.
    const END: &'static str;
    /// The table's heading, with how it was compared.
    fn heading(table: &TableReport) -> String;
    /// The heading of a list of keys (`Missing in the service`, …).
    fn keys(title: &str, count: usize) -> String;
    /// One key of such a list, as the user writes it.
    fn key(key: &str) -> String;
    /// The heading of the changed rows.
    fn changed(count: usize) -> String;
    /// One changed column of the row with `key`.
    fn changed_column(key: &str, column: &ColumnDiff) -> String;
    /// The heading of the settling rows.
    fn settling(count: usize) -> String;
    /// One settling row and what it would be.
    fn settling_row(key: &str, kind: Kind) -> String;
}

/// A table's report: its heading, then each part that has rows.
fn table_parts<M: Markup>(out: &mut String, table: &TableReport) {
    out.push_str(&M::heading(table));
    for (title, keys) in [
        ("Missing in the service", &table.missing),
        ("Extra in the service", &table.extra),
    ] {
        let key = |entry: &KeyEntry| M::key(&key_text(&entry.key));
        section(out, keys, |n| M::keys(title, n), key, M::END);
    }
    let changed = |row: &ChangedRow| {
        let key = key_text(&row.key);
        row.columns.iter().map(|c| M::changed_column(&key, c)).collect()
    };
    section(out, &table.changed, M::changed, changed, M::END);
    let settling = |row: &SettlingRow| M::settling_row(&key_text(&row.key), row.kind);
    section(out, &table.settling, M::settling, settling, M::END);
}

/// Markdown, for a pull request or a ticket.
struct Markdown;

impl Markup for Markdown {
    const END: &'static str = "\n";

    fn heading(table: &TableReport) -> String {
        let mut out = format!(
            "## `{}` → `{}`\n\n{} keys compared by {:?}; key: {}.\n\n",
            table.legacy_table,
            table.service_table,
            table.rows_compared,
            table.strategy,
            table.key_columns.join(", ")
        );
        if let Some(note) = &table.strategy_note {
            let _ = writeln!(out, "> {note}\n");
        }
        out
    }

    fn keys(title: &str, count: usize) -> String {
        format!("### {title} ({count})\n\n")
    }

    fn key(key: &str) -> String {
        format!("- {}\n", md_cell(key))
    }

    fn changed(count: usize) -> String {
        format!("### Changed ({count})\n\n| key | column | monolith | service |\n|---|---|---|---|\n")
    }

    fn changed_column(key: &str, column: &ColumnDiff) -> String {
        format!(
            "| {} | {} | {} | {} |\n",
            md_cell(key),
            md_cell(&format!("{} → {}", column.column, column.service_column)),
            md_cell(&value_text(&column.legacy)),
            md_cell(&value_text(&column.service))
        )
    }

    fn settling(count: usize) -> String {
        format!("### Settling ({count}), judged after the settle window\n\n")
    }

    fn settling_row(key: &str, kind: Kind) -> String {
        format!("- {} ({kind:?})\n", md_cell(key))
    }
}

/// A self-contained HTML page.
struct Html;

impl Markup for Html {
    const END: &'static str = "</table>";

    fn heading(table: &TableReport) -> String {
        format!(
            "<h2><code>{}</code> → <code>{}</code></h2><p class=\"note\">{} keys compared by {:?}; key: {}.{}</p>",
            escape(&table.legacy_table),
            escape(&table.service_table),
            table.rows_compared,
            table.strategy,
            escape(&table.key_columns.join(", ")),
            table.strategy_note.as_deref().map(|n| format!(" {}", escape(n))).unwrap_or_default()
        )
    }

    fn keys(title: &str, count: usize) -> String {
        format!("<h3>{title} ({count})</h3><table><tr><th>key</th></tr>")
    }

    fn key(key: &str) -> String {
        format!("<tr><td class=\"v\">{}</td></tr>", escape(key))
    }

    fn changed(count: usize) -> String {
        format!(
            "<h3>Changed ({count})</h3><table><tr><th>key</th><th>column</th><th>monolith</th><th>service</th></tr>"
        )
    }

    fn changed_column(key: &str, column: &ColumnDiff) -> String {
        let (legacy, service) = html_values(&column.legacy, &column.service);
        format!(
            "<tr><td class=\"v\">{}</td><td><code>{}</code> → <code>{}</code></td><td class=\"v\">{legacy}</td><td class=\"v\">{service}</td></tr>",
            escape(key),
            escape(&column.column),
            escape(&column.service_column)
        )
    }

    fn settling(count: usize) -> String {
        format!("<h3>Settling ({count})</h3><table><tr><th>key</th><th>would be</th></tr>")
    }

    fn settling_row(key: &str, kind: Kind) -> String {
        format!("<tr><td class=\"v\">{}</td><td>{kind:?}</td></tr>", escape(key))
    }
}

/// Both values of a changed column, with character-level differences
/// marked when both are text.
fn html_values(legacy: &Value, service: &Value) -> (String, String) {
    let (old, new) = (value_text(legacy), value_text(service));
    if !(legacy.is_string() && service.is_string()) {
        return (escape(&old).into_owned(), escape(&new).into_owned());
    }
    let diff = TextDiff::from_chars(&old, &new);
    let (mut left, mut right) = (String::new(), String::new());
    for change in diff.iter_all_changes() {
        let text = escape(change.value());
        match change.tag() {
            ChangeTag::Equal => {
                left.push_str(&text);
                right.push_str(&text);
            }
            ChangeTag::Delete => {
                let _ = write!(left, "<del>{text}</del>");
            }
            ChangeTag::Insert => {
                let _ = write!(right, "<ins>{text}</ins>");
            }
        }
    }
    (left, right)
}

const STYLE: &str = "body{font:14px/1.45 system-ui,sans-serif;margin:2em auto;max-width:72em;color:#222}\
h1 .clean{color:#17803d}h1 .diverged{color:#b42318}table{border-collapse:collapse;margin:.5em 0 1.5em}\
td,th{border:1px solid #ddd;padding:.25em .6em;text-align:left;vertical-align:top}th{background:#f6f6f6}\
code,td.v{font-family:ui-monospace,monospace}del{background:#fdd;text-decoration:none}\
ins{background:#dfd;text-decoration:none}.note{color:#666}svg{background:#fafafa;border:1px solid #eee}";

/// The self-contained HTML report.
pub fn html(report: &Report, trend: &[TrendPoint]) -> String {
    let mut out = String::new();
    let status = report.status.as_str();
    let t = &report.totals;
    let _ = write!(
        out,
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Reconciliation of {cap}</title>\
         <style>{STYLE}</style></head><body><h1>Reconciliation of <code>{cap}</code>: <span class=\"{status}\">{upper}</span></h1>\
         <p class=\"note\">{le} → {se}, {start} to {end}. Source of truth: {sot:?}.</p>\
         <table><tr><th>compared</th><th>missing in service</th><th>extra in service</th><th>changed</th><th>settling</th></tr>\
         <tr><td>{c}</td><td>{m}</td><td>{x}</td><td>{ch}</td><td>{s}</td></tr></table>",
        cap = escape(&report.capability),
        upper = status.to_uppercase(),
        le = escape(&report.legacy_engine),
        se = escape(&report.service_engine),
        start = escape(&report.started_at),
        end = escape(&report.finished_at),
        sot = report.source_of_truth,
        c = t.rows_compared,
        m = t.missing,
        x = t.extra,
        ch = t.changed,
        s = t.settling,
    );
    if !trend.is_empty() {
        html_trend(&mut out, trend);
    }
    for table in &report.tables {
        table_parts::<Html>(&mut out, table);
    }
    out.push_str("</body></html>\n");
    out
}

fn html_trend(out: &mut String, trend: &[TrendPoint]) {
    const WIDTH: i64 = 600;
    const HEIGHT: i64 = 120;
    let max = trend
        .iter()
        .filter_map(TrendPoint::divergences)
        .max()
        .unwrap_or(0)
        .max(1);
    let bar = (WIDTH / trend.len() as i64).clamp(4, 60);
    let _ = write!(
        out,
        "<h2>Divergences per run</h2><svg width=\"{WIDTH}\" height=\"{HEIGHT}\" role=\"img\">"
    );
    for (i, point) in trend.iter().enumerate() {
        let x = i as i64 * bar;
        match point.divergences() {
            Some(n) => {
                let h = (n * (HEIGHT - 10) / max).max(if n > 0 { 2 } else { 0 });
                let color = if n == 0 { "#17803d" } else { "#b42318" };
                let _ = write!(
                    out,
                    "<rect x=\"{x}\" y=\"{}\" width=\"{}\" height=\"{h}\" fill=\"{color}\"><title>run #{} ({}): {n}</title></rect>",
                    HEIGHT - h,
                    bar - 2,
                    point.id,
                    escape(&point.started_at)
                );
            }
            None => {
                let _ = write!(
                    out,
                    "<rect x=\"{x}\" y=\"0\" width=\"{}\" height=\"{HEIGHT}\" fill=\"#ccc\"><title>run #{}: {}</title></rect>",
                    bar - 2,
                    point.id,
                    point.status
                );
            }
        }
    }
    out.push_str("</svg><table><tr><th>run</th><th>started</th><th>status</th><th>missing</th><th>extra</th><th>changed</th></tr>");
    for point in trend {
        let [missing, extra, changed] = point.counts();
        let _ = write!(
            out,
            "<tr><td>#{}</td><td>{}</td><td>{}</td><td>{missing}</td><td>{extra}</td><td>{changed}</td></tr>",
            point.id,
            escape(&point.started_at),
            point.status,
        );
    }
    out.push_str("</table>");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_differences_are_marked_per_character_and_escaped() {
        let (left, right) = html_values(&Value::from("Umbrella <b>"), &Value::from("Umbrela <i>"));
        assert_eq!(left, "Umbrel<del>l</del>a &lt;<del>b</del>&gt;");
        assert_eq!(right, "Umbrela &lt;<ins>i</ins>&gt;");
        let (left, right) = html_values(&Value::from(12), &Value::Null);
        assert_eq!((left.as_str(), right.as_str()), ("12", "NULL"));
    }

    #[test]
    fn markdown_cells_cannot_break_the_table() {
        assert_eq!(md_cell("a|b`c\nd"), "`a\\|b'c d`");
    }

    const HOSTILE: &str = "<script>alert('x')</script>\"><img onerror=x>";
    const ESCAPED: &str = "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;&quot;&gt;&lt;img onerror=x&gt;";

    fn hostile_report() -> Report {
        use crate::report::{ChangedRow, ColumnDiff, KeyEntry, Kind, Method, SettlingRow, Status, Totals};
        let key = || vec![Value::from(HOSTILE)];
        Report {
            schema_version: crate::report::SCHEMA_VERSION,
            capability: HOSTILE.to_owned(),
            source_of_truth: mapping::SourceOfTruth::Legacy,
            legacy_engine: HOSTILE.to_owned(),
            service_engine: HOSTILE.to_owned(),
            started_at: HOSTILE.to_owned(),
            finished_at: HOSTILE.to_owned(),
            status: Status::Diverged,
            kind: crate::report::RunKind::Full,
            since: None,
            kind_note: None,
            shard: None,
            totals: Totals::default(),
            tables: vec![TableReport {
                legacy_table: HOSTILE.to_owned(),
                service_table: HOSTILE.to_owned(),
                key_columns: vec![HOSTILE.to_owned()],
                strategy: Method::Merge,
                strategy_note: Some(HOSTILE.to_owned()),
                rows_legacy: 1,
                rows_service: 1,
                rows_compared: 1,
                rows_fetched: 2,
                missing: vec![KeyEntry {
                    key: key(),
                    fingerprint: None,
                }],
                extra: vec![KeyEntry {
                    key: key(),
                    fingerprint: Some("0123456789abcdef".to_owned()),
                }],
                changed: vec![ChangedRow {
                    key: key(),
                    columns: vec![
                        ColumnDiff {
                            column: HOSTILE.to_owned(),
                            service_column: HOSTILE.to_owned(),
                            legacy: Value::from(HOSTILE),
                            service: Value::from(1),
                        },
                        ColumnDiff {
                            column: HOSTILE.to_owned(),
                            service_column: HOSTILE.to_owned(),
                            legacy: Value::from(HOSTILE),
                            service: Value::from(format!("{HOSTILE}!")),
                        },
                    ],
                    legacy_fingerprint: None,
                    service_fingerprint: None,
                }],
                settling: vec![SettlingRow {
                    key: key(),
                    kind: Kind::Changed,
                }],
            }],
        }
    }

    #[test]
    fn hostile_values_come_out_escaped_in_text_and_attributes() {
        let trend = [
            TrendPoint {
                id: 1,
                started_at: HOSTILE.to_owned(),
                status: RunStatus::Failed,
                missing: None,
                extra: None,
                changed: None,
            },
            TrendPoint {
                id: 2,
                started_at: HOSTILE.to_owned(),
                status: RunStatus::Diverged,
                missing: Some(1),
                extra: Some(1),
                changed: Some(1),
            },
        ];
        let page = html(&hostile_report(), &trend);
        for raw in ["<script", "<img", "onerror=x>", "\"><img", "'x'"] {
            assert!(!page.contains(raw), "`{raw}` came out unescaped:\n{page}");
        }
        assert!(
            page.contains(&format!("<title>Reconciliation of {ESCAPED}</title>")),
            "{page}"
        );
        assert!(
            page.contains(&format!("<td class=\"v\">{ESCAPED}</td>")),
            "{page}"
        );
        // The same escaping holds inside a quoted attribute, whichever quote.
        for (open, close) in [("<td title=\"", "\">"), ("<td title='", "'>")] {
            let cell = format!("{open}{}{close}", escape(HOSTILE));
            let quote = &open[open.len() - 1..];
            assert_eq!(cell.matches(quote).count(), 2, "{cell}");
            assert_eq!(cell.matches('<').count(), 1, "{cell}");
        }
    }

    #[test]
    fn the_trend_shows_each_run_status_by_its_stored_name() {
        let point = |id, status| TrendPoint {
            id,
            started_at: "2026-01-01T00:00:00.000Z".to_owned(),
            status,
            missing: Some(0),
            extra: Some(0),
            changed: Some(0),
        };
        let trend: Vec<TrendPoint> = RunStatus::ALL
            .into_iter()
            .zip(1..)
            .map(|(s, id)| point(id, s))
            .collect();
        let report = hostile_report();
        let markdown = markdown(&report, &trend);
        let page = html(&report, &trend);
        for (id, name) in [(1, "running"), (2, "clean"), (3, "diverged"), (4, "failed")] {
            assert!(
                markdown.contains(&format!(
                    "| #{id} | 2026-01-01T00:00:00.000Z | {name} | 0 | 0 | 0 |"
                )),
                "{markdown}"
            );
            assert!(
                page.contains(&format!(
                    "<td>#{id}</td><td>2026-01-01T00:00:00.000Z</td><td>{name}</td>"
                )),
                "{page}"
            );
        }
    }
}
