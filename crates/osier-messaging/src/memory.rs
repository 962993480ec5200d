//! The in-memory driver (`memory://`, and oslo's `fake://`): the embedded default, with
//! RabbitMQ's routing semantics (MSG-FAKE-01..05).
//!
//! Exchanges live at process level, shared by every in-memory transport, and `cleanup` wipes
//! them all (MSG-FAKE-01). Each exchange has a queue per `(topic, server)` and a shared queue per
//! topic (MSG-FAKE-02): a directed message goes to its server's queue, fanout copies it to every
//! server queue of the topic, anything else goes to the shared topic queue, which the servers on
//! the topic take from in turn (MSG-FAKE-03). Replies go to the caller only, on a channel of
//! their own (MSG-FAKE-04). Unlike oslo's fake driver, which polls every 50 ms, a listener wakes
//! on delivery (MSG-FAKE-05), and the consumers of one queue get its messages in turn, as on
//! RabbitMQ.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::{mpsc, Notify};

use crate::driver::{
    Acker, Dict, Driver, Incoming, Listener, Outcome, Outgoing, Replier, ReplyEvent, ReplyWaiter,
};
use crate::error::MessagingError;
use crate::lock::lock;
use crate::target::Target;

#[derive(Clone)]
struct Envelope {
    ctxt: Dict,
    message: Dict,
    reply: Option<mpsc::UnboundedSender<ReplyEvent>>,
    timeout: Option<Duration>,
}

/// A consumer's inbox: messages a queue handed to this listener, in order. The listener holds
/// at most `credit` messages it has not settled (acked, requeued or rejected); the rest wait in
/// their queues, as RabbitMQ's prefetch keeps them in the broker.
struct Inbox {
    items: Mutex<VecDeque<(Envelope, Arc<Queue>)>>,
    notify: Notify,
    closed: AtomicBool,
    credit: usize,
    held: AtomicUsize,
}

impl Inbox {
    fn new(credit: usize) -> Self {
        Inbox {
            items: Mutex::default(),
            notify: Notify::new(),
            closed: AtomicBool::new(false),
            credit: credit.max(1),
            held: AtomicUsize::new(0),
        }
    }

    /// Takes one unit of credit, if any is left.
    fn reserve(&self) -> bool {
        self.held
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |h| {
                (h < self.credit).then_some(h + 1)
            })
            .is_ok()
    }

    fn release(&self, n: usize) {
        let _ = self
            .held
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |h| {
                Some(h.saturating_sub(n))
            });
    }
}

/// A queue: held messages when no consumer has credit, else handed to its consumers in turn
/// (RabbitMQ's round-robin among the consumers of one queue).
#[derive(Default)]
struct Queue {
    state: Mutex<QueueState>,
}

#[derive(Default)]
struct QueueState {
    backlog: VecDeque<Envelope>,
    consumers: Vec<Arc<Inbox>>,
    next: usize,
}

impl QueueState {
    /// The next consumer in turn that has credit left (its credit is taken).
    fn pick(&mut self) -> Option<Arc<Inbox>> {
        self.consumers.retain(|c| !c.closed.load(Ordering::Acquire));
        let n = self.consumers.len();
        for k in 0..n {
            let i = (self.next + k) % n;
            if self.consumers[i].reserve() {
                self.next = i + 1;
                return Some(self.consumers[i].clone());
            }
        }
        None
    }
}

impl Queue {
    fn push(self: &Arc<Self>, e: Envelope) {
        let mut st = lock(&self.state);
        match st.pick() {
            Some(c) => {
                lock(&c.items).push_back((e, self.clone()));
                c.notify.notify_one();
            }
            None => st.backlog.push_back(e),
        }
    }

    /// Hands waiting messages to consumers that have credit again.
    fn pump(self: &Arc<Self>) {
        let mut st = lock(&self.state);
        while !st.backlog.is_empty() {
            let Some(c) = st.pick() else { return };
            if let Some(e) = st.backlog.pop_front() {
                lock(&c.items).push_back((e, self.clone()));
                c.notify.notify_one();
            }
        }
    }

    fn subscribe(self: &Arc<Self>, inbox: &Arc<Inbox>) {
        lock(&self.state).consumers.push(inbox.clone());
        self.pump();
    }

    fn unsubscribe(&self, inbox: &Arc<Inbox>) {
        lock(&self.state)
            .consumers
            .retain(|c| !Arc::ptr_eq(c, inbox));
    }
}

/// `(topic, pool)`; pool `None` is the default group.
type PoolKey = (String, Option<String>);

#[derive(Default)]
struct Exchange {
    server_queues: Mutex<HashMap<(String, String), Arc<Queue>>>,
    /// Shared queues per `(topic, pool)`; `None` is the default group (MSG-FAKE-02).
    topic_queues: Mutex<HashMap<PoolKey, Arc<Queue>>>,
}

impl Exchange {
    fn topic_queue(&self, topic: &str) -> Arc<Queue> {
        self.pool_queue(topic, None)
    }

    /// The queue of `pool` on `topic`. A pool queue made now starts with a copy of what waits in
    /// the default queue (MSG-FAKE-03).
    fn pool_queue(&self, topic: &str, pool: Option<&str>) -> Arc<Queue> {
        let mut qs = lock(&self.topic_queues);
        let key = (topic.to_string(), pool.map(str::to_string));
        if let Some(q) = qs.get(&key) {
            return q.clone();
        }
        let q = Arc::new(Queue::default());
        if pool.is_some() {
            if let Some(default) = qs.get(&(topic.to_string(), None)) {
                let waiting: Vec<Envelope> = lock(&default.state).backlog.iter().cloned().collect();
                lock(&q.state).backlog.extend(waiting);
            }
        }
        qs.insert(key, q.clone());
        q
    }

    fn server_queue(&self, topic: &str, server: &str) -> Arc<Queue> {
        lock(&self.server_queues)
            .entry((topic.to_string(), server.to_string()))
            .or_default()
            .clone()
    }

    fn route(&self, target: &Target, topic: &str, env: Envelope) {
        if target.fanout {
            let queues: Vec<Arc<Queue>> = lock(&self.server_queues)
                .iter()
                .filter(|((t, _), _)| t == topic)
                .map(|(_, q)| q.clone())
                .collect();
            deliver(queues, env);
        } else if let Some(server) = &target.server {
            self.server_queue(topic, server).push(env);
        } else {
            // every group on the topic gets a copy: the default one and one per pool
            let queues: Vec<Arc<Queue>> = {
                let mut qs = lock(&self.topic_queues);
                let mut has_default = false;
                let mut queues: Vec<Arc<Queue>> = qs
                    .iter()
                    .filter(|((t, _), _)| t == topic)
                    .map(|((_, pool), q)| {
                        has_default |= pool.is_none();
                        q.clone()
                    })
                    .collect();
                if !has_default {
                    let q = Arc::new(Queue::default());
                    qs.insert((topic.to_string(), None), q.clone());
                    queues.push(q);
                }
                queues
            };
            deliver(queues, env);
        }
    }
}

/// `env` on every one of `queues`: a copy on each but the last, which takes it.
fn deliver(mut queues: Vec<Arc<Queue>>, env: Envelope) {
    let Some(last) = queues.pop() else {
        return;
    };
    for q in queues {
        q.push(env.clone());
    }
    last.push(env);
}

fn exchanges() -> &'static Mutex<HashMap<String, Arc<Exchange>>> {
    static EX: OnceLock<Mutex<HashMap<String, Arc<Exchange>>>> = OnceLock::new();
    EX.get_or_init(Default::default)
}

/// The in-memory driver.
#[derive(Debug)]
pub struct MemoryDriver {
    control_exchange: String,
}

impl MemoryDriver {
    /// A driver on the process-level exchanges; targets without an exchange use
    /// `control_exchange`.
    pub fn new(control_exchange: &str) -> Self {
        MemoryDriver {
            control_exchange: control_exchange.to_string(),
        }
    }

    /// Puts `msg` on its exchange's queues; a call carries its reply channel and call-monitor
    /// timeout.
    fn route(
        &self,
        msg: Outgoing,
        reply: Option<mpsc::UnboundedSender<ReplyEvent>>,
    ) -> Result<(), MessagingError> {
        let topic = msg.target.require_topic()?;
        let timeout = reply.as_ref().and(msg.call_monitor_timeout);
        self.exchange(&msg.target).route(
            &msg.target,
            topic,
            Envelope {
                ctxt: msg.ctxt,
                message: msg.message,
                reply,
                timeout,
            },
        );
        Ok(())
    }

    fn exchange(&self, target: &Target) -> Arc<Exchange> {
        let name = target.exchange.as_deref().unwrap_or(&self.control_exchange);
        let mut all = lock(exchanges());
        if let Some(ex) = all.get(name) {
            return ex.clone();
        }
        all.entry(name.to_string()).or_default().clone()
    }
}

struct MemReplier(mpsc::UnboundedSender<ReplyEvent>);

#[async_trait]
impl Replier for MemReplier {
    async fn heartbeat(&self) -> Result<(), MessagingError> {
        self.0
            .send(ReplyEvent::Heartbeat)
            .map_err(|_| MessagingError::Delivery("the caller is gone".into()))
    }

    async fn reply(&self, outcome: Outcome) -> Result<(), MessagingError> {
        // A reply to a call that already timed out has nobody to go to: oslo logs it.
        self.0.send(ReplyEvent::Done(outcome)).map_err(|_| {
            MessagingError::Delivery("the caller is gone (reply after timeout?)".into())
        })
    }
}

struct MemWaiter(mpsc::UnboundedReceiver<ReplyEvent>);

#[async_trait]
impl ReplyWaiter for MemWaiter {
    async fn next(&mut self) -> Option<ReplyEvent> {
        self.0.recv().await
    }
}

/// Settles one message of a listener: gives its credit back, and its copy back to its queue on
/// requeue.
struct MemAcker {
    requeue_to: Arc<Queue>,
    env: Mutex<Option<Envelope>>,
    inbox: Arc<Inbox>,
    /// Every queue the listener consumes, pumped when credit comes back.
    sources: Arc<Vec<Arc<Queue>>>,
    settled: AtomicBool,
}

impl MemAcker {
    /// Gives the credit back once; `false` if the message was already settled.
    fn settle(&self) -> bool {
        if self.settled.swap(true, Ordering::AcqRel) {
            return false;
        }
        self.inbox.release(1);
        true
    }

    fn pump(&self) {
        for q in self.sources.iter() {
            q.pump();
        }
    }
}

impl Acker for MemAcker {
    fn ack(&self) {
        if self.settle() {
            lock(&self.env).take();
            self.pump();
        }
    }

    fn requeue(&self) {
        if self.settle() {
            if let Some(e) = lock(&self.env).take() {
                self.requeue_to.push(e); // at the back, as oslo's fake driver does (MSG-LSN-07)
            }
            self.pump();
        }
    }

    fn reject(&self) {
        self.ack();
    }
}

impl Drop for MemAcker {
    /// A message dropped unsettled gives its credit back (an AMQP channel that closes returns
    /// its unacknowledged messages the same way).
    fn drop(&mut self) {
        if self.settle() {
            self.pump();
        }
    }
}

struct MemListener {
    /// Keep a copy of each message for `requeue` (notifications); RPC never requeues
    /// (at most once, MSG-SRV-06), so its listener moves messages out without copying.
    keep_for_requeue: bool,
    queues: Arc<Vec<Arc<Queue>>>,
    inbox: Arc<Inbox>,
    stopped: Arc<Notify>,
}

impl MemListener {
    /// A listener consuming from `queues` through one inbox.
    fn subscribe(
        queues: Vec<Arc<Queue>>,
        keep_for_requeue: bool,
        credit: usize,
    ) -> Box<dyn Listener> {
        let inbox = Arc::new(Inbox::new(credit));
        for q in &queues {
            q.subscribe(&inbox);
        }
        Box::new(MemListener {
            keep_for_requeue,
            queues: Arc::new(queues),
            inbox,
            stopped: Arc::new(Notify::new()),
        })
    }

    fn take(&self) -> Option<Incoming> {
        let (env, q) = lock(&self.inbox.items).pop_front()?;
        let client_timeout = env.timeout;
        let replier = env
            .reply
            .clone()
            .map(|tx| Arc::new(MemReplier(tx)) as Arc<dyn Replier>);
        if !self.keep_for_requeue {
            return Some(Incoming {
                ctxt: env.ctxt,
                message: env.message,
                replier,
                client_timeout,
                acker: self.acker(q, None),
                malformed: None,
            });
        }
        Some(Incoming {
            ctxt: env.ctxt.clone(),
            message: env.message.clone(),
            replier,
            client_timeout,
            acker: self.acker(q, Some(env)),
            malformed: None,
        })
    }

    fn acker(&self, requeue_to: Arc<Queue>, env: Option<Envelope>) -> Box<dyn Acker> {
        Box::new(MemAcker {
            requeue_to,
            env: Mutex::new(env),
            inbox: self.inbox.clone(),
            sources: self.queues.clone(),
            settled: AtomicBool::new(false),
        })
    }
}

#[async_trait]
impl Listener for MemListener {
    async fn poll(&mut self) -> Option<Incoming> {
        loop {
            if self.inbox.closed.load(Ordering::Acquire) {
                return None;
            }
            // Register interest before looking, so a delivery in between is not missed.
            let mut wait = std::pin::pin!(self.inbox.notify.notified());
            wait.as_mut().enable();
            let mut stop = std::pin::pin!(self.stopped.notified());
            stop.as_mut().enable();
            if self.inbox.closed.load(Ordering::Acquire) {
                return None;
            }
            if let Some(m) = self.take() {
                return Some(m);
            }
            tokio::select! {
                _ = wait => {}
                _ = stop => {}
            }
        }
    }

    /// Unsubscribes; messages handed to this listener and not yet taken go back to their queues
    /// (to the other consumers, or held until one comes).
    fn stop(&self) {
        self.inbox.closed.store(true, Ordering::Release);
        for q in self.queues.iter() {
            q.unsubscribe(&self.inbox);
        }
        let left: Vec<(Envelope, Arc<Queue>)> = lock(&self.inbox.items).drain(..).collect();
        self.inbox.release(left.len());
        for (e, q) in left {
            q.push(e);
        }
        self.stopped.notify_waiters();
    }
}

impl Drop for MemListener {
    fn drop(&mut self) {
        if !self.inbox.closed.load(Ordering::Acquire) {
            self.stop();
        }
    }
}

#[async_trait]
impl Driver for MemoryDriver {
    async fn cast(&self, msg: Outgoing) -> Result<(), MessagingError> {
        self.route(msg, None)
    }

    async fn call(&self, msg: Outgoing) -> Result<Box<dyn ReplyWaiter>, MessagingError> {
        let (tx, rx) = mpsc::unbounded_channel();
        self.route(msg, Some(tx))?;
        Ok(Box::new(MemWaiter(rx)))
    }

    async fn listen(
        &self,
        target: &Target,
        credit: usize,
    ) -> Result<Box<dyn Listener>, MessagingError> {
        let (topic, server) = target.server_address()?;
        let ex = self.exchange(target);
        let queues = vec![ex.server_queue(topic, server), ex.topic_queue(topic)];
        Ok(MemListener::subscribe(queues, false, credit))
    }

    async fn notify(&self, msg: Outgoing) -> Result<(), MessagingError> {
        self.cast(msg).await
    }

    async fn listen_notifications(
        &self,
        targets: &[Target],
        pool: Option<&str>,
        credit: usize,
    ) -> Result<Box<dyn Listener>, MessagingError> {
        let mut queues = Vec::new();
        for t in targets {
            let topic = t.listen_topic()?;
            queues.push(self.exchange(t).pool_queue(topic, pool));
        }
        Ok(MemListener::subscribe(queues, true, credit))
    }

    /// Wipes every in-memory exchange in the process (MSG-FAKE-01).
    async fn cleanup(&self) {
        lock(exchanges()).clear();
    }
}
