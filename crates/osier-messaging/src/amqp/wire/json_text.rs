//! A message's JSON text written as the 2.0 envelope's string holds it: the text serde_json
//! writes, byte for byte (compact, a map's members in the map's order, numbers by serde_json
//! itself), already escaped as a string's contents, so the envelope is written around it with
//! no second pass over the message. Outside strings the text needs one escape only, its quotes
//! (`\"`); a string's contents are escaped twice in one pass ([`escape_twice_into`]).
//!
//! A message is mostly strings (the context's keys and values, the method, the arguments'
//! names), and serde_json looks at them a byte at a time and writes each through its
//! `Serializer`'s layers; this writes a string as one copy between its quotes but for the bytes
//! that need escaping.
//!
//! Nothing here can fail: every key is a string and every value a JSON value.

use serde_json::{Map, Value};

use super::json_string::escape_twice_into;

/// A quote of the message's text, as the envelope's string holds it.
const QUOTE: &[u8] = b"\\\"";

/// Appends `s` as a JSON string.
pub(super) fn string(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(QUOTE);
    escape_twice_into(out, s.as_bytes());
    out.extend_from_slice(QUOTE);
}

/// Appends `v` as serde_json's `to_writer` writes it.
pub(super) fn value(out: &mut Vec<u8>, v: &Value) {
    match v {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(true) => out.extend_from_slice(b"true"),
        Value::Bool(false) => out.extend_from_slice(b"false"),
        // Rare in a message, and written by serde_json so integers and floats are its own (a
        // number's text has nothing to escape).
        Value::Number(n) => {
            let _ = serde_json::to_writer(&mut *out, n);
        }
        Value::String(s) => string(out, s),
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                value(out, item);
            }
            out.push(b']');
        }
        Value::Object(map) => object(out, map),
    }
}

/// Appends `map` as a JSON object.
pub(super) fn object(out: &mut Vec<u8>, map: &Map<String, Value>) {
    let mut o = Object::open(out);
    for (k, v) in map {
        value(o.key(k), v);
    }
    o.close();
}

/// An object being written: each member's key through [`key`](Object::key), then its value
/// into what `key` returns.
pub(super) struct Object<'a> {
    out: &'a mut Vec<u8>,
    first: bool,
}

impl<'a> Object<'a> {
    /// Starts the object.
    pub(super) fn open(out: &'a mut Vec<u8>) -> Object<'a> {
        out.push(b'{');
        Object { out, first: true }
    }

    /// Starts a member named `key`; its value goes into the returned text.
    pub(super) fn key(&mut self, key: &str) -> &mut Vec<u8> {
        self.key_with_prefix("", key)
    }

    /// Starts a member named `prefix` followed by `key` (`prefix` needs no escaping).
    pub(super) fn key_with_prefix(&mut self, prefix: &str, key: &str) -> &mut Vec<u8> {
        if !self.first {
            self.out.push(b',');
        }
        self.first = false;
        self.out.extend_from_slice(QUOTE);
        self.out.extend_from_slice(prefix.as_bytes());
        escape_twice_into(self.out, key.as_bytes());
        self.out.extend_from_slice(QUOTE);
        self.out.push(b':');
        self.out
    }

    /// Ends the object.
    pub(super) fn close(self) {
        self.out.push(b'}');
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::amqp::wire::json_string::escape_into;
    use serde_json::json;

    fn text(v: &Value) -> Vec<u8> {
        let mut out = Vec::new();
        value(&mut out, v);
        out
    }

    /// serde_json's text of `v`, as a JSON string holds it.
    fn serde_json_in_a_string(v: &Value) -> Vec<u8> {
        let mut out = Vec::new();
        escape_into(&mut out, &serde_json::to_vec(v).unwrap_or_default());
        out
    }

    /// A small deterministic generator (xorshift), so a failure names its case.
    struct Gen(u64);

    impl Gen {
        fn next(&mut self, n: u64) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0 % n
        }

        fn string(&mut self) -> String {
            const PIECES: &[&str] = &[
                "a",
                "req-",
                "\"",
                "\\",
                "\n",
                "\u{0}",
                "\u{1f}",
                "\u{7f}",
                "é",
                "€",
                "😀",
                " ",
                "/",
                "\u{2028}",
                "abcdefgh",
                "_context_",
                "\t\r\u{8}\u{c}",
            ];
            (0..self.next(12))
                .map(|_| PIECES[self.next(PIECES.len() as u64) as usize])
                .collect()
        }

        fn value(&mut self, depth: u32) -> Value {
            let kinds = if depth == 0 { 6 } else { 8 };
            match self.next(kinds) {
                0 => Value::Null,
                1 => Value::Bool(self.next(2) == 0),
                2 => json!((self.next(u64::MAX) as i64).wrapping_sub(1 << 40)),
                3 => json!(self.next(u64::MAX)),
                4 => json!((self.next(1 << 52) as f64) / 1024.0 - 1e9),
                5 => Value::String(self.string()),
                6 => Value::Array((0..self.next(5)).map(|_| self.value(depth - 1)).collect()),
                _ => Value::Object(
                    (0..self.next(6))
                        .map(|_| (self.string(), self.value(depth - 1)))
                        .collect(),
                ),
            }
        }
    }

    #[test]
    fn values_are_written_as_serde_json_writes_them_inside_a_string() {
        let mut g = Gen(0x9e37_79b9_7f4a_7c15);
        for case in 0..20_000 {
            let v = g.value(4);
            let want = serde_json_in_a_string(&v);
            assert_eq!(
                String::from_utf8_lossy(&text(&v)),
                String::from_utf8_lossy(&want),
                "case {case}"
            );
        }
    }

    #[test]
    fn edge_values_are_written_as_serde_json_writes_them_inside_a_string() {
        for v in [
            json!({}),
            json!([]),
            json!(""),
            json!(u64::MAX),
            json!(i64::MIN),
            json!(0.1),
            json!(-0.0),
            json!(1e300),
            json!(f64::MIN_POSITIVE),
            json!({"": [null, {}, [[]]], "k\u{1}": "v\u{7}"}),
        ] {
            assert_eq!(text(&v), serde_json_in_a_string(&v), "{v}");
        }
    }

    #[test]
    fn a_prefixed_key_is_the_prefix_then_the_escaped_key() {
        let mut out = Vec::new();
        let mut o = Object::open(&mut out);
        value(o.key_with_prefix("_context_", "a\"b"), &json!(1));
        string(o.key("x"), "y");
        o.close();
        assert_eq!(out, br#"{\"_context_a\\\"b\":1,\"x\":\"y\"}"#);
    }
}
