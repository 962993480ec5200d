//! `NotificationListener`: endpoints per priority, filters, pools, requeue (MSG-LSN-01..05, 07).
//!
//! ```
//! use osier_messaging::notify::listener::{NotificationEndpoint, NotificationFilter, NotificationResult};
//! use osier_messaging::notify::Priority;
//!
//! let ep = NotificationEndpoint::new("audit-log")
//!     .filter(NotificationFilter::new().event_type("^compute\\.").unwrap())
//!     .on(Priority::Info, |n| {
//!         println!("{} from {}", n.event_type, n.publisher_id);
//!         NotificationResult::Handled
//!     });
//! assert!(ep.handles(Priority::Info));
//! ```

use std::collections::BTreeMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use regex::Regex;
use serde_json::Value;
use tokio::sync::watch;

use crate::context::{NoOpSerializer, RequestContext, Serializer};
use crate::driver::{Dict, Incoming};
use crate::error::MessagingError;
use crate::lock::lock;
use crate::notify::Priority;
use crate::target::Target;
use crate::transport::Transport;
use crate::untrusted::Untrusted;

/// What an endpoint did with a notification (MSG-LSN-03).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotificationResult {
    /// Done; the next endpoint gets it too.
    Handled,
    /// Put it back for redelivery (if the listener allows requeue); stops the other endpoints.
    Requeue,
}

/// A received notification as endpoints see it.
#[derive(Debug, Clone)]
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

type Callback = Arc<dyn Fn(&Notification) -> NotificationResult + Send + Sync>;
type BatchCallback = Arc<dyn Fn(&[Notification]) -> NotificationResult + Send + Sync>;

/// A notification endpoint: callbacks per priority, and an optional filter.
#[derive(Clone)]
pub struct NotificationEndpoint {
    name: String,
    callbacks: BTreeMap<Priority, Callback>,
    batch_callbacks: BTreeMap<Priority, BatchCallback>,
    filter: NotificationFilter,
}

impl std::fmt::Debug for NotificationEndpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NotificationEndpoint")
            .field("name", &self.name)
            .field("priorities", &self.callbacks.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl NotificationEndpoint {
    /// An endpoint with no callbacks.
    pub fn new(name: &str) -> Self {
        NotificationEndpoint {
            name: name.to_string(),
            callbacks: BTreeMap::new(),
            batch_callbacks: BTreeMap::new(),
            filter: NotificationFilter::default(),
        }
    }

    /// Handles `priority` in batches (for a listener in batch mode, MSG-LSN-06): `f` gets the
    /// batch's notifications of that priority that pass the filter.
    pub fn on_batch(
        mut self,
        priority: Priority,
        f: impl Fn(&[Notification]) -> NotificationResult + Send + Sync + 'static,
    ) -> Self {
        self.batch_callbacks.insert(priority, Arc::new(f));
        self
    }

    /// Handles `priority` with `f` (oslo's endpoint method named after the priority).
    pub fn on(
        mut self,
        priority: Priority,
        f: impl Fn(&Notification) -> NotificationResult + Send + Sync + 'static,
    ) -> Self {
        self.callbacks.insert(priority, Arc::new(f));
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

/// Listens for notifications on targets and dispatches them to endpoints (oslo's
/// `get_notification_listener`).
pub struct NotificationListener {
    transport: Transport,
    targets: Vec<Target>,
    endpoints: Arc<Vec<NotificationEndpoint>>,
    pool: Option<String>,
    allow_requeue: bool,
    max_requeues: Option<u32>,
    batch: Option<(usize, Option<std::time::Duration>)>,
    serializer: Arc<dyn Serializer>,
    bridge: osier_bridge::Bridge,
    stop: Mutex<Option<(watch::Sender<bool>, tokio::task::JoinHandle<()>)>>,
    stats: Arc<Stats>,
}

/// The credit a listener gives its transport (a batch listener: at least a batch): in memory,
/// how many notifications it holds unacknowledged; on RabbitMQ, four times that is its QoS
/// prefetch, unless `rabbit_qos_prefetch_count` sets one.
pub const DEFAULT_CREDIT: usize = 64;

/// Counters of a listener.
#[derive(Debug, Default)]
pub struct Stats {
    /// Notifications every endpoint handled (acked).
    pub handled: AtomicU64,
    /// Notifications requeued.
    pub requeued: AtomicU64,
    /// Messages not dispatched: unknown priority, a payload the serializer refused, or not
    /// readable at all (not JSON, over the receive limit); the unreadable ones are rejected,
    /// the others acked.
    pub dropped: AtomicU64,
    /// Notifications rejected after [`NotificationListener::max_requeues`] requeues
    /// (dead-lettered if their queue has a dead-letter exchange).
    pub rejected: AtomicU64,
}

impl std::fmt::Debug for NotificationListener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NotificationListener")
            .field("targets", &self.targets)
            .field("pool", &self.pool)
            .finish_non_exhaustive()
    }
}

impl NotificationListener {
    /// A listener for `targets` (each needs a topic) dispatching to `endpoints` in order.
    pub fn new(
        transport: &Transport,
        targets: Vec<Target>,
        endpoints: Vec<NotificationEndpoint>,
    ) -> Self {
        NotificationListener {
            transport: transport.clone(),
            targets,
            endpoints: Arc::new(endpoints),
            pool: None,
            allow_requeue: false,
            max_requeues: None,
            batch: None,
            serializer: Arc::new(NoOpSerializer),
            bridge: osier_bridge::Bridge::global().clone(),
            stop: Mutex::new(None),
            stats: Arc::new(Stats::default()),
        }
    }

    /// Joins `pool`: listeners in one pool share the messages (MSG-LSN-05).
    pub fn pool(mut self, pool: &str) -> Self {
        self.pool = Some(pool.to_string());
        self
    }

    /// Lets `Requeue` (and endpoint failures) put messages back (default: acked anyway).
    pub fn allow_requeue(mut self, allow: bool) -> Self {
        self.allow_requeue = allow;
        self
    }

    /// With `allow_requeue`, how many times one notification may be requeued before it is
    /// rejected for good (dead-lettered if its queue has a dead-letter exchange; logged once,
    /// counted in [`Stats::rejected`]). Default `None`: requeued as often as the endpoints ask,
    /// as oslo does, so a notification an endpoint always fails comes back forever (over a
    /// thousand times a second on a local broker). Requeues are counted per `message_id` in
    /// this process (the last 4,096 notifications requeued); listeners of one pool count
    /// separately.
    pub fn max_requeues(mut self, n: Option<u32>) -> Self {
        self.max_requeues = n;
        self
    }

    /// The serializer for context and payload.
    pub fn serializer(mut self, s: Arc<dyn Serializer>) -> Self {
        self.serializer = s;
        self
    }

    /// Batch mode (oslo's batch listener, MSG-LSN-06): endpoints' `on_batch` callbacks get up to
    /// `size` notifications, or fewer once `timeout` has run since the batch's first message
    /// (`None`: wait for a full batch).
    pub fn batch(mut self, size: usize, timeout: Option<std::time::Duration>) -> Self {
        self.batch = Some((size.max(1), timeout));
        self
    }

    /// The bridge whose tokio runtime runs the listener.
    pub fn bridge(mut self, b: osier_bridge::Bridge) -> Self {
        self.bridge = b;
        self
    }

    /// The listener's counters.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// Subscribes to each target crossed with every priority some endpoint handles; priorities
    /// nobody handles are not consumed at all (MSG-LSN-02).
    pub async fn start(&self) -> Result<(), MessagingError> {
        let mut subs = Vec::new();
        for t in &self.targets {
            let topic = t.listen_topic()?;
            for p in Priority::ALL {
                if self.endpoints.iter().any(|e| e.handles(p)) {
                    subs.push(t.clone().with_topic(format!("{topic}.{p}")));
                }
            }
        }
        let credit = DEFAULT_CREDIT.max(self.batch.map_or(0, |(n, _)| n));
        let mut listener = self
            .transport
            .driver
            .listen_notifications(&subs, self.pool.as_deref(), credit)
            .await?;
        let (tx, mut rx) = watch::channel(false);
        let (endpoints, ser, batch) = (self.endpoints.clone(), self.serializer.clone(), self.batch);
        let settler = Settler {
            stats: self.stats.clone(),
            allow_requeue: self.allow_requeue,
            max_requeues: self.max_requeues,
            requeues: Mutex::new(RequeueCounts::default()),
        };
        let task = self.bridge.tokio().spawn(async move {
            let stats = &settler;
            let mut pending: Vec<Incoming> = Vec::new();
            let mut first_at: Option<tokio::time::Instant> = None;
            loop {
                let deadline = match (batch, first_at) {
                    (Some((_, Some(t))), Some(f)) => Some(f + t),
                    _ => None,
                };
                let flush_timer = async {
                    match deadline {
                        Some(d) => tokio::time::sleep_until(d).await,
                        None => std::future::pending().await,
                    }
                };
                let msg = tokio::select! {
                    m = listener.poll() => Some(m),
                    _ = rx.changed() => { listener.stop(); Some(None) }
                    _ = flush_timer => None,
                };
                match (msg, batch) {
                    (Some(None), _) => break,
                    (Some(Some(m)), None) => dispatch(&endpoints, ser.as_ref(), stats, m),
                    (Some(Some(m)), Some((size, _))) => {
                        pending.push(m);
                        first_at.get_or_insert_with(tokio::time::Instant::now);
                        if pending.len() >= size {
                            let batch = std::mem::take(&mut pending);
                            dispatch_batch(&endpoints, ser.as_ref(), stats, batch);
                            first_at = None;
                        }
                    }
                    (None, _) => {
                        let batch = std::mem::take(&mut pending);
                        dispatch_batch(&endpoints, ser.as_ref(), stats, batch);
                        first_at = None;
                    }
                }
            }
            if !pending.is_empty() {
                dispatch_batch(&endpoints, ser.as_ref(), stats, pending);
            }
        });
        *lock(&self.stop) = Some((tx, task));
        Ok(())
    }

    /// Stops taking messages and waits for the dispatch loop to end.
    pub async fn stop(&self) {
        let s = lock(&self.stop).take();
        if let Some((tx, task)) = s {
            let _ = tx.send(true);
            let _ = task.await;
        }
    }
}

/// Log budgets: a flood of bad or failing notifications writes a bounded amount of log.
static DROPPED_LOG: crate::LogBudget = crate::LogBudget::new(10);
static REQUEUE_LOG: crate::LogBudget = crate::LogBudget::new(10);

/// How many times recent notifications were requeued, by identity (the last
/// [`RequeueCounts::MAX`]).
#[derive(Default)]
struct RequeueCounts {
    counts: std::collections::HashMap<String, u32>,
    order: std::collections::VecDeque<String>,
}

impl RequeueCounts {
    const MAX: usize = 4096;

    /// Counts one more requeue of `key`; returns the count.
    fn bump(&mut self, key: &str) -> u32 {
        if let Some(n) = self.counts.get_mut(key) {
            *n += 1;
            return *n;
        }
        if self.order.len() >= Self::MAX {
            if let Some(old) = self.order.pop_front() {
                self.counts.remove(&old);
            }
        }
        self.order.push_back(key.to_string());
        self.counts.insert(key.to_string(), 1);
        1
    }

    /// Forgets `key` (its place in the eviction order stays until it comes round).
    fn forget(&mut self, key: &str) {
        self.counts.remove(key);
    }
}

/// A notification's identity for counting its requeues: its `message_id`, or a hash of the
/// whole message when it has none.
fn identity(m: &Dict) -> String {
    match m.get("message_id").and_then(Value::as_str) {
        Some(id) => id.to_string(),
        None => {
            use std::hash::{Hash, Hasher};
            let mut h = std::collections::hash_map::DefaultHasher::new();
            Value::Object(m.clone()).to_string().hash(&mut h);
            format!("#{:016x}", h.finish())
        }
    }
}

/// Acks, requeues or rejects what the endpoints decided, and counts it.
struct Settler {
    stats: Arc<Stats>,
    allow_requeue: bool,
    max_requeues: Option<u32>,
    requeues: Mutex<RequeueCounts>,
}

impl Settler {
    /// Drops a message that cannot be dispatched: counted, logged within the budget, and
    /// rejected when it could not be read at all, acked otherwise.
    fn drop_message(&self, msg: &Incoming, why: &str) {
        self.stats.dropped.fetch_add(1, Ordering::Relaxed);
        if let Some(suppressed) = DROPPED_LOG.allow() {
            tracing::warn!(reason = %Untrusted(why), suppressed, "notification dropped");
        }
        if msg.malformed.is_some() {
            msg.acker.reject();
        } else {
            msg.acker.ack();
        }
    }

    fn settle(&self, result: NotificationResult, msg: &Incoming, event_type: &str) {
        if result != NotificationResult::Requeue || !self.allow_requeue {
            // Only a listener that allows requeue has counts to forget.
            if self.allow_requeue {
                let mut requeues = lock(&self.requeues);
                if !requeues.counts.is_empty() {
                    requeues.forget(&identity(&msg.message));
                }
            }
            self.stats.handled.fetch_add(1, Ordering::Relaxed);
            msg.acker.ack();
            return;
        }
        let mut requeues = lock(&self.requeues);
        let key = identity(&msg.message);
        let n = requeues.bump(&key);
        if self.max_requeues.is_some_and(|max| n > max) {
            requeues.forget(&key);
            drop(requeues);
            self.stats.rejected.fetch_add(1, Ordering::Relaxed);
            tracing::error!(
                event_type = %Untrusted(event_type),
                message_id = %Untrusted(&key),
                requeues = n - 1,
                "notification requeued as often as max_requeues allows; rejected (dead-lettered if its queue has a dead-letter exchange)"
            );
            msg.acker.reject();
            return;
        }
        drop(requeues);
        if n == 1 {
            // Once per notification, not once per redelivery.
            if let Some(suppressed) = REQUEUE_LOG.allow() {
                tracing::warn!(
                    event_type = %Untrusted(event_type),
                    message_id = %Untrusted(&key),
                    max_requeues = ?self.max_requeues,
                    suppressed,
                    "notification requeued by its endpoints; it comes back until they handle it"
                );
            }
        }
        self.stats.requeued.fetch_add(1, Ordering::Relaxed);
        msg.acker.requeue();
    }
}

/// Reads a message into a `Notification`; `None` (after settling and counting it) when it
/// cannot be dispatched.
fn parse(ser: &dyn Serializer, settler: &Settler, msg: &Incoming) -> Option<Notification> {
    if let Some(why) = &msg.malformed {
        settler.drop_message(msg, why);
        return None;
    }
    let m = &msg.message;
    let Some(priority) = m
        .get("priority")
        .and_then(Value::as_str)
        .and_then(|p| p.parse::<Priority>().ok())
    else {
        let shown = match m.get("priority") {
            Some(Value::String(p)) => format!("unknown priority {:?}", Untrusted(p)),
            Some(_) => "a priority that is not a string".to_string(),
            None => "no priority".to_string(),
        };
        settler.drop_message(msg, &shown);
        return None;
    };
    let ctxt = ser.deserialize_context(msg.ctxt.clone());
    let payload =
        match ser.deserialize_entity(&ctxt, m.get("payload").cloned().unwrap_or(Value::Null)) {
            Ok(p) => p,
            Err(e) => {
                settler.drop_message(msg, &format!("payload not deserialized: {e}"));
                return None;
            }
        };
    let mut metadata = Dict::new();
    for k in ["message_id", "timestamp"] {
        if let Some(v) = m.get(k) {
            metadata.insert(k.into(), v.clone());
        }
    }
    Some(Notification {
        ctxt,
        publisher_id: m
            .get("publisher_id")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string(),
        event_type: m
            .get("event_type")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string(),
        payload,
        metadata,
        priority,
    })
}

/// Batch dispatch (MSG-LSN-06): per priority group, each endpoint's batch callback gets the
/// group's notifications that pass its filter; REQUEUE or a panic requeues the whole group.
fn dispatch_batch(
    endpoints: &[NotificationEndpoint],
    ser: &dyn Serializer,
    settler: &Settler,
    msgs: Vec<Incoming>,
) {
    let mut groups: BTreeMap<Priority, Vec<(Notification, Incoming)>> = BTreeMap::new();
    for m in msgs {
        if let Some(n) = parse(ser, settler, &m) {
            groups.entry(n.priority).or_default().push((n, m));
        }
    }
    for (priority, items) in groups {
        let mut result = NotificationResult::Handled;
        for e in endpoints {
            let Some(cb) = e.batch_callbacks.get(&priority) else {
                continue;
            };
            let batch: Vec<Notification> = items
                .iter()
                .filter(|(n, _)| e.filter.matches(n))
                .map(|(n, _)| n.clone())
                .collect();
            if batch.is_empty() {
                continue;
            }
            let r = catch_unwind(AssertUnwindSafe(|| cb(&batch))).unwrap_or_else(|_| {
                tracing::error!(endpoint = %e.name, "batch notification endpoint panicked; treated as requeue");
                NotificationResult::Requeue
            });
            if r == NotificationResult::Requeue {
                result = r;
                break;
            }
        }
        for (n, m) in &items {
            settler.settle(result, m, &n.event_type);
        }
    }
}

fn dispatch(
    endpoints: &[NotificationEndpoint],
    ser: &dyn Serializer,
    settler: &Settler,
    msg: Incoming,
) {
    let Some(n) = parse(ser, settler, &msg) else {
        return;
    };
    let priority = n.priority;
    let mut result = NotificationResult::Handled;
    for e in endpoints {
        let Some(cb) = e.callbacks.get(&priority) else {
            continue;
        };
        if !e.filter.matches(&n) {
            continue;
        }
        let r = catch_unwind(AssertUnwindSafe(|| cb(&n))).unwrap_or_else(|_| {
            // An endpoint exception counts as REQUEUE (MSG-LSN-03).
            if let Some(suppressed) = REQUEUE_LOG.allow() {
                tracing::error!(endpoint = %e.name, event_type = %Untrusted(&n.event_type), suppressed, "notification endpoint panicked; treated as requeue");
            }
            NotificationResult::Requeue
        });
        if r == NotificationResult::Requeue {
            result = r;
            break;
        }
    }
    settler.settle(result, &msg, &n.event_type);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requeue_counts_are_per_message_and_bounded() {
        let mut c = RequeueCounts::default();
        assert_eq!(c.bump("a"), 1);
        assert_eq!(c.bump("a"), 2);
        assert_eq!(c.bump("b"), 1);
        c.forget("a");
        assert_eq!(c.bump("a"), 1);
        for i in 0..RequeueCounts::MAX + 10 {
            c.bump(&i.to_string());
        }
        assert!(c.counts.len() <= RequeueCounts::MAX);
        assert_eq!(c.order.len(), RequeueCounts::MAX);
    }
}
