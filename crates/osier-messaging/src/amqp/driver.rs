//! The `rabbit://` driver on `lapin`: oslo.messaging's topology, wire format and options behind
//! the [`Driver`] trait.
//!
//! Connections (MSG-AMQP-06): one for publishing, owned by the publisher's task
//! (`amqp/publisher.rs`); one for the reply queue; one per listener, each owned by a consumer
//! task (`amqp/consumer.rs`). All of them fail over across the URL's hosts and
//! reconnect on their own.
//!
//! What each message kind waits for (the delivery guarantee, see docs/architecture.md):
//!
//! Every message goes on the publisher's one channel, in confirm mode, and the publisher keeps
//! each until the broker confirms it, re-sending it after a lost connection or a negative
//! confirm: delivery to the broker is at-least-once, as in oslo. What each sender waits for:
//!
//! | message | the sender returns | why |
//! |---|---|---|
//! | call request | once written to a live channel; kept until confirmed and re-sent within the call's deadline (then dropped quietly: the caller has its answer) | the reply proves delivery, so the caller does not wait for the confirm; the confirm tells a request the broker never took (the call fails with the broker's error, not a `Timeout`) and a re-sent request first waits for its queue to exist; with `at_least_once` (MSG-RPC-09), a request is `mandatory`, the caller waits for its confirm, and a returned one fails the call |
//! | cast, fanout cast, notification | once written to a live channel (`wait_for_confirms=true`: once confirmed, as oslo, MSG-AMQP-13) | confirms are pipelined instead of one at a time (measured: ~10x); [`Transport::flush`](crate::Transport::flush) waits for all of them and reports any message the broker did not take |
//! | reply | once confirmed, after a passive declare of the caller's reply queue (cached 5 s) | a missing queue is retried every 0.25 s for `kombu_missing_consumer_retry_timeout` (MSG-AMQP-08) |
//!
//! What `wait_for_confirms=false` gives up: a cast or notification that `cast()` / `notify()`
//! returned from and that was not yet confirmed is lost if the *sending process* dies in the
//! next few hundred microseconds (a lost connection is covered by the re-send). Call
//! [`Transport::flush`](crate::Transport::flush) where that matters (before exit; the service
//! launcher does on stop).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use futures::future::{self, BoxFuture, FutureExt};
use lapin::message::Delivery;
use tokio::sync::{mpsc, OnceCell};
use tokio::time::Instant;

use crate::amqp::connection::Broker;
use crate::amqp::consumer::{AckSender, Consumer, Decision, Handler};
use crate::amqp::inbound::{self, Inbound};
use crate::amqp::options::RabbitOptions;
use crate::amqp::publisher::{Publish, Publisher, Routed, Wait, Waited};
use crate::amqp::reply::{AmqpReplier, AmqpWaiter, ReplyQueue};
use crate::amqp::reply_probe::ReplyProbe;
use crate::amqp::topology::{check_names, Layout};
use crate::amqp::wire::{self, CallInfo, DuplicateFilter, ReplyAddress};
use crate::driver::{Acker, Driver, Incoming, Listener, Liveness, Outgoing, Replier, ReplyWaiter};
use crate::error::{BrokerError, MessagingError};
use crate::lock::lock;
use crate::target::Target;
use crate::url::TransportUrl;

struct Shared {
    broker: Arc<Broker>,
    at_least_once: bool,
    control_exchange: String,
    publisher: Arc<Publisher>,
    reply: OnceCell<ReplyQueue>,
    probe: Arc<ReplyProbe>,
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

    fn layout(&self) -> Layout<'_> {
        Layout {
            opts: self.opts(),
            control_exchange: &self.control_exchange,
        }
    }

    /// The reply queue: declared and consumed by its own owner task on the first call.
    async fn reply_queue(&self) -> Result<&ReplyQueue, MessagingError> {
        self.reply
            .get_or_try_init(|| ReplyQueue::start(&self.broker, self.layout()))
            .await
    }

    /// The replier of a call whose reply goes to `a`.
    fn replier(&self, a: ReplyAddress) -> Arc<dyn Replier> {
        Arc::new(AmqpReplier {
            publisher: self.publisher.clone(),
            probe: self.probe.clone(),
            retry_for: Duration::try_from_secs_f64(
                self.opts().kombu_missing_consumer_retry_timeout,
            )
            .unwrap_or(Duration::ZERO),
            reply_q: a.reply_q,
            msg_id: a.msg_id,
        })
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

    /// The notification `msg`, ready for the publisher: its queue declared and bound first
    /// (MSG-NOT-12), kept once accepted even if `notify()` returns before the broker took it.
    fn notification(&self, msg: Outgoing) -> Result<Publish, MessagingError> {
        let key = msg.target.require_topic()?.to_string();
        let layout = self.layout();
        let ex = layout.topic_exchange(layout.exchange_of(&msg.target));
        check_names(&msg.target, &[&ex.name, &key])?;
        let body = wire::encode_notification_body(&msg.message, &msg.ctxt, &wire::new_id());
        let mut p = Publish::new(ex.name.clone(), key.clone(), body);
        p.exchange = Some(ex);
        // Declare and bind the queue named after the routing key first, so notifications sent
        // before any listener exists are kept (MSG-NOT-12).
        p.queue = Some((layout.queue(key.clone()), key));
        p.retry = msg.retry;
        p.wait = self.fire_and_track();
        p.keep_when_abandoned = true;
        Ok(p)
    }

    /// The request of `msg` (call or cast), ready for the publisher.
    fn request(
        &self,
        msg: &Outgoing,
        call: Option<CallInfo<'_>>,
    ) -> Result<Publish, MessagingError> {
        let topic = msg.target.require_topic()?;
        let layout = self.layout();
        check_names(&msg.target, &[layout.exchange_name_of(&msg.target), topic])?;
        if let Some(server) = &msg.target.server {
            check_names(&msg.target, &[&format!("{topic}.{server}")])?;
        }
        if msg.target.fanout {
            check_names(&msg.target, &[&format!("{topic}_fanout")])?;
        }
        let body = wire::encode_request_body_with_args(
            &msg.message,
            msg.args_json.as_deref(),
            &msg.ctxt,
            call,
            &wire::new_id(),
        );
        let mut p = if msg.target.fanout {
            let ex = layout.fanout_exchange(topic);
            let mut p = Publish::new(ex.name.clone(), String::new(), body);
            p.exchange = Some(ex);
            p
        } else {
            let ex = layout.topic_exchange(layout.exchange_of(&msg.target));
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
}

/// How many deliveries a listener may hold per message its receiver runs at once, when
/// `rabbit_qos_prefetch_count` does not set the prefetch. One would make every delivery wait for
/// the ack of another to cross the network (measured: 16 casters at a server with 64 request
/// slots, prefetch 64 handled 30% fewer casts a second than 256; 256 and unlimited were alike).
pub const PREFETCH_PER_CREDIT: usize = 4;

struct AmqpAcker {
    acks: AckSender,
    tag: u64,
    /// Notifications: the listener's duplicate filter and this message's id, taken when it was
    /// received and settled here (remembered on ack).
    remember: Option<(Arc<Mutex<DuplicateFilter>>, Option<String>)>,
}

impl Acker for AmqpAcker {
    fn ack(&self) {
        if let Some((f, id)) = &self.remember {
            lock(f).finish(id.as_deref(), true);
        }
        self.acks.ack(self.tag);
    }

    fn requeue(&self) {
        if let Some((f, id)) = &self.remember {
            lock(f).finish(id.as_deref(), false);
        }
        self.acks.requeue(self.tag);
    }

    fn reject(&self) {
        if let Some((f, id)) = &self.remember {
            lock(f).finish(id.as_deref(), false);
        }
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

    fn liveness(&self) -> Liveness {
        self.consumer.liveness()
    }

    fn stop(&self) {
        self.consumer.stop();
    }
}

/// Reads an RPC request delivery into an [`Incoming`] (the envelope, then the request's
/// members; unknown extra members are ignored). Every delivery but a duplicate goes to the server, malformed ones too (it counts them, answers
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
        let replier = |a: ReplyAddress| shared.replier(a);
        if let Some(why) = inbound::content_type_refusal(inbound::content_type(&d)) {
            // Python rejects it unread: no reply either.
            let _ = tx.send(Incoming::malformed(why, None, acker));
            return Decision::Hold;
        }
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

/// Reads a notification delivery into an [`Incoming`]; malformed ones go to the
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
        if let Some(why) = inbound::content_type_refusal(inbound::content_type(&d)) {
            let _ = tx.send(Incoming::malformed(why, None, acker(None)));
            return Decision::Hold;
        }
        let incoming = match inbound::read_notification(&d.data, max_bytes) {
            Inbound::Malformed { why, .. } => Incoming::malformed(why, None, acker(None)),
            Inbound::Message(n) => {
                if !lock(&dups).begin(n.unique_id.as_deref()) {
                    // Already handled and acked (a redelivery after a lost connection), or
                    // another copy is being handled (its publisher sent it again). oslo
                    // leaves such a duplicate unacknowledged; here it is acked, or it would
                    // hold its delivery slot for the life of the connection.
                    tracing::debug!("duplicate notification dropped");
                    return Decision::Ack;
                }
                let remember = Some((dups.clone(), n.unique_id));
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
        for w in opts.warnings() {
            tracing::warn!("rabbit option not honoured: {w}");
        }
        let broker = Arc::new(Broker::new(url, opts));
        Ok(AmqpDriver {
            shared: Arc::new(Shared {
                at_least_once: false,
                publisher: Arc::new(Publisher::new(broker.clone())),
                probe: Arc::new(ReplyProbe::new(broker.clone())),
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
    // Written out rather than `async fn` (here and in `notify`): the message is built before
    // the future is, so the boxed future holds only the publisher's (an `async fn` would keep
    // the outgoing message, twice, beside it), and a box of at most about a kilobyte is the
    // allocator's fast path.
    fn cast<'a, 'f>(&'a self, msg: Outgoing) -> BoxFuture<'f, Result<(), MessagingError>>
    where
        'a: 'f,
        Self: 'f,
    {
        let mut p = match self.shared.request(&msg, None) {
            Ok(p) => p,
            Err(e) => return future::ready(Err(e)).boxed(),
        };
        let publisher = &self.shared.publisher;
        if self.shared.at_least_once {
            // Only the broker's verdict says whether a queue took it.
            p.wait = Wait::Confirmed;
            let undeliverable = Shared::undeliverable(&p);
            return publisher
                .publish(p)
                .map(move |r| match r? {
                    Routed::Delivered => Ok(()),
                    Routed::Returned => Err(undeliverable),
                })
                .boxed();
        }
        p.wait = self.shared.fire_and_track();
        publisher
            .publish(p)
            .map(|r| r.map(|(Routed::Delivered | Routed::Returned)| ()))
            .boxed()
    }

    async fn call(&self, msg: Outgoing) -> Result<Box<dyn ReplyWaiter>, MessagingError> {
        let deadline = msg.timeout.map(|t| Instant::now() + t);
        let rq = self.shared.reply_queue().await?;
        // The window's place first: nothing this future holds across an await is the request.
        let slot = self.shared.publisher.slot().await;
        let msg_id = wire::new_id();
        let call = CallInfo {
            msg_id: &msg_id,
            reply_q: &rq.name,
            call_monitor_timeout: msg.call_monitor_timeout,
        };
        let mut p = self.shared.request(&msg, Some(call))?;
        p.deadline = deadline;
        // On the confirm channel either way: a request the broker refuses (a quorum queue
        // without a leader) is sent again instead of vanishing; after the call's deadline it is
        // dropped quietly (the caller has its answer).
        p.quiet_expiry = true;
        p.waits_for_queue = true;
        let confirmed = Arc::new(std::sync::atomic::AtomicBool::new(false));
        p.confirmed = Some(confirmed.clone());
        if self.shared.at_least_once {
            // Confirmed and mandatory: a request nobody consumes ends the call at once.
            p.wait = Wait::Confirmed;
        } else {
            p.wait = Wait::Written;
        }
        // Only a mandatory request can come back returned.
        let undeliverable = p.mandatory.then(|| Shared::undeliverable(&p));
        // Waited for from before the request goes (no reply can come earlier), once it is
        // built (a request that could not be built leaves no waiter behind).
        let (tx, rx) = crate::amqp::reply_inbox::inbox();
        rq.wait_for(msg_id, tx);
        let confirm = self.shared.publisher.hand_over(p, slot);
        Ok(Box::new(AmqpWaiter {
            rx,
            confirm: Some(confirm),
            undeliverable,
            msg_id,
            reply_q: rq.name.clone(),
            waiters: rq.waiters.clone(),
            publisher: self.shared.publisher.clone(),
            confirmed,
        }))
    }

    async fn listen(
        &self,
        target: &Target,
        credit: usize,
    ) -> Result<Box<dyn Listener>, MessagingError> {
        let sh = &self.shared;
        let (topo, queues) = sh.layout().rpc_server(target)?;
        let (tx, rx) = mpsc::unbounded_channel();
        let consumer = Consumer::start(
            sh.broker.clone(),
            topo,
            queues,
            rpc_handler(sh.clone(), tx),
            sh.prefetch(credit),
        )
        .await?;
        Ok(Box::new(AmqpListener { rx, consumer }))
    }

    fn notify<'a, 'f>(&'a self, msg: Outgoing) -> BoxFuture<'f, Result<(), MessagingError>>
    where
        'a: 'f,
        Self: 'f,
    {
        let p = match self.shared.notification(msg) {
            Ok(p) => p,
            Err(e) => return future::ready(Err(e)).boxed(),
        };
        let publisher = &self.shared.publisher;
        // notify() waits at most `notify_max_wait`: for a place in the window, then for the
        // write (or the confirm). Accepted in time, the notification is kept until the broker
        // confirms it, even if notify() returns first.
        let max_wait = Duration::try_from_secs_f64(self.shared.opts().notify_max_wait)
            .unwrap_or(Duration::from_secs(10));
        publisher
            .publish_until(p, Some(Instant::now() + max_wait))
            .map(move |waited| match waited {
                Waited::Settled(r) => r.map(|_| ()),
                Waited::NoRoom => Err(publisher
                    .unreachable()
                    .unwrap_or_else(|| {
                        BrokerError::lost(format!(
                            "no room among the messages awaiting the broker within {max_wait:?}"
                        ))
                    })
                    .into()),
                Waited::Kept => {
                    tracing::debug!("notify() returns before the broker took the notification; it is kept and sent when the broker is back");
                    Ok(())
                }
            })
            .boxed()
    }

    async fn listen_notifications(
        &self,
        targets: &[Target],
        pool: Option<&str>,
        credit: usize,
    ) -> Result<Box<dyn Listener>, MessagingError> {
        let sh = &self.shared;
        let (topo, queues) = sh.layout().notification_listener(targets, pool)?;
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

    fn rabbit_options(&self) -> Option<&RabbitOptions> {
        Some(self.options())
    }

    /// The arguments are written to the wire as JSON text anyway: they come so.
    fn takes_json_args(&self) -> bool {
        true
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

    /// Each send's future is boxed once (the `Driver` and `Replier` traits return boxes), and
    /// glibc's allocator serves blocks up to 1,032 bytes from its per-thread cache; a larger
    /// box takes its slow path on every message. The futures are made, not polled: no broker
    /// is needed.
    #[tokio::test]
    async fn every_send_boxes_a_future_of_at_most_a_kilobyte() {
        const FAST: usize = 1024;
        let d = driver("rabbit://h/");
        let msg = || Outgoing {
            target: Target::topic("t"),
            ctxt: Default::default(),
            message: Default::default(),
            timeout: Some(Duration::from_secs(5)),
            args_json: None,
            call_monitor_timeout: None,
            retry: None,
        };
        let replier = d.shared.replier(ReplyAddress {
            msg_id: "m".into(),
            reply_q: "reply_q".into(),
        });
        let sizes = [
            ("cast", std::mem::size_of_val(&*d.cast(msg()))),
            ("call", std::mem::size_of_val(&*d.call(msg()))),
            ("notify", std::mem::size_of_val(&*d.notify(msg()))),
            (
                "reply",
                std::mem::size_of_val(&*replier.reply(Ok(serde_json::Value::Null))),
            ),
            ("heartbeat", std::mem::size_of_val(&*replier.heartbeat())),
        ];
        for (what, size) in sizes {
            assert!(size <= FAST, "{what}'s future is {size} bytes");
        }
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
                    args_json: None,
                    call_monitor_timeout: None,
                    retry: Some(retry),
                })
                .await
                .unwrap_err();
            acceptor.abort();
            assert_eq!(seen.load(Ordering::SeqCst), attempts, "retry {retry}: {e}");
            assert!(
                matches!(e, MessagingError::Broker(BrokerError::Unreachable { .. })),
                "{e:?}"
            );
            assert!(!e.to_string().contains("secret"));
        }
    }
}
