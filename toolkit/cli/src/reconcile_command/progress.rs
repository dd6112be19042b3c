//! Progress bars for `reconcile run` and `reconcile repair` on a terminal:
//! one bar per table (keys compared, keys per second, ETA against the
//! catalogs' row estimate; a spinner when there is none) and one for an
//! applied repair's statements, on standard error.
//!
//! The reconciler only bumps counters between batches
//! ([`reconciler::Progress`]); indicatif's steady tick redraws ten times a
//! second on its own thread, so the comparison never waits for a terminal.

use std::io::IsTerminal as _;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use indicatif::{HumanCount, MultiProgress, ProgressBar, ProgressDrawTarget, ProgressState, ProgressStyle};
use reconciler::{Progress, ProgressHook};

use super::Format;

/// How often the bars redraw.
const TICK: Duration = Duration::from_millis(100);

/// Whether to draw progress: never when asked to be quiet or for JSON
/// (which a program reads), and only when both standard output and
/// standard error are terminals (output piped into a file or a pager, or
/// a log collector on standard error, gets no bar lines).
pub(crate) fn wanted(output: Format, quiet: bool, stdout_tty: bool, stderr_tty: bool) -> bool {
    !quiet && !matches!(output, Format::Json) && stdout_tty && stderr_tty
}

/// The hook to hand the reconciler, when [`wanted`] on this process's
/// terminals.
pub(crate) fn hook(output: Format, quiet: bool) -> Option<ProgressHook> {
    let wanted = wanted(
        output,
        quiet,
        std::io::stdout().is_terminal(),
        std::io::stderr().is_terminal(),
    );
    wanted.then(|| ProgressHook::new(Arc::new(Bars::new())))
}

/// The bars, one live at a time (tables are compared one after another).
struct Bars {
    multi: MultiProgress,
    current: Mutex<Option<ProgressBar>>,
}

impl Bars {
    fn new() -> Self {
        Self {
            multi: MultiProgress::with_draw_target(ProgressDrawTarget::stderr()),
            current: Mutex::new(None),
        }
    }

    /// Starts `bar` as the live one, labelled `label`.
    fn start(&self, bar: ProgressBar, label: &str) {
        let bar = self.multi.add(bar);
        bar.set_prefix(label.to_owned());
        bar.enable_steady_tick(TICK);
        if let Ok(mut current) = self.current.lock() {
            if let Some(previous) = current.replace(bar) {
                previous.abandon();
            }
        }
    }

    /// The live bar, if any (a poisoned lock only loses the display).
    fn live(&self) -> Option<ProgressBar> {
        self.current.lock().ok().and_then(|current| current.clone())
    }

    /// Ends the live bar at `done` (the real count, above an estimate
    /// that fell short), left on screen.
    fn finish(&self, done: Option<u64>) {
        let bar = self.current.lock().ok().and_then(|mut current| current.take());
        if let Some(bar) = bar {
            if let Some(done) = done {
                bar.set_length(done);
                bar.set_position(done);
            }
            bar.finish();
        }
    }
}

/// A bar of `total` `unit`s with rate and ETA, or a spinner without a total.
fn bar(total: Option<u64>, unit: &str) -> ProgressBar {
    let (bar, template) = match total {
        Some(total) => (
            ProgressBar::new(total),
            format!(
                "{{prefix:>20}} [{{bar:30}}] {{human_pos:>11}}/{{human_len}} {unit}, {{rate}}, ETA {{eta}}"
            ),
        ),
        None => (
            ProgressBar::no_length(),
            format!("{{prefix:>20}} {{spinner}} {{human_pos:>11}} {unit}, {{rate}}, {{elapsed}}"),
        ),
    };
    // The templates are fixed text, so a refusal is a bug; the default
    // style still shows the count.
    match ProgressStyle::with_template(&template) {
        Ok(style) => bar.with_style(style.progress_chars("=> ").with_key("rate", rate)),
        Err(_) => bar,
    }
}

/// Per second, in whole units with thousands separators (`{per_sec}`
/// shows four decimals).
fn rate(state: &ProgressState, out: &mut dyn std::fmt::Write) {
    let _ = write!(out, "{}/s", HumanCount(state.per_sec() as u64));
}

impl Progress for Bars {
    fn table_started(&self, table: &str, estimated_keys: Option<u64>) {
        self.start(bar(estimated_keys, "keys"), table);
    }

    fn keys_compared(&self, keys: u64) {
        if let Some(bar) = self.live() {
            bar.inc(keys);
        }
    }

    fn table_finished(&self, keys: u64) {
        self.finish(Some(keys));
    }

    fn repair_started(&self, statements: u64) {
        self.start(bar(Some(statements), "statements"), "repair");
    }

    fn statements_applied(&self, statements: u64) {
        if let Some(bar) = self.live() {
            bar.inc(statements);
        }
    }

    fn repair_finished(&self) {
        self.finish(None);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_is_drawn_only_for_people_at_a_terminal() {
        assert!(wanted(Format::Human, false, true, true));
        assert!(wanted(Format::Markdown, false, true, true));
        assert!(
            !wanted(Format::Json, false, true, true),
            "JSON is read by programs"
        );
        assert!(!wanted(Format::Human, true, true, true), "--quiet");
        assert!(
            !wanted(Format::Human, false, false, true),
            "standard output redirected"
        );
        assert!(
            !wanted(Format::Human, false, true, false),
            "standard error redirected"
        );
    }

    #[test]
    fn no_bar_appears_when_this_process_has_no_terminal() {
        // Under `cargo test` standard output is captured, not a terminal.
        if std::io::stdout().is_terminal() && std::io::stderr().is_terminal() {
            return;
        }
        assert!(hook(Format::Human, false).is_none());
    }

    #[test]
    fn the_bars_take_counts_without_a_terminal_to_draw_on() {
        let bars = Bars {
            multi: MultiProgress::with_draw_target(ProgressDrawTarget::hidden()),
            current: Mutex::new(None),
        };
        bars.table_started("orders", Some(10));
        bars.keys_compared(4);
        bars.keys_compared(8);
        assert_eq!(bars.live().map(|bar| bar.position()), Some(12));
        bars.table_finished(12);
        assert!(bars.live().is_none());
        bars.repair_started(3);
        bars.statements_applied(3);
        bars.repair_finished();
    }
}
