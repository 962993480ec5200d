//! [`Bridge`]: one process, both models. It owns (or shares) a green runtime, owns a tokio
//! runtime driven by its own threads and, when it starts the green runtime (by default), a
//! current-thread tokio runtime on each hub's thread; it shuts them all down together.
//!
//! ```
//! use osier_bridge::Bridge;
//! use std::time::Duration;
//!
//! let bridge = Bridge::builder().green_hubs(1).tokio_workers(1).build().unwrap();
//! let b = bridge.clone();
//! let v = bridge.green().block_on(move || {
//!     // a green thread awaits a tokio timer; only this green thread parks
//!     b.yield_future(async {
//!         tokio::time::sleep(Duration::from_millis(1)).await;
//!         7
//!     })
//! });
//! assert_eq!(v.unwrap().unwrap(), 7);
//! bridge.shutdown_timeout(Duration::from_secs(1)).unwrap();
//! ```

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use osier_green::Unparker;

use crate::error::BridgeError;
use crate::on_hub;

/// The tokio runtime on threads of its own ([`Bridge::tokio`]), beside the ones on the hubs:
/// either is driven by its own threads (a tokio runtime nobody drives hangs every future
/// waiting on its timers or I/O).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokioFlavor {
    /// A multi-thread runtime with this many worker threads (default, `0`: one per core, tokio's
    /// own default).
    MultiThread(usize),
    /// A current-thread runtime driven by one dedicated OS thread.
    CurrentThread,
}

pub(crate) struct Inner {
    pub(crate) green: osier_green::Runtime,
    owns_green: bool,
    pub(crate) handle: tokio::runtime::Handle,
    /// With [`Builder::tokio_on_hubs`]: the current-thread runtime of each hub, by hub index.
    pub(crate) on_hubs: Vec<tokio::runtime::Handle>,
    tokio: Mutex<Option<tokio::runtime::Runtime>>,
    /// Stops the driver thread of a current-thread runtime.
    driver_stop: Mutex<Option<tokio::sync::oneshot::Sender<()>>>,
    driver: Mutex<Option<std::thread::JoinHandle<()>>>,
    pub(crate) shutdown: AtomicBool,
    /// The next hub a task spawned from off the hubs goes to.
    next_hub: AtomicUsize,
    /// Green threads parked in `yield_future`, woken when the bridge shuts down.
    pub(crate) waiters: Mutex<Waiters>,
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bridge")
            .field("green_hubs", &self.green.hubs())
            .field("shutdown", &self.shutdown.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

/// Slots of parked `yield_future` callers, with a free list (O(1) register and unregister).
#[derive(Debug, Default)]
pub(crate) struct Waiters {
    slots: Vec<Option<Unparker>>,
    free: Vec<usize>,
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A green runtime and a tokio runtime in one process. Cloning gives another handle.
#[derive(Clone, Debug)]
pub struct Bridge {
    pub(crate) inner: Arc<Inner>,
}

/// Configures a [`Bridge`].
#[derive(Debug)]
#[must_use]
pub struct Builder {
    green: Option<osier_green::Runtime>,
    green_hubs: usize,
    green_stack: Option<usize>,
    watchdog: Option<Duration>,
    flavor: TokioFlavor,
    /// `Some(true)`: asked for (`tokio_on_hubs`); `Some(false)`: refused (`tokio_on_own_threads`);
    /// `None`: the default, on the hubs when the bridge starts its green runtime.
    on_hubs: Option<bool>,
}

impl Default for Builder {
    fn default() -> Self {
        Builder {
            green: None,
            green_hubs: 1,
            green_stack: None,
            watchdog: None,
            flavor: TokioFlavor::MultiThread(0),
            on_hubs: None,
        }
    }
}

impl Builder {
    /// Number of green hubs (default 1: eventlet's model; see `osier_green::Builder::hubs`).
    pub fn green_hubs(mut self, n: usize) -> Self {
        self.green_hubs = n;
        self
    }

    /// Default green-thread stack size in bytes.
    pub fn green_stack_size(mut self, bytes: usize) -> Self {
        self.green_stack = Some(bytes);
        self
    }

    /// Turns on the green blocking detector (GREEN-30) with this threshold.
    pub fn watchdog(mut self, threshold: Duration) -> Self {
        self.watchdog = Some(threshold);
        self
    }

    /// Uses an existing green runtime instead of starting one (the bridge will not shut it down).
    pub fn green_runtime(mut self, rt: osier_green::Runtime) -> Self {
        self.green = Some(rt);
        self
    }

    /// A multi-thread tokio runtime with `n` workers (default: one per core, as tokio does).
    /// On a small machine, one worker per core *minus the hubs* makes loaded hops faster and
    /// low-load hops slower; see docs/benchmarks.md.
    pub fn tokio_workers(mut self, n: usize) -> Self {
        self.flavor = TokioFlavor::MultiThread(n);
        self
    }

    /// A current-thread tokio runtime driven by one dedicated thread.
    pub fn tokio_current_thread(mut self) -> Self {
        self.flavor = TokioFlavor::CurrentThread;
        self
    }

    /// Each green hub also runs a current-thread tokio runtime on its own thread, driving the
    /// hub as one of its tasks (see [`Bridge::hub_tokio`]). **The default** when the bridge
    /// starts its green runtime; this says so explicitly. Green threads and the tasks of their
    /// hub then hand work to each other without a thread wake-up: [`yield_future`](Bridge::yield_future)
    /// polls in the hub's runtime, [`yield_spawned`](Bridge::yield_spawned) and
    /// [`spawn_on_hub`](Bridge::spawn_on_hub) run tasks there, and `tokio::spawn` from a green
    /// thread or a hub task does too. The multi-thread runtime ([`Bridge::tokio`]) stays, for
    /// async work that should run in parallel. Needs the bridge to start its green runtime
    /// (not [`green_runtime`](Builder::green_runtime)). Measured, and why it is the default, in
    /// docs/benchmarks.md ("Tokio on the hub's thread") and docs/architecture.md.
    pub fn tokio_on_hubs(mut self) -> Self {
        self.on_hubs = Some(true);
        self
    }

    /// Tokio only on threads of its own (the multi-thread or current-thread runtime chosen
    /// above), never on the hubs: every hop between green and async code is a hand-off between
    /// two OS threads. For a service that is mostly async work that scales over cores, with few
    /// hops; a bridge over a green runtime it did not start is always built this way.
    pub fn tokio_on_own_threads(mut self) -> Self {
        self.on_hubs = Some(false);
        self
    }

    /// Whether the hubs run tokio: asked for, refused, or by default when the bridge starts its
    /// green runtime.
    fn wants_hubs(&self) -> bool {
        self.on_hubs.unwrap_or(self.green.is_none())
    }

    fn green_builder(&self) -> osier_green::Builder {
        let mut b = osier_green::Runtime::builder().hubs(self.green_hubs);
        if let Some(s) = self.green_stack {
            b = b.stack_size(s);
        }
        if let Some(t) = self.watchdog {
            b = b.watchdog(t);
        }
        b
    }

    /// Starts both runtimes.
    pub fn build(self) -> Result<Bridge, BridgeError> {
        self.refuse_foreign_green_on_hubs()?;
        let (green, owns_green, on_hubs) = match self.green.clone() {
            Some(rt) => (rt, false, Vec::new()),
            None => {
                let (b, started) = self.hub_drivers();
                let green = b.build()?;
                let on_hubs = wait_for_hubs(&green, started)?;
                (green, true, on_hubs)
            }
        };
        self.finish(green, owns_green, on_hubs)
    }

    fn refuse_foreign_green_on_hubs(&self) -> Result<(), BridgeError> {
        if self.on_hubs == Some(true) && self.green.is_some() {
            return Err(BridgeError::Runtime(
                osier_green::RuntimeError::InvalidConfig(
                    "tokio_on_hubs needs the bridge to start its own green runtime; \
                 green_runtime(...) was given"
                        .into(),
                ),
            ));
        }
        Ok(())
    }

    /// The green builder, with each hub driven by a runtime of its own when asked for; the
    /// receiver hears from each hub thread once its runtime is up.
    fn hub_drivers(
        &self,
    ) -> (
        osier_green::Builder,
        Option<mpsc::Receiver<on_hub::Started>>,
    ) {
        let b = self.green_builder();
        if !self.wants_hubs() {
            return (b, None);
        }
        let (tx, rx) = mpsc::channel();
        let tx = Mutex::new(tx);
        let watchdog = self.watchdog;
        let b = b.drive_with(move |hub| {
            let started = lock(&tx).clone();
            on_hub::drive(hub, started, watchdog)
        });
        (b, Some(rx))
    }

    /// Starts both runtimes and makes them the process-wide ones: the bridge used by the free
    /// functions, and osier-green's global runtime. The choice is made once (LESSON-02): it fails
    /// with [`BridgeError::AlreadyInstalled`] if a bridge or a global green runtime exists already.
    pub fn install(self) -> Result<Bridge, BridgeError> {
        if GLOBAL.get().is_some() {
            return Err(BridgeError::AlreadyInstalled);
        }
        self.refuse_foreign_green_on_hubs()?;
        let (green, owns, on_hubs) = match self.green.clone() {
            Some(rt) => (rt, false, Vec::new()),
            None => {
                let (b, started) = self.hub_drivers();
                let green = b.install().map_err(|e| match e {
                    osier_green::RuntimeError::AlreadyInstalled => BridgeError::AlreadyInstalled,
                    other => BridgeError::Runtime(other),
                })?;
                let on_hubs = wait_for_hubs(&green, started)?;
                (green, true, on_hubs)
            }
        };
        let bridge = self.finish(green, owns, on_hubs)?;
        GLOBAL
            .set(bridge.clone())
            .map_err(|_| BridgeError::AlreadyInstalled)?;
        Ok(bridge)
    }

    fn finish(
        self,
        green: osier_green::Runtime,
        owns_green: bool,
        on_hubs: Vec<tokio::runtime::Handle>,
    ) -> Result<Bridge, BridgeError> {
        let (rt, handle, driver, stop) = match self.flavor {
            TokioFlavor::MultiThread(n) => {
                let n = if n == 0 {
                    std::thread::available_parallelism().map_or(2, |c| c.get())
                } else {
                    n
                };
                let rt = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(n.max(1))
                    .thread_name("osier-tokio")
                    .enable_all()
                    .build()?;
                let h = rt.handle().clone();
                (Some(rt), h, None, None)
            }
            TokioFlavor::CurrentThread => {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()?;
                let h = rt.handle().clone();
                let (tx, rx) = tokio::sync::oneshot::channel::<()>();
                let th = std::thread::Builder::new()
                    .name("osier-tokio-driver".into())
                    .spawn(move || {
                        rt.block_on(async {
                            let _ = rx.await;
                        });
                        rt.shutdown_timeout(Duration::from_secs(5));
                    })?;
                (None, h, Some(th), Some(tx))
            }
        };
        Ok(Bridge {
            inner: Arc::new(Inner {
                green,
                owns_green,
                handle,
                on_hubs,
                tokio: Mutex::new(rt),
                driver_stop: Mutex::new(stop),
                driver: Mutex::new(driver),
                shutdown: AtomicBool::new(false),
                next_hub: AtomicUsize::new(0),
                waiters: Mutex::new(Waiters::default()),
            }),
        })
    }
}

/// The handles of the hubs' runtimes, by hub index, once every hub thread said its runtime is up
/// (none without [`Builder::tokio_on_hubs`]). A hub that could not start one fails the build,
/// and the green runtime just started is stopped.
fn wait_for_hubs(
    green: &osier_green::Runtime,
    started: Option<mpsc::Receiver<on_hub::Started>>,
) -> Result<Vec<tokio::runtime::Handle>, BridgeError> {
    let Some(rx) = started else {
        return Ok(Vec::new());
    };
    let mut handles: Vec<Option<tokio::runtime::Handle>> = vec![None; green.hubs()];
    for _ in 0..green.hubs() {
        let failed = match rx.recv() {
            Ok((i, Ok(h))) => {
                handles[i] = Some(h);
                continue;
            }
            Ok((_, Err(e))) => e,
            Err(_) => {
                std::io::Error::other("a green hub thread ended before its tokio runtime started")
            }
        };
        let _ = green.shutdown_timeout(Duration::from_secs(5));
        return Err(BridgeError::Io(failed));
    }
    Ok(handles.into_iter().flatten().collect())
}

static GLOBAL: OnceLock<Bridge> = OnceLock::new();

impl Bridge {
    /// A builder with the defaults: one green hub with a current-thread tokio runtime on its
    /// thread, and a multi-thread tokio runtime with one worker per core.
    pub fn builder() -> Builder {
        Builder::default()
    }

    /// The process-wide bridge: the installed one, or one started on first use over
    /// osier-green's global runtime with the default tokio runtime. Panics if that one cannot
    /// start; [`try_global`](Bridge::try_global) returns the error instead.
    pub fn global() -> &'static Bridge {
        match Self::try_global() {
            Ok(b) => b,
            // Without a tokio runtime there is no bridge to fall back to.
            Err(e) => panic!("osier-bridge: cannot start the default bridge: {e}"),
        }
    }

    /// [`global`](Bridge::global), with the start-up error of the default bridge (no tokio
    /// runtime or green hub could be made) returned instead of a panic.
    pub fn try_global() -> Result<&'static Bridge, BridgeError> {
        if let Some(b) = GLOBAL.get() {
            return Ok(b);
        }
        // One default bridge is built at a time: a second would start runtimes for nothing.
        static BUILDING: Mutex<()> = Mutex::new(());
        let _one = lock(&BUILDING);
        if let Some(b) = GLOBAL.get() {
            return Ok(b);
        }
        let built = Builder::default()
            .green_runtime(osier_green::Runtime::global().clone())
            .build()?;
        Ok(GLOBAL.get_or_init(|| built))
    }

    /// The green runtime.
    pub fn green(&self) -> &osier_green::Runtime {
        &self.inner.green
    }

    /// A handle to the tokio runtime.
    pub fn tokio(&self) -> &tokio::runtime::Handle {
        &self.inner.handle
    }

    /// With [`Builder::tokio_on_hubs`]: a handle to the current-thread runtime on hub `hub`'s
    /// thread. `None` without it, or for a hub the runtime does not have.
    pub fn hub_tokio(&self, hub: usize) -> Option<&tokio::runtime::Handle> {
        self.inner.on_hubs.get(hub)
    }

    /// True when each hub runs a tokio runtime on its thread ([`Builder::tokio_on_hubs`]).
    pub fn tokio_on_hubs(&self) -> bool {
        !self.inner.on_hubs.is_empty()
    }

    /// Spawns `fut` as a task of a hub's runtime: the caller's own hub when called on a hub
    /// thread (from a green thread or a hub task: no thread is woken), else the hubs in turn.
    /// Without [`Builder::tokio_on_hubs`] the task goes to the multi-thread runtime.
    pub fn spawn_on_hub<F>(&self, fut: F) -> tokio::task::JoinHandle<F::Output>
    where
        F: std::future::Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.task_handle().spawn(fut)
    }

    /// [`spawn_on_hub`](Bridge::spawn_on_hub) for a task the blocking detector names: with
    /// [`Builder::watchdog`] on, a poll of it that blocks the hub's thread is reported as
    /// `name`'s ([`osier_green::Culprit::Task`]).
    pub fn spawn_on_hub_named<F>(
        &self,
        name: impl Into<Arc<str>>,
        fut: F,
    ) -> tokio::task::JoinHandle<F::Output>
    where
        F: std::future::Future + Send + 'static,
        F::Output: Send + 'static,
    {
        let fut = on_hub::Named {
            name: name.into(),
            fut: Box::pin(fut),
        };
        self.task_handle().spawn(fut)
    }

    /// Where a task started by the caller goes: its own hub's runtime when the bridge runs
    /// tokio on the hubs and the caller is on one of them, another hub's otherwise, and the
    /// multi-thread runtime without hub runtimes.
    pub(crate) fn task_handle(&self) -> &tokio::runtime::Handle {
        let hubs = &self.inner.on_hubs;
        if hubs.is_empty() {
            return &self.inner.handle;
        }
        if let Some(h) = self.own_hub_tokio() {
            return h;
        }
        let i = self.inner.next_hub.fetch_add(1, Ordering::Relaxed) % hubs.len();
        &hubs[i]
    }

    /// The runtime of the hub whose thread calls, if this bridge runs one there.
    pub(crate) fn own_hub_tokio(&self) -> Option<&tokio::runtime::Handle> {
        let i = osier_green::current_hub()?;
        // The caller's hub must be one of this bridge's (another runtime's hub has the same
        // indexes): its runtime is the one current on this thread.
        let current = tokio::runtime::Handle::try_current().ok()?;
        self.inner.on_hubs.get(i).filter(|h| h.id() == current.id())
    }

    /// True once [`shutdown_timeout`](Bridge::shutdown_timeout) was called.
    pub fn is_shutdown(&self) -> bool {
        self.inner.shutdown.load(Ordering::Acquire)
    }

    /// Shuts down both sides: green threads parked in `yield_future` return
    /// [`BridgeError::RuntimeShutdown`], the tokio runtime stops (its tasks are dropped), then the
    /// green runtime (if the bridge started it) kills its remaining green threads. Must not be
    /// called from a green thread or a tokio task of this bridge.
    pub fn shutdown_timeout(&self, timeout: Duration) -> Result<(), BridgeError> {
        self.inner.shutdown.store(true, Ordering::Release);
        let parked = std::mem::take(&mut *lock(&self.inner.waiters));
        for w in parked.slots.into_iter().flatten() {
            w.unpark();
        }
        if let Some(rt) = lock(&self.inner.tokio).take() {
            rt.shutdown_timeout(timeout);
        }
        if let Some(tx) = lock(&self.inner.driver_stop).take() {
            let _ = tx.send(());
        }
        if let Some(th) = lock(&self.inner.driver).take() {
            let _ = th.join();
        }
        if self.inner.owns_green {
            self.inner.green.shutdown_timeout(timeout)?;
        }
        Ok(())
    }

    /// Registers a parked `yield_future` caller to be woken at shutdown; returns its slot.
    pub(crate) fn register_waiter(&self, u: Unparker) -> usize {
        let mut w = lock(&self.inner.waiters);
        match w.free.pop() {
            Some(i) => {
                w.slots[i] = Some(u);
                i
            }
            None => {
                w.slots.push(Some(u));
                w.slots.len() - 1
            }
        }
    }

    pub(crate) fn unregister_waiter(&self, slot: usize) {
        let mut w = lock(&self.inner.waiters);
        if let Some(s) = w.slots.get_mut(slot) {
            if s.take().is_some() {
                w.free.push(slot);
            }
        }
    }
}
