//! W3C trace context in the request context: each call or cast whose span is enabled carries a
//! `traceparent` (`00-<trace id>-<span id>-01`) among its context keys, where Python peers ignore
//! it (oslo.context keeps only the keys it knows). A request made with a context that already
//! holds one (the context a handler received, passed on as OpenStack services pass theirs)
//! continues its trace; a fresh context starts one. The client span records `trace_id` and
//! `span_id`, the server span `trace_id` and `parent_span_id`, so two osier services show one
//! trace in their logs. A request whose span is disabled (a service that traces nothing) makes
//! no trace of its own: the context's `traceparent`, if any, goes on unchanged, as a W3C
//! intermediary that does not take part passes it.
//!
//! With the `otel` feature and an OpenTelemetry layer in the subscriber, the ids are the spans'
//! own OpenTelemetry ids, so a tracing backend shows the same trace.
//!
//! Whatever arrives under the key is untrusted: anything but a well-formed `traceparent` is
//! ignored (a new trace starts), never logged or echoed.

use serde_json::Value;

/// The context key.
pub const KEY: &str = "traceparent";

/// A parsed `traceparent`: the trace and the span that sent it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceParent {
    /// 32 lower-case hex digits, not all zero.
    pub trace_id: String,
    /// 16 lower-case hex digits, not all zero.
    pub span_id: String,
}

fn hex_id(s: &str, len: usize) -> bool {
    s.len() == len
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        && s.bytes().any(|b| b != b'0')
}

impl TraceParent {
    /// Reads a `traceparent` value (version `00`; anything else is `None`).
    pub fn parse(v: &Value) -> Option<TraceParent> {
        let s = v.as_str()?;
        let mut parts = s.split('-');
        let (version, trace, span, flags) =
            (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some() || version != "00" || flags.len() != 2 {
            return None;
        }
        if !(hex_id(trace, 32) && hex_id(span, 16) && flags.bytes().all(|b| b.is_ascii_hexdigit()))
        {
            return None;
        }
        Some(TraceParent {
            trace_id: trace.to_string(),
            span_id: span.to_string(),
        })
    }

    /// The `traceparent` for a request sent from inside `parent`'s trace (a new trace when
    /// there is none), with a new span id.
    pub fn child_of(parent: Option<&TraceParent>) -> TraceParent {
        // Encoded into a buffer, not through `Display`: one per request sent.
        let mut buf = [0u8; 32];
        let trace_id = match parent {
            Some(p) => p.trace_id.clone(),
            None => uuid::Uuid::new_v4()
                .simple()
                .encode_lower(&mut buf)
                .to_string(),
        };
        let span_id = uuid::Uuid::new_v4().simple().encode_lower(&mut buf)[..16].to_string();
        TraceParent { trace_id, span_id }
    }

    /// The `traceparent` a request sent now carries: the ids OpenTelemetry gave the span in
    /// force (feature `otel`, with an OpenTelemetry layer installed), otherwise
    /// [`child_of`](Self::child_of) `parent`.
    pub fn for_request(parent: Option<&TraceParent>) -> TraceParent {
        #[cfg(feature = "otel")]
        if let Some(tp) = crate::otel::current() {
            return tp;
        }
        TraceParent::child_of(parent)
    }

    /// The header value: `00-<trace id>-<span id>-01` (sampled).
    pub fn header(&self) -> String {
        // Pieces pushed, not `format!`ed: one per request sent, on the hot path.
        let mut h = String::with_capacity(7 + self.trace_id.len() + self.span_id.len());
        h.push_str("00-");
        h.push_str(&self.trace_id);
        h.push('-');
        h.push_str(&self.span_id);
        h.push_str("-01");
        h
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// A well-formed value parses; a child keeps the trace and gets a new span.
    #[test]
    fn a_child_continues_the_trace_with_a_new_span() {
        let v = json!("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
        let p = TraceParent::parse(&v).unwrap();
        assert_eq!(p.trace_id, "4bf92f3577b34da6a3ce929d0e0e4736");
        let c = TraceParent::child_of(Some(&p));
        assert_eq!(c.trace_id, p.trace_id);
        assert_ne!(c.span_id, p.span_id);
        assert_eq!(TraceParent::parse(&json!(c.header())), Some(c));
        let fresh = TraceParent::child_of(None);
        assert!(hex_id(&fresh.trace_id, 32) && hex_id(&fresh.span_id, 16));
    }

    /// Anything malformed is refused: other versions, lengths, upper case, zero ids, extra
    /// parts, non-strings.
    #[test]
    fn malformed_values_are_ignored() {
        for bad in [
            json!("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
            json!("00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01"),
            json!("00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01"),
            json!("00-00000000000000000000000000000000-00f067aa0ba902b7-01"),
            json!("00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01"),
            json!("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x"),
            json!("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-zz"),
            json!(42),
            json!("\n"),
        ] {
            assert_eq!(TraceParent::parse(&bad), None, "{bad}");
        }
    }
}
