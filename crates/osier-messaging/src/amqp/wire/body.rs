//! Bodies written straight from their parts: the message serialised once, then escaped into
//! the envelope's string in one pass ([`escape_into`]), without building the inner map first.
//!
//! A map of JSON values serialises its members in key order (serde_json's map is sorted), so
//! the writers here emit their members in that same order: the bytes are those of building the
//! map ([`encode_request`](super::encode_request), [`encode_reply`](super::encode_reply)) and
//! enveloping it ([`encode_body`](super::encode_body)). The wire vector tests hold them to it.

use std::cmp::Ordering;

use serde::ser::{Serialize, SerializeMap, Serializer};
use serde_json::Value;

use super::json_string::escape_into;
use super::{seconds, CallInfo, CONTEXT_PREFIX, OSLO_VERSION};
use crate::driver::Dict;
use crate::error::Failure;

/// `{"oslo.message":"<message, escaped>","oslo.version":"2.0"}`.
pub(super) fn enveloped<T: Serialize + ?Sized>(message: &T) -> Vec<u8> {
    // The message's text first, then escaped in one go: serde_json writes a member in many
    // small pieces, each of which would be a call of its own to an escaping writer.
    let mut text = Vec::with_capacity(1024);
    // Writing to a `Vec` cannot fail, and neither can serialising JSON values or the
    // writers below (their keys are strings); `Value`'s own `to_string` assumes as much.
    let _ = serde_json::to_writer(&mut text, message);
    let mut out = Vec::with_capacity(text.len() + text.len() / 4 + 48);
    out.extend_from_slice(b"{\"oslo.message\":\"");
    escape_into(&mut out, &text);
    out.extend_from_slice(b"\",\"oslo.version\":\"");
    out.extend_from_slice(OSLO_VERSION.as_bytes());
    out.extend_from_slice(b"\"}");
    out
}

/// A context key as the request carries it: `_context_<key>`.
struct Prefixed<'a>(&'a str);

impl Serialize for Prefixed<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&format_args!("{CONTEXT_PREFIX}{}", self.0))
    }
}

/// A request's members, in key order: `_context_*` (the context's keys are sorted, and `c`
/// sorts before `m`), `_msg_id`, `_reply_q`, `_timeout`, `_unique_id`, `args`, `method`,
/// `namespace`, `version`.
struct Request<'a> {
    message: &'a Dict,
    ctxt: &'a Dict,
    call: Option<CallInfo<'a>>,
    unique_id: &'a str,
}

impl Serialize for Request<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(None)?;
        for (k, v) in self.ctxt {
            m.serialize_entry(&Prefixed(k), v)?;
        }
        if let Some(c) = self.call {
            m.serialize_entry("_msg_id", c.msg_id)?;
            m.serialize_entry("_reply_q", c.reply_q)?;
            m.serialize_entry(
                "_timeout",
                &c.call_monitor_timeout.map(seconds).unwrap_or(Value::Null),
            )?;
        }
        m.serialize_entry("_unique_id", self.unique_id)?;
        match self.message.get("args") {
            Some(args) => m.serialize_entry("args", args)?,
            // An empty map allocates nothing.
            None => m.serialize_entry("args", &Dict::new())?,
        }
        for k in ["method", "namespace", "version"] {
            if let Some(v) = self.message.get(k) {
                m.serialize_entry(k, v)?;
            }
        }
        m.end()
    }
}

/// A request's body, enveloped: the bytes of [`encode_body`](super::encode_body) over
/// [`encode_request`](super::encode_request), written without building the request's map
/// (nor copying the context and arguments into it).
///
/// ```
/// use osier_messaging::amqp::wire;
/// use serde_json::json;
///
/// let msg = json!({"method": "echo", "args": {"value": 1}});
/// let ctx = json!({"request_id": "req-1"});
/// let (msg, ctx) = (msg.as_object().unwrap(), ctx.as_object().unwrap());
/// assert_eq!(
///     wire::encode_request_body(msg, ctx, None, "u1"),
///     wire::encode_body(&wire::encode_request(msg, ctx, None, "u1")),
/// );
/// ```
#[inline(never)] // a stage of its own in profiles (`cargo xtask bench-instructions`)
pub fn encode_request_body(
    message: &Dict,
    ctxt: &Dict,
    call: Option<CallInfo<'_>>,
    unique_id: &str,
) -> Vec<u8> {
    enveloped(&Request {
        message,
        ctxt,
        call,
        unique_id,
    })
}

/// A failure as a reply carries it: a JSON string holding the failure's JSON.
struct FailureText<'a>(&'a Failure);

impl Serialize for FailureText<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&serde_json::to_string(self.0).unwrap_or_default())
    }
}

/// A reply's members, in key order: `_msg_id`, `_unique_id`, `ending`, `failure`, `result`.
struct Reply<'a> {
    result: Option<&'a Value>,
    failure: Option<&'a Failure>,
    ending: bool,
    msg_id: &'a str,
    unique_id: &'a str,
}

impl Serialize for Reply<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(5))?;
        m.serialize_entry("_msg_id", self.msg_id)?;
        m.serialize_entry("_unique_id", self.unique_id)?;
        m.serialize_entry("ending", &self.ending)?;
        m.serialize_entry("failure", &self.failure.map(FailureText))?;
        m.serialize_entry("result", &self.result)?;
        m.end()
    }
}

/// A reply's body, enveloped: the bytes of [`encode_body`](super::encode_body) over
/// [`encode_reply`](super::encode_reply), written without copying the result.
#[inline(never)] // a stage of its own in profiles (`cargo xtask bench-instructions`)
pub fn encode_reply_body(
    result: Option<&Value>,
    failure: Option<&Failure>,
    ending: bool,
    msg_id: &str,
    unique_id: &str,
) -> Vec<u8> {
    enveloped(&Reply {
        result,
        failure,
        ending,
        msg_id,
        unique_id,
    })
}

/// How `key` sorts against the context key `k` as the message carries it (`_context_<k>`).
fn cmp_prefixed(key: &str, k: &str) -> Ordering {
    key.bytes().cmp(CONTEXT_PREFIX.bytes().chain(k.bytes()))
}

/// A notification's members, in key order: the message's, `_unique_id` and the context's
/// (`_context_*`) merged, each of them already sorted. Where names meet, the context's member
/// wins over the others and `_unique_id` over the message's, as inserting them into one map in
/// that order does.
struct Notification<'a> {
    message: &'a Dict,
    ctxt: &'a Dict,
    unique_id: &'a str,
}

impl Serialize for Notification<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(None)?;
        let mut message = self.message.iter().peekable();
        let mut ctxt = self.ctxt.iter().peekable();
        let mut unique = Some(self.unique_id);
        loop {
            // The next of the context's members and `_unique_id`, whichever sorts first.
            let next_context = ctxt.peek().map(|(k, _)| k.as_str());
            let context_first = match (next_context, unique) {
                (Some(k), Some(_)) => cmp_prefixed("_unique_id", k) == Ordering::Greater,
                (Some(_), None) => true,
                (None, _) => false,
            };
            let other_key = |key: &str| match (context_first, next_context) {
                (true, Some(k)) => Some(cmp_prefixed(key, k)),
                _ => unique.map(|_| key.cmp("_unique_id")),
            };
            // Message members sorting before it go first; one of the same name is overwritten.
            if let Some((mk, mv)) = message.peek() {
                match other_key(mk) {
                    None | Some(Ordering::Less) => {
                        m.serialize_entry(mk.as_str(), mv)?;
                        message.next();
                        continue;
                    }
                    Some(Ordering::Equal) => {
                        message.next();
                    }
                    Some(Ordering::Greater) => {}
                }
            }
            if context_first {
                if let Some((k, v)) = ctxt.next() {
                    m.serialize_entry(&Prefixed(k), v)?;
                }
            } else if let Some(id) = unique.take() {
                m.serialize_entry("_unique_id", id)?;
            } else {
                break;
            }
        }
        m.end()
    }
}

/// A notification's body, enveloped: the bytes of [`encode_body`](super::encode_body) over
/// [`encode_notification`](super::encode_notification), written without copying the message
/// and context into a map first.
#[inline(never)] // a stage of its own in profiles (`cargo xtask bench-instructions`)
pub fn encode_notification_body(message: &Dict, ctxt: &Dict, unique_id: &str) -> Vec<u8> {
    enveloped(&Notification {
        message,
        ctxt,
        unique_id,
    })
}
