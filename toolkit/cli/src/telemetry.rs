//! The command's log subscriber and trace pipeline: human lines or JSON
//! objects on standard error, filtered by `RUST_LOG` or the subcommand's
//! default; and, for the commands that serve or compare (`facade`,
//! `reconcile`, `demo`), OpenTelemetry traces over OTLP/HTTP when
//! `OTEL_EXPORTER_OTLP_ENDPOINT` (or its traces variant) is set
//! (`toolkit_telemetry` reads the variables).
//!
//! Spans recorded with `tracing` at info level and above (the reconciler's
//! run and tables) go to the pipeline through `tracing-opentelemetry`,
//! whatever the log filter shows; the facade's request spans are built by
//! the facade itself and handed to the same pipeline ([`Telemetry::span_sink`]).
//! JSON lines carry `trace_id` and `span_id` inside a traced span, so that
//! logs and traces join.

use std::io::IsTerminal;

use anyhow::Context;
use toolkit_telemetry::json_log;
use toolkit_telemetry::{Pipeline, SpanSink, TraceSettings};
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{fmt, EnvFilter, Layer};

/// How log lines are written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines; coloured only when standard error is a
    /// terminal and `NO_COLOR` is unset, so files and log collectors get
    /// plain text.
    #[default]
    Human,
    /// One JSON object a line, for log shippers.
    Json,
}

/// What [`init`] set up; [`Telemetry::shutdown`] exports what is left.
pub struct Telemetry {
    pipeline: Option<Pipeline>,
}

impl Telemetry {
    /// Where the facade's request spans go, when traces are exported.
    pub fn span_sink(&self) -> Option<SpanSink> {
        self.pipeline
            .as_ref()
            .map(|pipeline| pipeline.span_sink("strangler-facade"))
    }

    /// Exports the spans still queued (bounded by the SDK's shutdown
    /// timeout). Call it once the command's work is done.
    pub fn shutdown(self) {
        if let Some(pipeline) = self.pipeline {
            pipeline.shutdown();
        }
    }
}

/// Installs the global subscriber. `RUST_LOG` overrides `default_filter`.
/// With `traced_as` (the default `service.name`), traces are exported when
/// the `OTEL_*` variables name an endpoint; a variable this build cannot
/// honour is an error that names it.
pub fn init(format: LogFormat, default_filter: &str, traced_as: Option<&str>) -> anyhow::Result<Telemetry> {
    let pipeline = match traced_as {
        Some(service) => TraceSettings::from_env(service)?
            .map(|settings| Pipeline::start(&settings))
            .transpose()
            .context("starting the trace exporter")?,
        None => None,
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    let lines = fmt::layer().with_writer(std::io::stderr);
    let (dispatch, json) =
        json_log::with_trace_ids(fmt::format().json().flatten_event(true).with_current_span(true));
    let lines = match format {
        LogFormat::Human => lines.with_ansi(colour()).boxed(),
        LogFormat::Json => lines.json().event_format(json).boxed(),
    };
    // Each layer filters for itself: the log filter decides what is
    // printed, and spans at info and above are traced even when the log
    // shows only warnings (the facade's per-request debug spans never are).
    let traces = pipeline
        .as_ref()
        .map(|pipeline| pipeline.layer("strangler").with_filter(LevelFilter::INFO));
    // Installing twice is harmless: the first subscriber stays.
    let _ = tracing_subscriber::registry()
        .with(lines.with_filter(filter))
        .with(dispatch)
        .with(traces)
        .try_init();
    Ok(Telemetry { pipeline })
}

/// Whether human lines are coloured: only on a terminal, and not when
/// `NO_COLOR` is set to anything (<https://no-color.org>); `with_ansi(true)`
/// would override tracing-subscriber's own `NO_COLOR` check.
fn colour() -> bool {
    std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|value| value.is_empty())
}
