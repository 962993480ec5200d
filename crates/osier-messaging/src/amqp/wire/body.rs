//! Bodies written straight from their parts, in one pass: the message's JSON text written
//! already escaped as the envelope's string holds it ([`json_text`](super::json_text)), between
//! the envelope's opening and closing, without building the inner map or the message's plain
//! text first.
//!
//! A map of JSON values serialises its members in key order (serde_json's map is sorted), so
//! the writers here emit their members in that same order: the bytes are those of building the
//! map ([`encode_request`](super::encode_request), [`encode_reply`](super::encode_reply)) and
//! enveloping it ([`encode_body`](super::encode_body)). The wire vector tests hold them to it.
//! Arguments given as JSON text ([`encode_request_body_with_args`]) go in as they were written:
//! the same bytes when they were written from a map of values; a struct's fields in the
//! struct's order (JSON's members have no order a receiver may rely on; Python reads a dict).

use std::cmp::Ordering;

use serde_json::Value;

use super::json_string::escape_into;
use super::json_text::{object, string, value, Object};
use super::{seconds, CallInfo, CONTEXT_PREFIX, OSLO_VERSION};
use crate::driver::Dict;
use crate::error::Failure;

/// `{"oslo.message":"<message, escaped>","oslo.version":"2.0"}`: `write` writes the message
/// escaped (with [`json_text`](super::json_text)) in its place.
fn enveloped(write: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
    let mut out = Vec::with_capacity(1024);
    out.extend_from_slice(b"{\"oslo.message\":\"");
    write(&mut out);
    out.extend_from_slice(b"\",\"oslo.version\":\"");
    out.extend_from_slice(OSLO_VERSION.as_bytes());
    out.extend_from_slice(b"\"}");
    out
}

/// A message map, enveloped.
pub(super) fn enveloped_map(message: &Dict) -> Vec<u8> {
    enveloped(|text| object(text, message))
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
pub fn encode_request_body(
    message: &Dict,
    ctxt: &Dict,
    call: Option<CallInfo<'_>>,
    unique_id: &str,
) -> Vec<u8> {
    encode_request_body_with_args(message, None, ctxt, call, unique_id)
}

/// [`encode_request_body`] with the arguments given as JSON text (`args_json`, an object, as
/// [`Outgoing::args_json`](crate::driver::Outgoing::args_json) holds them) in place of
/// `message`'s `args`: the text goes into the body as it is, escaped once for the envelope.
///
/// ```
/// use osier_messaging::amqp::wire;
/// use serde_json::json;
///
/// let msg = json!({"method": "echo", "args": {"value": "a \"b\""}});
/// let bare = json!({"method": "echo"});
/// let ctx = json!({"request_id": "req-1"});
/// let (msg, bare, ctx) = (msg.as_object().unwrap(), bare.as_object().unwrap(), ctx.as_object().unwrap());
/// let args = serde_json::to_string(&msg["args"]).unwrap();
/// assert_eq!(
///     wire::encode_request_body_with_args(bare, Some(&args), ctx, None, "u1"),
///     wire::encode_request_body(msg, ctx, None, "u1"),
/// );
/// ```
#[inline(never)] // a stage of its own in profiles (`cargo xtask bench-instructions`)
pub fn encode_request_body_with_args(
    message: &Dict,
    args_json: Option<&str>,
    ctxt: &Dict,
    call: Option<CallInfo<'_>>,
    unique_id: &str,
) -> Vec<u8> {
    // Members in key order: `_context_*` (the context's keys are sorted, and `c` sorts before
    // `m`), `_msg_id`, `_reply_q`, `_timeout`, `_unique_id`, `args`, `method`, `namespace`,
    // `version`.
    enveloped(|text| {
        let mut m = Object::open(text);
        for (k, v) in ctxt {
            value(m.key_with_prefix(CONTEXT_PREFIX, k), v);
        }
        if let Some(c) = call {
            string(m.key("_msg_id"), c.msg_id);
            string(m.key("_reply_q"), c.reply_q);
            match c.call_monitor_timeout {
                Some(t) => value(m.key("_timeout"), &seconds(t)),
                None => m.key("_timeout").extend_from_slice(b"null"),
            }
        }
        string(m.key("_unique_id"), unique_id);
        match (args_json, message.get("args")) {
            (Some(text), _) => escape_into(m.key("args"), text.as_bytes()),
            (None, Some(args)) => value(m.key("args"), args),
            (None, None) => m.key("args").extend_from_slice(b"{}"),
        }
        for k in ["method", "namespace", "version"] {
            if let Some(v) = message.get(k) {
                value(m.key(k), v);
            }
        }
        m.close();
    })
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
    // Members in key order: `_msg_id`, `_unique_id`, `ending`, `failure` (a JSON string
    // holding the failure's JSON), `result`.
    enveloped(|text| {
        let mut m = Object::open(text);
        string(m.key("_msg_id"), msg_id);
        string(m.key("_unique_id"), unique_id);
        value(m.key("ending"), &Value::Bool(ending));
        match failure {
            Some(f) => string(
                m.key("failure"),
                &serde_json::to_string(f).unwrap_or_default(),
            ),
            None => m.key("failure").extend_from_slice(b"null"),
        }
        match result {
            Some(r) => value(m.key("result"), r),
            None => m.key("result").extend_from_slice(b"null"),
        }
        m.close();
    })
}

/// How `key` sorts against the context key `k` as the message carries it (`_context_<k>`).
fn cmp_prefixed(key: &str, k: &str) -> Ordering {
    key.bytes().cmp(CONTEXT_PREFIX.bytes().chain(k.bytes()))
}

/// A notification's body, enveloped: the bytes of [`encode_body`](super::encode_body) over
/// [`encode_notification`](super::encode_notification), written without copying the message
/// and context into a map first.
///
/// Its members in key order: the message's, `_unique_id` and the context's (`_context_*`)
/// merged, each of them already sorted. Where names meet, the context's member wins over the
/// others and `_unique_id` over the message's, as inserting them into one map in that order
/// does.
#[inline(never)] // a stage of its own in profiles (`cargo xtask bench-instructions`)
pub fn encode_notification_body(message: &Dict, ctxt: &Dict, unique_id: &str) -> Vec<u8> {
    enveloped(|text| {
        let mut m = Object::open(text);
        let mut message = message.iter().peekable();
        let mut ctxt = ctxt.iter().peekable();
        let mut unique = Some(unique_id);
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
                        value(m.key(mk), mv);
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
                    value(m.key_with_prefix(CONTEXT_PREFIX, k), v);
                }
            } else if let Some(id) = unique.take() {
                string(m.key("_unique_id"), id);
            } else {
                break;
            }
        }
        m.close();
    })
}
