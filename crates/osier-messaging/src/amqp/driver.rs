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
use crate::amqp::inbound::{self, Inbound};
use crate::amqp::options::RabbitOptions;
use crate::amqp::publisher::{ExchangeSpec, Publish, Publisher, QueueSpec, Routed, Wait};
use crate::amqp::reply_probe::ReplyProbe;
use crate::amqp::wire::{self, CallInfo, DuplicateFilter, ReplyAddress};
use crate::driver::{
    Acker, Driver, Incoming, Listener, Outcome, Outgoing, Replier, ReplyEvent, ReplyWaiter,
};
use crate::error::{BrokerError, MessagingError};
use crate::lock::lock;
use crate::target::Target;
use crate::untrusted::Untrusted;
use crate::url::TransportUrl;

type Waiters = Arc<Mutex<HashMap<String, mpsc::UnboundedSender<ReplyEvent>>>>;

struct ReplyQueue {
    name: String,
    waiters: Waiters,
    _consumer: Consumer,
}

struct Shared {
    broker: Arc<Broker>,
    at_least_once: bool,
    control_exchange: String,
    publisher: Publisher,
    reply: OnceCell<ReplyQueue>,
    probe: ReplyProbe,
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

    /// The QoS prefetch of a listener whose receiver runs `credit` messages at a time:
    /// `rabbit_qos_prefetch_count` when set, else [`PREFETCH_PER_CREDIT`] times the credit, so
    /// the backlog of a slow server waits in the broker.
    fn prefetch(&self, credit: usize) -> u16 {
        match self.opts().rabbit_qos_prefetch_count {
            0 => {
                u16::try_from(credit.max(1).saturating_mul(PREFETCH_PER_CREDIT)).unwrap_or(u16::MAX)
            }
            n => n,
        }
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
        amqp_names(&msg.target, &[&self.exchange_of(&msg.target), topic])?;
        if let Some(server) = &msg.target.server {
            amqp_names(&msg.target, &[&format!("{topic}.{server}")])?;
        }
        if msg.target.fanout {
            amqp_names(&msg.target, &[&format!("{topic}_fanout")])?;
        }
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
                let max_bytes = self.opts().max_receive_bytes;
                let handler: Handler = Box::new(move |d: Delivery, _acks: &AckSender| {
                    route_reply(&w2, &d.data, max_bytes);
                    Decision::Ack
                });
                let topo = Topology {
                    queues: vec![self.transient_queue(name.clone())],
                    ..Topology::default()
                };
                let prefetch = self.opts().rabbit_qos_prefetch_count;
                let consumer = Consumer::start(
                    self.broker.clone(),
                    topo,
                    vec![name.clone()],
                    handler,
                    prefetch,
                )
                .await?;
                Ok(ReplyQueue {
                    name,
                    waiters,
                    _consumer: consumer,
                })
            })
            .await
    }
}

/// How many deliveries a listener may hold per message its receiver runs at once, when
/// `rabbit_qos_prefetch_count` does not set the prefetch. One would make every delivery wait for
/// the ack of another to cross the network (measured: 16 casters at a server with 64 request
/// slots, prefetch 64 handled 30% fewer casts a second than 256; 256 and unlimited were alike).
pub const PREFETCH_PER_CREDIT: usize = 4;

/// Checks that every name AMQP must carry for `target` fits in a short string, so a name too
/// long is refused with a clear error before anything is sent.
fn amqp_names(target: &Target, names: &[&str]) -> Result<(), MessagingError> {
    match names.iter().find(|n| n.len() > wire::MAX_NAME_BYTES) {
        Some(n) => Err(target.invalid(&format!(
            "the AMQP name {:?} is {} bytes; exchange names, queue names and routing keys hold at most {}",
            Untrusted(n),
            n.len(),
            wire::MAX_NAME_BYTES
        ))),
        None => Ok(()),
    }
}

/// Log budgets of the reply queue's consumer: one crafted reply after another must not flood
/// the log.
static BAD_REPLY_LOG: crate::LogBudget = crate::LogBudget::new(10);

/// Hands a reply to the call that waits for it (MSG-AMQP-09); anything else is logged.
fn route_reply(waiters: &Waiters, data: &[u8], max_bytes: usize) {
    let decoded = if data.len() > max_bytes {
        Err(format!(
            "{} bytes, over the receive limit of {max_bytes} bytes",
            data.len()
        ))
    } else {
        wire::decode_body(data)
            .and_then(|inner| wire::decode_reply(&inner))
            .map_err(|e| e.to_string())
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
    let tx = lock(waiters).get(&r.msg_id).cloned();
    let Some(tx) = tx else {
        if let Some(suppressed) = BAD_REPLY_LOG.allow() {
            tracing::info!(msg_id = %Untrusted(&r.msg_id), suppressed, "reply for a call nobody waits for (timed out?): dropped");
        }
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
        // Not mandatory: see reply_probe for why, and how a missing queue is found instead.
        let mut p = Publish::new(String::new(), self.reply_q.clone(), body);
        p.deadline = Some(deadline);
        p
    }

    fn unroutable(&self) -> MessagingError {
        BrokerError::Unroutable(Untrusted(&self.reply_q).to_string()).into()
    }

    async fn send(&self, body: Vec<u8>, deadline: Instant) -> Result<(), MessagingError> {
        match self
            .shared
            .publisher
            .publish(self.publish(body, deadline))
            .await?
        {
            Routed::Delivered | Routed::Returned => Ok(()),
        }
    }
}

#[async_trait]
impl Replier for AmqpReplier {
    async fn heartbeat(&self) -> Result<(), MessagingError> {
        let probe = &self.shared.probe;
        // MSG-AMQP-08: a heartbeat to a missing queue ends the call monitor.
        if probe.is_gone(&self.reply_q) || !probe.exists(&self.reply_q).await.unwrap_or(true) {
            return Err(self.unroutable());
        }
        let inner = wire::encode_reply(None, None, false, &self.msg_id, &wire::new_id());
        let deadline = Instant::now() + Duration::from_secs(10);
        self.send(wire::encode_body(&inner), deadline).await
    }

    async fn reply(&self, outcome: Outcome) -> Result<(), MessagingError> {
        let probe = &self.shared.probe;
        if probe.is_gone(&self.reply_q) {
            return Err(self.unroutable());
        }
        let retry_for =
            Duration::try_from_secs_f64(self.shared.opts().kombu_missing_consumer_retry_timeout)
                .unwrap_or(Duration::ZERO);
        let deadline = Instant::now() + retry_for;
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
                // The broker cannot be asked: the publisher's own reconnection takes over.
                Err(_) => break,
            }
        }
        let inner = match &outcome {
            Ok(v) => wire::encode_reply(Some(v), None, true, &self.msg_id, &wire::new_id()),
            Err(f) => wire::encode_reply(None, Some(f), true, &self.msg_id, &wire::new_id()),
        };
        self.send(
            wire::encode_body(&inner),
            deadline.max(Instant::now() + step),
        )
        .await
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

    fn reject(&self) {
        self.acks.reject(self.tag);
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

/// Reads an RPC request delivery into an [`Incoming`] (sections 4-5, 11 item 8). Every
/// delivery but a duplicate goes to the server, malformed ones too (it counts them, answers
/// their caller with a failure where it can, and rejects them), so each one holds its place in
/// the prefetch until the server settles it.
fn rpc_handler(shared: Arc<Shared>, tx: mpsc::UnboundedSender<Incoming>) -> Handler {
    let mut dups = DuplicateFilter::new();
    let max_bytes = shared.opts().max_receive_bytes;
    Box::new(move |d: Delivery, acks: &AckSender| {
        let acker = Box::new(AmqpAcker {
            acks: acks.clone(),
            tag: d.delivery_tag,
            remember: None,
        });
        let replier = |a: ReplyAddress| {
            Arc::new(AmqpReplier {
                shared: shared.clone(),
                reply_q: a.reply_q,
                msg_id: a.msg_id,
            }) as Arc<dyn Replier>
        };
        let incoming = match inbound::read_request(&d.data, max_bytes) {
            Inbound::Malformed { why, reply_to } => {
                Incoming::malformed(why, reply_to.map(replier), acker)
            }
            Inbound::Message(r) => {
                if dups.is_duplicate(r.unique_id.as_deref()) {
                    tracing::debug!("duplicate request dropped");
                    return Decision::Ack;
                }
                let address = match (r.msg_id, r.reply_q) {
                    (Some(msg_id), Some(reply_q)) => Some(ReplyAddress { msg_id, reply_q }),
                    _ => None,
                };
                Incoming {
                    ctxt: r.ctxt,
                    message: r.message,
                    replier: address.map(replier),
                    client_timeout: r.call_monitor_timeout,
                    acker,
                    malformed: None,
                }
            }
        };
        // Once the server stopped, the message is left unacked: the broker redelivers it.
        let _ = tx.send(incoming);
        Decision::Hold
    })
}

/// Reads a notification delivery into an [`Incoming`] (section 8); malformed ones go to the
/// listener too, which counts and rejects them.
fn notification_handler(tx: mpsc::UnboundedSender<Incoming>, max_bytes: usize) -> Handler {
    let dups = Arc::new(Mutex::new(DuplicateFilter::new()));
    Box::new(move |d: Delivery, acks: &AckSender| {
        let acker = |remember| {
            Box::new(AmqpAcker {
                acks: acks.clone(),
                tag: d.delivery_tag,
                remember,
            })
        };
        let incoming = match inbound::read_notification(&d.data, max_bytes) {
            Inbound::Malformed { why, .. } => Incoming::malformed(why, None, acker(None)),
            Inbound::Message(n) => {
                if lock(&dups).contains(n.unique_id.as_deref()) {
                    // Already handled and acked (a redelivery after a lost connection). oslo
                    // leaves such a duplicate unacknowledged; here it is acked, or it would
                    // hold its delivery slot for the life of the connection.
                    tracing::debug!("duplicate notification dropped");
                    return Decision::Ack;
                }
                let remember = Some((dups.clone(), n.unique_id.clone()));
                Incoming {
                    ctxt: n.ctxt,
                    message: n.message,
                    replier: None,
                    client_timeout: None,
                    acker: acker(remember),
                    malformed: None,
                }
            }
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
                probe: ReplyProbe::new(broker.clone()),
                broker,
                control_exchange: control_exchange.to_string(),
                reply: OnceCell::new(),
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

    async fn listen(
        &self,
        target: &Target,
        credit: usize,
    ) -> Result<Box<dyn Listener>, MessagingError> {
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
        amqp_names(target, &[&ex.name, &fanout_ex.name, &server_q, &fanout_q])?;
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
            sh.prefetch(credit),
        )
        .await?;
        Ok(Box::new(AmqpListener { rx, consumer }))
    }

    async fn notify(&self, msg: Outgoing) -> Result<(), MessagingError> {
        let key = msg.target.require_topic()?.to_string();
        let sh = &self.shared;
        let ex = sh.topic_exchange(sh.exchange_of(&msg.target));
        amqp_names(&msg.target, &[&ex.name, &key])?;
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
        credit: usize,
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
            amqp_names(t, &[&ex.name, &key, &queue])?;
            if !queues.contains(&queue) {
                queues.push(queue.clone());
                topo.queues.push(sh.queue(queue.clone()));
            }
            topo.bindings.push((queue, ex.name, key));
        }
        let (tx, rx) = mpsc::unbounded_channel();
        let handler = notification_handler(tx, sh.opts().max_receive_bytes);
        let consumer = Consumer::start(
            sh.broker.clone(),
            topo,
            queues,
            handler,
            sh.prefetch(credit),
        )
        .await?;
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
