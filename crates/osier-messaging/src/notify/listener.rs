//! `NotificationListener`: subscriptions per target and priority, pools, requeue and batch
//! mode (MSG-LSN-01..07), with notifications handled concurrently up to a bound, each endpoint
//! on its executor.
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

use std::sync::{Arc, Mutex};

use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};

use crate::context::{NoOpSerializer, Serializer};
use crate::driver::{Incoming, Listener};
use crate::error::MessagingError;
use crate::health::{Health, HealthState};
use crate::in_flight::InFlight;
use crate::lock::lock;
pub use crate::notify::dispatch::Stats;
use crate::notify::dispatch::{Dispatcher, RequeueCounts, Settler};
pub use crate::notify::endpoint::{
    Notification, NotificationEndpoint, NotificationFilter, NotificationResult,
};
use crate::notify::{Priority, PriorityCounters};
use crate::rpc::endpoint::Executor;
use crate::runner;
use crate::target::Target;
use crate::transport::Transport;

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
    executor: Executor,
    max_in_flight: usize,
    stop: Mutex<Option<(watch::Sender<bool>, tokio::task::JoinHandle<()>)>>,
    stats: Arc<Stats>,
    health: HealthState,
    /// True from `start` until `stop` has finished, for [`wait`](NotificationListener::wait).
    running: watch::Sender<bool>,
}

/// How many notifications a listener handles at once by default (oslo's
/// `executor_thread_pool_size`); see [`NotificationListener::max_in_flight`].
pub const DEFAULT_CREDIT: usize = 64;

impl std::fmt::Debug for NotificationListener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NotificationListener")
            .field("targets", &self.targets)
            .field("pool", &self.pool)
            .field("executor", &self.executor)
            .field("max_in_flight", &self.max_in_flight)
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
            executor: Executor::Tokio,
            max_in_flight: DEFAULT_CREDIT,
            stop: Mutex::new(None),
            health: HealthState::default(),
            stats: Arc::new(Stats::default()),
            running: watch::Sender::new(false),
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

    /// The bridge whose tokio and green runtimes run the listener and its endpoints.
    pub fn bridge(mut self, b: osier_bridge::Bridge) -> Self {
        self.bridge = b;
        self
    }

    /// The executor of endpoints that name none (default [`Executor::Tokio`]); see
    /// [`NotificationEndpoint`] for where each kind of callback runs.
    pub fn executor(mut self, executor: Executor) -> Self {
        self.executor = executor;
        self
    }

    /// How many notifications (or batches' notifications) are handled at once, on every
    /// executor together (oslo's `executor_thread_pool_size`, default [`DEFAULT_CREDIT`]; at
    /// least 1, and at least a batch in batch mode). A notification is taken off the
    /// transport only when one of these slots is free, so a slow listener's backlog waits in
    /// the broker and its memory is bounded by this number. On RabbitMQ the QoS prefetch is
    /// four times this number unless `rabbit_qos_prefetch_count` sets one.
    ///
    /// Ordering: notifications start in the order they are delivered, and the endpoints of one
    /// notification run one after the other in registration order; notifications handled at
    /// the same time finish in any order (oslo promises no more). `max_in_flight(1)` handles
    /// them one at a time, in order.
    pub fn max_in_flight(mut self, n: usize) -> Self {
        self.max_in_flight = n;
        self
    }

    /// The listener's counters.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// Subscribes to each target crossed with every priority some endpoint handles; priorities
    /// nobody handles are not consumed at all (MSG-LSN-02). A `max_in_flight` of 0 is
    /// [`MessagingError::InvalidOption`].
    pub async fn start(&self) -> Result<(), MessagingError> {
        if self.max_in_flight == 0 {
            return Err(MessagingError::InvalidOption {
                option: "max_in_flight".into(),
                reason: "a listener needs at least one slot".into(),
            });
        }
        let mut subs = Vec::new();
        for t in &self.targets {
            let topic = t.listen_topic()?;
            for p in Priority::ALL {
                if self.endpoints.iter().any(|e| e.handles(p)) {
                    subs.push(t.clone().with_topic(format!("{topic}.{p}")));
                }
            }
        }
        // A batch holds a slot per notification: a full one must fit.
        let credit = self.max_in_flight.max(self.batch.map_or(0, |(n, _)| n));
        let listener = self
            .transport
            .driver
            .listen_notifications(&subs, self.pool.as_deref(), credit)
            .await?;
        runner::note_panic_sites();
        self.health.started(listener.liveness());
        let (tx, rx) = watch::channel(false);
        let dispatcher = Arc::new(Dispatcher {
            endpoints: self.endpoints.clone(),
            serializer: self.serializer.clone(),
            settler: Settler {
                stats: self.stats.clone(),
                allow_requeue: self.allow_requeue,
                max_requeues: self.max_requeues,
                requeues: Mutex::new(RequeueCounts::default()),
                received: PriorityCounters::received(),
            },
            bridge: self.bridge.clone(),
            executor: self.executor,
        });
        // On a hub's own runtime when the bridge runs tokio on its hubs, as the RPC server.
        let task = self
            .bridge
            .spawn_on_hub(run_loop(listener, dispatcher, rx, credit, self.batch));
        *lock(&self.stop) = Some((tx, task));
        self.running.send_replace(true);
        Ok(())
    }

    /// Whether the listener is alive: started and consuming (see [`health`](crate::health)).
    pub fn health(&self) -> Health {
        self.health.health()
    }

    /// Stops taking messages, then waits until every notification taken is handled and
    /// settled; deliveries that arrived but were not taken go back to the queue.
    pub async fn stop(&self) {
        let s = lock(&self.stop).take();
        self.health.stopped();
        if let Some((tx, task)) = s {
            let _ = tx.send(true);
            let _ = task.await;
        }
        self.running.send_replace(false);
    }

    /// Waits until the listener is not running: at once if it was never started, otherwise
    /// once [`stop`](NotificationListener::stop) has handled and settled everything it took
    /// (oslo's `wait()`, for a launcher that runs the listener as a service).
    pub async fn wait(&self) {
        let mut running = self.running.subscribe();
        let _ = running.wait_for(|r| !*r).await;
    }
}

/// The listener's loop: a free slot first, only then a message (the rest wait in the broker);
/// each message, or full batch, is handled on a task of its own holding its slots, counted in
/// [`InFlight`] (not reaped: a task that ends does not wake the loop).
async fn run_loop(
    mut listener: Box<dyn Listener>,
    dispatcher: Arc<Dispatcher>,
    mut stop: watch::Receiver<bool>,
    slots: usize,
    batch: Option<(usize, Option<std::time::Duration>)>,
) {
    let slots = Arc::new(Semaphore::new(slots));
    let tasks = Arc::new(InFlight::new("notification"));
    let mut slot: Option<OwnedSemaphorePermit> = None;
    let mut pending: Vec<Incoming> = Vec::new();
    let mut held: Vec<OwnedSemaphorePermit> = Vec::new();
    let mut first_at: Option<tokio::time::Instant> = None;
    let spawn_batch = |msgs: Vec<Incoming>, permits| {
        let d = dispatcher.clone();
        tasks.spawn(async move {
            d.batch(msgs).await;
            drop::<Vec<OwnedSemaphorePermit>>(permits);
        });
    };
    // Made once: a `changed()` made on every turn would make and drop a waiter on the watch
    // for each message.
    let stopped = stop.changed();
    tokio::pin!(stopped);
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
        tokio::select! {
            biased;
            _ = &mut stopped => break,
            _ = flush_timer => {
                spawn_batch(std::mem::take(&mut pending), std::mem::take(&mut held));
                first_at = None;
            }
            // Both made only when polled: a disabled branch's future is still made, and
            // `poll` boxes one.
            s = async { slots.clone().acquire_owned().await }, if slot.is_none() => slot = s.ok(),
            m = async { listener.poll().await }, if slot.is_some() => {
                let (Some(m), Some(permit)) = (m, slot.take()) else { break };
                match batch {
                    None => {
                        let d = dispatcher.clone();
                        tasks.spawn(async move {
                            d.one(m).await;
                            drop(permit);
                        });
                    }
                    Some((size, _)) => {
                        pending.push(m);
                        held.push(permit);
                        first_at.get_or_insert_with(tokio::time::Instant::now);
                        if pending.len() >= size {
                            spawn_batch(std::mem::take(&mut pending), std::mem::take(&mut held));
                            first_at = None;
                        }
                    }
                }
            }
        }
    }
    // No new deliveries; what arrived and was not taken goes back to the queue.
    listener.stop();
    while let Some(m) = listener.poll().await {
        m.acker.requeue();
    }
    if !pending.is_empty() {
        spawn_batch(pending, held);
    }
    // The listener stays open until every ack of the tasks has gone out.
    tasks.idle().await;
}
