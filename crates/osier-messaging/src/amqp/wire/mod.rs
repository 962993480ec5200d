//! The oslo.messaging wire format on RabbitMQ: bodies, the 2.0
//! envelope, RPC requests, replies, failures and notifications, as pure functions over JSON.
//!
//! The AMQP driver publishes what these functions build and hands what it consumes to
//! them; keeping the format here, apart from the connection handling, lets every captured test
//! vector be checked without a broker.
//!
//! Two forms of each: functions over maps ([`encode_request`] then [`encode_body`];
//! [`decode_body`] then [`decode_request`]), which say what the format is, and the ones the
//! driver runs, which write a body straight from its parts ([`encode_request_body`],
//! [`encode_reply_body`], [`encode_notification_body`]) and read one in a single pass
//! ([`decode_request_body`], [`decode_reply_body`], [`decode_notification_body`]) without
//! building the maps: the same bytes and the same outcomes, held to it by the wire vector tests.
//!
//! ```
//! use osier_messaging::amqp::wire;
//! use serde_json::json;
//!
//! let msg = json!({"method": "echo", "args": {"value": 1}});
//! let ctx = json!({"request_id": "req-1"});
//! let inner = wire::encode_request(
//!     msg.as_object().unwrap(), ctx.as_object().unwrap(),
//!     Some(wire::CallInfo { msg_id: "m1", reply_q: "reply_x", call_monitor_timeout: None }),
//!     "u1",
//! );
//! let body = wire::encode_body(&inner);
//! let back = wire::decode_request(wire::decode_body(&body).unwrap()).unwrap();
//! assert_eq!(back.message["method"], "echo");
//! assert_eq!(back.ctxt["request_id"], "req-1");
//! assert_eq!(back.msg_id.as_deref(), Some("m1"));
//! ```

use std::borrow::Cow;
use std::cell::Cell;
use std::collections::hash_map::Entry;
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use crate::driver::Dict;
use crate::error::{Cause, Failure, MessagingError};
use crate::secrets::{Masked, MaskedMap};

mod body;
mod envelope;
mod id;
mod json_string;
mod json_text;
mod read;

pub use body::{
    encode_notification_body, encode_reply_body, encode_request_body, encode_request_body_with_args,
};
pub use id::{new_id, Id};

/// The only envelope version Python accepts (major 2, minor 0).
pub const OSLO_VERSION: &str = "2.0";
/// The `content_type` every oslo message carries; Python rejects messages without it.
pub const CONTENT_TYPE: &str = "application/json";
/// The `content_encoding` oslo sets.
pub const CONTENT_ENCODING: &str = "utf-8";
/// How many recent `_unique_id`s a listener remembers to drop duplicates. oslo keeps 16, which
/// fits its one unconfirmed message per connection; a publisher here keeps up to 512 messages
/// unconfirmed and sends them all again after a lost connection or a nack, so a listener
/// remembers four such windows.
pub const DUPLICATE_WINDOW: usize = 2048;
const CONTEXT_PREFIX: &str = "_context_";
/// The longest exchange name, queue name or routing key AMQP 0-9-1 can carry (a short string).
pub const MAX_NAME_BYTES: usize = 255;

/// What is wrong with a body or message received from the wire.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// The body is not JSON.
    #[error("body is not JSON: {0}")]
    NotJson(#[source] Cause),
    /// The body (or the enveloped message) is JSON but not an object.
    #[error("body is not a JSON object")]
    NotObject,
    /// An envelope with a version other than 2.0 (Python rejects those too).
    #[error("unsupported oslo envelope version {0:?}")]
    UnsupportedEnvelope(String),
    /// A required member is missing or has the wrong type.
    #[error("bad member {0}")]
    BadMember(&'static str),
}

impl From<WireError> for MessagingError {
    fn from(e: WireError) -> Self {
        MessagingError::serialization("a message from the wire", e)
    }
}

/// The `expiration` property of a call request: the call timeout in milliseconds, as a string.
pub fn expiration_ms(timeout: Duration) -> String {
    timeout.as_millis().to_string()
}

/// The 2.0 envelope: `{"oslo.version": "2.0", "oslo.message": "<the message as a JSON string>"}`.
///
/// The message is serialised once, straight from the map (no copy of it), and its text escaped
/// into the envelope's string in one pass: the same bytes as serialising the envelope as a map
/// (its members in sorted order, as serde_json writes a map).
#[inline(never)] // a stage of its own in profiles (`cargo xtask bench-instructions`)
pub fn encode_body(inner: &Dict) -> Vec<u8> {
    body::enveloped_map(inner)
}

/// The legacy 1.0 body (notifications with the `messaging` driver): the message itself.
#[inline(never)] // a stage of its own in profiles (`cargo xtask bench-instructions`)
pub fn encode_body_v1(inner: &Dict) -> Vec<u8> {
    serde_json::to_vec(inner).unwrap_or_default()
}

/// Decodes a body: the 2.0 envelope, or a bare message object (both are accepted by Python).
#[inline(never)] // a stage of its own in profiles (`cargo xtask bench-instructions`)
pub fn decode_body(body: &[u8]) -> Result<Dict, WireError> {
    read::body::<Dict>(body)
}

/// Where the reply of a request goes, read from a body that could not be decoded as a whole
/// (nested deeper than the decoder allows, a lone UTF-16 surrogate as Python's `json` writes it,
/// `args` of the wrong type...), so the caller gets a failure instead of waiting for its
/// timeout. `None` when the body does not name both a `_msg_id` and a usable `_reply_q`.
///
/// ```
/// use osier_messaging::amqp::wire;
///
/// let deep = format!(r#"{{"method": "m", "args": {}1{}, "_msg_id": "m1", "_reply_q": "reply_x"}}"#,
///     "[".repeat(500), "]".repeat(500));
/// assert!(wire::decode_body(deep.as_bytes()).is_err());
/// let a = wire::salvage_reply_address(deep.as_bytes()).unwrap();
/// assert_eq!((a.msg_id.as_str(), a.reply_q.as_str()), ("m1", "reply_x"));
/// ```
pub fn salvage_reply_address(body: &[u8]) -> Option<ReplyAddress> {
    use serde::Deserialize;
    /// The members that matter, every other value skipped without building it (and without the
    /// decoder's depth limit, which skipping does not need).
    #[derive(Deserialize)]
    struct Members {
        #[serde(rename = "oslo.message", default)]
        envelope: Option<String>,
        #[serde(rename = "_msg_id", default)]
        msg_id: Option<String>,
        #[serde(rename = "_reply_q", default)]
        reply_q: Option<String>,
    }
    let outer: Members = serde_json::from_slice(body).ok()?;
    let m = match outer.envelope {
        Some(inner) => serde_json::from_str::<Members>(&inner).ok()?,
        None => outer,
    };
    match (m.msg_id, m.reply_q) {
        (Some(msg_id), Some(reply_q)) if !reply_q.is_empty() && reply_q.len() <= MAX_NAME_BYTES => {
            Some(ReplyAddress { msg_id, reply_q })
        }
        _ => None,
    }
}

/// Where a call's reply goes: the caller's `_msg_id` and `_reply_q`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplyAddress {
    /// `_msg_id`: the reply carries it back.
    pub msg_id: String,
    /// `_reply_q`: the caller's reply queue (at most [`MAX_NAME_BYTES`]).
    pub reply_q: String,
}

/// The call-only members of a request.
#[derive(Debug, Clone, Copy)]
pub struct CallInfo<'a> {
    /// `_msg_id`: the reply carries it back.
    pub msg_id: &'a str,
    /// `_reply_q`: the caller's reply queue.
    pub reply_q: &'a str,
    /// `_timeout`: the call-monitor timeout in seconds (`null` when unused).
    pub call_monitor_timeout: Option<Duration>,
}

fn flatten_context(out: &mut Dict, ctxt: &Dict) {
    for (k, v) in ctxt {
        out.insert(format!("{CONTEXT_PREFIX}{k}"), v.clone());
    }
}

fn seconds(d: Duration) -> Value {
    if d.subsec_nanos() == 0 {
        Value::from(d.as_secs())
    } else {
        Value::from(d.as_secs_f64())
    }
}

/// A request's inner message: `message` is `{method, args[, namespace, version]}`;
/// the context is flattened into `_context_<key>` members; calls add `_msg_id`, `_reply_q` and
/// `_timeout`.
#[inline(never)] // a stage of its own in profiles (`cargo xtask bench-instructions`)
pub fn encode_request(
    message: &Dict,
    ctxt: &Dict,
    call: Option<CallInfo<'_>>,
    unique_id: &str,
) -> Dict {
    let mut out = Dict::new();
    for k in ["method", "args", "namespace", "version"] {
        if let Some(v) = message.get(k) {
            out.insert(k.into(), v.clone());
        }
    }
    if !out.contains_key("args") {
        out.insert("args".into(), Value::Object(Dict::new()));
    }
    if let Some(c) = call {
        out.insert("_msg_id".into(), c.msg_id.into());
        out.insert("_reply_q".into(), c.reply_q.into());
        out.insert(
            "_timeout".into(),
            c.call_monitor_timeout.map(seconds).unwrap_or(Value::Null),
        );
    }
    out.insert("_unique_id".into(), unique_id.into());
    flatten_context(&mut out, ctxt);
    out
}

/// A decoded request. Its `Debug` masks secrets.
#[derive(Clone, PartialEq)]
pub struct RequestWire {
    /// `{method, args[, namespace, version]}` (`args` defaults to `{}`).
    pub message: Dict,
    /// The context, `_context_` prefixes stripped.
    pub ctxt: Dict,
    /// `_msg_id` (calls only): no reply without it.
    pub msg_id: Option<String>,
    /// `_reply_q` (calls only).
    pub reply_q: Option<String>,
    /// `_timeout`: the call-monitor timeout, when set.
    pub call_monitor_timeout: Option<Duration>,
    /// `_unique_id`, when present (the duplicate filter keys on it).
    pub unique_id: Option<String>,
}

fn string(v: Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s),
        _ => None,
    }
}

/// A request's members as they are read: the message's, the context's (prefix stripped), and
/// the call's. Others are not kept.
#[derive(Default)]
struct RequestMembers {
    message: Dict,
    ctxt: Dict,
    msg_id: Option<String>,
    reply_q: Option<String>,
    unique_id: Option<String>,
    timeout: Option<Value>,
}

impl read::Members for RequestMembers {
    fn wants(&self, key: &str) -> bool {
        key.starts_with(CONTEXT_PREFIX)
            || matches!(
                key,
                "method"
                    | "args"
                    | "namespace"
                    | "version"
                    | "_msg_id"
                    | "_reply_q"
                    | "_unique_id"
                    | "_timeout"
            )
    }

    fn put(&mut self, key: Cow<'_, str>, v: Value) {
        let k = &*key;
        if let Some(c) = k.strip_prefix(CONTEXT_PREFIX) {
            self.ctxt.insert(c.to_string(), v);
            return;
        }
        match k {
            "_msg_id" => self.msg_id = string(v),
            "_reply_q" => self.reply_q = string(v),
            "_unique_id" => self.unique_id = string(v),
            "_timeout" => self.timeout = Some(v),
            _ => {
                self.message.insert(key.into_owned(), v);
            }
        }
    }
}

impl RequestMembers {
    fn into_request(self) -> Result<RequestWire, WireError> {
        let RequestMembers {
            mut message,
            mut ctxt,
            msg_id,
            reply_q,
            unique_id,
            timeout,
        } = self;
        if !matches!(message.get("method"), Some(Value::String(_))) {
            return Err(WireError::BadMember("method"));
        }
        // Any number is accepted; one no duration can hold (1e20, negative, NaN) means no call
        // monitor, as a timeout of zero does.
        let call_monitor_timeout = timeout
            .as_ref()
            .and_then(Value::as_f64)
            .filter(|t| *t > 0.0)
            .and_then(|t| Duration::try_from_secs_f64(t).ok());
        if reply_q.as_ref().is_some_and(|q| q.len() > MAX_NAME_BYTES) {
            // No reply could be published to it (an AMQP routing key holds 255 bytes).
            return Err(WireError::BadMember("_reply_q"));
        }
        // A Python endpoint's ctxt holds the caller's `_timeout` as `client_timeout` (null when
        // none was sent), over any context member of that name (MSG-AMQP-01).
        ctxt.insert("client_timeout".into(), timeout.unwrap_or(Value::Null));
        match message.get("args") {
            None | Some(Value::Null) => {
                message.insert("args".into(), Value::Object(Dict::new()));
            }
            Some(Value::Object(_)) => {}
            Some(_) => return Err(WireError::BadMember("args")),
        }
        Ok(RequestWire {
            message,
            ctxt,
            msg_id,
            reply_q,
            call_monitor_timeout,
            unique_id,
        })
    }
}

/// Splits a received request into its parts; unknown extra members are ignored, as Python ignores them.
#[inline(never)] // a stage of its own in profiles (`cargo xtask bench-instructions`)
pub fn decode_request(inner: Dict) -> Result<RequestWire, WireError> {
    use read::Members;
    let mut m = RequestMembers::default();
    for (k, v) in inner {
        if m.wants(&k) {
            m.put(Cow::Owned(k), v);
        }
    }
    m.into_request()
}

/// Reads a request's body in one pass: what [`decode_request`] makes of [`decode_body`]'s
/// message, without building the message's map first, nor any member the request does not
/// keep (such a member is skipped unbuilt, so the decoder's nesting limit does not apply to
/// it).
///
/// ```
/// use osier_messaging::amqp::wire;
///
/// let body = br#"{"method": "echo", "args": {"v": 1}, "_context_user": "u", "_msg_id": "m1", "_reply_q": "r"}"#;
/// let r = wire::decode_request_body(body).unwrap();
/// assert_eq!(r, wire::decode_request(wire::decode_body(body).unwrap()).unwrap());
/// assert_eq!(r.ctxt["user"], "u");
/// ```
#[inline(never)] // a stage of its own in profiles (`cargo xtask bench-instructions`)
pub fn decode_request_body(body: &[u8]) -> Result<RequestWire, WireError> {
    read::body::<RequestMembers>(body)?.into_request()
}

/// A reply's inner message: `result`, `failure` (the failure as a JSON *string*, or
/// null), `ending`, `_msg_id`, `_unique_id`. A heartbeat is `result: null, failure: null,
/// ending: false`.
#[inline(never)] // a stage of its own in profiles (`cargo xtask bench-instructions`)
pub fn encode_reply(
    result: Option<&Value>,
    failure: Option<&Failure>,
    ending: bool,
    msg_id: &str,
    unique_id: &str,
) -> Dict {
    let mut out = Dict::new();
    out.insert("result".into(), result.cloned().unwrap_or(Value::Null));
    out.insert(
        "failure".into(),
        match failure {
            Some(f) => Value::String(serde_json::to_string(f).unwrap_or_default()),
            None => Value::Null,
        },
    );
    out.insert("ending".into(), ending.into());
    out.insert("_msg_id".into(), msg_id.into());
    out.insert("_unique_id".into(), unique_id.into());
    out
}

/// A decoded reply. Its `Debug` masks secrets.
#[derive(Clone, PartialEq)]
pub struct ReplyWire {
    /// `result` (null when absent).
    pub result: Value,
    /// The failure, when the server failed.
    pub failure: Option<Failure>,
    /// `ending`: false for heartbeats (and for the first half of a legacy two-part reply).
    pub ending: bool,
    /// `_msg_id`: which call this answers.
    pub msg_id: String,
}

/// A reply's members as they are read; others are not kept.
#[derive(Default)]
struct ReplyMembers {
    result: Option<Value>,
    failure: Option<Value>,
    ending: Option<Value>,
    msg_id: Option<Value>,
}

impl read::Members for ReplyMembers {
    fn wants(&self, key: &str) -> bool {
        matches!(key, "result" | "failure" | "ending" | "_msg_id")
    }

    fn put(&mut self, key: Cow<'_, str>, v: Value) {
        match &*key {
            "result" => self.result = Some(v),
            "failure" => self.failure = Some(v),
            "ending" => self.ending = Some(v),
            _ => self.msg_id = Some(v),
        }
    }
}

impl ReplyMembers {
    fn into_reply(self) -> Result<ReplyWire, WireError> {
        let msg_id = self
            .msg_id
            .and_then(string)
            .ok_or(WireError::BadMember("_msg_id"))?;
        let failure = match self.failure {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(
                serde_json::from_str::<Failure>(&s).map_err(|_| WireError::BadMember("failure"))?,
            ),
            Some(_) => return Err(WireError::BadMember("failure")),
        };
        Ok(ReplyWire {
            result: self.result.unwrap_or(Value::Null),
            failure,
            ending: self.ending.and_then(|e| e.as_bool()).unwrap_or(false),
            msg_id,
        })
    }
}

/// Decodes a reply. `ending` missing counts as false (Python keeps waiting too); a failure that
/// carries only class, module and message is accepted.
#[inline(never)] // a stage of its own in profiles (`cargo xtask bench-instructions`)
pub fn decode_reply(inner: &Dict) -> Result<ReplyWire, WireError> {
    let member = |k: &str| inner.get(k).cloned();
    ReplyMembers {
        result: member("result"),
        failure: member("failure"),
        ending: member("ending"),
        msg_id: member("_msg_id"),
    }
    .into_reply()
}

/// Reads a reply's body in one pass: what [`decode_reply`] makes of [`decode_body`]'s message,
/// without building the message's map (nor copying the result out of it).
#[inline(never)] // a stage of its own in profiles (`cargo xtask bench-instructions`)
pub fn decode_reply_body(body: &[u8]) -> Result<ReplyWire, WireError> {
    read::body::<ReplyMembers>(body)?.into_reply()
}

/// A notification's inner message: `message` holds `message_id`, `publisher_id`,
/// `event_type`, `priority`, `payload`, `timestamp`; the context is flattened; `_unique_id` added.
#[inline(never)] // a stage of its own in profiles (`cargo xtask bench-instructions`)
pub fn encode_notification(message: &Dict, ctxt: &Dict, unique_id: &str) -> Dict {
    let mut out = Dict::new();
    for (k, v) in message {
        out.insert(k.clone(), v.clone());
    }
    out.insert("_unique_id".into(), unique_id.into());
    flatten_context(&mut out, ctxt);
    out
}

/// A decoded notification: the message members and the context, prefixes stripped. Its
/// `Debug` masks secrets.
#[derive(Clone, PartialEq)]
pub struct NotificationWire {
    /// `message_id`, `publisher_id`, `event_type`, `priority`, `payload`, `timestamp` (and any
    /// other member Python sent).
    pub message: Dict,
    /// The context.
    pub ctxt: Dict,
    /// `_unique_id`, when present.
    pub unique_id: Option<String>,
}

impl std::fmt::Debug for RequestWire {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RequestWire")
            .field("message", &MaskedMap(&self.message))
            .field("ctxt", &MaskedMap(&self.ctxt))
            .field("msg_id", &self.msg_id)
            .field("reply_q", &self.reply_q)
            .field("call_monitor_timeout", &self.call_monitor_timeout)
            .field("unique_id", &self.unique_id)
            .finish()
    }
}

impl std::fmt::Debug for ReplyWire {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReplyWire")
            .field("result", &Masked(&self.result))
            .field("failure", &self.failure)
            .field("ending", &self.ending)
            .field("msg_id", &self.msg_id)
            .finish()
    }
}

impl std::fmt::Debug for NotificationWire {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NotificationWire")
            .field("message", &MaskedMap(&self.message))
            .field("ctxt", &MaskedMap(&self.ctxt))
            .field("unique_id", &self.unique_id)
            .finish()
    }
}

/// A notification's members as they are read: the context's (prefix stripped), `_unique_id`,
/// and every other one as the message's.
#[derive(Default)]
struct NotificationMembers {
    message: Dict,
    ctxt: Dict,
    unique_id: Option<String>,
}

impl read::Members for NotificationMembers {
    fn wants(&self, _key: &str) -> bool {
        true
    }

    fn put(&mut self, key: Cow<'_, str>, v: Value) {
        let k = &*key;
        if let Some(c) = k.strip_prefix(CONTEXT_PREFIX) {
            self.ctxt.insert(c.to_string(), v);
        } else if k == "_unique_id" {
            self.unique_id = string(v);
        } else {
            self.message.insert(key.into_owned(), v);
        }
    }
}

impl NotificationMembers {
    fn into_notification(self) -> NotificationWire {
        NotificationWire {
            message: self.message,
            ctxt: self.ctxt,
            unique_id: self.unique_id,
        }
    }
}

/// Splits a received notification into message, context and unique id.
#[inline(never)] // a stage of its own in profiles (`cargo xtask bench-instructions`)
pub fn decode_notification(inner: Dict) -> NotificationWire {
    use read::Members;
    let mut m = NotificationMembers::default();
    for (k, v) in inner {
        m.put(Cow::Owned(k), v);
    }
    m.into_notification()
}

/// Reads a notification's body in one pass: what [`decode_notification`] makes of
/// [`decode_body`]'s message, without building the message's map first.
#[inline(never)] // a stage of its own in profiles (`cargo xtask bench-instructions`)
pub fn decode_notification_body(body: &[u8]) -> Result<NotificationWire, WireError> {
    Ok(read::body::<NotificationMembers>(body)?.into_notification())
}

/// Drops messages whose `_unique_id` is among the last [`DUPLICATE_WINDOW`] seen, as oslo's
/// reply and notification consumers do.
#[derive(Debug, Default)]
pub struct DuplicateFilter {
    /// Every id known, remembered (`true`) or taken and not yet settled (`false`:
    /// notifications handed to the listener, not yet acked): one map, so an id is hashed once
    /// per step.
    ids: HashMap<Arc<str>, Cell<bool>>,
    /// The ids remembered, oldest first; each shared with `ids` (one allocation per id).
    order: VecDeque<Arc<str>>,
}

impl DuplicateFilter {
    /// A filter that has seen nothing.
    pub fn new() -> Self {
        Self::default()
    }

    /// True if `id` was seen recently (the message is a duplicate); otherwise remembers it
    /// (RPC: a request is taken when it is received). A message without an id is never a
    /// duplicate.
    pub fn is_duplicate(&mut self, id: Option<&str>) -> bool {
        let Some(id) = id else { return false };
        // Looked up and remembered in one go (a duplicate is rare: its id's copy is wasted).
        match self.ids.entry(id.into()) {
            Entry::Occupied(_) => true,
            Entry::Vacant(v) => {
                let id = v.key().clone();
                v.insert(Cell::new(true));
                self.remembered(id);
                false
            }
        }
    }

    /// True if `id` was remembered recently.
    pub fn contains(&self, id: Option<&str>) -> bool {
        id.and_then(|id| self.ids.get(id)).is_some_and(Cell::get)
    }

    /// Takes a message for handling: false when `id` was handled already or another copy is
    /// being handled right now (a copy sent again by its publisher can arrive before the first
    /// is acknowledged). End with [`finish`](Self::finish).
    pub fn begin(&mut self, id: Option<&str>) -> bool {
        let Some(id) = id else { return true };
        match self.ids.entry(id.into()) {
            Entry::Occupied(_) => false,
            Entry::Vacant(v) => {
                v.insert(Cell::new(false));
                true
            }
        }
    }

    /// Ends what [`begin`](Self::begin) took: a handled message is remembered; one requeued or
    /// rejected is not, so its next delivery is taken again.
    pub fn finish(&mut self, id: Option<&str>, handled: bool) {
        let Some(id) = id else { return };
        if !handled {
            if self.ids.get(id).is_some_and(|done| !done.get()) {
                self.ids.remove(id);
            }
            return;
        }
        self.remember(Some(id));
    }

    /// Remembers `id` (notifications: only once acknowledged, so a requeued one comes back).
    pub fn remember(&mut self, id: Option<&str>) {
        let Some(id) = id else { return };
        match self.ids.get_key_value(id) {
            // Taken: the id's one allocation goes on to the remembered ones.
            Some((key, done)) if !done.get() => {
                done.set(true);
                let key = key.clone();
                self.remembered(key);
            }
            Some(_) => {}
            None => {
                let key: Arc<str> = id.into();
                self.ids.insert(key.clone(), Cell::new(true));
                self.remembered(key);
            }
        }
    }

    /// `id` was remembered just now: it goes last in the window, and the oldest beyond the
    /// window is forgotten.
    fn remembered(&mut self, id: Arc<str>) {
        if self.order.len() == DUPLICATE_WINDOW {
            if let Some(old) = self.order.pop_front() {
                self.ids.remove(&old);
            }
        }
        self.order.push_back(id);
    }
}
