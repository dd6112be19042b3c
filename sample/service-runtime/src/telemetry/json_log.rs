//! JSON log lines that carry the trace and span ids of the span they were
//! logged in.
//!
//! The OpenTelemetry layer keeps each span's ids to itself, reachable only
//! through the subscriber ([`tracing_opentelemetry::get_otel_context`]), so
//! a small layer keeps a handle on the subscriber, and the format wraps the
//! JSON one and puts `"trace_id"` and `"span_id"` first on each line logged
//! inside a traced span.

use std::fmt;
use std::sync::{Arc, OnceLock};

use opentelemetry::trace::TraceContextExt;
use tracing::dispatcher::WeakDispatch;
use tracing::{Dispatch, Event, Subscriber};
use tracing_subscriber::filter::{Filtered, LevelFilter};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::Layer;

type Handle = Arc<OnceLock<WeakDispatch>>;

/// The layer half: remembers the subscriber it is part of.
#[derive(Debug, Clone)]
pub struct DispatchHandle(Handle);

/// The format half: `inner`'s JSON lines with the ids in front.
#[derive(Debug, Clone)]
pub struct WithTraceIds<F> {
    inner: F,
    dispatch: Handle,
}

/// The two halves: add the layer to the subscriber beside the JSON format
/// layer that uses the format.
///
/// The layer comes with a filter that takes nothing: it only needs to hear
/// of the subscriber, and a layer without a filter beside layers with
/// their own would make every span enabled, the request path's debug
/// spans included (`Layered::register_callsite`).
pub fn with_trace_ids<S, F>(inner: F) -> (Filtered<DispatchHandle, LevelFilter, S>, WithTraceIds<F>)
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    let handle = Handle::default();
    (
        DispatchHandle(Arc::clone(&handle)).with_filter(LevelFilter::OFF),
        WithTraceIds {
            inner,
            dispatch: handle,
        },
    )
}

impl<S: Subscriber> Layer<S> for DispatchHandle {
    fn on_register_dispatch(&self, subscriber: &Dispatch) {
        let _ = self.0.set(subscriber.downgrade());
    }
}

impl<S, N, F> FormatEvent<S, N> for WithTraceIds<F>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
    F: FormatEvent<S, N>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let ids = ctx.lookup_current().and_then(|span| {
            let dispatch = self.dispatch.get()?.upgrade()?;
            let cx = tracing_opentelemetry::get_otel_context(&span.id(), &dispatch)?;
            let otel_span = cx.span();
            let context = otel_span.span_context();
            context
                .is_valid()
                .then(|| (context.trace_id(), context.span_id()))
        });
        let Some((trace_id, span_id)) = ids else {
            return self.inner.format_event(ctx, writer, event);
        };
        let mut line = String::with_capacity(256);
        self.inner.format_event(ctx, Writer::new(&mut line), event)?;
        match line.strip_prefix('{') {
            Some(rest) => write!(
                writer,
                "{{\"trace_id\":\"{trace_id}\",\"span_id\":\"{span_id}\",{rest}"
            ),
            None => writer.write_str(&line),
        }
    }
}
