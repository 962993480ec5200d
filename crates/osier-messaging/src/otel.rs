//! OpenTelemetry (feature `otel`): a call's `traceparent` is its `rpc.call` span's own
//! OpenTelemetry ids, and a server's `rpc.server` span has the caller's as its parent, so a
//! tracing backend shows one trace across services, Python's too when they propagate it.
//! Without an OpenTelemetry layer in the application's subscriber the spans have no such ids
//! and osier makes its own (`trace_context.rs`).

use opentelemetry::trace::{SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState};
use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::trace_context::TraceParent;

/// Makes `tp` (a request's caller) the OpenTelemetry parent of `span`, before it is entered.
pub(crate) fn continue_remote(span: &tracing::Span, tp: &TraceParent) {
    let (Ok(trace_id), Ok(span_id)) = (
        TraceId::from_hex(tp.trace_id()),
        SpanId::from_hex(tp.span_id()),
    ) else {
        return;
    };
    let remote = SpanContext::new(
        trace_id,
        span_id,
        TraceFlags::SAMPLED,
        true,
        TraceState::default(),
    );
    let cx = opentelemetry::Context::new().with_remote_span_context(remote);
    let _ = span.set_parent(cx);
}

/// The `traceparent` of the span in force (a call's `rpc.call`), when an OpenTelemetry layer
/// gave it ids.
pub(crate) fn current() -> Option<TraceParent> {
    of(&tracing::Span::current())
}

/// The `traceparent` naming `span`, when an OpenTelemetry layer gave it ids.
pub(crate) fn of(span: &tracing::Span) -> Option<TraceParent> {
    let cx = span.context();
    let sc = cx.span().span_context().clone();
    if !sc.is_valid() {
        return None;
    }
    TraceParent::from_bytes(sc.trace_id().to_bytes(), sc.span_id().to_bytes())
}
