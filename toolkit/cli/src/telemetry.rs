//! The command's log subscriber: human lines or JSON objects on standard
//! error, filtered by `RUST_LOG` or the subcommand's default.

use std::io::IsTerminal;

use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{fmt, EnvFilter, Layer};

/// How log lines are written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines; coloured only when standard error is a
    /// terminal, so files and log collectors get plain text.
    #[default]
    Human,
    /// One JSON object a line, for log shippers.
    Json,
}

/// Installs the global subscriber. `RUST_LOG` overrides `default_filter`.
pub fn init(format: LogFormat, default_filter: &str) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    let lines = fmt::layer().with_writer(std::io::stderr);
    let layer = match format {
        LogFormat::Human => lines.with_ansi(std::io::stderr().is_terminal()).boxed(),
        LogFormat::Json => lines.json().flatten_event(true).with_current_span(true).boxed(),
    };
    // Installing twice is harmless: the first subscriber stays.
    let _ = tracing_subscriber::registry().with(layer).with(filter).try_init();
}
