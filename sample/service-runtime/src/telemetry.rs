//! The one place that builds the tracing subscriber, and the trace pipeline
//! beside it.
//!
//! Logs: human lines or JSON objects on standard error, filtered by
//! `RUST_LOG` or the app's default. Human lines are coloured only when
//! standard error is a terminal and `NO_COLOR` is unset, so files and log
//! collectors get plain text. JSON lines logged inside a traced span carry
//! `trace_id` and `span_id` ([`json_log`]), so logs and traces join.
//!
//! Traces: when `OTEL_EXPORTER_OTLP_ENDPOINT` (or its traces variant) is
//! set, spans at info level and above (each request's, from
//! [`crate::request_id::with_request_tracing`]) are exported over
//! OTLP/HTTP with protobuf by the OpenTelemetry SDK, which reads the other
//! standard variables itself (`OTEL_SERVICE_NAME`,
//! `OTEL_RESOURCE_ATTRIBUTES`, `OTEL_TRACES_SAMPLER` and its argument,
//! `OTEL_BSP_*`, `OTEL_EXPORTER_OTLP_HEADERS` and `…_TIMEOUT`). Without an
//! endpoint nothing is started. A caller's `traceparent` is continued and
//! passed on to the calls a request makes ([`propagation`]).
//!
//! The toolkit has its own telemetry set-up: the sample depends on no
//! toolkit crate but `toolkit-db` (ARCHITECTURE.md).

pub mod json_log;
pub mod propagation;

use std::io::IsTerminal;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::ExporterBuildError;
use opentelemetry_sdk::trace::{BatchSpanProcessor, SdkTracerProvider};
use opentelemetry_sdk::Resource;
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{fmt, EnvFilter, Layer};

/// How log lines are written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines, for terminals.
    #[default]
    Human,
    /// One JSON object a line, for log shippers.
    Json,
}

impl std::str::FromStr for LogFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "human" => Ok(Self::Human),
            "json" => Ok(Self::Json),
            other => Err(format!("unknown log format `{other}`: use `human` or `json`")),
        }
    }
}

/// A trace set-up this build cannot honour.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    /// The protocol is not OTLP/HTTP with protobuf.
    #[error("{variable} is `{value}`, but the sample apps export traces only over OTLP/HTTP with protobuf: set it to `http/protobuf` (or leave it unset)")]
    Protocol {
        /// The variable.
        variable: &'static str,
        /// Its value.
        value: String,
    },
    /// The endpoint is not a plain-HTTP URL.
    #[error("{variable} is `{value}`: the sample apps export over plain http:// only (no TLS)")]
    Endpoint {
        /// The variable.
        variable: &'static str,
        /// Its value.
        value: String,
    },
    /// The exporter refused its settings.
    #[error("cannot set up the OTLP trace exporter")]
    Exporter(#[source] ExporterBuildError),
}

/// What [`init`] set up; [`Telemetry::shutdown`] exports what is queued.
#[must_use = "call shutdown() once the app has drained, or the last spans are lost"]
#[derive(Debug)]
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// Exports the spans still queued and stops the export thread (within
    /// the SDK's 5 s shutdown timeout), off the async runtime's threads.
    pub async fn shutdown(self) {
        if let Some(provider) = self.provider {
            let _ = tokio::task::spawn_blocking(move || provider.shutdown()).await;
        }
    }
}

/// Installs the global subscriber. `RUST_LOG` overrides `default_filter`.
/// Traces are exported as `service_name` (unless `OTEL_SERVICE_NAME` or
/// `OTEL_RESOURCE_ATTRIBUTES` names the service) when an endpoint is set.
///
/// Installs nothing when a subscriber is already installed (tests that
/// start several apps in one process call this more than once).
pub fn init(
    format: LogFormat,
    default_filter: &str,
    service_name: &str,
) -> Result<Telemetry, TelemetryError> {
    let provider = tracer_provider(service_name)?;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    let lines = fmt::layer().with_writer(std::io::stderr);
    let (dispatch, json) =
        json_log::with_trace_ids(fmt::format().json().flatten_event(true).with_current_span(true));
    let lines = match format {
        LogFormat::Human => lines.with_ansi(colour()).boxed(),
        LogFormat::Json => lines.json().event_format(json).boxed(),
    };
    // The log filter decides what is printed; spans at info and above are
    // traced whatever it says.
    let traces = provider.as_ref().map(|provider| {
        tracing_opentelemetry::layer()
            .with_tracer(provider.tracer("service-runtime"))
            .with_tracked_inactivity(false)
            .with_filter(LevelFilter::INFO)
    });
    let _already_installed = tracing_subscriber::registry()
        .with(lines.with_filter(filter))
        .with(dispatch)
        .with(traces)
        .try_init();
    Ok(Telemetry { provider })
}

/// Whether human lines are coloured: only on a terminal, and not when
/// `NO_COLOR` is set to anything (<https://no-color.org>).
/// tracing-subscriber colours by default, even into a pipe or a file.
fn colour() -> bool {
    std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|value| value.is_empty())
}

/// The tracer provider, or `None` when no endpoint is set.
fn tracer_provider(service_name: &str) -> Result<Option<SdkTracerProvider>, TelemetryError> {
    let var = |name: &str| std::env::var(name).ok().filter(|value| !value.trim().is_empty());
    let endpoint = [
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
        "OTEL_EXPORTER_OTLP_ENDPOINT",
    ]
    .into_iter()
    .find_map(|variable| var(variable).map(|value| (variable, value)));
    let Some((variable, value)) = endpoint else {
        return Ok(None);
    };
    if !value.starts_with("http://") {
        return Err(TelemetryError::Endpoint { variable, value });
    }
    for variable in [
        "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
        "OTEL_EXPORTER_OTLP_PROTOCOL",
    ] {
        if let Some(value) = var(variable) {
            if value != "http/protobuf" {
                return Err(TelemetryError::Protocol { variable, value });
            }
            break;
        }
    }
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .build()
        .map_err(TelemetryError::Exporter)?;
    let named = var("OTEL_SERVICE_NAME").is_some()
        || var("OTEL_RESOURCE_ATTRIBUTES").is_some_and(|list| list.contains("service.name="));
    let mut resource = Resource::builder();
    if !named {
        resource = resource.with_service_name(service_name.to_owned());
    }
    Ok(Some(
        SdkTracerProvider::builder()
            .with_span_processor(BatchSpanProcessor::builder(exporter).build())
            .with_resource(resource.build())
            .build(),
    ))
}
