//! From a delivery to the endpoints and back: a message read into a [`Notification`] (or dropped,
//! counted), the endpoints run in registration order on their executors (`Requeue` stops the
//! rest; a panic counts as `Requeue`, MSG-LSN-03), batches (MSG-LSN-06), and the message settled:
//! acked, requeued (within `max_requeues`) or rejected, and counted.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use serde_json::Value;

use crate::context::Serializer;
use crate::driver::{Dict, Incoming};
use crate::lock::lock;
use crate::notify::endpoint::{
    BatchCallback, Callback, Notification, NotificationEndpoint, NotificationResult,
};
use crate::notify::{Priority, PriorityCounters};
use crate::rpc::endpoint::Executor;
use crate::runner::{run_job, Job};
use crate::untrusted::Untrusted;

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
    /// Notifications rejected after [`NotificationListener::max_requeues`](crate::notify::listener::NotificationListener::max_requeues) requeues
    /// (dead-lettered if their queue has a dead-letter exchange).
    pub rejected: AtomicU64,
}

/// Log budgets: a flood of bad or failing notifications writes a bounded amount of log.
static DROPPED_LOG: crate::LogBudget = crate::LogBudget::new(10);
static REQUEUE_LOG: crate::LogBudget = crate::LogBudget::new(10);

/// How many times recent notifications were requeued, by identity (the last
/// [`RequeueCounts::MAX`]).
#[derive(Default)]
pub(crate) struct RequeueCounts {
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

/// The `message_id` a message is known by, when it has one that is text.
fn message_id(m: &Dict) -> Option<&str> {
    m.get("message_id").and_then(Value::as_str)
}

/// A notification's identity for counting its requeues: its [`message_id`], or a hash of the
/// whole message when it has none.
fn identity(m: &Dict) -> String {
    match message_id(m) {
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
pub(crate) struct Settler {
    pub(crate) stats: Arc<Stats>,
    pub(crate) allow_requeue: bool,
    pub(crate) max_requeues: Option<u32>,
    pub(crate) requeues: Mutex<RequeueCounts>,
    /// Notifications received, by priority.
    pub(crate) received: PriorityCounters,
}

impl Settler {
    /// Drops a message that cannot be dispatched: counted, logged within the budget, and
    /// rejected when it could not be read at all, acked otherwise.
    fn drop_message(&self, msg: &Incoming, why: &str) {
        self.stats.dropped.fetch_add(1, Ordering::Relaxed);
        crate::metrics::dropped(
            "notification",
            if msg.malformed.is_some() {
                "malformed"
            } else {
                "undispatchable"
            },
        );
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
            crate::metrics::dropped("notification", "max_requeues");
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
        crate::metrics::requeued("notification");
        msg.acker.requeue();
    }
}

/// Reads a message into a `Notification`, taking its context (nothing after reads it); `None`
/// (after settling and counting it) when it cannot be dispatched.
fn parse(ser: &dyn Serializer, settler: &Settler, msg: &mut Incoming) -> Option<Notification> {
    if let Some(why) = &msg.malformed {
        settler.drop_message(msg, why);
        return None;
    }
    let Some(priority) = msg
        .message
        .get("priority")
        .and_then(Value::as_str)
        .and_then(|p| p.parse::<Priority>().ok())
    else {
        let shown = match msg.message.get("priority") {
            Some(Value::String(p)) => format!("unknown priority {:?}", Untrusted(p)),
            Some(_) => "a priority that is not a string".to_string(),
            None => "no priority".to_string(),
        };
        settler.drop_message(msg, &shown);
        return None;
    };
    settler.received.count(priority);
    let ctxt = ser.deserialize_context(std::mem::take(&mut msg.ctxt));
    // What the notification keeps is taken out of the message, not copied, when the message
    // is known by its `message_id` alone afterwards (the requeue counts' `identity`); one
    // without a `message_id` is known by a hash of all of it, so it keeps every member.
    let keyed = message_id(&msg.message).is_some();
    let mut member = |k: &str| match keyed {
        true => msg.message.remove(k),
        false => msg.message.get(k).cloned(),
    };
    let text = |v: Option<Value>| match v {
        Some(Value::String(s)) => s,
        _ => String::new(),
    };
    let payload = member("payload").unwrap_or(Value::Null);
    let publisher_id = text(member("publisher_id"));
    let event_type = text(member("event_type"));
    let timestamp = member("timestamp");
    let payload = match ser.deserialize_entity(&ctxt, payload) {
        Ok(p) => p,
        Err(e) => {
            settler.drop_message(msg, &format!("payload not deserialized: {e}"));
            return None;
        }
    };
    let mut metadata = Dict::new();
    if let Some(id) = msg.message.get("message_id") {
        metadata.insert("message_id".into(), id.clone());
    }
    if let Some(t) = timestamp {
        metadata.insert("timestamp".into(), t);
    }
    Some(Notification {
        ctxt,
        publisher_id,
        event_type,
        payload,
        metadata,
        priority,
    })
}

/// Runs a listener's endpoints on the messages its loop hands over, one message (or batch) per
/// call; calls run concurrently, each on its own task.
pub(crate) struct Dispatcher {
    pub(crate) endpoints: Arc<Vec<NotificationEndpoint>>,
    pub(crate) serializer: Arc<dyn Serializer>,
    pub(crate) settler: Settler,
    pub(crate) bridge: osier_bridge::Bridge,
    /// The executor of endpoints that name none.
    pub(crate) executor: Executor,
}

impl Dispatcher {
    /// Runs one callback of `e` on its executor; a panic (or a job that could not run) counts
    /// as `Requeue` (MSG-LSN-03).
    async fn run(
        &self,
        e: &NotificationEndpoint,
        job: Job<NotificationResult>,
        event_type: &str,
    ) -> NotificationResult {
        match run_job(
            &self.bridge,
            e.executor.unwrap_or(self.executor),
            &e.name,
            job,
        )
        .await
        {
            Ok(r) => r,
            Err(err) => {
                if let Some(suppressed) = REQUEUE_LOG.allow() {
                    tracing::error!(endpoint = %e.name, event_type = %Untrusted(event_type), error = %Untrusted(&err.to_string()), suppressed, "notification endpoint panicked; treated as requeue");
                }
                NotificationResult::Requeue
            }
        }
    }

    /// The first endpoint from `from` on with a callback for `n`'s priority whose filter `n`
    /// passes.
    fn next_endpoint(&self, from: usize, n: &Notification) -> Option<usize> {
        (from..self.endpoints.len()).find(|&i| {
            let e = &self.endpoints[i];
            e.callbacks.contains_key(&n.priority) && e.filter.matches(n)
        })
    }

    /// One message: the endpoints with a callback for its priority whose filter it passes, in
    /// registration order, one after the other; `Requeue` stops the rest. Then the message is
    /// acked, requeued or rejected ([`Settler`]).
    ///
    /// Each `async` callback owns the notification it gets: a copy, except for the last
    /// endpoint to run, which takes the notification itself once no blocking callback still
    /// holds it.
    pub(crate) async fn one(&self, mut msg: Incoming) {
        let Some(n) = parse(self.serializer.as_ref(), &self.settler, &mut msg) else {
            return;
        };
        let mut next = self.next_endpoint(0, &n);
        let n = Arc::new(n);
        let mut result = NotificationResult::Handled;
        while let Some(i) = next {
            let e = &self.endpoints[i];
            next = self.next_endpoint(i + 1, &n);
            let job = match e.callbacks.get(&n.priority) {
                Some(Callback::Blocking(f)) => {
                    let (f, n) = (f.clone(), n.clone());
                    Job::Blocking(Box::new(move || f(&n)))
                }
                Some(Callback::Async(f)) if next.is_none() => {
                    let event_type = n.event_type.clone();
                    let n = Arc::try_unwrap(n).unwrap_or_else(|n| Notification::clone(&n));
                    let result = self.run(e, Job::Async(f(n)), &event_type).await;
                    self.settler.settle(result, &msg, &event_type);
                    return;
                }
                Some(Callback::Async(f)) => Job::Async(f(Notification::clone(&n))),
                None => continue,
            };
            if self.run(e, job, &n.event_type).await == NotificationResult::Requeue {
                result = NotificationResult::Requeue;
                break;
            }
        }
        self.settler.settle(result, &msg, &n.event_type);
    }

    /// A batch (MSG-LSN-06): per priority group, each endpoint's batch callback gets the
    /// group's notifications that pass its filter; `Requeue` or a panic requeues the whole
    /// group.
    pub(crate) async fn batch(&self, msgs: Vec<Incoming>) {
        let mut groups: BTreeMap<Priority, Vec<(Notification, Incoming)>> = BTreeMap::new();
        for mut m in msgs {
            if let Some(n) = parse(self.serializer.as_ref(), &self.settler, &mut m) {
                groups.entry(n.priority).or_default().push((n, m));
            }
        }
        for (priority, items) in groups {
            let mut result = NotificationResult::Handled;
            for e in self.endpoints.iter() {
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
                let job = match cb {
                    BatchCallback::Blocking(f) => {
                        let f = f.clone();
                        Job::Blocking(Box::new(move || f(&batch)))
                    }
                    BatchCallback::Async(f) => Job::Async(f(batch)),
                };
                if self.run(e, job, "(batch)").await == NotificationResult::Requeue {
                    result = NotificationResult::Requeue;
                    break;
                }
            }
            for (n, m) in &items {
                self.settler.settle(result, m, &n.event_type);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::NoOpSerializer;
    use serde_json::json;

    struct NoAck;

    impl crate::driver::Acker for NoAck {
        fn ack(&self) {}
        fn requeue(&self) {}
        fn reject(&self) {}
    }

    fn incoming(message: Value) -> Incoming {
        let Value::Object(message) = message else {
            unreachable!("a test message is an object")
        };
        Incoming {
            ctxt: Dict::new(),
            message,
            replier: None,
            client_timeout: None,
            acker: Box::new(NoAck),
            malformed: None,
        }
    }

    fn settler() -> Settler {
        Settler {
            stats: Arc::default(),
            allow_requeue: true,
            max_requeues: None,
            requeues: Mutex::new(RequeueCounts::default()),
            received: PriorityCounters::received(),
        }
    }

    /// The members a notification keeps are taken out of a message known by its `message_id`
    /// and copied out of one known by a hash of all of it: the same notification either way,
    /// and the message still known by the same identity afterwards (its requeue count).
    #[test]
    fn a_notification_reads_alike_whether_its_members_are_taken_or_copied() {
        let body = json!({
            "priority": "INFO",
            "publisher_id": "compute.host1",
            "event_type": "compute.instance.create.end",
            "payload": {"instance": {"id": 7, "tags": ["a", "b"]}},
            "timestamp": "2026-12-03 10:00:00.000000",
        });
        let mut with_id = body.clone();
        with_id["message_id"] = json!("5b2f6c1e-0d6b-4c8e-9f1a-2f9d0b7c4e11");
        let mut results = Vec::new();
        for message in [with_id, body] {
            let mut msg = incoming(message);
            let before = identity(&msg.message);
            let n = parse(&NoOpSerializer, &settler(), &mut msg).expect("a notification");
            assert_eq!(identity(&msg.message), before);
            results.push(n);
        }
        let (keyed, hashed) = (&results[0], &results[1]);
        for n in [keyed, hashed] {
            assert_eq!(n.publisher_id, "compute.host1");
            assert_eq!(n.event_type, "compute.instance.create.end");
            assert_eq!(
                n.payload,
                json!({"instance": {"id": 7, "tags": ["a", "b"]}})
            );
            assert_eq!(n.metadata["timestamp"], json!("2026-12-03 10:00:00.000000"));
        }
        assert_eq!(
            keyed.metadata["message_id"],
            json!("5b2f6c1e-0d6b-4c8e-9f1a-2f9d0b7c4e11")
        );
        assert!(!hashed.metadata.contains_key("message_id"));
    }

    /// A member of the wrong kind reads as it did before members were taken: a publisher or
    /// event type that is not a string is empty.
    #[test]
    fn a_publisher_or_event_type_that_is_not_text_reads_empty() {
        let mut msg = incoming(json!({
            "priority": "INFO",
            "message_id": "m-1",
            "publisher_id": 5,
            "event_type": null,
            "payload": 1,
        }));
        let n = parse(&NoOpSerializer, &settler(), &mut msg).expect("a notification");
        assert_eq!((n.publisher_id.as_str(), n.event_type.as_str()), ("", ""));
        assert_eq!(n.payload, json!(1));
    }

    /// Every endpoint a notification reaches gets all of it, in registration order: a blocking
    /// callback shares it, an `async` one between others gets a copy, and the last to run
    /// (here followed by an endpoint its filter turns away) the notification itself.
    #[tokio::test]
    async fn every_endpoint_a_notification_reaches_gets_all_of_it() {
        use crate::notify::endpoint::NotificationFilter;
        type Seen = Arc<Mutex<Vec<(&'static str, String, String, Value)>>>;
        let seen: Seen = Arc::default();
        let record = |seen: &Seen, name: &'static str, n: &Notification| {
            lock(seen).push((
                name,
                n.publisher_id.clone(),
                n.event_type.clone(),
                n.payload.clone(),
            ));
            NotificationResult::Handled
        };
        let on_async = |name: &'static str| {
            let seen = seen.clone();
            NotificationEndpoint::new(name).on_async(Priority::Info, move |n| {
                let seen = seen.clone();
                async move { record(&seen, name, &n) }
            })
        };
        let blocking = {
            let seen = seen.clone();
            NotificationEndpoint::new("blocking")
                .on(Priority::Info, move |n| record(&seen, "blocking", n))
        };
        let turned_away = on_async("turned_away").filter(
            NotificationFilter::new()
                .event_type("^image\\.")
                .expect("a valid pattern"),
        );
        let d = Dispatcher {
            endpoints: Arc::new(vec![
                blocking,
                on_async("copy"),
                on_async("last"),
                turned_away,
            ]),
            serializer: Arc::new(NoOpSerializer),
            settler: settler(),
            bridge: osier_bridge::Bridge::global().clone(),
            executor: Executor::Tokio,
        };
        d.one(incoming(json!({
            "priority": "INFO",
            "message_id": "m-1",
            "publisher_id": "compute.host1",
            "event_type": "compute.instance.create.end",
            "payload": {"instance": {"id": 7}},
        })))
        .await;
        let whole = |name| {
            (
                name,
                "compute.host1".to_string(),
                "compute.instance.create.end".to_string(),
                json!({"instance": {"id": 7}}),
            )
        };
        assert_eq!(
            *lock(&seen),
            [whole("blocking"), whole("copy"), whole("last")]
        );
        assert_eq!(d.settler.stats.handled.load(Ordering::Relaxed), 1);
    }

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
