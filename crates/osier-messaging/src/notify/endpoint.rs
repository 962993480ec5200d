//! What a notification endpoint is: the [`Notification`] it gets, the [`NotificationResult`] it
//! gives, oslo's [`NotificationFilter`], and [`NotificationEndpoint`] with its callbacks per
//! priority and the executor they run on (MSG-LSN-01, 03, 04).

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;

use regex::Regex;
use serde_json::Value;

use crate::context::RequestContext;
use crate::driver::Dict;
use crate::error::MessagingError;
use crate::notify::Priority;
use crate::rpc::endpoint::Executor;
use crate::secrets::Masked;

/// What an endpoint did with a notification (MSG-LSN-03).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotificationResult {
    /// Done; the next endpoint gets it too.
    Handled,
    /// Put it back for redelivery (if the listener allows requeue); stops the other endpoints.
    Requeue,
}

/// A received notification as endpoints see it. Its `Debug` masks secrets in the context and
/// the payload.
#[derive(Clone)]
pub struct Notification {
    /// The context (deserialized).
    pub ctxt: RequestContext,
    /// Who sent it.
    pub publisher_id: String,
    /// What happened.
    pub event_type: String,
    /// The payload (deserialized).
    pub payload: Value,
    /// `{message_id, timestamp}`.
    pub metadata: Dict,
    /// The priority.
    pub priority: Priority,
}

impl std::fmt::Debug for Notification {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Notification")
            .field("ctxt", &self.ctxt)
            .field("publisher_id", &self.publisher_id)
            .field("event_type", &self.event_type)
            .field("payload", &Masked(&self.payload))
            .field("metadata", &self.metadata)
            .field("priority", &self.priority)
            .finish()
    }
}

/// oslo's `NotificationFilter` (MSG-LSN-04): regular expressions with match semantics (anchored
/// at the start only); for context, metadata and payload, every key must exist with a string
/// value that matches.
#[derive(Debug, Clone, Default)]
pub struct NotificationFilter {
    publisher_id: Option<Regex>,
    event_type: Option<Regex>,
    context: Vec<(String, Regex)>,
    metadata: Vec<(String, Regex)>,
    payload: Vec<(String, Regex)>,
}

fn anchored(p: &str) -> Result<Regex, MessagingError> {
    Regex::new(&format!("^(?:{p})")).map_err(|e| MessagingError::InvalidFilter {
        pattern: p.to_string(),
        reason: e.to_string(),
    })
}

fn dict_matches(rules: &[(String, Regex)], d: &Dict) -> bool {
    rules
        .iter()
        .all(|(k, re)| matches!(d.get(k), Some(Value::String(s)) if re.is_match(s)))
}

impl NotificationFilter {
    /// A filter that matches everything.
    pub fn new() -> Self {
        Self::default()
    }
    /// `publisher_id` must match.
    pub fn publisher_id(mut self, p: &str) -> Result<Self, MessagingError> {
        self.publisher_id = Some(anchored(p)?);
        Ok(self)
    }
    /// `event_type` must match.
    pub fn event_type(mut self, p: &str) -> Result<Self, MessagingError> {
        self.event_type = Some(anchored(p)?);
        Ok(self)
    }
    /// Context key `key` must exist and match.
    pub fn context(mut self, key: &str, p: &str) -> Result<Self, MessagingError> {
        self.context.push((key.to_string(), anchored(p)?));
        Ok(self)
    }
    /// Metadata key (`message_id`, `timestamp`) must exist and match.
    pub fn metadata(mut self, key: &str, p: &str) -> Result<Self, MessagingError> {
        self.metadata.push((key.to_string(), anchored(p)?));
        Ok(self)
    }
    /// Payload key `key` must exist and match.
    pub fn payload(mut self, key: &str, p: &str) -> Result<Self, MessagingError> {
        self.payload.push((key.to_string(), anchored(p)?));
        Ok(self)
    }

    /// Whether `n` passes.
    pub fn matches(&self, n: &Notification) -> bool {
        self.publisher_id
            .as_ref()
            .is_none_or(|r| r.is_match(&n.publisher_id))
            && self
                .event_type
                .as_ref()
                .is_none_or(|r| r.is_match(&n.event_type))
            && dict_matches(&self.context, &n.ctxt.to_dict())
            && dict_matches(&self.metadata, &n.metadata)
            && match &n.payload {
                Value::Object(p) => dict_matches(&self.payload, p),
                _ => self.payload.is_empty(),
            }
    }
}

/// A blocking-style callback: on the green executor it runs in a green thread (it may use green
/// I/O and `yield_future`), on the tokio and threads executors on a native thread of tokio's
/// blocking pool.
pub(crate) type SyncFn = Arc<dyn Fn(&Notification) -> NotificationResult + Send + Sync>;
/// An `async` callback.
pub(crate) type AsyncFn = Arc<dyn Fn(Notification) -> BoxFuture<NotificationResult> + Send + Sync>;
/// A blocking-style batch callback.
pub(crate) type SyncBatchFn = Arc<dyn Fn(&[Notification]) -> NotificationResult + Send + Sync>;
/// An `async` batch callback.
pub(crate) type AsyncBatchFn =
    Arc<dyn Fn(Vec<Notification>) -> BoxFuture<NotificationResult> + Send + Sync>;
type BoxFuture<T> = std::pin::Pin<Box<dyn Future<Output = T> + Send>>;

/// One priority's callback.
#[derive(Clone)]
pub(crate) enum Callback {
    Blocking(SyncFn),
    Async(AsyncFn),
}

/// One priority's batch callback.
#[derive(Clone)]
pub(crate) enum BatchCallback {
    Blocking(SyncBatchFn),
    Async(AsyncBatchFn),
}

/// A notification endpoint (oslo's endpoint object, its methods named after priorities):
/// callbacks per priority, an optional filter, and the executor its callbacks run on.
///
/// Callbacks come in two styles, like RPC methods: [`on`](Self::on) takes a blocking-style
/// closure, [`on_async`](Self::on_async) an `async` one. Where they run is the endpoint's
/// [`executor`](Self::executor), or the listener's when it has none:
///
/// | callback \ executor | `Tokio` | `Green` | `Threads` |
/// |---|---|---|---|
/// | `on_async` | awaited on tokio | in a green thread (`yield_future`) | on a blocking thread |
/// | `on` | tokio's blocking pool | in a green thread | tokio's blocking pool |
///
/// Moving an endpoint from green threads to async changes its registration and its body only:
///
/// ```
/// use osier_messaging::notify::listener::{NotificationEndpoint, NotificationResult};
/// use osier_messaging::notify::Priority;
/// use osier_messaging::Executor;
///
/// // Before: blocking style, in a green thread.
/// let green = NotificationEndpoint::new("samples")
///     .executor(Executor::Green)
///     .on(Priority::Info, |n| {
///         // store(n) through a blocking driver, in tpool
///         NotificationResult::Handled
///     });
/// // After: async, on tokio.
/// let async_ = NotificationEndpoint::new("samples")
///     .executor(Executor::Tokio)
///     .on_async(Priority::Info, |n| async move {
///         // store(n).await through an async driver
///         NotificationResult::Handled
///     });
/// assert!(green.handles(Priority::Info) && async_.handles(Priority::Info));
/// ```
#[derive(Clone)]
pub struct NotificationEndpoint {
    pub(crate) name: String,
    pub(crate) callbacks: BTreeMap<Priority, Callback>,
    pub(crate) batch_callbacks: BTreeMap<Priority, BatchCallback>,
    pub(crate) filter: NotificationFilter,
    pub(crate) executor: Option<Executor>,
}

impl std::fmt::Debug for NotificationEndpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NotificationEndpoint")
            .field("name", &self.name)
            .field("priorities", &self.callbacks.keys().collect::<Vec<_>>())
            .field(
                "batch_priorities",
                &self.batch_callbacks.keys().collect::<Vec<_>>(),
            )
            .field("executor", &self.executor)
            .finish()
    }
}

impl NotificationEndpoint {
    /// An endpoint with no callbacks, on its listener's executor.
    pub fn new(name: &str) -> Self {
        NotificationEndpoint {
            name: name.to_string(),
            callbacks: BTreeMap::new(),
            batch_callbacks: BTreeMap::new(),
            filter: NotificationFilter::default(),
            executor: None,
        }
    }

    /// The endpoint's name (for logs).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Runs this endpoint's callbacks on `executor` instead of the listener's.
    pub fn executor(mut self, executor: Executor) -> Self {
        self.executor = Some(executor);
        self
    }

    /// Handles `priority` with the blocking-style `f` (oslo's endpoint method named after the
    /// priority).
    pub fn on(
        mut self,
        priority: Priority,
        f: impl Fn(&Notification) -> NotificationResult + Send + Sync + 'static,
    ) -> Self {
        self.callbacks
            .insert(priority, Callback::Blocking(Arc::new(f)));
        self
    }

    /// Handles `priority` with the `async` `f`.
    pub fn on_async<F, Fut>(mut self, priority: Priority, f: F) -> Self
    where
        F: Fn(Notification) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = NotificationResult> + Send + 'static,
    {
        let f: AsyncFn = Arc::new(move |n| Box::pin(f(n)));
        self.callbacks.insert(priority, Callback::Async(f));
        self
    }

    /// Handles `priority` in batches (for a listener in batch mode, MSG-LSN-06): the blocking-
    /// style `f` gets the batch's notifications of that priority that pass the filter.
    pub fn on_batch(
        mut self,
        priority: Priority,
        f: impl Fn(&[Notification]) -> NotificationResult + Send + Sync + 'static,
    ) -> Self {
        self.batch_callbacks
            .insert(priority, BatchCallback::Blocking(Arc::new(f)));
        self
    }

    /// [`on_batch`](Self::on_batch) with an `async` `f`.
    pub fn on_batch_async<F, Fut>(mut self, priority: Priority, f: F) -> Self
    where
        F: Fn(Vec<Notification>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = NotificationResult> + Send + 'static,
    {
        let f: AsyncBatchFn = Arc::new(move |b| Box::pin(f(b)));
        self.batch_callbacks
            .insert(priority, BatchCallback::Async(f));
        self
    }

    /// Only notifications that pass `filter` reach this endpoint.
    pub fn filter(mut self, filter: NotificationFilter) -> Self {
        self.filter = filter;
        self
    }

    /// Whether this endpoint has a callback for `p`.
    pub fn handles(&self, p: Priority) -> bool {
        self.callbacks.contains_key(&p) || self.batch_callbacks.contains_key(&p)
    }
}
