//! The request context and the serializer hook (MSG-SER-01..04).
//!
//! oslo sends the caller's context as a flat dict (on the wire each key becomes a
//! `_context_<key>` member). [`RequestContext`] keeps that dict as it is, so every key a Python
//! peer sends round-trips, with typed accessors for the keys services rely on.
//!
//! ```
//! use osier_messaging::RequestContext;
//!
//! let mut ctx = RequestContext::new();
//! ctx.set("request_id", "req-1");
//! ctx.set("user_id", "alice");
//! ctx.set("auth_token", "s3cret");
//! assert_eq!(ctx.request_id(), Some("req-1"));
//! let back = RequestContext::from_dict(ctx.to_dict());
//! assert_eq!(back, ctx);
//! assert!(!format!("{ctx:?}").contains("s3cret"));   // secrets never reach logs
//! ```

use serde_json::{Map, Value};

use crate::error::MessagingError;
use crate::secrets::{is_sensitive_key, Masked, MASK};

/// A request context: oslo.context's `to_dict()` form, kept as a JSON object. Its `Debug`
/// masks secrets at any depth ([`crate::secrets`]).
#[derive(Clone, Default, PartialEq)]
pub struct RequestContext {
    values: Map<String, Value>,
}

impl std::fmt::Debug for RequestContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut m = f.debug_map();
        for (k, v) in &self.values {
            if is_sensitive_key(k) {
                m.entry(k, &MASK);
            } else {
                m.entry(k, &Masked(v));
            }
        }
        m.finish()
    }
}

impl RequestContext {
    /// An empty context (sent as no context members at all).
    pub fn new() -> Self {
        Self::default()
    }

    /// A context with a fresh `req-<uuid4>` request id, as oslo.context generates.
    pub fn with_new_request_id() -> Self {
        let mut c = Self::new();
        c.set("request_id", format!("req-{}", uuid::Uuid::new_v4()));
        c
    }

    /// Rebuilds a context from its dict form (`from_dict`).
    pub fn from_dict(values: Map<String, Value>) -> Self {
        RequestContext { values }
    }

    /// The dict form sent on the wire (`to_dict`).
    pub fn to_dict(&self) -> Map<String, Value> {
        self.values.clone()
    }

    /// Any key.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.values.get(key)
    }

    /// Sets any key.
    pub fn set(&mut self, key: &str, value: impl Into<Value>) {
        self.values.insert(key.to_string(), value.into());
    }

    fn str_of(&self, key: &str) -> Option<&str> {
        self.values.get(key).and_then(Value::as_str)
    }

    /// `request_id`.
    pub fn request_id(&self) -> Option<&str> {
        self.str_of("request_id")
    }

    /// `global_request_id`.
    pub fn global_request_id(&self) -> Option<&str> {
        self.str_of("global_request_id")
    }

    /// `user_id` (oslo.context also sends it as `user`).
    pub fn user_id(&self) -> Option<&str> {
        self.str_of("user_id").or_else(|| self.str_of("user"))
    }

    /// `project_id` (oslo.context also sends it as `tenant` / `project`).
    pub fn project_id(&self) -> Option<&str> {
        self.str_of("project_id")
            .or_else(|| self.str_of("tenant"))
            .or_else(|| self.str_of("project"))
    }

    /// True when the context has no keys.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }
}

/// oslo's serializer hook (MSG-SER-01): called on every argument, result and context as they
/// cross the wire, in the order MSG-SER-03 gives. The default methods change nothing
/// (`NoOpSerializer`).
pub trait Serializer: Send + Sync + 'static {
    /// An entity (argument, result, payload) on its way out.
    fn serialize_entity(&self, _ctx: &RequestContext, v: Value) -> Result<Value, MessagingError> {
        Ok(v)
    }
    /// An entity on its way in.
    fn deserialize_entity(&self, _ctx: &RequestContext, v: Value) -> Result<Value, MessagingError> {
        Ok(v)
    }
    /// The context on its way out.
    fn serialize_context(&self, ctx: &RequestContext) -> Map<String, Value> {
        ctx.to_dict()
    }
    /// The context on its way in.
    fn deserialize_context(&self, m: Map<String, Value>) -> RequestContext {
        RequestContext::from_dict(m)
    }
    /// True when [`serialize_entity`](Serializer::serialize_entity) returns every value as it
    /// is given: the client may then write a call's arguments straight to JSON text, without
    /// making each a value for the hook first. `false` unless a serializer says so.
    fn passes_entities_unchanged(&self) -> bool {
        false
    }
}

/// The serializer that changes nothing: the default everywhere.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoOpSerializer;

impl Serializer for NoOpSerializer {
    fn passes_entities_unchanged(&self) -> bool {
        true
    }
}
