//! The `rabbit://` driver on `lapin`: oslo.messaging's topology and wire format (`oslo-wire.md`
//! sections 1-8) behind the [`Driver`] trait.
//!
//! This first version connects to the first of the URL's hosts that answers, keeps one
//! publishing connection (with
//! publisher confirms) and one connection per listener and for replies, and declares exactly the
//! exchanges and queues of section 2 with oslo's default flags. Failover across hosts,
//! reconnection, TLS and the non-default options of section 10 are not built yet.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicRejectOptions,
    ConfirmSelectOptions, ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties, ExchangeKind};
use tokio::sync::{mpsc, OnceCell};

use crate::amqp::wire::{self, CallInfo, DuplicateFilter};
use crate::driver::{
    Acker, Driver, Incoming, Listener, Outcome, Outgoing, Replier, ReplyEvent, ReplyWaiter,
};
use crate::error::MessagingError;
use crate::target::Target;
use crate::url::TransportUrl;

/// `rabbit_transient_queues_ttl` (30 min), as `x-expires` on reply and fanout queues.
const TRANSIENT_TTL_MS: i32 = 1_800_000;

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn amqp_err(what: &str, e: lapin::Error) -> MessagingError {
    MessagingError::Delivery(format!("{what}: {e}"))
}

/// One AMQP URI per host of `url`, in URL order, with oslo's defaults (guest/guest, port 5672,
/// vhost `/`; `rabbit://` with no host is localhost). The results hold passwords: never log them.
fn amqp_uris(url: &TransportUrl) -> Vec<String> {
    if url.hosts().is_empty() {
        return vec![amqp_uri(url, None)];
    }
    url.hosts().iter().map(|h| amqp_uri(url, Some(h))).collect()
}

fn amqp_uri(url: &TransportUrl, h: Option<&crate::url::TransportHost>) -> String {
    use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};
    let enc = |s: &str| utf8_percent_encode(s, NON_ALPHANUMERIC).to_string();
    let user = h
        .and_then(|h| h.username.clone())
        .unwrap_or_else(|| "guest".into());
    let pass = h
        .and_then(|h| h.password.clone())
        .unwrap_or_else(|| "guest".into());
    let host = h
        .map(|h| h.hostname.clone())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "localhost".into());
    let host = if host.contains(':') {
        format!("[{host}]")
    } else {
        host
    };
    let port = h.and_then(|h| h.port).unwrap_or(5672);
    let vhost = match url.virtual_host() {
        None | Some("") => "/".to_string(),
        Some(v) => v.to_string(),
    };
    format!(
        "amqp://{}:{}@{host}:{port}/{}",
        enc(&user),
        enc(&pass),
        enc(&vhost)
    )
}

fn properties(expiration: Option<Duration>) -> BasicProperties {
    let p = BasicProperties::default()
        .with_content_type(wire::CONTENT_TYPE.into())
        .with_content_encoding(wire::CONTENT_ENCODING.into())
        .with_delivery_mode(2)
        .with_priority(0)
        .with_headers(FieldTable::default());
    match expiration {
        Some(t) => p.with_expiration(wire::expiration_ms(t).into()),
        None => p,
    }
}

async fn open_channel(conn: &Connection) -> Result<Channel, MessagingError> {
    conn.create_channel()
        .await
        .map_err(|e| amqp_err("create channel", e))
}

/// Declares `queue` with oslo's default flags (non-durable, not auto-delete, not exclusive).
async fn declare_queue(ch: &Channel, queue: &str, args: FieldTable) -> Result<(), MessagingError> {
    ch.queue_declare(queue.into(), QueueDeclareOptions::default(), args)
        .await
        .map(|_| ())
        .map_err(|e| amqp_err("queue.declare", e))
}

async fn bind_queue(
    ch: &Channel,
    queue: &str,
    exchange: &str,
    key: &str,
) -> Result<(), MessagingError> {
    ch.queue_bind(
        queue.into(),
        exchange.into(),
        key.into(),
        QueueBindOptions::default(),
        FieldTable::default(),
    )
    .await
    .map_err(|e| amqp_err("queue.bind", e))
}

/// Consumes `queue` with manual acks (`no_ack=false`, no consumer arguments).
async fn consume(ch: &Channel, queue: &str) -> Result<lapin::Consumer, MessagingError> {
    ch.basic_consume(
        queue.into(),
        "".into(),
        BasicConsumeOptions::default(),
        FieldTable::default(),
    )
    .await
    .map_err(|e| amqp_err("basic.consume", e))
}

fn transient_args() -> FieldTable {
    let mut t = FieldTable::default();
    t.insert("x-expires".into(), AMQPValue::LongInt(TRANSIENT_TTL_MS));
    t
}

type Waiters = Arc<Mutex<HashMap<String, mpsc::UnboundedSender<ReplyEvent>>>>;

struct ReplyQueue {
    name: String,
    waiters: Waiters,
    _conn: Connection,
}

struct Sender {
    _conn: Connection,
    channel: Channel,
    declared: Mutex<HashSet<String>>,
}

struct Shared {
    /// One per broker host, tried in order (failover on connect).
    uris: Vec<String>,
    control_exchange: String,
    sender: OnceCell<Sender>,
    reply: OnceCell<ReplyQueue>,
}

/// The RabbitMQ driver.
pub struct AmqpDriver {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for AmqpDriver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AmqpDriver")
            .field("control_exchange", &self.shared.control_exchange)
            .finish_non_exhaustive()
    }
}

/// Connects to the first broker host that answers, in URL order. The error lists why each host
/// failed, without credentials.
async fn connect(uris: &[String]) -> Result<Connection, MessagingError> {
    let mut why = Vec::new();
    for (i, uri) in uris.iter().enumerate() {
        match Connection::connect(uri, ConnectionProperties::default()).await {
            Ok(c) => return Ok(c),
            Err(e) => {
                tracing::warn!(host = i, error = %e, "broker host unreachable, trying the next");
                why.push(format!("host {}: {e}", i + 1));
            }
        }
    }
    Err(MessagingError::Delivery(format!(
        "cannot connect to the broker: {}",
        why.join("; ")
    )))
}

impl Shared {
    async fn sender(&self) -> Result<&Sender, MessagingError> {
        self.sender
            .get_or_try_init(|| async {
                let conn = connect(&self.uris).await?;
                let channel = open_channel(&conn).await?;
                channel
                    .confirm_select(ConfirmSelectOptions::default())
                    .await
                    .map_err(|e| amqp_err("confirm.select", e))?;
                Ok(Sender {
                    _conn: conn,
                    channel,
                    declared: Mutex::new(HashSet::new()),
                })
            })
            .await
    }

    fn exchange_of(&self, t: &Target) -> String {
        t.exchange
            .clone()
            .unwrap_or_else(|| self.control_exchange.clone())
    }

    /// Declares an exchange once per channel, with oslo's flags (section 2).
    async fn declare_exchange(
        &self,
        ch: &Channel,
        declared: Option<&Mutex<HashSet<String>>>,
        name: &str,
        fanout: bool,
    ) -> Result<(), MessagingError> {
        if declared.is_some_and(|d| lock(d).contains(name)) {
            return Ok(());
        }
        let (kind, opts) = if fanout {
            (
                ExchangeKind::Fanout,
                ExchangeDeclareOptions {
                    auto_delete: true,
                    ..ExchangeDeclareOptions::default()
                },
            )
        } else {
            (ExchangeKind::Topic, ExchangeDeclareOptions::default())
        };
        ch.exchange_declare(name.into(), kind, opts, FieldTable::default())
            .await
            .map_err(|e| amqp_err("exchange.declare", e))?;
        if let Some(d) = declared {
            lock(d).insert(name.to_string());
        }
        Ok(())
    }

    async fn publish(
        &self,
        exchange: &str,
        routing_key: &str,
        body: &[u8],
        mandatory: bool,
        expiration: Option<Duration>,
    ) -> Result<(), MessagingError> {
        let s = self.sender().await?;
        let confirm = s
            .channel
            .basic_publish(
                exchange.into(),
                routing_key.into(),
                BasicPublishOptions {
                    mandatory,
                    immediate: false,
                },
                body,
                properties(expiration),
            )
            .await
            .map_err(|e| amqp_err("basic.publish", e))?;
        confirm
            .await
            .map_err(|e| amqp_err("publisher confirm", e))?;
        Ok(())
    }

    /// Publishes a request (call or cast) to the target's exchange and routing key (section 5).
    async fn publish_request(
        &self,
        msg: &Outgoing,
        call: Option<CallInfo<'_>>,
    ) -> Result<(), MessagingError> {
        let topic = msg.target.require_topic()?;
        let s = self.sender().await?;
        let inner = wire::encode_request(&msg.message, &msg.ctxt, call, &wire::new_id());
        let body = wire::encode_body(&inner);
        if msg.target.fanout {
            let ex = format!("{topic}_fanout");
            self.declare_exchange(&s.channel, Some(&s.declared), &ex, true)
                .await?;
            return self.publish(&ex, "", &body, false, None).await;
        }
        let ex = self.exchange_of(&msg.target);
        self.declare_exchange(&s.channel, Some(&s.declared), &ex, false)
            .await?;
        let key = match &msg.target.server {
            Some(server) => format!("{topic}.{server}"),
            None => topic.to_string(),
        };
        let expiration = if call.is_some() { msg.timeout } else { None };
        self.publish(&ex, &key, &body, false, expiration).await
    }

    /// The reply queue: declared and consumed on its own connection on the first call.
    async fn reply_queue(&self) -> Result<&ReplyQueue, MessagingError> {
        self.reply
            .get_or_try_init(|| async {
                let conn = connect(&self.uris).await?;
                let ch = open_channel(&conn).await?;
                let name = format!("reply_{}", wire::new_id());
                declare_queue(&ch, &name, transient_args()).await?;
                let mut consumer = consume(&ch, &name).await?;
                let waiters: Waiters = Arc::new(Mutex::new(HashMap::new()));
                let w2 = waiters.clone();
                tokio::spawn(async move {
                    while let Some(Ok(d)) = consumer.next().await {
                        let _ = d.acker.ack(BasicAckOptions::default()).await;
                        let Ok(inner) = wire::decode_body(&d.data) else {
                            tracing::warn!("dropping a reply that is not an oslo message");
                            continue;
                        };
                        let Ok(r) = wire::decode_reply(&inner) else {
                            tracing::warn!("dropping a malformed reply");
                            continue;
                        };
                        let tx = lock(&w2).get(&r.msg_id).cloned();
                        let Some(tx) = tx else {
                            tracing::info!(msg_id = %r.msg_id, "reply for a call nobody waits for (timed out?): dropped");
                            continue;
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
                });
                Ok(ReplyQueue {
                    name,
                    waiters,
                    _conn: conn,
                })
            })
            .await
    }
}

struct AmqpWaiter {
    rx: mpsc::UnboundedReceiver<ReplyEvent>,
    msg_id: String,
    waiters: Waiters,
}

#[async_trait]
impl ReplyWaiter for AmqpWaiter {
    async fn next(&mut self) -> Option<ReplyEvent> {
        self.rx.recv().await
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

#[async_trait]
impl Replier for AmqpReplier {
    async fn heartbeat(&self) -> Result<(), MessagingError> {
        let inner = wire::encode_reply(None, None, false, &self.msg_id, &wire::new_id());
        self.shared
            .publish("", &self.reply_q, &wire::encode_body(&inner), true, None)
            .await
    }

    async fn reply(&self, outcome: Outcome) -> Result<(), MessagingError> {
        let inner = match &outcome {
            Ok(v) => wire::encode_reply(Some(v), None, true, &self.msg_id, &wire::new_id()),
            Err(f) => wire::encode_reply(None, Some(f), true, &self.msg_id, &wire::new_id()),
        };
        self.shared
            .publish("", &self.reply_q, &wire::encode_body(&inner), true, None)
            .await
    }
}

struct AmqpAcker {
    acker: lapin::Acker,
    /// Notifications: the listener's duplicate filter and this message's id, remembered on ack.
    remember: Option<(Arc<Mutex<DuplicateFilter>>, Option<String>)>,
}

impl Acker for AmqpAcker {
    fn ack(&self) {
        if let Some((f, id)) = &self.remember {
            lock(f).remember(id.as_deref());
        }
        let a = self.acker.clone();
        tokio::spawn(async move {
            if let Err(e) = a.ack(BasicAckOptions::default()).await {
                tracing::warn!(error = %e, "ack failed");
            }
        });
    }

    fn requeue(&self) {
        let a = self.acker.clone();
        tokio::spawn(async move {
            if let Err(e) = a.reject(BasicRejectOptions { requeue: true }).await {
                tracing::warn!(error = %e, "requeue failed");
            }
        });
    }
}

/// A listener: deliveries of its consumers merged into one channel by a task.
struct AmqpListener {
    rx: mpsc::UnboundedReceiver<Incoming>,
    stop: Arc<tokio::sync::Notify>,
    _conn: Connection,
}

#[async_trait]
impl Listener for AmqpListener {
    async fn poll(&mut self) -> Option<Incoming> {
        tokio::select! {
            m = self.rx.recv() => m,
            _ = self.stop.notified() => None,
        }
    }

    fn stop(&self) {
        self.stop.notify_one();
    }
}

impl AmqpDriver {
    /// A driver for `url` (`rabbit://`); it connects on first use.
    pub fn new(url: &TransportUrl, control_exchange: &str) -> Self {
        AmqpDriver {
            shared: Arc::new(Shared {
                uris: amqp_uris(url),
                control_exchange: control_exchange.to_string(),
                sender: OnceCell::new(),
                reply: OnceCell::new(),
            }),
        }
    }

    /// Opens a listen connection, declares `exchanges` and `queues`, makes the `bindings`
    /// (`(queue, exchange, key)`), and merges the deliveries of every queue into one listener.
    /// `rpc` selects request decoding (with a replier) over notification decoding.
    async fn listen_on(
        &self,
        exchanges: Vec<(String, bool)>,
        queues: Vec<(String, FieldTable)>,
        bindings: Vec<(String, String, String)>,
        rpc: bool,
    ) -> Result<Box<dyn Listener>, MessagingError> {
        let conn = connect(&self.shared.uris).await?;
        let ch = open_channel(&conn).await?;
        for (ex, fanout) in &exchanges {
            self.shared.declare_exchange(&ch, None, ex, *fanout).await?;
        }
        for (q, args) in &queues {
            declare_queue(&ch, q, args.clone()).await?;
        }
        for (q, ex, key) in &bindings {
            bind_queue(&ch, q, ex, key).await?;
        }
        let (tx, rx) = mpsc::unbounded_channel();
        for (q, _) in &queues {
            let mut consumer = consume(&ch, q).await?;
            let (tx, shared) = (tx.clone(), self.shared.clone());
            tokio::spawn(async move {
                let dups = Arc::new(Mutex::new(DuplicateFilter::new()));
                while let Some(Ok(d)) = consumer.next().await {
                    let mut acker = Box::new(AmqpAcker {
                        acker: d.acker.clone(),
                        remember: None,
                    });
                    let inner = match wire::decode_body(&d.data) {
                        Ok(i) => i,
                        Err(e) => {
                            tracing::warn!(error = %e, "rejecting a message that is not an oslo message");
                            let _ = d.acker.reject(BasicRejectOptions { requeue: false }).await;
                            continue;
                        }
                    };
                    let incoming = if rpc {
                        let Ok(r) = wire::decode_request(inner) else {
                            tracing::warn!("rejecting a malformed RPC request");
                            let _ = d.acker.reject(BasicRejectOptions { requeue: false }).await;
                            continue;
                        };
                        if lock(&dups).is_duplicate(r.unique_id.as_deref()) {
                            let _ = d.acker.ack(BasicAckOptions::default()).await;
                            continue;
                        }
                        let replier = match (&r.msg_id, &r.reply_q) {
                            (Some(m), Some(q)) => Some(Arc::new(AmqpReplier {
                                shared: shared.clone(),
                                reply_q: q.clone(),
                                msg_id: m.clone(),
                            })
                                as Arc<dyn Replier>),
                            _ => None,
                        };
                        Incoming {
                            ctxt: r.ctxt,
                            message: r.message,
                            replier,
                            client_timeout: r.call_monitor_timeout,
                            acker,
                        }
                    } else {
                        let n = wire::decode_notification(inner);
                        if lock(&dups).contains(n.unique_id.as_deref()) {
                            continue; // oslo leaves it unacknowledged (section 8.4)
                        }
                        acker.remember = Some((dups.clone(), n.unique_id.clone()));
                        Incoming {
                            ctxt: n.ctxt,
                            message: n.message,
                            replier: None,
                            client_timeout: None,
                            acker,
                        }
                    };
                    if tx.send(incoming).is_err() {
                        return;
                    }
                }
            });
        }
        Ok(Box::new(AmqpListener {
            rx,
            stop: Arc::new(tokio::sync::Notify::new()),
            _conn: conn,
        }))
    }
}

#[async_trait]
impl Driver for AmqpDriver {
    async fn cast(&self, msg: Outgoing) -> Result<(), MessagingError> {
        self.shared.publish_request(&msg, None).await
    }

    async fn call(&self, msg: Outgoing) -> Result<Box<dyn ReplyWaiter>, MessagingError> {
        let rq = self.shared.reply_queue().await?;
        let msg_id = wire::new_id();
        let (tx, rx) = mpsc::unbounded_channel();
        lock(&rq.waiters).insert(msg_id.clone(), tx);
        let waiter = AmqpWaiter {
            rx,
            msg_id: msg_id.clone(),
            waiters: rq.waiters.clone(),
        };
        let call = CallInfo {
            msg_id: &msg_id,
            reply_q: &rq.name,
            call_monitor_timeout: msg.call_monitor_timeout,
        };
        self.shared.publish_request(&msg, Some(call)).await?;
        Ok(Box::new(waiter))
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
        let ex = self.shared.exchange_of(target);
        let fanout_ex = format!("{topic}_fanout");
        let exchanges = vec![(ex.clone(), false), (fanout_ex.clone(), true)];
        let server_q = format!("{topic}.{server}");
        let fanout_q = format!("{topic}_fanout_{}", wire::new_id());
        let queues = vec![
            (topic.clone(), FieldTable::default()),
            (server_q.clone(), FieldTable::default()),
            (fanout_q.clone(), transient_args()),
        ];
        let bindings = vec![
            (topic.clone(), ex.clone(), topic.clone()),
            (server_q.clone(), ex, server_q),
            (fanout_q, fanout_ex, topic),
        ];
        self.listen_on(exchanges, queues, bindings, true).await
    }

    async fn notify(&self, msg: Outgoing) -> Result<(), MessagingError> {
        let key = msg.target.require_topic()?.to_string();
        let ex = self.shared.exchange_of(&msg.target);
        let s = self.shared.sender().await?;
        self.shared
            .declare_exchange(&s.channel, Some(&s.declared), &ex, false)
            .await?;
        // Declare and bind the queue named after the routing key first, so notifications sent
        // before any listener exists are kept (section 2).
        let marker = format!("queue:{ex}:{key}");
        if !lock(&s.declared).contains(&marker) {
            declare_queue(&s.channel, &key, FieldTable::default()).await?;
            bind_queue(&s.channel, &key, &ex, &key).await?;
            lock(&s.declared).insert(marker);
        }
        let inner = wire::encode_notification(&msg.message, &msg.ctxt, &wire::new_id());
        self.shared
            .publish(&ex, &key, &wire::encode_body(&inner), false, None)
            .await
    }

    async fn listen_notifications(
        &self,
        targets: &[Target],
        pool: Option<&str>,
    ) -> Result<Box<dyn Listener>, MessagingError> {
        let mut exchanges = Vec::new();
        let mut queues: Vec<(String, FieldTable)> = Vec::new();
        let mut bindings = Vec::new();
        for t in targets {
            let key = t.topic.clone().ok_or_else(|| {
                t.invalid("a notification listener needs a topic on every target")
            })?;
            let ex = self.shared.exchange_of(t);
            if !exchanges.iter().any(|(e, _)| *e == ex) {
                exchanges.push((ex.clone(), false));
            }
            // A pool is one queue, bound once per routing key (section 2); otherwise one queue
            // per routing key, named after it.
            let queue = pool.map(str::to_string).unwrap_or_else(|| key.clone());
            if !queues.iter().any(|(q, _)| *q == queue) {
                queues.push((queue.clone(), FieldTable::default()));
            }
            bindings.push((queue, ex, key));
        }
        self.listen_on(exchanges, queues, bindings, false).await
    }

    async fn cleanup(&self) {}
}
