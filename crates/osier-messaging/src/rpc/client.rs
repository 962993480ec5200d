//! `RpcClient`: call, cast, fanout, prepare, timeouts, version caps, call monitor (MSG-RPC-*).
//!
//! ```
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! use osier_messaging::{RequestContext, RpcClient, Target, Transport};
//! use std::time::Duration;
//!
//! let transport = Transport::new("memory://").unwrap();
//! let client = RpcClient::new(&transport, Target::topic("compute")).timeout(Duration::from_millis(10));
//! // nobody listens on the topic: a call times out with a typed error
//! let r: Result<u32, _> = client.call(&RequestContext::new(), "ping", serde_json::json!({})).await;
//! assert!(matches!(r, Err(osier_messaging::MessagingError::Timeout(_))));
//! // prepare() overrides per call site, as oslo's does
//! let directed = client.prepare().server(Some("host-1")).version(Some("1.2")).build().unwrap();
//! assert_eq!(directed.target().server.as_deref(), Some("host-1"));
//! # });
//! ```

use std::cell::OnceCell;
use std::sync::Arc;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

use crate::context::{NoOpSerializer, RequestContext, Serializer};
use crate::driver::{Dict, Outcome, Outgoing, ReplyEvent};
use crate::error::{Cause, MessagingError};
use crate::metrics::ClientMeterCache;
use crate::rpc::in_span::{record_current, InSpan};
use crate::rpc::same_type::same_type;
use crate::rpc::span_fields::LazyFields;
use crate::target::Target;
use crate::trace_context::{self, TraceParent};
use crate::transport::Transport;
use crate::untrusted::Untrusted;
use crate::version::{version_is_compatible, Version};

/// How a sent request is known on the wire, for a timeout's message: ` (msg_id .., reply
/// queue ..)`, or nothing when the transport has no such names.
fn sent_as(waiter: &dyn crate::driver::ReplyWaiter) -> String {
    match (waiter.msg_id(), waiter.reply_queue()) {
        (Some(id), Some(q)) => format!(" (msg_id {id}, reply queue {q})"),
        (Some(id), None) => format!(" (msg_id {id})"),
        _ => String::new(),
    }
}

/// The serialized size of `v` in bytes, counted without building the bytes.
fn json_size(v: &Dict) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0 += b.len();
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut c = Count(0);
    let _ = serde_json::to_writer(&mut c, v);
    c.0
}

/// The size of `message` serialised with the member `"args": <args_json>` added: what
/// [`json_size`] gives for the message with its arguments in it (`args` sorts first, and
/// `message` always has its method).
fn size_with_args(message: &Dict, args_json: &str) -> usize {
    json_size(message) + r#""args":"#.len() + args_json.len() + ",".len()
}

/// An RPC client bound to a transport and a target (oslo's `get_rpc_client`). Cheap to clone.
#[derive(Clone)]
pub struct RpcClient {
    transport: Transport,
    target: Target,
    timeout: Option<Duration>,
    version_cap: Option<Version>,
    retry: Option<i32>,
    call_monitor_timeout: Option<Duration>,
    serializer: Arc<dyn Serializer>,
    bridge: Option<osier_bridge::Bridge>,
    /// Metric handles for this target, by method (shared by clones; a prepared client with
    /// another target gets its own).
    meters: Arc<ClientMeterCache>,
    /// `target` as its spans show it, written once per target rather than per call.
    target_label: Arc<str>,
}

impl std::fmt::Debug for RpcClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RpcClient")
            .field("target", &&*self.target_label)
            .field("timeout", &self.timeout)
            .field("version_cap", &self.version_cap)
            .finish_non_exhaustive()
    }
}

/// Overrides for one call site (oslo's `prepare`): anything not set is inherited; setting
/// `None` clears (`version_cap(None)` removes the cap).
#[derive(Debug)]
#[must_use]
pub struct Prepare<'a> {
    base: &'a RpcClient,
    exchange: Option<Option<String>>,
    topic: Option<Option<String>>,
    namespace: Option<Option<String>>,
    version: Option<Option<String>>,
    server: Option<Option<String>>,
    fanout: Option<bool>,
    timeout: Option<Option<Duration>>,
    version_cap: Option<Option<String>>,
    retry: Option<Option<i32>>,
    call_monitor_timeout: Option<Option<Duration>>,
}

macro_rules! setter {
    ($name:ident, $t:ty) => {
        #[doc = concat!("Overrides `", stringify!($name), "`.")]
        pub fn $name(mut self, v: Option<$t>) -> Self {
            self.$name = Some(v.map(Into::into));
            self
        }
    };
}

impl Prepare<'_> {
    setter!(exchange, &str);
    setter!(topic, &str);
    setter!(namespace, &str);
    setter!(version, &str);
    setter!(server, &str);
    setter!(version_cap, &str);
    setter!(timeout, Duration);
    setter!(retry, i32);
    setter!(call_monitor_timeout, Duration);

    /// Overrides `fanout`.
    pub fn fanout(mut self, v: bool) -> Self {
        self.fanout = Some(v);
        self
    }

    /// The prepared client; malformed versions are refused here (MSG-RPC-02).
    pub fn build(self) -> Result<RpcClient, MessagingError> {
        let mut c = self.base.clone();
        let mut t = c.target.clone();
        t.legacy_namespaces = Vec::new();
        if let Some(v) = self.exchange {
            t.exchange = v;
        }
        if let Some(v) = self.topic {
            t.topic = v;
        }
        if let Some(v) = self.namespace {
            t.namespace = v;
        }
        if let Some(v) = self.server {
            t.server = v;
        }
        if let Some(v) = self.fanout {
            t.fanout = v;
        }
        if let Some(v) = self.version {
            t.version = v.map(|s| s.parse()).transpose()?;
        }
        if t != c.target {
            c.meters = Arc::new(ClientMeterCache::new(
                &c.transport.opts.metrics_process_name,
            ));
            c.target_label = t.to_string().into();
        }
        c.target = t;
        if let Some(v) = self.version_cap {
            c.version_cap = v.map(|s| s.parse()).transpose()?;
        }
        if let Some(v) = self.timeout {
            c.timeout = v;
        }
        if let Some(v) = self.retry {
            c.retry = v;
        }
        if let Some(v) = self.call_monitor_timeout {
            c.call_monitor_timeout = v;
        }
        Ok(c)
    }
}

impl RpcClient {
    /// A client for `target` on `transport`.
    pub fn new(transport: &Transport, target: Target) -> Self {
        RpcClient {
            transport: transport.clone(),
            target_label: target.to_string().into(),
            target,
            timeout: None,
            version_cap: None,
            retry: None,
            call_monitor_timeout: None,
            serializer: Arc::new(NoOpSerializer),
            bridge: None,
            meters: Arc::new(ClientMeterCache::new(&transport.opts.metrics_process_name)),
        }
    }

    /// The bridge `call_green`/`cast_green` wait through (default: the process-wide one).
    pub fn bridge(mut self, b: osier_bridge::Bridge) -> Self {
        self.bridge = Some(b);
        self
    }

    fn the_bridge(&self) -> &osier_bridge::Bridge {
        self.bridge
            .as_ref()
            .unwrap_or_else(|| osier_bridge::Bridge::global())
    }

    /// The call timeout (0 is legal and expires at once). Unset: the transport's
    /// `rpc_response_timeout`.
    pub fn timeout(mut self, d: Duration) -> Self {
        self.timeout = Some(d);
        self
    }

    /// Refuses to send messages whose version is above `cap` (or that have none).
    pub fn version_cap(mut self, cap: &str) -> Result<Self, MessagingError> {
        self.version_cap = Some(cap.parse()?);
        Ok(self)
    }

    /// oslo's `retry`: None or -1 forever, 0 one attempt, N retries.
    pub fn retry(mut self, retry: i32) -> Self {
        self.retry = Some(retry);
        self
    }

    /// The call-monitor timeout (MSG-RPC-08): the server heartbeats every half of it, and a call
    /// with no heartbeat or reply for this long fails, while `timeout` still caps the call.
    pub fn call_monitor_timeout(mut self, d: Duration) -> Self {
        self.call_monitor_timeout = Some(d);
        self
    }

    /// The serializer for arguments, context and results (default: no-op).
    pub fn serializer(mut self, s: Arc<dyn Serializer>) -> Self {
        self.serializer = s;
        self
    }

    /// Per-call-site overrides (oslo's `prepare`).
    pub fn prepare(&self) -> Prepare<'_> {
        Prepare {
            base: self,
            exchange: None,
            topic: None,
            namespace: None,
            version: None,
            server: None,
            fanout: None,
            timeout: None,
            version_cap: None,
            retry: None,
            call_monitor_timeout: None,
        }
    }

    /// The target messages go to.
    pub fn target(&self) -> &Target {
        &self.target
    }

    /// The timeout a call would use now (MSG-RPC-05's precedence).
    pub fn effective_timeout(&self) -> Duration {
        self.timeout
            .unwrap_or(self.transport.opts.rpc_response_timeout)
    }

    /// Whether a message of `version` may be sent under the cap (MSG-RPC-06): `None` checks the
    /// target's version; `Some(None)` means "a message with no version".
    pub fn can_send_version(&self, version: Option<Option<&str>>) -> Result<bool, MessagingError> {
        let v = match version {
            None => self.target.version,
            Some(None) => None,
            Some(Some(s)) => Some(s.parse()?),
        };
        Ok(self.version_cap.is_none()
            || version_is_compatible(self.version_cap.as_ref(), v.as_ref()))
    }

    fn check_cap(&self) -> Result<(), MessagingError> {
        if let Some(cap) = &self.version_cap {
            if !version_is_compatible(Some(cap), self.target.version.as_ref()) {
                return Err(MessagingError::VersionCap {
                    version: self.target.version.map(|v| v.to_string()),
                    version_cap: cap.to_string(),
                });
            }
        }
        Ok(())
    }

    /// The request, carrying the `traceparent` `trace` says.
    fn make(
        &self,
        ctx: &RequestContext,
        method: &str,
        args: impl Serialize,
        trace: Trace,
    ) -> Result<Outgoing, MessagingError> {
        self.target.require_topic()?;
        self.check_cap()?;
        let not_named = |kind: &str| MessagingError::Serialization {
            reason: format!(
                "the arguments of {method} must serialize to an object of named arguments, got \
                 {kind}"
            ),
            source: None,
        };
        let unserializable =
            |e| MessagingError::serialization(format!("the arguments of {method}"), e);
        let mut message = Dict::new();
        message.insert("method".into(), method.into());
        if let Some(ns) = &self.target.namespace {
            message.insert("namespace".into(), ns.clone().into());
        }
        if let Some(v) = &self.target.version {
            message.insert("version".into(), v.to_string().into());
        }
        // Written once, straight to text, when the driver takes them so and no serializer hook
        // needs each as a value.
        let args_json = if self.transport.driver.takes_json_args()
            && self.serializer.passes_entities_unchanged()
        {
            let text = serde_json::to_string(&args).map_err(unserializable)?;
            match text.as_bytes().first() {
                Some(b'{') => Some(text),
                Some(b'n') => Some("{}".to_string()),
                // Read back only to name what it is.
                _ => {
                    let kind = serde_json::from_str(&text).map_or("JSON", |v| json_kind(&v));
                    return Err(not_named(kind));
                }
            }
        } else {
            let mut args = match serde_json::to_value(args).map_err(unserializable)? {
                Value::Object(m) => m,
                Value::Null => Dict::new(),
                other => return Err(not_named(json_kind(&other))),
            };
            // In place: the serializer sees each argument, in key order, as oslo's does.
            for v in args.values_mut() {
                *v = self.serializer.serialize_entity(ctx, std::mem::take(v))?;
            }
            message.insert("args".into(), Value::Object(args));
            None
        };
        let size = match &args_json {
            Some(text) => size_with_args(&message, text),
            None => json_size(&message),
        };
        if size > self.transport.opts.max_message_size {
            return Err(MessagingError::TooLarge {
                size,
                limit: self.transport.opts.max_message_size,
            });
        }
        let mut ctxt = self.serializer.serialize_context(ctx);
        let tp = match trace {
            Trace::Known(tp) => Some(tp),
            Trace::FromSpan => {
                // From the span in force (OpenTelemetry's ids), recorded on it now.
                let parent = ctxt.get(trace_context::KEY).and_then(TraceParent::parse);
                let tp = TraceParent::for_request(parent.as_ref());
                let span = tracing::Span::current();
                span.record("trace_id", tp.trace_id());
                span.record("span_id", tp.span_id());
                Some(tp)
            }
            // The context's own `traceparent`, if it has one, goes on as it is.
            Trace::Off => None,
        };
        if let Some(tp) = tp {
            ctxt.insert(trace_context::KEY.into(), tp.header().into());
        }
        Ok(Outgoing {
            target: self.target.clone(),
            ctxt,
            message,
            args_json,
            timeout: Some(self.effective_timeout()),
            call_monitor_timeout: self.call_monitor_timeout,
            retry: self.retry,
        })
    }

    /// Sends `method(**args)` and returns at once (MSG-RPC-04); fanout targets reach every
    /// server on the topic.
    pub async fn cast(
        &self,
        ctx: &RequestContext,
        method: &str,
        args: impl Serialize,
    ) -> Result<(), MessagingError> {
        let early = OnceCell::new();
        let f = LazyFields::new(ctx, method);
        // The field values, and so the trace, are only made when the span is enabled.
        let span = tracing::info_span!(
            "rpc.cast",
            target = &*self.target_label,
            method = &*f.get().method,
            request_id = &*f.get().request_id,
            global_request_id = &*f.get().global_request_id,
            trace_id = early_trace(&early, ctx).map(TraceParent::trace_id),
            span_id = early_trace(&early, ctx).map(TraceParent::span_id),
        );
        #[cfg(feature = "otel")]
        continue_context(&span, ctx);
        let trace = Trace::of(early);
        let invocation = self.meters.start(&self.target, method, "cast");
        let r = InSpan::new(
            async {
                let msg = self.make(ctx, method, args, trace)?;
                self.transport.driver.cast(msg).await
            },
            span,
        )
        .await;
        invocation.finish(&r);
        r
    }

    /// Calls `method(**args)` on one server and waits for its result (MSG-RPC-05). A failure on
    /// the server comes back as [`MessagingError::Remote`] with oslo's failure fields.
    pub async fn call<R: DeserializeOwned + 'static>(
        &self,
        ctx: &RequestContext,
        method: &str,
        args: impl Serialize,
    ) -> Result<R, MessagingError> {
        if self.target.fanout {
            return Err(self.target.invalid("A call cannot be fanout"));
        }
        let early = OnceCell::new();
        let f = LazyFields::new(ctx, method);
        // The field values, and so the trace, are only made when the span is enabled.
        let span = tracing::info_span!(
            "rpc.call",
            target = &*self.target_label,
            method = &*f.get().method,
            timeout_ms = u64::try_from(self.effective_timeout().as_millis()).unwrap_or(u64::MAX),
            request_id = &*f.get().request_id,
            global_request_id = &*f.get().global_request_id,
            msg_id = tracing::field::Empty,
            trace_id = early_trace(&early, ctx).map(TraceParent::trace_id),
            span_id = early_trace(&early, ctx).map(TraceParent::span_id),
        );
        #[cfg(feature = "otel")]
        continue_context(&span, ctx);
        let trace = Trace::of(early);
        let invocation = self.meters.start(&self.target, method, "call");
        let r = InSpan::new(self.call_in_span(ctx, method, args, trace), span).await;
        invocation.finish(&r);
        r
    }

    async fn call_in_span<R: DeserializeOwned + 'static>(
        &self,
        ctx: &RequestContext,
        method: &str,
        args: impl Serialize,
        trace: Trace,
    ) -> Result<R, MessagingError> {
        let msg = self.make(ctx, method, args, trace)?;
        let topic = msg.target.topic.clone().unwrap_or_default();
        let timeout = self.effective_timeout();
        let deadline = tokio::time::Instant::now() + timeout;
        // Names what an operator looks for: the target, the method and, once sent, the
        // message id and the reply queue.
        let no_reply = |ids: &str| {
            MessagingError::Timeout(format!(
                "No reply on topic {topic} for {} within {timeout:?}{ids}",
                Untrusted(method)
            ))
        };
        let mut waiter =
            match tokio::time::timeout_at(deadline, self.transport.driver.call(msg)).await {
                Ok(w) => w?,
                Err(_) => return Err(no_reply(" (the request was not sent)")),
            };
        if let Some(id) = waiter.msg_id() {
            record_current("msg_id", &id);
        }
        // A result sent before the reply's final message (ReplyEvent::Part).
        let mut early: Option<Outcome> = None;
        loop {
            let monitor = self
                .call_monitor_timeout
                .map(|cm| tokio::time::Instant::now() + cm);
            let until = match monitor {
                Some(m) if m < deadline => m,
                _ => deadline,
            };
            match tokio::time::timeout_at(until, waiter.next()).await {
                Err(_) => {
                    let transport_says = waiter.on_timeout();
                    return Err(transport_says.unwrap_or_else(|| no_reply(&sent_as(&*waiter))));
                }
                Ok(None) => return Err(MessagingError::Closed),
                Ok(Some(ReplyEvent::Heartbeat)) => continue,
                Ok(Some(ReplyEvent::Part(o))) => {
                    early = Some(o);
                    continue;
                }
                Ok(Some(ReplyEvent::Failed(e))) => return Err(e),
                Ok(Some(ReplyEvent::Done(o))) => {
                    // The final message's own result, unless it brings none (Python's waiter
                    // keeps the last result or failure that is not None).
                    let o = match (o, early.take()) {
                        (Ok(Value::Null), Some(e)) => e,
                        (o, _) => o,
                    };
                    return self.finish(ctx, method, o);
                }
            }
        }
    }

    /// The caller's result from the reply's outcome.
    fn finish<R: DeserializeOwned + 'static>(
        &self,
        ctx: &RequestContext,
        method: &str,
        o: Outcome,
    ) -> Result<R, MessagingError> {
        match o {
            Ok(v) => {
                let v = self.serializer.deserialize_entity(ctx, v)?;
                // A caller that wants the result as a `Value` gets it as it came.
                let v = match same_type::<Value, R>(v) {
                    Ok(r) => return Ok(r),
                    Err(v) => v,
                };
                serde_json::from_value(v).map_err(|e| {
                    MessagingError::serialization(
                        format!("the result of {method} into the expected type"),
                        e,
                    )
                })
            }
            Err(f) => Err(f.into_error()),
        }
    }

    /// [`call`](RpcClient::call) from a green thread: parks only the green thread (through the
    /// client's bridge, see [`bridge`](RpcClient::bridge)). From a plain thread it blocks that
    /// thread.
    pub fn call_green<R: DeserializeOwned + 'static>(
        &self,
        ctx: &RequestContext,
        method: &str,
        args: impl Serialize,
    ) -> Result<R, MessagingError> {
        self.the_bridge()
            .yield_future(self.call(ctx, method, args))
            .map_err(|e| MessagingError::Bridge(Cause::new(e)))?
    }

    /// [`cast`](RpcClient::cast) from a green thread.
    pub fn cast_green(
        &self,
        ctx: &RequestContext,
        method: &str,
        args: impl Serialize,
    ) -> Result<(), MessagingError> {
        self.the_bridge()
            .yield_future(self.cast(ctx, method, args))
            .map_err(|e| MessagingError::Bridge(Cause::new(e)))?
    }
}

/// A request made with a context that carries a trace (the one a handler received, passed on)
/// continues it in OpenTelemetry too, wherever the call is made from.
#[cfg(feature = "otel")]
fn continue_context(span: &tracing::Span, ctx: &RequestContext) {
    if let Some(tp) = ctx.get(trace_context::KEY).and_then(TraceParent::parse) {
        crate::otel::continue_remote(span, &tp);
    }
}

/// A request's `traceparent`, made (once, in `cell`) while its span is created, so the span is
/// created with it (no `record` afterwards), and only if the span is enabled: it continues the
/// trace of the context the request is made with (a handler's, passed on), or starts one. With
/// the `otel` feature the ids are the span's own, known only once it exists: `None`, and
/// [`RpcClient::make`] takes them from the span.
fn early_trace<'a>(
    cell: &'a OnceCell<Option<TraceParent>>,
    ctx: &RequestContext,
) -> Option<&'a TraceParent> {
    cell.get_or_init(|| {
        if cfg!(feature = "otel") {
            return None;
        }
        let parent = ctx.get(trace_context::KEY).and_then(TraceParent::parse);
        Some(TraceParent::child_of(parent.as_ref()))
    })
    .as_ref()
}

/// What `traceparent` a request carries.
enum Trace {
    /// This one, made with the span (see [`early_trace`]).
    Known(TraceParent),
    /// The ids OpenTelemetry gave the span in force (the `otel` feature).
    FromSpan,
    /// The request's span is disabled (no subscriber takes it): none of its own, and the
    /// context's, if it has one, passed on unchanged, as a W3C intermediary that does not
    /// take part in the trace passes it. Making one would cost every request of a service
    /// that traces nothing a random id, its formatting and its parsing at the server.
    Off,
}

impl Trace {
    /// The choice the span's creation made: [`early_trace`] ran only if it was enabled.
    fn of(early: OnceCell<Option<TraceParent>>) -> Trace {
        match early.into_inner() {
            None => Trace::Off,
            Some(Some(tp)) => Trace::Known(tp),
            Some(None) => Trace::FromSpan,
        }
    }
}

/// The kind of a JSON value, for an error that must not print the value itself.
pub(crate) fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn dict(v: Value) -> Dict {
        match v {
            Value::Object(m) => m,
            _ => Dict::new(),
        }
    }

    #[test]
    fn arguments_as_text_count_as_the_same_message_size_as_arguments_as_values() {
        let args = [
            json!({}),
            json!({"value": {"x": 1}}),
            json!({"s": "a \"q\" \\ é\n", "n": [1, 2.5, null]}),
        ];
        let rests = [
            json!({"method": "echo"}),
            json!({"method": "é\"\u{1}", "namespace": "ns", "version": "1.2"}),
        ];
        for a in &args {
            for r in &rests {
                let mut whole = dict(r.clone());
                whole.insert("args".into(), a.clone());
                let text = serde_json::to_string(a).unwrap_or_default();
                assert_eq!(
                    size_with_args(&dict(r.clone()), &text),
                    json_size(&whole),
                    "{a} {r}"
                );
            }
        }
    }
}
