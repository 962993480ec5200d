//! The consuming side: one owner task per listener (and one for the reply queue) holds its own
//! connection and channel (MSG-AMQP-06, LESSON-09). It declares the topology, consumes, hands
//! each delivery to a handler, and is the only one to send acks and rejects: other tasks ask it
//! through [`AckSender`].
//!
//! When the connection breaks, the owner reconnects with oslo's backoff (forever, as oslo's
//! listeners do), declares the whole topology again and resumes every consumer (MSG-AMQP-05).
//! An ack for a delivery of the lost connection cannot be sent any more: the broker redelivers
//! that message, and the listener's duplicate filter recognises it.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use lapin::message::Delivery;
use lapin::options::{
    BasicAckOptions, BasicCancelOptions, BasicConsumeOptions, BasicQosOptions, BasicRejectOptions,
    QueueBindOptions, QueueDeleteOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{Channel, Connection};
use tokio::sync::{mpsc, oneshot, Notify};

use crate::amqp::ack_batch::{AckBatch, AckFrame, AckKind};
use crate::amqp::connection::{describe, op_error, Broker, HostId};
use crate::amqp::future_set::{FutureSet, StreamSet};
use crate::amqp::supervisor::supervise;
use crate::amqp::topology::Topology;
use crate::driver::Liveness;
use crate::error::{BrokerError, MessagingError};

/// What the owner does with a delivery once the handler has seen it.
pub(crate) enum Decision {
    /// Ack it now (RPC requests: before dispatch; replies).
    Ack,
    /// Reject it without requeue (not an oslo message).
    Reject,
    /// The handler keeps it and acks or requeues later through the [`AckSender`].
    Hold,
}

/// An ack, requeue or reject for the owner to send: `(kind, generation, delivery tag)`.
#[derive(Debug)]
struct AckCmd(AckKind, u64, u64);

/// What the owner's queue brings it.
#[derive(Debug)]
enum ToOwner {
    Ack(AckCmd),
    /// A stop or a close was asked ([`Asked`]).
    Look,
}

/// A stop or close asked of the owner. While consuming, the owner reads these flags on each turn
/// of its loop and is woken by [`ToOwner::Look`] on the queue it reads anyway (a `Notify`
/// waited on in that loop would take the notifier's lock on every delivery); while it connects
/// or pauses, the `Notify`s of [`Consumer`] wake it.
#[derive(Debug, Default)]
struct Asked {
    stop: AtomicBool,
    close: AtomicBool,
}

/// Sends acks and requeues to the owner of the channel a delivery came from.
#[derive(Debug, Clone)]
pub(crate) struct AckSender {
    tx: mpsc::UnboundedSender<ToOwner>,
    generation: u64,
}

impl AckSender {
    pub(crate) fn ack(&self, tag: u64) {
        let _ = self
            .tx
            .send(ToOwner::Ack(AckCmd(AckKind::Ack, self.generation, tag)));
    }
    pub(crate) fn requeue(&self, tag: u64) {
        let _ = self
            .tx
            .send(ToOwner::Ack(AckCmd(AckKind::Requeue, self.generation, tag)));
    }
    pub(crate) fn reject(&self, tag: u64) {
        let _ = self
            .tx
            .send(ToOwner::Ack(AckCmd(AckKind::Reject, self.generation, tag)));
    }
}

/// The handler of one listener's deliveries.
pub(crate) type Handler = Box<dyn FnMut(Delivery, &AckSender) -> Decision + Send>;

/// A running owner. [`Consumer::stop`] cancels the consumers but keeps the channel for the acks
/// of messages still being handled; dropping the `Consumer` closes everything.
pub(crate) struct Consumer {
    stop: Arc<Notify>,
    close: Arc<Notify>,
    asked: Arc<Asked>,
    to_owner: mpsc::UnboundedSender<ToOwner>,
    live: Liveness,
}

impl Consumer {
    /// Connects, sets up `topo` and starts consuming `queues` with `handler`, at most
    /// `prefetch` unacknowledged deliveries at a time (0: no limit). Returns once the first
    /// setup worked, or with its error (broker unreachable, login refused, a declare the
    /// broker refused): a listener that cannot start says so instead of retrying silently.
    pub(crate) async fn start(
        broker: Arc<Broker>,
        topo: Topology,
        queues: Vec<String>,
        handler: Handler,
        prefetch: u16,
    ) -> Result<Consumer, MessagingError> {
        let stop = Arc::new(Notify::new());
        let close = Arc::new(Notify::new());
        let (ready_tx, ready_rx) = oneshot::channel();
        let asked = Arc::new(Asked::default());
        let (ack_tx, ack_rx) = mpsc::unbounded_channel::<ToOwner>();
        let to_owner = ack_tx.clone();
        let live = Liveness::new(false);
        let mut state = Owner {
            live: live.clone(),
            broker,
            topo,
            queues,
            prefetch,
            handler: Some(handler),
            stop: stop.clone(),
            close: close.clone(),
            asked: asked.clone(),
            ready: Some(ready_tx),
            ack_tx,
            ack_rx,
            generation: 0,
            stream_next: None,
        };
        tokio::spawn(async move {
            supervise("listener", &mut state, run_owner, Duration::from_secs(1)).await;
        });
        match ready_rx.await {
            Ok(Ok(())) => Ok(Consumer {
                stop,
                close,
                asked,
                to_owner,
                live,
            }),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(MessagingError::Closed),
        }
    }

    /// Cancels the consumers: no new deliveries; the handler is dropped (so a listener's queue
    /// of received messages ends), acks still go out.
    pub(crate) fn stop(&self) {
        self.ask(false);
    }

    /// Asks the owner to stop (and, with `close`, to close), wherever it is: on its loop's
    /// next turn ([`Asked`]), or while it connects or pauses (the `Notify`s).
    fn ask(&self, close: bool) {
        self.asked.stop.store(true, Ordering::Release);
        if close {
            self.asked.close.store(true, Ordering::Release);
        }
        let _ = self.to_owner.send(ToOwner::Look);
        self.stop.notify_one();
        if close {
            self.close.notify_one();
        }
    }

    /// Up while connected with its consumers registered; down while reconnecting and once
    /// stopped.
    pub(crate) fn liveness(&self) -> Liveness {
        self.live.clone()
    }
}

impl Drop for Consumer {
    /// Deletes the `delete_on_stop` queues and closes the connection.
    fn drop(&mut self) {
        self.ask(true);
    }
}

/// One queue's deliveries, ending with `None` when the broker cancels its consumer (the queue
/// deleted, its node lost): that ends the session, as a lost connection does, so that no
/// queue is left unconsumed while the others go on.
type Deliveries = futures::stream::BoxStream<'static, Option<Result<Delivery, lapin::Error>>>;

fn until_cancelled(c: lapin::Consumer) -> Deliveries {
    c.map(Some)
        .chain(futures::stream::once(async { None }))
        .boxed()
}

struct Session {
    conn: Connection,
    host: HostId,
    channel: Channel,
    consumers: StreamSet<Deliveries>,
    tags: Vec<String>,
}

/// Where a stream queue is read from: after the last delivery seen, or, at first (and after
/// the broker cancelled the consumer: the stream may have been deleted), from the last chunk,
/// as oslo's consumers do.
fn stream_offset(next: Option<i64>) -> AMQPValue {
    match next {
        Some(n) => AMQPValue::LongLongInt(n),
        None => AMQPValue::LongString("last".into()),
    }
}

/// The offset after a stream delivery (its `x-stream-offset` header plus one), if it is one.
fn next_stream_offset(d: &Delivery) -> Option<i64> {
    let headers = d.properties.headers().as_ref()?;
    let offset = headers.inner().get("x-stream-offset")?;
    match offset {
        AMQPValue::LongLongInt(n) => n.checked_add(1),
        AMQPValue::LongInt(n) => i64::from(*n).checked_add(1),
        AMQPValue::LongUInt(n) => i64::from(*n).checked_add(1),
        _ => None,
    }
}

/// Declares the topology's exchanges, queues and bindings; the failed step's error.
async fn declare(ch: &Channel, topo: &Topology) -> Result<(), MessagingError> {
    for ex in &topo.exchanges {
        ex.declare(ch)
            .await
            .map_err(|e| op_error("exchange.declare", &e))?;
    }
    for q in &topo.queues {
        q.declare(ch)
            .await
            .map_err(|e| op_error("queue.declare", &e))?;
    }
    for (q, ex, key) in &topo.bindings {
        ch.queue_bind(
            q.as_str().into(),
            ex.as_str().into(),
            key.as_str().into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .map_err(|e| op_error("queue.bind", &e))?;
    }
    Ok(())
}

/// A listening channel, with the prefetch (MSG-AMQP-10: listen channels only).
async fn listen_channel(conn: &Connection, prefetch: u16) -> Result<Channel, MessagingError> {
    let ch = conn
        .create_channel()
        .await
        .map_err(|e| op_error("channel.open", &e))?;
    if prefetch > 0 {
        ch.basic_qos(prefetch, BasicQosOptions { global: false })
            .await
            .map_err(|e| op_error("basic.qos", &e))?;
    }
    Ok(ch)
}

/// Whether the broker refused a declare because the exchange or queue exists with the other
/// durability (another service declared the shared control exchange with other options).
fn durability_conflict(e: &MessagingError) -> bool {
    matches!(e, MessagingError::Broker(BrokerError::ChannelClosed { code: 406, reason, .. })
        if reason.contains("inequivalent arg 'durable'"))
}

async fn setup(
    broker: &Broker,
    topo: &mut Topology,
    queues: &[String],
    prefetch: u16,
    stream_next: Option<i64>,
) -> Result<Session, MessagingError> {
    let (conn, host) = broker.connect().await?;
    let mut ch = listen_channel(&conn, prefetch).await?;
    if let Err(e) = declare(&ch, topo).await {
        if !durability_conflict(&e) {
            return Err(e);
        }
        // oslo's answer (MSG-AMQP-03): declare it all non-durable, to match what exists, and
        // keep doing so on every reconnect. A quorum queue cannot be non-durable: that fails.
        tracing::warn!(error = %e, "an exchange or queue exists with another durability than configured (another service declared it with other options); declaring the listener's exchanges and queues non-durable, as oslo does");
        *topo = topo.non_durable();
        ch = listen_channel(&conn, prefetch).await?;
        declare(&ch, topo).await?;
    }
    let mut consumers = StreamSet::new();
    let mut tags = Vec::new();
    for q in queues {
        let args = if topo.stream.as_ref() == Some(q) {
            let mut t = FieldTable::default();
            t.insert("x-stream-offset".into(), stream_offset(stream_next));
            t
        } else {
            broker.opts.consumer_args()
        };
        let c = ch
            .basic_consume(
                q.as_str().into(),
                "".into(),
                BasicConsumeOptions::default(),
                args,
            )
            .await
            .map_err(|e| op_error("basic.consume", &e))?;
        tags.push(c.tag().to_string());
        consumers.push(until_cancelled(c));
    }
    Ok(Session {
        conn,
        host,
        channel: ch,
        consumers,
        tags,
    })
}

/// Everything the owner keeps across a restart by its supervisor.
struct Owner {
    /// Up while consuming.
    live: Liveness,
    broker: Arc<Broker>,
    topo: Topology,
    queues: Vec<String>,
    prefetch: u16,
    /// `None` once stopped.
    handler: Option<Handler>,
    stop: Arc<Notify>,
    close: Arc<Notify>,
    asked: Arc<Asked>,
    ready: Option<oneshot::Sender<Result<(), MessagingError>>>,
    ack_tx: mpsc::UnboundedSender<ToOwner>,
    ack_rx: mpsc::UnboundedReceiver<ToOwner>,
    /// Which connection deliveries came from; acks of an older one are not sent.
    generation: u64,
    /// Where to read the topology's stream queue from after a reconnect (`None`: its last
    /// chunk).
    stream_next: Option<i64>,
}

fn run_owner(
    o: &mut Owner,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send + '_>> {
    Box::pin(owner(o))
}

/// Log budget of handler panics (a bug, but one delivery after another must not flood the log).
static HANDLER_PANIC_LOG: crate::LogBudget = crate::LogBudget::new(10);

/// Runs the handler on one delivery; a panic rejects the delivery instead of ending the owner
/// (which would bring the same delivery back, again and again).
fn handle(h: &mut Handler, d: Delivery, acks: &AckSender) -> Decision {
    match catch_unwind(AssertUnwindSafe(|| h(d, acks))) {
        Ok(decision) => decision,
        Err(p) => {
            if let Some(suppressed) = HANDLER_PANIC_LOG.allow() {
                let msg = osier_green::panic_message(&*p);
                tracing::error!(panic = %crate::Untrusted(&msg), suppressed, "the delivery handler panicked; the delivery is rejected (a bug: please report it)");
            }
            Decision::Reject
        }
    }
}

async fn owner(o: &mut Owner) {
    // Down until consuming (also after a restart by the supervisor).
    o.live.set(false);
    let mut attempt: u32 = 0;
    // Set while reconnecting after a lost connection (not on the first start).
    let mut lost = false;
    'reconnect: loop {
        // A stop counts once start() has returned.
        let started = o.ready.is_none();
        let connecting = setup(&o.broker, &mut o.topo, &o.queues, o.prefetch, o.stream_next);
        let Some(setup) =
            unless_stopped(&o.stop, &o.close, &mut o.handler, started, connecting).await
        else {
            return;
        };
        let mut s = match setup {
            Ok(s) => s,
            Err(e) => {
                if let Some(r) = o.ready.take() {
                    let _ = r.send(Err(e));
                    return;
                }
                let wait = o.broker.opts.reconnect_wait(attempt);
                attempt += 1;
                tracing::warn!(error = %e, retry_in_s = wait.as_secs_f64(), queues = ?o.queues, "listener cannot reach the broker");
                let pause = tokio::time::sleep(wait);
                match unless_stopped(&o.stop, &o.close, &mut o.handler, true, pause).await {
                    Some(()) => continue 'reconnect,
                    None => return,
                }
            }
        };
        o.live.set(true);
        if let Some(r) = o.ready.take() {
            let _ = r.send(Ok(()));
        } else if lost {
            tracing::info!(host = %o.broker.shown(s.host), queues = ?o.queues, "listener reconnected to the broker; consumers resumed");
            crate::metrics::reconnected("listener");
        }
        attempt = 0;
        o.generation += 1;
        let generation = o.generation;
        let acks = AckSender {
            tx: o.ack_tx.clone(),
            generation,
        };
        let mut pending_acks = FutureSet::new();
        // This channel's deliveries and the settlements not yet sent (a new channel's tags
        // start again from 1).
        let mut batch = AckBatch::new();
        loop {
            if o.asked.close.load(Ordering::Acquire) {
                o.live.set(false);
                while !pending_acks.is_empty() {
                    pending_acks.next().await;
                }
                // Acks asked for before the close still go out.
                while let Ok(cmd) = o.ack_rx.try_recv() {
                    if let ToOwner::Ack(cmd) = cmd {
                        settle(&mut batch, generation, cmd);
                    }
                }
                for f in batch.drain() {
                    ack_fut(&s.channel, f).await;
                }
                if o.handler.is_some() {
                    delete_queues(&s.channel, &o.topo.delete_on_stop).await;
                }
                let _ = s.conn.close(200, "OK".into()).await;
                return;
            }
            if o.handler.is_some() && o.asked.stop.load(Ordering::Acquire) {
                for t in &s.tags {
                    let _ = s
                        .channel
                        .basic_cancel(t.as_str().into(), BasicCancelOptions::default())
                        .await;
                }
                // Deleted before the handler goes, so a listener that saw its last
                // message knows the queues are gone too.
                delete_queues(&s.channel, &o.topo.delete_on_stop).await;
                o.handler = None;
                o.live.set(false);
            }
            tokio::select! {
                // Deliveries before acks.
                biased;
                d = s.consumers.next(), if o.handler.is_some() => match (d.flatten(), o.handler.as_mut()) {
                    (Some(Ok(d)), Some(h)) => {
                        let tag = d.delivery_tag;
                        if o.topo.stream.is_some() {
                            if let Some(next) = next_stream_offset(&d) {
                                o.stream_next = Some(next);
                            }
                        }
                        match handle(h, d, &acks) {
                            Decision::Ack => batch.settled_on_arrival(AckKind::Ack, tag),
                            Decision::Reject => batch.settled_on_arrival(AckKind::Reject, tag),
                            // Registered before any settlement of it can be read: those come
                            // through the queue this loop reads next.
                            Decision::Hold => batch.held(tag),
                        }
                    }
                    // Never settled: a later multiple ack must not cover it.
                    (Some(Ok(d)), None) => batch.held(d.delivery_tag),
                    (Some(Err(e)), _) => {
                        o.live.set(false);
                        o.broker.lost(s.host);
                        let delay = o.broker.opts.first_reconnect_delay();
                        tracing::warn!(host = %o.broker.shown(s.host), error = %describe(&e), reconnect_in_s = delay.as_secs_f64(), "listener lost its connection to the broker");
                        let _ = s.conn.close(320, "reconnecting".into()).await;
                        lost = true;
                        if pause_before_reconnect(o, delay).await {
                            continue 'reconnect;
                        }
                        return;
                    }
                    (None, _) => {
                        o.live.set(false);
                        // A deleted stream starts again: read it from its last chunk.
                        o.stream_next = None;
                        let delay = o.broker.opts.first_reconnect_delay();
                        tracing::warn!(host = %o.broker.shown(s.host), reconnect_in_s = delay.as_secs_f64(), "the broker cancelled a consumer (its queue deleted, or its node lost); reconnecting to declare and consume everything again");
                        let _ = s.conn.close(320, "reconnecting".into()).await;
                        lost = true;
                        if pause_before_reconnect(o, delay).await {
                            continue 'reconnect;
                        }
                        return;
                    }
                },
                Some(cmd) = o.ack_rx.recv() => {
                    // `Look`: the flags are read at the top of the loop.
                    if let ToOwner::Ack(cmd) = cmd {
                        settle(&mut batch, generation, cmd);
                    }
                }
                // Polled only once no delivery and no settlement is waiting: what was settled
                // since the last time goes out in as few frames as the tags allow
                // (amqp/ack_batch.rs), their futures first polled, so their frames made, in
                // this order, in the same turn.
                () = std::future::poll_fn(|cx| {
                    for f in batch.drain() {
                        pending_acks.push(ack_fut(&s.channel, f));
                    }
                    pending_acks.poll_next(cx)
                }), if batch.has_ready() || !pending_acks.is_empty() => {}
            }
        }
    }
}

/// Waits `delay` (oslo's `kombu_reconnect_delay`) before reconnecting after a lost connection,
/// so a cluster can move the lost node's queues first. False when the listener was stopped or
/// closed meanwhile: the owner ends.
async fn pause_before_reconnect(o: &mut Owner, delay: Duration) -> bool {
    let pause = tokio::time::sleep(delay);
    unless_stopped(&o.stop, &o.close, &mut o.handler, true, pause)
        .await
        .is_some()
}

/// Runs `f` unless the listener is closed, or (with `stoppable`) stopped, first: `None` then.
/// A stop while (re)connecting or pausing drops the handler: nothing is consumed any more, so
/// the listener's stream ends and its server's `wait` returns, broker or no broker.
async fn unless_stopped<F: std::future::Future>(
    stop: &Notify,
    close: &Notify,
    handler: &mut Option<Handler>,
    stoppable: bool,
    f: F,
) -> Option<F::Output> {
    tokio::select! {
        r = f => Some(r),
        _ = stop.notified(), if stoppable && handler.is_some() => {
            *handler = None;
            None
        }
        _ = close.notified() => None,
    }
}

async fn delete_queues(ch: &Channel, queues: &[String]) {
    for q in queues {
        if let Err(e) = ch
            .queue_delete(q.as_str().into(), QueueDeleteOptions::default())
            .await
        {
            tracing::debug!(queue = %q, error = %e, "could not delete the queue on stop");
        }
    }
}

/// The frame `f` on `ch`: held in the owner's set as it is, not boxed.
fn ack_fut(ch: &Channel, f: AckFrame) -> impl std::future::Future<Output = ()> + Send {
    let ch = ch.clone();
    async move {
        let r = match f.kind {
            AckKind::Ack => {
                ch.basic_ack(
                    f.tag,
                    BasicAckOptions {
                        multiple: f.multiple,
                    },
                )
                .await
            }
            AckKind::Reject => {
                ch.basic_reject(f.tag, BasicRejectOptions { requeue: false })
                    .await
            }
            AckKind::Requeue => {
                ch.basic_reject(f.tag, BasicRejectOptions { requeue: true })
                    .await
            }
        };
        if let Err(e) = r {
            tracing::debug!(error = %e, "ack not sent (connection lost): the broker redelivers");
        }
    }
}

/// Log budget of deliveries settled twice (a bug, but not one to flood the log with).
static SETTLED_TWICE_LOG: crate::LogBudget = crate::LogBudget::new(10);

/// Puts the settlement `cmd` asks for in `batch`, unless its delivery came from a lost
/// connection (the broker redelivers those) or was settled already: a second frame for one
/// delivery would make the broker close the channel.
fn settle(batch: &mut AckBatch, generation: u64, cmd: AckCmd) {
    let AckCmd(kind, gen, tag) = cmd;
    if gen != generation {
        tracing::debug!(
            tag,
            "ack for a delivery of a lost connection dropped: the broker redelivers it"
        );
        return;
    }
    if !batch.settle_held(kind, tag) {
        if let Some(suppressed) = SETTLED_TWICE_LOG.allow() {
            tracing::warn!(
                tag,
                ?kind,
                suppressed,
                "a delivery was settled twice (a bug: please report it); only its first settlement was sent"
            );
        }
    }
}
