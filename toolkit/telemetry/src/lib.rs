//! The toolkit's traces, set up in one place for the facade, the
//! reconciler and the command that runs them.
//!
//! - [`settings`]: [`TraceSettings`] from the standard `OTEL_*` variables
//!   (`OTEL_EXPORTER_OTLP_ENDPOINT` and its traces variant, `…_PROTOCOL`,
//!   `OTEL_SERVICE_NAME`, `OTEL_RESOURCE_ATTRIBUTES`, `OTEL_TRACES_SAMPLER`
//!   and its argument, `OTEL_BSP_SCHEDULE_DELAY`). No endpoint, no
//!   pipeline: nothing is started and nothing is slowed.
//! - [`sampling`]: the sampler as a value, with a decision callable
//!   without the SDK (the facade's request path decides with it).
//! - [`pipeline`]: the OTLP/HTTP (protobuf) exporter behind one batch
//!   processor on its own thread; a tracer provider and a `tracing` layer
//!   over it, for code instrumented with `tracing` (the reconciler).
//! - [`span_sink`]: the same batch processor, for spans whose data is
//!   built by hand (the facade's request path).
//! - [`traceparent`]: the W3C header, read and written from bytes.
//! - [`json_log`]: JSON log lines carrying `trace_id` and `span_id`.
//!
//! gRPC export is not built (it would bring tonic); a `grpc` protocol is a
//! start-up error that names the variable.

pub mod json_log;
pub mod pipeline;
pub mod sampling;
pub mod settings;
pub mod span_sink;
pub mod traceparent;

pub use pipeline::{Pipeline, PipelineError};
pub use sampling::{Root, Sampling};
pub use settings::{SettingsError, TraceSettings};
pub use span_sink::SpanSink;
pub use traceparent::TraceParent;

/// The OpenTelemetry crates, at the versions this crate was built with, for
/// code that builds span data (`SpanData`, `KeyValue`, ids).
pub use opentelemetry;
pub use opentelemetry_sdk;
