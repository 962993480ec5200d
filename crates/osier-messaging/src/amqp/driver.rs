//! The `rabbit://` driver on `lapin`: oslo.messaging's topology and wire format (`oslo-wire.md`
//! sections 1-10) behind the [`Driver`] trait.
//!
//! Connections (MSG-AMQP-06): one for publishing, owned by the [`publisher`](super::publisher)
//! task; one for the reply queue; one per listener, each owned by a
//! [`consumer`](super::consumer) task. All of them fail over across the URL's hosts and
//! reconnect on their own.
//!
//! What each message kind waits for (the delivery guarantee, see docs/architecture.md):
//!
//! Casts, notifications and replies go on a channel in confirm mode, and the publisher keeps
//! each of them until the broker confirms it, re-sending it after a lost connection: delivery
//! to the broker is at-least-once, as in oslo. Call requests go on a channel without confirms:
//! the reply is the confirm. What each sender waits for:
//!
//! | message | the sender returns | why |
//! |---|---|---|
//! | call request | once written to a live channel; not confirmed, not re-sent | the reply proves delivery, so a confirm buys the caller nothing, and it costs the broker work on every call (~15% of calls/s at one caller, measured). A request lost with a connection ends as a `Timeout` within the call's timeout, like a lost reply |
//! | cast, fanout cast, notification | once written to a live channel (`wait_for_confirms=true`: once confirmed, as oslo, MSG-AMQP-13) | confirms are pipelined instead of one at a time (lapin-notes: ~10x); [`Transport::flush`](crate::Transport::flush) waits for all of them and reports any message the broker did not take |
//! | reply | once confirmed and routed | `mandatory`: a `Basic.Return` is retried every 0.25 s for `kombu_missing_consumer_retry_timeout` (MSG-AMQP-08) |
//!
//! What `wait_for_confirms=false` gives up: a cast or notification that `cast()` / `notify()`
//! returned from and that was not yet confirmed is lost if the *sending process* dies in the
//! next few hundred microseconds (a lost connection is covered by the re-send). Call
//! [`Transport::flush`](crate::Transport::flush) where that matters (before exit; the service
//! launcher does on stop).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use lapin::message::Delivery;
use tokio::sync::{mpsc, oneshot, OnceCell};
use tokio::time::Instant;

use crate::amqp::connection::Broker;
use crate::amqp::consumer::{AckSender, Consumer, Decision, Handler, Topology};
use crate::amqp::options::RabbitOptions;
use crate::amqp::publisher::{ExchangeSpec, Publish, Publisher, QueueSpec, Routed, Wait};
use crate::amqp::wire::{self, CallInfo, DuplicateFilter};
use crate::driver::{
    Acker, Driver, Incoming, Listener, Outcome, Outgoing, Replier, ReplyEvent, ReplyWaiter,
};
use crate::error::{BrokerError, MessagingError};
use crate::target::Target;
use crate::url::TransportUrl;

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

type Waiters = Arc<Mutex<HashMap<String, mpsc::UnboundedSender<ReplyEvent>>>>;

struct ReplyQueue {
    name: String,
    waiters: Waiters,
    _consumer: Consumer,
}

/// Reply queues found missing (MSG-AMQP-08): 200 entries, each kept 60 s.
#[derive(Default)]
struct GoneQueues(HashMap<String, Instant>);

impl GoneQueues {
    const MAX: usize = 200;
    const TTL: Duration = Duration::from_secs(60);

    fn contains(&mut self, q: &str) -> bool {
        let now = Instant::now();
        self.0.retain(|_, t| now.duration_since(*t) < Self::TTL);
        self.0.contains_key(q)
    }

    fn insert(&mut self, q: &str) {
        if self.0.len() >= Self::MAX {
            if let Some(oldest) = self
                .0
                .iter()
                .min_by_key(|(_, t)| **t)
                .map(|(k, _)| k.clone())
            {
                self.0.remove(&oldest);
            }
        }
        self.0.insert(q.to_string(), Instant::now());
    }
}

struct Shared {
    broker: Arc<Broker>,
    at_least_once: bool,
    control_exchange: String,
    publisher: Publisher,
    reply: OnceCell<ReplyQueue>,
    gone: Mutex<GoneQueues>,
}

/// The RabbitMQ driver.
pub struct AmqpDriver {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for AmqpDriver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AmqpDriver")
            .field("broker", &self.shared.broker)
            .field("control_exchange", &self.shared.control_exchange)
            .finish_non_exhaustive()
    }
}

/// A process-unique name part: random, or with `use_queue_manager` `<host>:<program>:<pid>`,
/// derived when the queue is made, so after any fork or setsid (LESSON-05).
fn queue_suffix(opts: &RabbitOptions) -> String {
    if !opts.use_queue_manager {
        return wire::new_id();
    }
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "localhost".into());
    format!(
        "{host}:{}:{}",
        crate::amqp::connection::program_name(),
        std::process::id()
    )
}

impl Shared {
    fn opts(&self) -> &RabbitOptions {
        &self.broker.opts
    }

    /// What casts and notifications wait for (see the module docs).
    fn fire_and_track(&self) -> Wait {
        if self.opts().wait_for_confirms {
            Wait::Confirmed
        } else {
            Wait::Written
        }
    }

    fn exchange_of(&self, t: &Target) -> String {
        t.exchange
            .clone()
            .unwrap_or_else(|| self.control_exchange.clone())
    }

    /// The topic exchange (control exchange or the target's), section 2 / 10.
    fn topic_exchange(&self, name: String) -> ExchangeSpec {
        ExchangeSpec {
            name,
            fanout: false,
            durable: self.opts().durable(),
            auto_delete: self.opts().amqp_auto_delete,
        }
    }

    fn fanout_exchange(&self, topic: &str) -> ExchangeSpec {
        ExchangeSpec {
            name: format!("{topic}_fanout"),
            fanout: true,
            durable: self.opts().rabbit_transient_quorum_queue,
            auto_delete: true,
        }
    }

    /// A topic, server or notification queue.
    fn queue(&self, name: String) -> QueueSpec {
        QueueSpec {
            name,
            durable: self.opts().durable(),
            auto_delete: self.opts().amqp_auto_delete,
            args: self.opts().queue_args(),
        }
    }

    /// A reply or fanout queue.
    fn transient_queue(&self, name: String) -> QueueSpec {
        QueueSpec {
            name,
            durable: self.opts().rabbit_transient_quorum_queue,
            auto_delete: false,
            args: self.opts().transient_args(),
        }
    }

    /// The request of `msg` (call or cast), ready for the publisher (section 5).
    fn request(
        &self,
        msg: &Outgoing,
        call: Option<CallInfo<'_>>,
    ) -> Result<Publish, MessagingError> {
        let topic = msg.target.require_topic()?;
        let inner = wire::encode_request(&msg.message, &msg.ctxt, call, &wire::new_id());
        let body = wire::encode_body(&inner);
        let mut p = if msg.target.fanout {
            let ex = self.fanout_exchange(topic);
            let mut p = Publish::new(ex.name.clone(), String::new(), body);
            p.exchange = Some(ex);
            p
        } else {
            let ex = self.topic_exchange(self.exchange_of(&msg.target));
            let key = match &msg.target.server {
                Some(server) => format!("{topic}.{server}"),
                None => topic.to_string(),
            };
            let mut p = Publish::new(ex.name.clone(), key, body);
            p.exchange = Some(ex);
            if call.is_some() {
                p.expiration = msg.timeout;
            }
            p
        };
        p.retry = msg.retry;
        if self.at_least_once {
            p.mandatory = true;
        }
        Ok(p)
    }

    /// With `at_least_once`: a returned request is an error naming where it went.
    fn undeliverable(p: &Publish) -> MessagingError {
        BrokerError::Undeliverable {
            exchange: p.exchange_name.clone(),
            routing_key: p.routing_key.clone(),
        }
        .into()
    }

    /// The reply queue: declared and consumed by its own owner task on the first call.
    async fn reply_queue(&self) -> Result<&ReplyQueue, MessagingError> {
        self.reply
            .get_or_try_init(|| async {
                let name = format!("reply_{}", queue_suffix(self.opts()));
                let waiters: Waiters = Arc::new(Mutex::new(HashMap::new()));
                let w2 = waiters.clone();
                let handler: Handler = Box::new(move |d: Delivery, _acks: &AckSender| {
                    route_reply(&w2, &d.data);
                    Decision::Ack
                });
                let topo = Topology {
                    queues: vec![self.transient_queue(name.clone())],
                    ..Topology::default()
                };
                let consumer =
                    Consumer::start(self.broker.clone(), topo, vec![name.clone()], handler).await?;
                Ok(ReplyQueue {
                    name,
                    waiters,
                    _consumer: consumer,
                })
            })
            .await
    }
}

/// Hands a reply to the call that waits for it (MSG-AMQP-09); anything else is logged.
fn route_reply(waiters: &Waiters, data: &[u8]) {
    let Ok(inner) = wire::decode_body(data) else {
        tracing::warn!("dropping a reply that is not an oslo message");
        return;
    };
    let r = match wire::decode_reply(&inner) {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(error = %e, "dropping a malformed reply");
            return;
        }
    };
    let tx = lock(waiters).get(&r.msg_id).cloned();
    let Some(tx) = tx else {
        tracing::info!(msg_id = %r.msg_id, "reply for a call nobody waits for (timed out?): dropped");
        return;
    };
    let ev = if !r.ending {
        ReplyEvent::Heartbeat
    } else {
        match r.failure {
            Some(f) => ReplyEvent::Done(Err(f.strip_remote_suffix())),
            None => ReplyEvent::Done(Ok(r.result)),
        }
    };
    let _ = tx.send(ev);
}

struct AmqpWaiter {
    rx: mpsc::UnboundedReceiver<ReplyEvent>,
    confirm: Option<oneshot::Receiver<Result<Routed, MessagingError>>>,
    /// The error for a returned request (mandatory requests only come back returned).
    undeliverable: Option<MessagingError>,
    msg_id: String,
    waiters: Waiters,
}

#[async_trait]
impl ReplyWaiter for AmqpWaiter {
    async fn next(&mut self) -> Option<ReplyEvent> {
        loop {
            let Some(confirm) = self.confirm.as_mut() else {
                return self.rx.recv().await;
            };
            tokio::select! {
                biased;
                ev = self.rx.recv() => return ev,
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

struct AmqpReplier {
    shared: Arc<Shared>,
    reply_q: String,
    msg_id: String,
}

impl AmqpReplier {
    fn publish(&self, body: Vec<u8>, deadline: Instant) -> Publish {
        let mut p = Publish::new(String::new(), self.reply_q.clone(), body);
        p.mandatory = true;
        p.deadline = Some(deadline);
        p
    }
}

#[async_trait]
impl Replier for AmqpReplier {
    async fn heartbeat(&self) -> Result<(), MessagingError> {
        let inner = wire::encode_reply(None, None, false, &self.msg_id, &wire::new_id());
        let deadline = Instant::now() + Duration::from_secs(10);
        match self
            .shared
            .publisher
            .publish(self.publish(wire::encode_body(&inner), deadline))
            .await?
        {
            Routed::Delivered => Ok(()),
            // MSG-AMQP-08: a heartbeat to a missing queue ends the call monitor.
            Routed::Returned => Err(BrokerError::Unroutable(self.reply_q.clone()).into()),
        }
    }

    async fn reply(&self, outcome: Outcome) -> Result<(), MessagingError> {
        if lock(&self.shared.gone).contains(&self.reply_q) {
            return Err(BrokerError::Unroutable(self.reply_q.clone()).into());
        }
        let inner = match &outcome {
            Ok(v) => wire::encode_reply(Some(v), None, true, &self.msg_id, &wire::new_id()),
            Err(f) => wire::encode_reply(None, Some(f), true, &self.msg_id, &wire::new_id()),
        };
        let body = wire::encode_body(&inner);
        let retry_for =
            Duration::from_secs_f64(self.shared.opts().kombu_missing_consumer_retry_timeout);
        let deadline = Instant::now() + retry_for;
        loop {
            match self
                .shared
                .publisher
                .publish(self.publish(body.clone(), deadline))
                .await?
            {
                Routed::Delivered => return Ok(()),
                Routed::Returned => {
                    let step = Duration::from_millis(250);
                    if Instant::now() + step >= deadline {
                        lock(&self.shared.gone).insert(&self.reply_q);
                        return Err(BrokerError::Unroutable(self.reply_q.clone()).into());
                    }
                    tracing::debug!(queue = %self.reply_q, "reply returned as unroutable; retrying");
                    tokio::time::sleep(step).await;
                }
            }
        }
    }
}

struct AmqpAcker {
    acks: AckSender,
    tag: u64,
    /// Notifications: the listener's duplicate filter and this message's id, remembered on ack.
    remember: Option<(Arc<Mutex<DuplicateFilter>>, Option<String>)>,
}

impl Acker for AmqpAcker {
    fn ack(&self) {
        if let Some((f, id)) = &self.remember {
            lock(f).remember(id.as_deref());
        }
        self.acks.ack(self.tag);
    }

    fn requeue(&self) {
        self.acks.requeue(self.tag);
    }
}

/// A listener: the owner task's handler forwards decoded messages here.
struct AmqpListener {
    rx: mpsc::UnboundedReceiver<Incoming>,
    consumer: Consumer,
}

#[async_trait]
impl Listener for AmqpListener {
    async fn poll(&mut self) -> Option<Incoming> {
        self.rx.recv().await
    }

    fn stop(&self) {
        self.consumer.stop();
    }
}

/// Decodes an RPC request delivery into an [`Incoming`] (sections 4-5, 11 item 8).
fn rpc_handler(shared: Arc<Shared>, tx: mpsc::UnboundedSender<Incoming>) -> Handler {
    let mut dups = DuplicateFilter::new();
    Box::new(move |d: Delivery, acks: &AckSender| {
        let inner = match wire::decode_body(&d.data) {
            Ok(i) => i,
            Err(e) => {
                tracing::warn!(error = %e, "rejecting a message that is not an oslo message");
                return Decision::Reject;
            }
        };
        let r = match wire::decode_request(inner) {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(error = %e, "rejecting a malformed RPC request");
                return Decision::Reject;
            }
        };
        if dups.is_duplicate(r.unique_id.as_deref()) {
            tracing::debug!("duplicate request dropped");
            return Decision::Ack;
        }
        let replier = match (&r.msg_id, &r.reply_q) {
            (Some(m), Some(q)) => Some(Arc::new(AmqpReplier {
                shared: shared.clone(),
                reply_q: q.clone(),
                msg_id: m.clone(),
            }) as Arc<dyn Replier>),
            _ => None,
        };
        let incoming = Incoming {
            ctxt: r.ctxt,
            message: r.message,
            replier,
            client_timeout: r.call_monitor_timeout,
            acker: Box::new(AmqpAcker {
                acks: acks.clone(),
                tag: d.delivery_tag,
                remember: None,
            }),
        };
        match tx.send(incoming) {
            Ok(()) => Decision::Hold,
            Err(_) => Decision::Hold, // stopping: left unacked, the broker redelivers it
        }
    })
}

/// Decodes a notification delivery into an [`Incoming`] (section 8).
fn notification_handler(tx: mpsc::UnboundedSender<Incoming>) -> Handler {
    let dups = Arc::new(Mutex::new(DuplicateFilter::new()));
    Box::new(move |d: Delivery, acks: &AckSender| {
        let inner = match wire::decode_body(&d.data) {
            Ok(i) => i,
            Err(e) => {
                tracing::warn!(error = %e, "rejecting a message that is not an oslo message");
                return Decision::Reject;
            }
        };
        let n = wire::decode_notification(inner);
        if lock(&dups).contains(n.unique_id.as_deref()) {
            // Already handled and acked (a redelivery after a lost connection). oslo leaves
            // such a duplicate unacknowledged; here it is acked, or it would hold its delivery
            // slot for the life of the connection.
            tracing::debug!("duplicate notification dropped");
            return Decision::Ack;
        }
        let incoming = Incoming {
            ctxt: n.ctxt,
            message: n.message,
            replier: None,
            client_timeout: None,
            acker: Box::new(AmqpAcker {
                acks: acks.clone(),
                tag: d.delivery_tag,
                remember: Some((dups.clone(), n.unique_id.clone())),
            }),
        };
        let _ = tx.send(incoming);
        Decision::Hold
    })
}

impl AmqpDriver {
    /// A driver for `url` (`rabbit://`), with the options of its query; it connects on first use.
    pub fn new(url: &TransportUrl, control_exchange: &str) -> Result<Self, MessagingError> {
        let opts = RabbitOptions::default().with_url_query(url)?;
        Self::with_options(url, control_exchange, opts)
    }

    /// A driver for `url` with `opts` (URL query parameters are not applied again).
    pub fn with_options(
        url: &TransportUrl,
        control_exchange: &str,
        opts: RabbitOptions,
    ) -> Result<Self, MessagingError> {
        opts.validate()?;
        let broker = Arc::new(Broker::new(url, opts));
        Ok(AmqpDriver {
            shared: Arc::new(Shared {
                at_least_once: false,
                publisher: Publisher::new(broker.clone()),
                broker,
                control_exchange: control_exchange.to_string(),
                reply: OnceCell::new(),
                gone: Mutex::new(GoneQueues::default()),
            }),
        })
    }

    /// The options in force.
    pub fn options(&self) -> &RabbitOptions {
        self.shared.opts()
    }

    /// Requests are `mandatory` and wait for the broker's verdict (MSG-RPC-09, see
    /// [`TransportOptions::at_least_once`](crate::TransportOptions::at_least_once)).
    pub fn at_least_once(mut self, on: bool) -> Self {
        match Arc::get_mut(&mut self.shared) {
            Some(s) => s.at_least_once = on,
            None => tracing::warn!("at_least_once set on a driver already in use: ignored"),
        }
        self
    }
}

#[async_trait]
impl Driver for AmqpDriver {
    async fn cast(&self, msg: Outgoing) -> Result<(), MessagingError> {
        let mut p = self.shared.request(&msg, None)?;
        if self.shared.at_least_once {
            // Only the broker's verdict says whether a queue took it.
            p.wait = Wait::Confirmed;
            let undeliverable = Shared::undeliverable(&p);
            return match self.shared.publisher.publish(p).await? {
                Routed::Delivered => Ok(()),
                Routed::Returned => Err(undeliverable),
            };
        }
        p.wait = self.shared.fire_and_track();
        match self.shared.publisher.publish(p).await? {
            Routed::Delivered | Routed::Returned => Ok(()),
        }
    }

    async fn call(&self, msg: Outgoing) -> Result<Box<dyn ReplyWaiter>, MessagingError> {
        let rq = self.shared.reply_queue().await?;
        let msg_id = wire::new_id();
        let (tx, rx) = mpsc::unbounded_channel();
        lock(&rq.waiters).insert(msg_id.clone(), tx);
        let call = CallInfo {
            msg_id: &msg_id,
            reply_q: &rq.name,
            call_monitor_timeout: msg.call_monitor_timeout,
        };
        let mut p = self.shared.request(&msg, Some(call))?;
        p.deadline = msg.timeout.map(|t| Instant::now() + t);
        if self.shared.at_least_once {
            // Confirmed and mandatory: a request nobody consumes ends the call at once.
            p.wait = Wait::Confirmed;
        } else {
            p.wait = Wait::Written;
            p.confirm = false;
        }
        let undeliverable = Shared::undeliverable(&p);
        let confirm = self.shared.publisher.submit(p).await;
        Ok(Box::new(AmqpWaiter {
            rx,
            confirm: Some(confirm),
            undeliverable: Some(undeliverable),
            msg_id,
            waiters: rq.waiters.clone(),
        }))
    }

    async fn listen(&self, target: &Target) -> Result<Box<dyn Listener>, MessagingError> {
        let topic = target
            .topic
            .clone()
            .ok_or_else(|| target.invalid("an RPC server needs a topic"))?;
        let server = target
            .server
            .clone()
            .ok_or_else(|| target.invalid("an RPC server needs a server"))?;
        let sh = &self.shared;
        let ex = sh.topic_exchange(sh.exchange_of(target));
        let fanout_ex = sh.fanout_exchange(&topic);
        let server_q = format!("{topic}.{server}");
        let fanout_q = format!("{topic}_fanout_{}", queue_suffix(sh.opts()));
        let topo = Topology {
            bindings: vec![
                (topic.clone(), ex.name.clone(), topic.clone()),
                (server_q.clone(), ex.name.clone(), server_q.clone()),
                (fanout_q.clone(), fanout_ex.name.clone(), topic.clone()),
            ],
            exchanges: vec![ex, fanout_ex],
            queues: vec![
                sh.queue(topic.clone()),
                sh.queue(server_q.clone()),
                sh.transient_queue(fanout_q.clone()),
            ],
            // Section 10: fanout queues are deleted on stop unless the queue manager keeps them.
            delete_on_stop: if sh.opts().use_queue_manager {
                vec![]
            } else {
                vec![fanout_q.clone()]
            },
        };
        let (tx, rx) = mpsc::unbounded_channel();
        let consumer = Consumer::start(
            sh.broker.clone(),
            topo,
            vec![topic, server_q, fanout_q],
            rpc_handler(sh.clone(), tx),
        )
        .await?;
        Ok(Box::new(AmqpListener { rx, consumer }))
    }

    async fn notify(&self, msg: Outgoing) -> Result<(), MessagingError> {
        let key = msg.target.require_topic()?.to_string();
        let sh = &self.shared;
        let ex = sh.topic_exchange(sh.exchange_of(&msg.target));
        let inner = wire::encode_notification(&msg.message, &msg.ctxt, &wire::new_id());
        let mut p = Publish::new(ex.name.clone(), key.clone(), wire::encode_body(&inner));
        p.exchange = Some(ex);
        // Declare and bind the queue named after the routing key first, so notifications sent
        // before any listener exists are kept (section 2, section 11 item 7).
        p.queue = Some((sh.queue(key.clone()), key));
        p.retry = msg.retry;
        p.wait = sh.fire_and_track();
        sh.publisher.publish(p).await.map(|_| ())
    }

    async fn listen_notifications(
        &self,
        targets: &[Target],
        pool: Option<&str>,
    ) -> Result<Box<dyn Listener>, MessagingError> {
        let sh = &self.shared;
        let mut topo = Topology::default();
        let mut queues: Vec<String> = Vec::new();
        for t in targets {
            let key = t.topic.clone().ok_or_else(|| {
                t.invalid("a notification listener needs a topic on every target")
            })?;
            let ex = sh.topic_exchange(sh.exchange_of(t));
            if !topo.exchanges.iter().any(|e| e.name == ex.name) {
                topo.exchanges.push(ex.clone());
            }
            // A pool is one queue, bound once per routing key (section 2); otherwise one queue
            // per routing key, named after it.
            let queue = pool.map(str::to_string).unwrap_or_else(|| key.clone());
            if !queues.contains(&queue) {
                queues.push(queue.clone());
                topo.queues.push(sh.queue(queue.clone()));
            }
            topo.bindings.push((queue, ex.name, key));
        }
        let (tx, rx) = mpsc::unbounded_channel();
        let consumer =
            Consumer::start(sh.broker.clone(), topo, queues, notification_handler(tx)).await?;
        Ok(Box::new(AmqpListener { rx, consumer }))
    }

    async fn flush(&self) -> Result<(), MessagingError> {
        self.shared.publisher.flush().await
    }

    async fn cleanup(&self) {
        if let Err(e) = self.shared.publisher.flush().await {
            tracing::error!(error = %e, "messages were lost at transport cleanup");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn driver(url: &str) -> AmqpDriver {
        AmqpDriver::new(&url.parse().unwrap(), "openstack").unwrap()
    }

    /// Casts and notifications wait for the write by default and for the confirm with
    /// `wait_for_confirms=true` (oslo's behaviour, MSG-AMQP-13), read from the URL query.
    #[test]
    fn casts_wait_for_their_confirm_only_when_asked() {
        assert_eq!(driver("rabbit://h/").shared.fire_and_track(), Wait::Written);
        assert_eq!(
            driver("rabbit://h/?wait_for_confirms=true")
                .shared
                .fire_and_track(),
            Wait::Confirmed
        );
    }

    /// Section 10: the option variants change the declared flags and arguments.
    #[test]
    fn durable_and_quorum_options_shape_the_topology() {
        let d = driver("rabbit://h/?amqp_durable_queues=true&amqp_auto_delete=true");
        let ex = d.shared.topic_exchange("openstack".into());
        assert!(ex.durable && ex.auto_delete && !ex.fanout);
        let q = d.shared.queue("topic".into());
        assert!(q.durable && q.auto_delete);
        let d = driver("rabbit://h/?rabbit_transient_quorum_queue=true");
        let fq = d.shared.transient_queue("t_fanout_x".into());
        assert!(fq.durable);
        assert!(d.shared.fanout_exchange("t").durable);
        let plain = driver("rabbit://h/");
        let fq = plain.shared.transient_queue("t_fanout_x".into());
        assert!(!fq.durable && !fq.auto_delete);
        assert!(!plain.shared.fanout_exchange("t").durable);
        assert!(plain.shared.fanout_exchange("t").auto_delete);
    }

    /// MSG-RPC-07, MSG-AMQP-05, TEST-MSG-15: a cast with `retry` 4, 1 and 0 makes 5, 2 and 1
    /// connection attempts through the publisher, then fails with `Unreachable`. The "broker"
    /// accepts each TCP connection and closes it, counting them.
    #[tokio::test]
    async fn cast_retry_n_makes_n_plus_one_attempts() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        for (retry, attempts) in [(4, 5), (1, 2), (0, 1)] {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let port = listener.local_addr().unwrap().port();
            let seen = Arc::new(AtomicUsize::new(0));
            let s2 = seen.clone();
            let acceptor = tokio::spawn(async move {
                while let Ok((sock, _)) = listener.accept().await {
                    s2.fetch_add(1, Ordering::SeqCst);
                    drop(sock);
                }
            });
            let d = driver(&format!(
                "rabbit://u:secret@127.0.0.1:{port}/?kombu_reconnect_delay=0&rabbit_retry_interval=0&rabbit_retry_backoff=0"
            ));
            let e = d
                .cast(Outgoing {
                    target: Target::topic("t"),
                    ctxt: Default::default(),
                    message: Default::default(),
                    timeout: None,
                    call_monitor_timeout: None,
                    retry: Some(retry),
                })
                .await
                .unwrap_err();
            acceptor.abort();
            assert_eq!(seen.load(Ordering::SeqCst), attempts, "retry {retry}: {e}");
            assert!(
                matches!(e, MessagingError::Broker(BrokerError::Unreachable(_))),
                "{e:?}"
            );
            assert!(!e.to_string().contains("secret"));
        }
    }

    /// MSG-AMQP-08: a reply queue found missing is remembered (200 entries at most).
    #[test]
    fn gone_reply_queues_are_remembered_and_bounded() {
        let mut g = GoneQueues::default();
        for i in 0..250 {
            g.insert(&format!("reply_{i}"));
        }
        assert_eq!(g.0.len(), GoneQueues::MAX);
        assert!(g.contains("reply_249"));
        assert!(!g.contains("nosuch"));
    }

    /// LESSON-05: with the queue manager, names carry this process's pid, read when the name is
    /// made (so after a fork); without it, they are random.
    #[test]
    fn queue_names_are_derived_when_made() {
        let qm = RabbitOptions {
            use_queue_manager: true,
            ..RabbitOptions::default()
        };
        assert!(queue_suffix(&qm).ends_with(&format!(":{}", std::process::id())));
        let plain = RabbitOptions::default();
        assert_ne!(queue_suffix(&plain), queue_suffix(&plain));
    }
}
