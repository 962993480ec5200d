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

/// The length of a version-`00` `traceparent`: `00-` 32 hex digits `-` 16 hex digits `-` 2.
const LEN: usize = 55;
const TRACE: std::ops::Range<usize> = 3..35;
const SPAN: std::ops::Range<usize> = 36..52;

/// A parsed `traceparent`: the trace and the span that sent it. Held as its header text, on
/// the stack: a request parses one and makes one, and neither allocates.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct TraceParent {
    /// `00-<trace id>-<span id>-01`, ASCII.
    header: [u8; LEN],
}

impl std::fmt::Debug for TraceParent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TraceParent")
            .field("trace_id", &self.trace_id())
            .field("span_id", &self.span_id())
            .finish()
    }
}

/// Which bytes are lower-case hex digits.
const LOWER_HEX: [bool; 256] = {
    let mut t = [false; 256];
    let mut b = 0;
    while b < 256 {
        t[b] = matches!(b as u8, b'0'..=b'9' | b'a'..=b'f');
        b += 1;
    }
    t
};

/// Lower-case hex digits, not all zero (one pass, no early exit: ids are short and valid).
fn hex_id(s: &[u8]) -> bool {
    let (hex, nonzero) = s.iter().fold((true, false), |(hex, nonzero), &b| {
        (hex & LOWER_HEX[usize::from(b)], nonzero | (b != b'0'))
    });
    hex && nonzero
}

/// Each byte's two lower-case hex digits.
const HEX_PAIRS: [[u8; 2]; 256] = {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut t = [[0; 2]; 256];
    let mut b = 0;
    while b < 256 {
        t[b] = [DIGITS[b >> 4], DIGITS[b & 0xf]];
        b += 1;
    }
    t
};

fn encode_hex(bytes: &[u8], out: &mut [u8]) {
    for (&b, pair) in bytes.iter().zip(out.chunks_exact_mut(2)) {
        pair.copy_from_slice(&HEX_PAIRS[usize::from(b)]);
    }
}

impl TraceParent {
    /// Reads a `traceparent` value (version `00`; anything else is `None`).
    pub fn parse(v: &Value) -> Option<TraceParent> {
        let s = v.as_str()?.as_bytes();
        if s.len() != LEN || !s.starts_with(b"00-") || s[35] != b'-' || s[52] != b'-' {
            return None;
        }
        if !(hex_id(&s[TRACE]) && hex_id(&s[SPAN]) && s[53..].iter().all(u8::is_ascii_hexdigit)) {
            return None;
        }
        let mut header = [0; LEN];
        header.copy_from_slice(s);
        header[53..].copy_from_slice(b"01");
        Some(TraceParent { header })
    }

    /// The `traceparent` of these ids (`None` if either is all zero, which W3C forbids).
    pub fn from_bytes(trace_id: [u8; 16], span_id: [u8; 8]) -> Option<TraceParent> {
        if trace_id == [0; 16] || span_id == [0; 8] {
            return None;
        }
        let mut header = *b"00-00000000000000000000000000000000-0000000000000000-01";
        encode_hex(&trace_id, &mut header[TRACE]);
        encode_hex(&span_id, &mut header[SPAN]);
        Some(TraceParent { header })
    }

    /// The trace id: 32 lower-case hex digits, not all zero.
    pub fn trace_id(&self) -> &str {
        self.text(TRACE)
    }

    /// The id of the span that sent it: 16 lower-case hex digits, not all zero.
    pub fn span_id(&self) -> &str {
        self.text(SPAN)
    }

    fn text(&self, part: std::ops::Range<usize>) -> &str {
        let bytes = &self.header[part];
        debug_assert!(bytes.is_ascii());
        // SAFETY: the header is private and only ever holds ASCII: `parse` copies a value
        // whose every byte it checked (`00-`, lower-case hex digits, dashes, hex flags
        // replaced by `01`), `from_bytes` and `child_of` write a template and hex digits.
        // Any slice of ASCII is UTF-8.
        unsafe { std::str::from_utf8_unchecked(bytes) }
    }

    /// The `traceparent` for a request sent from inside `parent`'s trace (a new trace when
    /// there is none), with a new span id.
    pub fn child_of(parent: Option<&TraceParent>) -> TraceParent {
        // Random ids, never zero (W3C forbids it), from the thread's fast generator: ids must
        // not repeat, they need not be unguessable (OpenTelemetry's Rust SDK draws its ids from
        // a small non-cryptographic generator too).
        let mut header = match parent {
            Some(p) => p.header,
            None => {
                let mut h = *b"00-00000000000000000000000000000000-0000000000000000-01";
                encode_hex(&fastrand::u128(..).max(1).to_be_bytes(), &mut h[TRACE]);
                h
            }
        };
        encode_hex(&fastrand::u64(..).max(1).to_be_bytes(), &mut header[SPAN]);
        TraceParent { header }
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
    pub fn header(&self) -> &str {
        self.text(0..LEN)
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
        assert_eq!(p.trace_id(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(p.span_id(), "00f067aa0ba902b7");
        let c = TraceParent::child_of(Some(&p));
        assert_eq!(c.trace_id(), p.trace_id());
        assert_ne!(c.span_id(), p.span_id());
        assert_eq!(TraceParent::parse(&json!(c.header())), Some(c));
        let fresh = TraceParent::child_of(None);
        assert!(hex_id(fresh.trace_id().as_bytes()) && hex_id(fresh.span_id().as_bytes()));
        assert_eq!(fresh.trace_id().len(), 32);
        assert_eq!(fresh.span_id().len(), 16);
        assert!(fresh.header().starts_with("00-") && fresh.header().ends_with("-01"));
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
            json!("00-4bf92f3577b34da6a3ce929d0e0e4736x00f067aa0ba902b7-01"),
            json!("00-4bf92f3577b34da6a3ce929d0e0e47é-00f067aa0ba902b7-01"),
            json!(""),
            json!(42),
            json!("\n"),
        ] {
            assert_eq!(TraceParent::parse(&bad), None, "{bad}");
        }
    }

    /// Ids given as bytes are written as lower-case hex; zero ids are refused.
    #[test]
    fn ids_from_bytes_are_lower_case_hex() {
        let tp = TraceParent::from_bytes([0xab; 16], [0x01, 0, 0, 0, 0, 0, 0, 0xfe]);
        let tp = tp.expect("non-zero ids");
        assert_eq!(
            tp.header(),
            "00-abababababababababababababababab-01000000000000fe-01"
        );
        assert_eq!(TraceParent::from_bytes([0; 16], [1; 8]), None);
        assert_eq!(TraceParent::from_bytes([1; 16], [0; 8]), None);
    }
}
