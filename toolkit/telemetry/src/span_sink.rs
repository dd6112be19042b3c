//! Finished spans handed straight to the batch processor, for code that
//! builds its spans' data itself instead of through `tracing` or the SDK's
//! tracer: the facade's request path.
//!
//! The facade decides sampling once per request and records its spans only
//! for the sampled ones, after the fact, with ids it chose before the
//! request went upstream (the upstream's `traceparent` carries them). The
//! SDK's tracer chooses ids and samples by itself, so the facade builds
//! [`SpanData`] and gives it to the same batch processor the process's
//! tracer provider uses: one queue, one export thread, one flush at
//! shutdown. Handing a span over is a `try_send` on a bounded channel; a
//! full queue drops the span (and the SDK counts it), never the request.

use std::sync::Arc;
use std::time::Duration;

use opentelemetry::{Context, InstrumentationScope};
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{BatchSpanProcessor, Span, SpanData, SpanProcessor};

use crate::sampling::Sampling;

/// Where a process's directly built spans go, with the sampler they were
/// decided by. Cheap to clone.
#[derive(Debug, Clone)]
pub struct SpanSink {
    processor: Arc<BatchSpanProcessor>,
    sampling: Sampling,
    scope: InstrumentationScope,
}

impl SpanSink {
    pub(crate) fn new(
        processor: Arc<BatchSpanProcessor>,
        sampling: Sampling,
        scope: InstrumentationScope,
    ) -> Self {
        Self {
            processor,
            sampling,
            scope,
        }
    }

    /// The sampler to decide with.
    pub fn sampling(&self) -> &Sampling {
        &self.sampling
    }

    /// The instrumentation scope spans are to name.
    pub fn scope(&self) -> &InstrumentationScope {
        &self.scope
    }

    /// Queues a finished, sampled span for export. Never blocks.
    pub fn record(&self, span: SpanData) {
        self.processor.on_end(span);
    }
}

/// The batch processor, shared by the tracer provider and [`SpanSink`]s.
#[derive(Debug)]
pub(crate) struct SharedProcessor(pub(crate) Arc<BatchSpanProcessor>);

impl SpanProcessor for SharedProcessor {
    fn on_start(&self, span: &mut Span, cx: &Context) {
        self.0.on_start(span, cx);
    }

    fn on_end(&self, span: SpanData) {
        self.0.on_end(span);
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.0.force_flush()
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.0.shutdown_with_timeout(timeout)
    }

    // `set_resource` is left out on purpose: the processor was given the
    // resource before it was shared, and the provider's is the same.
}
