//! A process's trace pipeline: the OTLP/HTTP exporter behind one batch
//! processor, which exports on a thread of its own, and the tracer provider
//! over it.

use std::sync::Arc;

use opentelemetry::trace::TracerProvider;
use opentelemetry::{InstrumentationScope, KeyValue};
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::resource::TelemetryResourceDetector;
use opentelemetry_sdk::trace::{
    BatchConfigBuilder, BatchSpanProcessor, SdkTracer, SdkTracerProvider, SpanProcessor,
};
use opentelemetry_sdk::Resource;
use tracing::Subscriber;
use tracing_opentelemetry::OpenTelemetryLayer;
use tracing_subscriber::registry::LookupSpan;

use crate::settings::TraceSettings;
use crate::span_sink::{SharedProcessor, SpanSink};

/// Why the pipeline could not start.
#[derive(Debug, thiserror::Error)]
#[error("cannot set up the OTLP trace exporter for {endpoint}")]
pub struct PipelineError {
    endpoint: String,
    #[source]
    source: opentelemetry_otlp::ExporterBuildError,
}

/// The running pipeline. [`Pipeline::shutdown`] exports what is queued;
/// call it once the process's work is done.
#[derive(Debug)]
pub struct Pipeline {
    provider: SdkTracerProvider,
    processor: Arc<BatchSpanProcessor>,
    settings: TraceSettings,
}

impl Pipeline {
    /// Builds the exporter and starts the batch processor's thread. Works
    /// inside or outside an async runtime: the exporter's HTTP client is a
    /// blocking one that runs on the processor's thread.
    pub fn start(settings: &TraceSettings) -> Result<Self, PipelineError> {
        let mut builder = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_endpoint(settings.endpoint.clone());
        if let Some(timeout) = settings.export_timeout {
            builder = builder.with_timeout(timeout);
        }
        let exporter = builder.build().map_err(|source| PipelineError {
            endpoint: settings.endpoint.clone(),
            source,
        })?;
        let mut batch = BatchConfigBuilder::default();
        if let Some(delay) = settings.schedule_delay {
            batch = batch.with_scheduled_delay(delay);
        }
        let mut processor = BatchSpanProcessor::builder(exporter)
            .with_batch_config(batch.build())
            .build();
        let resource = Resource::builder_empty()
            .with_detector(Box::new(TelemetryResourceDetector))
            .with_attributes(
                settings
                    .resource
                    .iter()
                    .map(|(key, value)| KeyValue::new(key.clone(), value.clone())),
            )
            .with_service_name(settings.service_name.clone())
            .build();
        processor.set_resource(&resource);
        let processor = Arc::new(processor);
        let provider = SdkTracerProvider::builder()
            .with_span_processor(SharedProcessor(Arc::clone(&processor)))
            .with_resource(resource)
            .with_sampler(settings.sampling.to_sdk())
            .build();
        Ok(Self {
            provider,
            processor,
            settings: settings.clone(),
        })
    }

    /// The settings it runs with.
    pub fn settings(&self) -> &TraceSettings {
        &self.settings
    }

    /// A tracer named `scope` (the crate or component that records).
    pub fn tracer(&self, scope: &'static str) -> SdkTracer {
        self.provider.tracer_with_scope(instrumentation_scope(scope))
    }

    /// A layer that records `tracing` spans as OpenTelemetry spans.
    pub fn layer<S>(&self, scope: &'static str) -> OpenTelemetryLayer<S, SdkTracer>
    where
        S: Subscriber + for<'span> LookupSpan<'span>,
    {
        tracing_opentelemetry::layer()
            .with_tracer(self.tracer(scope))
            // Busy and idle times as attributes: noise beside the span's
            // own duration.
            .with_tracked_inactivity(false)
    }

    /// Where spans built by hand go, named `scope`.
    pub fn span_sink(&self, scope: &'static str) -> SpanSink {
        SpanSink::new(
            Arc::clone(&self.processor),
            self.settings.sampling,
            instrumentation_scope(scope),
        )
    }

    /// Exports what is queued now (tests, mostly).
    pub fn flush(&self) {
        let _ = self.provider.force_flush();
    }

    /// Exports what is queued and stops the export thread (within the
    /// SDK's 5 s shutdown timeout).
    pub fn shutdown(self) {
        if let Err(error) = self.provider.shutdown() {
            tracing::warn!(%error, "the trace exporter did not shut down cleanly");
        }
    }
}

fn instrumentation_scope(name: &'static str) -> InstrumentationScope {
    InstrumentationScope::builder(name)
        .with_version(env!("CARGO_PKG_VERSION"))
        .build()
}
