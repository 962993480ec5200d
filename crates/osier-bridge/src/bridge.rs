//! [`Bridge`]: one process, both models. It owns (or shares) a green runtime and owns a tokio
//! runtime driven by its own threads, and shuts both down together.
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

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use osier_green::Unparker;

use crate::error::BridgeError;

/// How the tokio side is driven. Both are driven by threads of their own, never by a hub: a
/// tokio runtime nobody drives hangs every future waiting on its timers or I/O.
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
    tokio: Mutex<Option<tokio::runtime::Runtime>>,
    /// Stops the driver thread of a current-thread runtime.
    driver_stop: Mutex<Option<tokio::sync::oneshot::Sender<()>>>,
    driver: Mutex<Option<std::thread::JoinHandle<()>>>,
    pub(crate) shutdown: AtomicBool,
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
}

impl Default for Builder {
    fn default() -> Self {
        Builder {
            green: None,
            green_hubs: 1,
            green_stack: None,
            watchdog: None,
            flavor: TokioFlavor::MultiThread(0),
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
        let (green, owns_green) = match self.green.clone() {
            Some(rt) => (rt, false),
            None => (self.green_builder().build()?, true),
        };
        self.finish(green, owns_green)
    }

    /// Starts both runtimes and makes them the process-wide ones: the bridge used by the free
    /// functions, and osier-green's global runtime. The choice is made once (LESSON-02): it fails
    /// with [`BridgeError::AlreadyInstalled`] if a bridge or a global green runtime exists already.
    pub fn install(self) -> Result<Bridge, BridgeError> {
        if GLOBAL.get().is_some() {
            return Err(BridgeError::AlreadyInstalled);
        }
        let (green, owns) = match self.green.clone() {
            Some(rt) => (rt, false),
            None => (
                self.green_builder().install().map_err(|e| match e {
                    osier_green::RuntimeError::AlreadyInstalled => BridgeError::AlreadyInstalled,
                    other => BridgeError::Runtime(other),
                })?,
                true,
            ),
        };
        let bridge = self.finish(green, owns)?;
        GLOBAL
            .set(bridge.clone())
            .map_err(|_| BridgeError::AlreadyInstalled)?;
        Ok(bridge)
    }

    fn finish(self, green: osier_green::Runtime, owns_green: bool) -> Result<Bridge, BridgeError> {
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
                tokio: Mutex::new(rt),
                driver_stop: Mutex::new(stop),
                driver: Mutex::new(driver),
                shutdown: AtomicBool::new(false),
                waiters: Mutex::new(Waiters::default()),
            }),
        })
    }
}

static GLOBAL: OnceLock<Bridge> = OnceLock::new();

impl Bridge {
    /// A builder with the defaults: one green hub, a multi-thread tokio runtime with one worker
    /// per core.
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
