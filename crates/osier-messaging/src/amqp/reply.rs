//! Replies: the caller's reply queue (declared and consumed by its own owner task on the first
//! call) with a waiter per `_msg_id`, the routing of each reply to its waiter (MSG-AMQP-09), and
//! the server's side, [`AmqpReplier`], which checks the caller's queue before sending
//! (`reply_probe`) and retries a missing one (MSG-AMQP-08).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use futures::future::{BoxFuture, FutureExt};
use lapin::message::Delivery;
use tokio::sync::oneshot;
use tokio::time::Instant;

use crate::amqp::connection::Broker;
use crate::amqp::consumer::{AckSender, Consumer, Decision, Handler};
use crate::amqp::inbound;
use crate::amqp::publisher::{Publish, Publisher, Routed};
use crate::amqp::reply_inbox::{Inbox, InboxSender};
use crate::amqp::reply_probe::ReplyProbe;
use crate::amqp::topology::{queue_suffix, Layout, Topology};
use crate::amqp::wire;
use crate::driver::{Outcome, Replier, ReplyEvent, ReplyWaiter};
use crate::error::{BrokerError, MessagingError};
use crate::lock::lock;
use crate::untrusted::Untrusted;

/// The calls waiting for a reply, by `_msg_id`.
pub(crate) type Waiters = Arc<Mutex<HashMap<wire::Id, InboxSender>>>;

/// A process's reply queue and its consumer.
pub(crate) struct ReplyQueue {
    /// Shared with each call's waiter (which names it in a timeout's error).
    pub(crate) name: Arc<str>,
    pub(crate) waiters: Waiters,
    /// Calls in flight above which the next one is logged (MSG-AMQP-09: from 10, doubling).
    warn_above: std::sync::atomic::AtomicUsize,
    _consumer: Consumer,
}

/// Where the calls-in-flight warning starts (oslo's `ReplyWaiters` threshold).
const CALLS_IN_FLIGHT_WARNING: usize = 10;

impl ReplyQueue {
    /// Registers the call `msg_id`; past the warning threshold, logs how many calls wait and
    /// doubles the threshold, as oslo does (a leak of waiters shows in the log).
    pub(crate) fn wait_for(&self, msg_id: wire::Id, tx: InboxSender) {
        use std::sync::atomic::Ordering;
        let waiting = {
            let mut w = lock(&self.waiters);
            w.insert(msg_id, tx);
            w.len()
        };
        let above = self.warn_above.load(Ordering::Relaxed);
        if waiting > above
            && self
                .warn_above
                .compare_exchange(above, above * 2, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            tracing::warn!(
                calls_in_flight = waiting,
                threshold = above,
                next_threshold = above * 2,
                reply_queue = %self.name,
                "more calls await a reply than the warning threshold: there could be a leak (a caller that never ends its calls); the threshold doubles"
            );
        }
    }
}

impl ReplyQueue {
    /// Declares `reply_<suffix>` and starts consuming it.
    pub(crate) async fn start(
        broker: &Arc<Broker>,
        layout: Layout<'_>,
    ) -> Result<ReplyQueue, MessagingError> {
        let opts = layout.opts;
        let name = format!("reply_{}", queue_suffix(opts)?);
        let waiters: Waiters = Arc::new(Mutex::new(HashMap::new()));
        let w2 = waiters.clone();
        let max_bytes = opts.max_receive_bytes;
        let handler: Handler = Box::new(move |d: Delivery, _acks: &AckSender| {
            route_reply(&w2, &d, max_bytes);
            Decision::Ack
        });
        let topo = Topology {
            queues: vec![layout.transient_queue(name.clone())],
            ..Topology::default()
        };
        let consumer = Consumer::start(
            broker.clone(),
            topo,
            vec![name.clone()],
            handler,
            opts.rabbit_qos_prefetch_count,
        )
        .await?;
        Ok(ReplyQueue {
            name: name.into(),
            waiters,
            warn_above: std::sync::atomic::AtomicUsize::new(CALLS_IN_FLIGHT_WARNING),
            _consumer: consumer,
        })
    }
}

/// Log budgets of the reply queue's consumer: one crafted reply after another must not flood
/// the log.
static BAD_REPLY_LOG: crate::LogBudget = crate::LogBudget::new(10);

/// Hands a reply to the call that waits for it (MSG-AMQP-09); anything else is logged.
fn route_reply(waiters: &Waiters, d: &Delivery, max_bytes: usize) {
    let data = &d.data;
    let decoded = if let Some(why) = inbound::content_type_refusal(inbound::content_type(d)) {
        // Python's client drops such a reply too; the caller times out.
        Err(why)
    } else if data.len() > max_bytes {
        Err(format!(
            "{} bytes, over the receive limit of {max_bytes} bytes",
            data.len()
        ))
    } else {
        wire::decode_reply_body(data).map_err(|e| e.to_string())
    };
    let r = match decoded {
        Ok(r) => r,
        Err(e) => {
            if let Some(suppressed) = BAD_REPLY_LOG.allow() {
                tracing::warn!(error = %e, suppressed, "dropping a malformed reply");
            }
            return;
        }
    };
    let tx = lock(waiters).get(r.msg_id.as_str()).cloned();
    let Some(tx) = tx else {
        if let Some(suppressed) = BAD_REPLY_LOG.allow() {
            tracing::info!(msg_id = %Untrusted(&r.msg_id), suppressed, "reply for a call nobody waits for (timed out?): dropped");
        }
        return;
    };
    let outcome = match r.failure {
        Some(f) => Err(f.strip_remote_suffix()),
        None => Ok(r.result),
    };
    let ev = match (r.ending, outcome) {
        (true, o) => ReplyEvent::Done(o),
        // Neither result nor failure: a heartbeat.
        (false, Ok(serde_json::Value::Null)) => ReplyEvent::Heartbeat,
        (false, o) => ReplyEvent::Part(o),
    };
    tx.put(ev);
}

/// The caller's end of one call.
pub(crate) struct AmqpWaiter {
    pub(crate) rx: Inbox,
    pub(crate) confirm: Option<oneshot::Receiver<Result<Routed, MessagingError>>>,
    /// The error for a returned request (mandatory requests only come back returned).
    pub(crate) undeliverable: Option<MessagingError>,
    pub(crate) msg_id: wire::Id,
    /// The reply queue's name.
    pub(crate) reply_q: Arc<str>,
    pub(crate) waiters: Waiters,
    /// Says why the request could not be sent, when it was not.
    pub(crate) publisher: Arc<Publisher>,
    /// Whether the broker confirmed the request.
    pub(crate) confirmed: Arc<std::sync::atomic::AtomicBool>,
}

#[async_trait]
impl ReplyWaiter for AmqpWaiter {
    fn msg_id(&self) -> Option<&str> {
        Some(self.msg_id.as_str())
    }

    fn reply_queue(&self) -> Option<&str> {
        Some(&self.reply_q)
    }

    /// A request the broker confirmed and nobody answered is a plain timeout; one the broker
    /// never took (no connection, or written to a connection that died) is the broker's error.
    fn on_timeout(&mut self) -> Option<MessagingError> {
        if let Some(Ok(Err(e))) = self.confirm.as_mut().map(|c| c.try_recv()) {
            return Some(e);
        }
        if self.confirmed.load(std::sync::atomic::Ordering::Acquire) {
            return None;
        }
        Some(
            self.publisher
                .unreachable()
                .unwrap_or_else(|| {
                    BrokerError::lost(
                        "the broker did not take the request within the call's timeout",
                    )
                })
                .into(),
        )
    }

    async fn next(&mut self) -> Option<ReplyEvent> {
        loop {
            let Some(confirm) = self.confirm.as_mut() else {
                return Some(self.rx.take().await);
            };
            tokio::select! {
                biased;
                ev = self.rx.take() => return Some(ev),
                c = confirm => {
                    self.confirm = None;
                    match c {
                        Ok(Err(e)) => return Some(ReplyEvent::Failed(e)),
                        Ok(Ok(Routed::Returned)) => {
                            if let Some(e) = self.undeliverable.take() {
                                return Some(ReplyEvent::Failed(e));
                            }
                        }
                        _ => {}
                    }
                }
            }
        }
    }
}

impl Drop for AmqpWaiter {
    fn drop(&mut self) {
        lock(&self.waiters).remove(&self.msg_id);
    }
}

/// The server's end of one call: where its heartbeats and reply go.
pub(crate) struct AmqpReplier {
    pub(crate) publisher: Arc<Publisher>,
    pub(crate) probe: Arc<ReplyProbe>,
    /// `kombu_missing_consumer_retry_timeout`.
    pub(crate) retry_for: Duration,
    pub(crate) reply_q: String,
    pub(crate) msg_id: String,
}

impl AmqpReplier {
    fn publish(&self, body: Vec<u8>, deadline: Instant) -> Publish {
        // Not mandatory: see reply_probe for why, and how a missing queue is found instead.
        let mut p = Publish::new(String::new(), self.reply_q.clone(), body);
        p.deadline = Some(deadline);
        p
    }

    fn unroutable(&self) -> MessagingError {
        BrokerError::Unroutable(Untrusted(&self.reply_q).to_string()).into()
    }

    /// Not an `async fn`: the future it gives is the publisher's, mapped (an `async` one would
    /// keep the reply twice; see [`Publisher::publish`]).
    fn send(
        &self,
        body: Vec<u8>,
        deadline: Instant,
    ) -> impl std::future::Future<Output = Result<(), MessagingError>> + Send + '_ {
        self.publisher
            .publish(self.publish(body, deadline))
            .map(|r| r.map(|(Routed::Delivered | Routed::Returned)| ()))
    }
}

#[async_trait]
impl Replier for AmqpReplier {
    async fn heartbeat(&self) -> Result<(), MessagingError> {
        let probe = &self.probe;
        // MSG-AMQP-08: a heartbeat to a missing queue ends the call monitor.
        if probe.is_gone(&self.reply_q) || !probe.exists(&self.reply_q).await.unwrap_or(true) {
            return Err(self.unroutable());
        }
        let body = wire::encode_reply_body(None, None, false, &self.msg_id, &wire::new_id());
        let deadline = Instant::now() + Duration::from_secs(10);
        self.send(body, deadline).await
    }

    // Written out rather than `async fn`: the reply is encoded before the future is made, so
    // the boxed future holds its bytes, not the outcome twice over (a box of at most about a
    // kilobyte is the allocator's fast path).
    fn reply<'a, 'f>(&'a self, outcome: Outcome) -> BoxFuture<'f, Result<(), MessagingError>>
    where
        'a: 'f,
        Self: 'f,
    {
        let (result, failure) = match &outcome {
            Ok(v) => (Some(v), None),
            Err(f) => (None, Some(f)),
        };
        let body = wire::encode_reply_body(result, failure, true, &self.msg_id, &wire::new_id());
        async move {
            let probe = &self.probe;
            if probe.is_gone(&self.reply_q) {
                return Err(self.unroutable());
            }
            let deadline = Instant::now() + self.retry_for;
            let step = Duration::from_millis(250);
            // MSG-AMQP-08: a missing reply queue is looked for every 0.25 s until the deadline
            // (the caller may be reconnecting); the reply itself is built and sent once.
            loop {
                match probe.exists(&self.reply_q).await {
                    Ok(true) => break,
                    Ok(false) => {
                        if Instant::now() + step >= deadline {
                            probe.mark_gone(&self.reply_q);
                            return Err(self.unroutable());
                        }
                        tracing::debug!(queue = %Untrusted(&self.reply_q), "reply queue missing; looking again in 0.25 s");
                        tokio::time::sleep(step).await;
                    }
                    // The broker cannot be asked now (it restarts, the probe reconnects): ask
                    // again, and at the deadline send anyway, through the publisher's own
                    // reconnection.
                    Err(e) => {
                        if Instant::now() + step >= deadline {
                            break;
                        }
                        tracing::debug!(error = %e, "cannot check the reply queue; looking again in 0.25 s");
                        tokio::time::sleep(step).await;
                    }
                }
            }
            self.send(body, deadline.max(Instant::now() + step)).await
        }
        .boxed()
    }
}
