//! The publishing side: one owner task per driver holds the sending connection and its one
//! channel (LESSON-09); callers talk to it through a queue.
//!
//! The owner puts the channel in confirm mode and keeps many publishes in flight: it writes each
//! message as soon as it arrives and matches the broker's confirms as they come back, so a slow
//! confirm never holds the next publish (measured: ten times the rate of one confirm at a time).
//!
//! Every message stays with the owner until the broker confirms it. If the connection breaks
//! first, the owner reconnects (failover and backoff of [`Broker::connect`]), declares again what
//! it needs, and publishes the message again: delivery to the broker is at-least-once, and
//! receivers drop the duplicates by `_unique_id` (MSG-AMQP-07), as with oslo. A message the broker
//! refuses (a negative confirm: a quorum queue without a leader while its cluster recovers from
//! a lost node) is kept as well and sent again on a new connection after a pause, within its
//! `retry` and deadline; the pause before the first reconnect after a loss is oslo's
//! `kombu_reconnect_delay`. What the caller waits for depends on the message kind; see [`Wait`]. A message whose confirm never comes (a nack,
//! or re-sends used up) after its caller stopped waiting is logged at error level and counted;
//! [`Publisher::flush`] waits for every outstanding confirm and reports those failures.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use futures::FutureExt;
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions, QueueBindOptions};
use lapin::types::FieldTable;
use lapin::Confirmation;
use lapin::{BasicProperties, Channel, Connection};
use tokio::sync::{mpsc, oneshot, Notify};
use tokio::time::Instant;

use crate::amqp::connection::{describe, is_channel_error, op_error, Broker, HostId};
use crate::amqp::future_set::FutureSet;
use crate::amqp::supervisor::supervise;
use crate::amqp::topology::{ExchangeSpec, QueueSpec};
use crate::amqp::wire;
use crate::error::{BrokerError, MessagingError};
use crate::lock::lock;

/// What happened to a confirmed message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Routed {
    /// The broker took it (and routed it, if it was mandatory).
    Delivered,
    /// Mandatory and unroutable: the broker returned it (`Basic.Return`).
    Returned,
}

/// What [`Publisher::publish`] waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Wait {
    /// The broker's confirm (replies, which must know about `Basic.Return`; casts and
    /// notifications with `rabbit_wait_for_confirms`).
    Confirmed,
    /// The message written to a live channel; the owner keeps it until the broker confirms it
    /// and re-sends it after a lost connection.
    Written,
}

/// One message for the owner.
pub(crate) struct Publish {
    pub wait: Wait,
    /// Once its deadline passed, the message is dropped without an error: a call request, whose
    /// caller already has its answer (a timeout, or the broker's error).
    pub quiet_expiry: bool,
    /// Delivered even when its sender stops waiting: a notification that `notify()` accepted
    /// and returned from before the broker took it.
    pub keep_when_abandoned: bool,
    /// Set once the broker confirmed the message (a call request's waiter reads it to tell a
    /// broker that never took the request from a server that never answered).
    pub confirmed: Option<Arc<std::sync::atomic::AtomicBool>>,
    /// A call request: its routing key names the queue it goes to. Sent again after a lost
    /// connection, the request waits until that queue exists: the server may not have declared
    /// it again yet on the node it reconnected to, and the broker would drop the request
    /// unrouted.
    pub waits_for_queue: bool,
    /// Not sent before this (waiting for its destination queue).
    not_before: Option<Instant>,
    pub exchange: Option<ExchangeSpec>,
    pub exchange_name: String,
    pub routing_key: String,
    pub queue: Option<(QueueSpec, String)>,
    pub body: Vec<u8>,
    pub mandatory: bool,
    pub expiration: Option<Duration>,
    /// oslo's retry: `None` forever, `Some(n)` at most n re-sends after a lost connection.
    pub retry: Option<i32>,
    pub deadline: Option<Instant>,
    done: Option<oneshot::Sender<Result<Routed, MessagingError>>>,
    resent: u32,
    /// A place in the publisher's window, given back when the message is settled.
    _slot: Option<tokio::sync::OwnedSemaphorePermit>,
    /// Counts the message as outstanding for [`Publisher::flush`] until it is dropped, however
    /// it ends (settled, abandoned, or lost with an owner that panicked).
    _ticket: Option<Ticket>,
}

/// A message on its way through the owner: boxed once when handed over, so that the owner's
/// queue, its pending list and the future of its confirm move a pointer, not 300 bytes, at
/// each step.
type Queued = Box<Publish>;

impl Publish {
    pub(crate) fn new(exchange_name: String, routing_key: String, body: Vec<u8>) -> Self {
        Publish {
            wait: Wait::Confirmed,
            quiet_expiry: false,
            keep_when_abandoned: false,
            confirmed: None,
            waits_for_queue: false,
            not_before: None,
            exchange: None,
            exchange_name,
            routing_key,
            queue: None,
            body,
            mandatory: false,
            expiration: None,
            retry: None,
            deadline: None,
            done: None,
            resent: 0,
            _slot: None,
            _ticket: None,
        }
    }

    /// Every name the broker gets for `p` fits AMQP's short string; a crafted reply queue
    /// name (or a bug) is a typed error, never a panic of the owner.
    fn check_names(&self) -> Result<(), MessagingError> {
        let names = [
            Some(self.exchange_name.as_str()),
            Some(self.routing_key.as_str()),
            self.exchange.as_ref().map(|ex| ex.name.as_str()),
            self.queue.as_ref().map(|(q, _)| q.name.as_str()),
            self.queue.as_ref().map(|(_, key)| key.as_str()),
        ];
        match names
            .into_iter()
            .flatten()
            .find(|n| n.len() > wire::MAX_NAME_BYTES)
        {
            Some(n) => Err(BrokerError::NameTooLong {
                name: format!("{:?}", crate::Untrusted(n)),
                len: n.len(),
            }
            .into()),
            None => Ok(()),
        }
    }

    /// Tells the caller, if it still waits. Returns false when nobody heard it.
    fn tell(&mut self, r: Result<Routed, MessagingError>) -> bool {
        match self.done.take() {
            Some(d) => d.send(r).is_ok(),
            None => false,
        }
    }

    /// Nobody waits for it any more and it need not be delivered (a call that timed out).
    fn abandoned(&self) -> bool {
        !self.keep_when_abandoned && self.done.as_ref().is_some_and(|d| d.is_closed())
    }

    fn expired(&self) -> bool {
        self.deadline.is_some_and(|d| Instant::now() >= d)
    }

    /// oslo's `retry` N allows N retries, so N + 1 tries (MSG-RPC-07); `resent` counts the
    /// failed tries so far.
    fn may_resend(&self) -> bool {
        !matches!(self.retry, Some(r) if r >= 0 && self.resent > r as u32) && !self.expired()
    }
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

/// Messages handed to the owner and not yet confirmed, and failures nobody heard about.
#[derive(Default)]
pub(crate) struct Tracker {
    outstanding: AtomicUsize,
    lost: AtomicUsize,
    idle: Notify,
}

/// One outstanding message of a [`Tracker`].
pub(crate) struct Ticket(Arc<Tracker>);

impl Ticket {
    fn new(t: &Arc<Tracker>) -> Self {
        t.outstanding.fetch_add(1, Ordering::AcqRel);
        Ticket(t.clone())
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        if self.0.outstanding.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}

/// How many messages may be handed over and not yet settled (confirmed, or written for call
/// requests). Senders wait beyond it: memory stays bounded when the broker is slow or gone, and
/// lapin's confirm bookkeeping, which scans every pending confirm on each multiple-ack, stays
/// cheap (measured: 6% of the CPU of 16 casters without a bound).
pub(crate) const WINDOW: usize = 512;

/// The handle: cheap to share; the owner task starts on first use, on the caller's runtime.
pub(crate) struct Publisher {
    broker: Arc<Broker>,
    tx: OnceLock<mpsc::UnboundedSender<Queued>>,
    tracker: Arc<Tracker>,
    window: Arc<tokio::sync::Semaphore>,
    /// Why the owner has no connection, while it has none.
    unreachable: Arc<std::sync::Mutex<Option<BrokerError>>>,
}

impl Publisher {
    pub(crate) fn new(broker: Arc<Broker>) -> Self {
        Publisher {
            broker,
            tx: OnceLock::new(),
            tracker: Arc::new(Tracker::default()),
            window: Arc::new(tokio::sync::Semaphore::new(WINDOW)),
            unreachable: Arc::new(std::sync::Mutex::new(None)),
        }
    }

    /// Why the publisher cannot reach the broker right now (`None` while it is connected, or
    /// before it first tried).
    pub(crate) fn unreachable(&self) -> Option<BrokerError> {
        lock(&self.unreachable).clone()
    }

    fn sender(&self) -> &mpsc::UnboundedSender<Queued> {
        self.tx.get_or_init(|| {
            let (tx, rx) = mpsc::unbounded_channel();
            let mut state = Owner {
                broker: self.broker.clone(),
                rx,
                tracker: self.tracker.clone(),
                unreachable: self.unreachable.clone(),
            };
            tokio::spawn(async move {
                supervise("publisher", &mut state, run_owner, Duration::from_secs(1)).await;
            });
            tx
        })
    }

    /// A place in the window, waited for when the window is full. Apart from
    /// [`hand_over`](Self::hand_over) so that a call can take it before building its request:
    /// then no future holds the request while it waits.
    pub(crate) async fn slot(&self) -> Slot {
        // The semaphore is never closed, so this only waits.
        Slot(self.window.clone().acquire_owned().await.ok())
    }

    /// Hands `p` to the owner in the place `slot`; the receiver resolves as `p.wait` says, or
    /// with an error once the retries or the deadline are used up.
    pub(crate) fn hand_over(
        &self,
        p: Publish,
        slot: Slot,
    ) -> oneshot::Receiver<Result<Routed, MessagingError>> {
        let (tx, rx) = oneshot::channel();
        let mut p = Box::new(p);
        p.done = Some(tx);
        p._slot = slot.0;
        p._ticket = Some(Ticket::new(&self.tracker));
        if let Err(mpsc::error::SendError(mut p)) = self.sender().send(p) {
            p.tell(Err(MessagingError::Closed));
        }
        rx
    }

    /// Waits until every message handed over so far is confirmed by the broker (or failed).
    /// Fails if a message whose sender had stopped waiting could not be delivered since the
    /// last flush.
    pub(crate) async fn flush(&self) -> Result<(), MessagingError> {
        loop {
            let idle = self.tracker.idle.notified();
            tokio::pin!(idle);
            idle.as_mut().enable();
            if self.tracker.outstanding.load(Ordering::Acquire) == 0 {
                break;
            }
            idle.await;
        }
        match self.tracker.lost.swap(0, Ordering::AcqRel) {
            0 => Ok(()),
            n => Err(BrokerError::lost(format!(
                "{n} message(s) handed to the transport were not confirmed by the broker"
            ))
            .into()),
        }
    }

    /// Publishes and waits for the broker's confirm (or `p.wait`'s outcome), at most until
    /// the message's deadline.
    ///
    /// Not an `async fn`, here and in [`publish_until`](Self::publish_until): an `async fn`
    /// keeps its arguments twice in its future (as given, and moved into its body), and a
    /// message is 300 bytes; each sender's future is boxed once, and a box of at most about a
    /// kilobyte is the allocator's fast path.
    pub(crate) fn publish(
        &self,
        p: Publish,
    ) -> impl std::future::Future<Output = Result<Routed, MessagingError>> + Send + '_ {
        // Mapped, not awaited in an `async` block: a future held there and awaited is kept
        // twice.
        self.publish_until(p, None).map(|waited| match waited {
            Waited::Settled(r) => r,
            Waited::NoRoom | Waited::Kept => Err(BrokerError::lost(
                "the message could not be confirmed by the broker in time",
            )
            .into()),
        })
    }

    /// Publishes and waits for the outcome until `until` or the message's deadline, whichever
    /// comes first: first for a place in the window, then for what `p.wait` asks.
    pub(crate) fn publish_until(
        &self,
        p: Publish,
        until: Option<Instant>,
    ) -> impl std::future::Future<Output = Waited> + Send + '_ {
        let until = match (until, p.deadline) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        async move {
            // A place taken at once when the window has room, as it mostly has: then the
            // outcome is the only wait, under one timer (a full window makes two).
            let slot = match self.window.clone().try_acquire_owned() {
                Ok(permit) => Slot(Some(permit)),
                Err(_) => match within(until, self.slot()).await {
                    Ok(slot) => slot,
                    Err(_) => return Waited::NoRoom,
                },
            };
            match within(until, self.hand_over(p, slot)).await {
                Ok(r) => Waited::Settled(r.unwrap_or(Err(MessagingError::Closed))),
                Err(_) => Waited::Kept,
            }
        }
    }
}

/// A place in a publisher's window ([`Publisher::slot`]), given back when the message handed
/// over in it is settled, or when it is dropped unused.
pub(crate) struct Slot(Option<tokio::sync::OwnedSemaphorePermit>);

/// What [`Publisher::publish_until`] saw before its time ran out.
pub(crate) enum Waited {
    /// The message's outcome.
    Settled(Result<Routed, MessagingError>),
    /// The window had no room in time: the message was not taken.
    NoRoom,
    /// Taken, and not yet settled: the publisher keeps it (until its own deadline, or
    /// for good with `keep_when_abandoned`).
    Kept,
}

/// `f`, given until `until` (for ever without one).
async fn within<F: std::future::Future>(
    until: Option<Instant>,
    f: F,
) -> Result<F::Output, tokio::time::error::Elapsed> {
    match until {
        Some(t) => tokio::time::timeout_at(t, f).await,
        None => Ok(f.await),
    }
}

struct Link {
    conn: Connection,
    host: HostId,
    /// Which of the owner's connections this is: a failure of an older one's message says
    /// nothing about this one.
    generation: u64,
    channel: Channel,
    /// Declared on this connection: exchanges, and queues with their bindings (queue name to
    /// `(exchange, key)` pairs: looked up by the queue's name, nothing formatted per message).
    exchanges: HashSet<String>,
    declared: HashMap<String, Vec<(String, String)>>,
}

/// How often the link's connection state is looked at: a link that dies while nothing is
/// being sent (an I/O error, missed heartbeats, a close by the broker) is noticed within this,
/// not on the next publish, which would then wait `kombu_reconnect_delay` first.
const LINK_CHECK: Duration = Duration::from_millis(500);

async fn open(broker: &Broker, generation: u64) -> Result<Link, MessagingError> {
    let (conn, host) = broker.connect().await?;
    let channel = conn
        .create_channel()
        .await
        .map_err(|e| op_error("channel.open", &e))?;
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .map_err(|e| op_error("confirm.select", &e))?;
    Ok(Link {
        conn,
        host,
        generation,
        channel,
        exchanges: HashSet::new(),
        declared: HashMap::new(),
    })
}

/// Declares what `p` needs on this connection, once.
async fn prepare(link: &mut Link, p: &Publish) -> Result<(), lapin::Error> {
    if let Some(ex) = &p.exchange {
        if !link.exchanges.contains(&ex.name) {
            ex.declare(&link.channel).await?;
            link.exchanges.insert(ex.name.clone());
        }
    }
    if let Some((q, key)) = &p.queue {
        let bound = link
            .declared
            .get(&q.name)
            .is_some_and(|b| b.iter().any(|(ex, k)| *ex == p.exchange_name && k == key));
        if !bound {
            q.declare(&link.channel).await?;
            link.channel
                .queue_bind(
                    q.name.as_str().into(),
                    p.exchange_name.as_str().into(),
                    key.as_str().into(),
                    QueueBindOptions::default(),
                    FieldTable::default(),
                )
                .await?;
            link.declared
                .entry(q.name.clone())
                .or_default()
                .push((p.exchange_name.clone(), key.clone()));
        }
    }
    Ok(())
}

/// Writes `p` and returns the future of its confirm (held in the owner's set as it is, not
/// boxed).
fn send(
    link: &Link,
    mut p: Queued,
) -> impl std::future::Future<Output = (Queued, Result<Confirmation, lapin::Error>, u64)> + Send {
    let generation = link.generation;
    let ch = link.channel.clone();
    async move {
        let written = ch
            .basic_publish(
                p.exchange_name.as_str().into(),
                p.routing_key.as_str().into(),
                BasicPublishOptions {
                    mandatory: p.mandatory,
                    immediate: false,
                },
                &p.body,
                properties(p.expiration),
            )
            .await;
        let r = match written {
            Ok(confirm) => {
                if p.wait == Wait::Written {
                    p.tell(Ok(Routed::Delivered));
                }
                confirm.await
            }
            Err(e) => Err(e),
        };
        (p, r, generation)
    }
}

/// The final outcome of `p`: its caller hears it if it still waits; otherwise a failure is
/// logged and counted for [`Publisher::flush`].
fn settle(mut p: Queued, r: Result<Routed, MessagingError>, tracker: &Tracker) {
    if let Err(e) = &r {
        if !p.tell(r.clone()) {
            tracing::error!(
                exchange = %crate::Untrusted(&p.exchange_name),
                routing_key = %crate::Untrusted(&p.routing_key),
                error = %e,
                "a message handed to the transport was not delivered to the broker"
            );
            tracker.lost.fetch_add(1, Ordering::AcqRel);
        }
    } else {
        if let Some(c) = &p.confirmed {
            c.store(true, Ordering::Release);
        }
        p.tell(r);
    }
}

/// What the owner keeps across a restart by its supervisor.
struct Owner {
    broker: Arc<Broker>,
    rx: mpsc::UnboundedReceiver<Queued>,
    tracker: Arc<Tracker>,
    unreachable: Arc<std::sync::Mutex<Option<BrokerError>>>,
}

fn run_owner(
    o: &mut Owner,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send + '_>> {
    Box::pin(owner(&o.broker, &mut o.rx, &o.tracker, &o.unreachable))
}

/// When the owner may connect again, and whether the next connection follows a lost one.
#[derive(Default)]
struct Reconnect {
    /// No connect before this (after a lost connection, a nack, or a failed round).
    resume_at: Option<Instant>,
    /// A connection was had and lost: the next one is logged at INFO with its host.
    after_loss: bool,
}

impl Reconnect {
    /// Ends the link, if there is one, and returns its host for the caller's log line. Its
    /// connection is closed in the background (a frozen node would never answer the close)
    /// and its host is tried last on the next connect. With a `pause` (the connection was lost
    /// or the broker refused messages), the next connect waits that long, so that a cluster
    /// can move the lost node's queues first; without one (the broker closed the channel over
    /// one message), a new link is made at once.
    fn end(
        &mut self,
        broker: &Broker,
        link: &mut Option<Link>,
        pause: Option<Duration>,
    ) -> Option<HostId> {
        let l = link.take()?;
        let host = l.host;
        broker.lost(host);
        tokio::spawn(async move {
            let _ = tokio::time::timeout(
                Duration::from_secs(1),
                l.conn.close(320, "reconnecting".into()),
            )
            .await;
        });
        if let Some(d) = pause {
            self.after_loss = true;
            self.resume_at = Some(Instant::now() + d);
        }
        Some(host)
    }
}

/// How often a call request sent again looks for its destination queue.
const QUEUE_WAIT: Duration = Duration::from_millis(250);

/// Whether queue `name` exists: a passive declare on a channel of its own (a missing queue
/// closes the channel it was asked on).
async fn queue_exists(link: &Link, name: &str) -> Result<bool, lapin::Error> {
    let ch = link.conn.create_channel().await?;
    let passive = lapin::options::QueueDeclareOptions {
        passive: true,
        ..lapin::options::QueueDeclareOptions::default()
    };
    match ch
        .queue_declare(name.into(), passive, FieldTable::default())
        .await
    {
        Ok(_) => {
            let _ = ch.close(200, "OK".into()).await;
            Ok(true)
        }
        Err(e) if is_channel_error(&e) => Ok(false),
        Err(e) => Err(e),
    }
}

/// The earliest deadline among `pending`.
fn next_deadline(pending: &VecDeque<Queued>) -> Option<Instant> {
    pending.iter().filter_map(|p| p.deadline).min()
}

/// Sleeps until `due`; for ever without it.
async fn sleep_until_due(due: Option<Instant>) {
    match due {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}

/// The owner task: see the module docs.
async fn owner(
    broker: &Broker,
    rx: &mut mpsc::UnboundedReceiver<Queued>,
    tracker: &Tracker,
    unreachable: &std::sync::Mutex<Option<BrokerError>>,
) {
    let mut link: Option<Link> = None;
    let mut pending: VecDeque<Queued> = VecDeque::new();
    let mut inflight = FutureSet::new();
    // Failed connect rounds in a row; connections dropped for nacks with no ack between.
    let mut attempt: u32 = 0;
    let mut nacks: u32 = 0;
    let mut again = Reconnect::default();
    let mut generation: u64 = 0;
    let mut closed = false;
    let mut link_check = tokio::time::interval(LINK_CHECK);
    link_check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut unconfirmed = crate::metrics::Unconfirmed::default();
    loop {
        unconfirmed.show(pending.len() + inflight.len());
        // Drop what nobody waits for any more; fail what is out of time or of tries. (In
        // place: each message taken from the front and kept at the back, in its order.)
        for _ in 0..pending.len() {
            let Some(p) = pending.pop_front() else { break };
            if p.abandoned() {
                // The caller gave up (its call timed out): nothing to deliver any more.
                drop(p);
            } else if p.expired() && p.quiet_expiry {
                drop(p);
            } else if p.expired() {
                let why = lock(unreachable).clone().unwrap_or_else(|| {
                    BrokerError::lost("the message could not be sent to the broker in time")
                });
                settle(p, Err(why.into()), tracker);
            } else if p.resent > 0 && !p.may_resend() {
                let why = BrokerError::lost(format!(
                    "the message could not be re-sent after {} tries",
                    p.resent
                ));
                settle(p, Err(why.into()), tracker);
            } else {
                pending.push_back(p);
            }
        }
        if closed && pending.is_empty() && inflight.is_empty() {
            return;
        }
        if link.is_none() && !pending.is_empty() {
            if let Some(t) = again.resume_at.filter(|t| *t > Instant::now()) {
                // Wait (taking new messages) until the pause ends or a deadline passes.
                let wake = next_deadline(&pending).map_or(t, |d| d.min(t));
                tokio::select! {
                    _ = tokio::time::sleep_until(wake) => {}
                    m = rx.recv(), if !closed => match m {
                        Some(p) => pending.push_back(p),
                        None => closed = true,
                    },
                    (p, r, _) = inflight.next(), if !inflight.is_empty() => {
                        confirmed(p, r, &mut pending, tracker, &mut nacks);
                    }
                }
                continue;
            }
            again.resume_at = None;
            generation += 1;
            match open(broker, generation).await {
                Ok(l) => {
                    if again.after_loss || attempt > 0 {
                        tracing::info!(host = %broker.shown(l.host), "publisher reconnected to the broker");
                        crate::metrics::reconnected("publisher");
                    }
                    *lock(unreachable) = None;
                    link = Some(l);
                    attempt = 0;
                    again.after_loss = false;
                }
                Err(e) => {
                    // A refusal is final only before the first connection ever worked: later,
                    // a node still booting refuses the vhost for a moment.
                    let fatal = broker.connects() == 0
                        && matches!(&e, MessagingError::Broker(b) if b.is_permanent());
                    if let MessagingError::Broker(b) = &e {
                        *lock(unreachable) = Some(b.clone());
                    }
                    // A message that has never been sent counts its connect attempts as tries.
                    for p in pending.iter_mut() {
                        p.resent += 1;
                    }
                    let mut keep = VecDeque::with_capacity(pending.len());
                    for p in pending.drain(..) {
                        if fatal || !p.may_resend() {
                            settle(p, Err(e.clone()), tracker);
                        } else {
                            keep.push_back(p);
                        }
                    }
                    pending = keep;
                    if fatal {
                        continue;
                    }
                    let wait = broker.opts.reconnect_wait(attempt);
                    attempt += 1;
                    if !pending.is_empty() {
                        tracing::warn!(error = %e, retry_in_s = wait.as_secs_f64(), waiting = pending.len(), "publisher cannot reach the broker");
                    }
                    again.resume_at = Some(Instant::now() + wait);
                    continue;
                }
            }
        }
        if let Some(l) = link.as_mut() {
            let mut later = VecDeque::new();
            while let Some(mut p) = pending.pop_front() {
                if p.abandoned() {
                    continue;
                }
                if p.not_before.is_some_and(|t| t > Instant::now()) {
                    later.push_back(p);
                    continue;
                }
                if let Err(e) = p.check_names() {
                    settle(p, Err(e), tracker);
                    continue;
                }
                if p.resent > 0 && p.waits_for_queue {
                    match queue_exists(l, &p.routing_key).await {
                        Ok(true) => p.not_before = None,
                        Ok(false) => {
                            p.not_before = Some(Instant::now() + QUEUE_WAIT);
                            later.push_back(p);
                            continue;
                        }
                        Err(_) => {
                            // The connection is going: reconnect, then look again.
                            pending.push_front(p);
                            let pause = broker.opts.first_reconnect_delay();
                            again.end(broker, &mut link, Some(pause));
                            break;
                        }
                    }
                }
                if let Err(e) = prepare(l, &p).await {
                    // The channel is closed either way; a lost connection pauses first.
                    let pause = if is_channel_error(&e) {
                        settle(p, Err(op_error("declare", &e)), tracker);
                        None
                    } else {
                        pending.push_front(p);
                        Some(broker.opts.first_reconnect_delay())
                    };
                    again.end(broker, &mut link, pause);
                    break;
                }
                inflight.push(send(l, p));
            }
            pending.extend(later);
        }
        // Messages waiting for their destination queue are looked at again when due.
        let due = pending.iter().filter_map(|p| p.not_before).min();
        tokio::select! {
            // Confirms first, then new messages, then the timers (a link lost under load shows
            // in its confirms; the link check is for a link lost while idle).
            biased;
            (p, r, from) = inflight.next(), if !inflight.is_empty() => {
                let next = confirmed(p, r, &mut pending, tracker, &mut nacks);
                // Only a failure on the current connection ends it.
                let next = if link.as_ref().is_some_and(|l| l.generation == from) {
                    next
                } else {
                    Next::Keep
                };
                match next {
                    Next::Keep => {}
                    Next::ChannelClosed => {
                        again.end(broker, &mut link, None);
                    }
                    Next::Lost(why) => {
                        let delay = broker.opts.first_reconnect_delay();
                        if let Some(host) = again.end(broker, &mut link, Some(delay)) {
                            tracing::warn!(host = %broker.shown(host), error = %why, reconnect_in_s = delay.as_secs_f64(), "publisher lost its connection to the broker; unconfirmed messages will be sent again");
                        }
                    }
                    Next::Nacked => {
                        // A new channel on a new connection, after a pause that grows while
                        // the broker goes on refusing.
                        let delay = if nacks == 0 {
                            broker.opts.first_reconnect_delay()
                        } else {
                            broker.opts.reconnect_wait(nacks - 1)
                        };
                        if let Some(host) = again.end(broker, &mut link, Some(delay)) {
                            nacks = nacks.saturating_add(1);
                            tracing::warn!(host = %broker.shown(host), retry_in_s = delay.as_secs_f64(), "the broker refused messages (negative confirm: a queue without a leader?); they will be sent again");
                        }
                    }
                }
            }
            m = rx.recv(), if !closed => match m {
                Some(p) => {
                    pending.push_back(p);
                    // With it, every message already waiting: one turn sends them all.
                    while let Ok(p) = rx.try_recv() {
                        pending.push_back(p);
                    }
                }
                None => closed = true,
            },
            // A timer made only when one is due (made on every turn, it would cost a look at
            // the clock and the runtime's timer handle for nothing).
            _ = sleep_until_due(due), if due.is_some() && link.is_some() => {}
            // Only while nothing is in flight: a link lost under load shows in the confirms,
            // and a timer polled on every turn costs a look at the runtime's timer each time.
            _ = link_check.tick(), if link.is_some() && inflight.is_empty() => {
                if link.as_ref().is_some_and(|l| !l.conn.status().connected()) {
                    // Messages in flight fail on their own (their confirms err); the pause
                    // counts from now, so a link lost while idle is made again at once on the
                    // next send.
                    let delay = broker.opts.first_reconnect_delay();
                    if let Some(host) = again.end(broker, &mut link, Some(delay)) {
                        tracing::warn!(host = %broker.shown(host), reconnect_in_s = delay.as_secs_f64(), "publisher lost its connection to the broker (found while idle)");
                    }
                }
            }
            // Messages wait for a connection: back to the top to make one.
            _ = std::future::ready(()), if link.is_none() && !pending.is_empty() => {}
        }
    }
}

/// What a confirm (or its failure) means for the link.
enum Next {
    /// Nothing to change.
    Keep,
    /// The broker closed the channel (the message failed for good).
    ChannelClosed,
    /// The connection is gone; the message waits to be sent again.
    Lost(String),
    /// The broker refused the message; it waits to be sent again on a new channel.
    Nacked,
}

/// Settles `p` by its confirm, or keeps it to send again.
fn confirmed(
    mut p: Queued,
    r: Result<Confirmation, lapin::Error>,
    pending: &mut VecDeque<Queued>,
    tracker: &Tracker,
    nacks: &mut u32,
) -> Next {
    match r {
        Ok(Confirmation::Ack(None)) | Ok(Confirmation::NotRequested) => {
            *nacks = 0;
            settle(p, Ok(Routed::Delivered), tracker);
            Next::Keep
        }
        Ok(Confirmation::Ack(Some(_))) => {
            *nacks = 0;
            settle(p, Ok(Routed::Returned), tracker);
            Next::Keep
        }
        Ok(Confirmation::Nack(_)) => {
            p.resent += 1;
            if p.may_resend() {
                pending.push_back(p);
            } else {
                settle(p, Err(BrokerError::Nacked.into()), tracker);
            }
            Next::Nacked
        }
        Err(e) if is_channel_error(&e) => {
            settle(p, Err(op_error("basic.publish", &e)), tracker);
            Next::ChannelClosed
        }
        Err(e) => {
            p.resent += 1;
            pending.push_back(p);
            Next::Lost(describe(&e))
        }
    }
}
