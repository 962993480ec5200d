//! The runtime: hub threads, their configuration, and the process-wide default.
//!
//! ```
//! use osier_green::Runtime;
//!
//! let rt = Runtime::builder().hubs(1).build().unwrap();
//! let v = rt.block_on(|| {
//!     let gt = osier_green::spawn(|| 6 * 7);
//!     gt.wait().unwrap()
//! });
//! assert_eq!(v.unwrap(), 42);
//! rt.shutdown_timeout(std::time::Duration::from_secs(1)).unwrap();
//! ```
//!
//! Most programs never build one: the free functions ([`spawn`](crate::spawn) and friends) use
//! the process-wide runtime, which starts on first use with one hub and the defaults below. To
//! configure it, call [`Builder::install`] once at start-up, before anything spawns; a second,
//! conflicting choice fails with [`RuntimeError::AlreadyInstalled`] (LESSON-02).

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::driver::{DriveFn, HubDriver};
use crate::error::{GreenError, RuntimeError};
use crate::greenthread::{self, GreenThread};
use crate::hub::{self, lock, HubShared};
use crate::watchdog::{self, BlockedReport, WatchdogConfig};

/// Default green-thread stack size: 64 KiB of address space. Only the pages a green thread
/// touches cost memory, so a larger reservation is cheap; 64 KiB leaves room for tokio futures
/// polled in place through the bridge (a 48 KiB future overflowed may's 32 KiB default).
pub const DEFAULT_STACK_SIZE: usize = 64 * 1024;
const MIN_STACK_SIZE: usize = 16 * 1024;

#[derive(Debug, Clone)]
pub(crate) struct Config {
    pub(crate) hubs: usize,
    pub(crate) stack_size: usize,
}

/// Shared state of a runtime.
pub(crate) struct RuntimeShared {
    pub(crate) config: Config,
    pub(crate) hubs: Vec<Arc<HubShared>>,
    next_hub: AtomicUsize,
    threads: Mutex<Vec<JoinHandle<()>>>,
    watchdog: Mutex<Option<watchdog::Handle>>,
}

impl std::fmt::Debug for RuntimeShared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RuntimeShared")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

static NEXT_TASK_ID: AtomicU64 = AtomicU64::new(1);

pub(crate) fn next_task_id() -> u64 {
    NEXT_TASK_ID.fetch_add(1, Ordering::Relaxed)
}

impl RuntimeShared {
    /// The hub a new green thread goes to: the caller's own hub if it is a green thread of this
    /// runtime, else the next hub round-robin.
    pub(crate) fn pick_hub(self: &Arc<Self>, explicit: Option<usize>) -> Arc<HubShared> {
        if let Some(i) = explicit {
            return self.hubs[i % self.hubs.len()].clone();
        }
        if let Some(h) = hub::with_hub(|h| {
            self.hubs
                .iter()
                .find(|x| Arc::ptr_eq(x, &h.shared))
                .cloned()
        })
        .flatten()
        {
            return h;
        }
        let i = self.next_hub.fetch_add(1, Ordering::Relaxed) % self.hubs.len();
        self.hubs[i].clone()
    }
}

/// A green runtime: one or more hub threads.
///
/// Cloning gives another handle to the same runtime. Dropping handles does not stop it; call
/// [`shutdown_timeout`](Runtime::shutdown_timeout).
#[derive(Clone, Debug)]
pub struct Runtime {
    pub(crate) shared: Arc<RuntimeShared>,
}

/// Configures a [`Runtime`].
///
/// | setting | default | |
/// |---|---|---|
/// | [`hubs`](Builder::hubs) | 1 | eventlet's model: green threads never run at the same time |
/// | [`stack_size`](Builder::stack_size) | [`DEFAULT_STACK_SIZE`] (64 KiB) | per-spawn override in [`GreenBuilder`](crate::GreenBuilder) |
/// | [`watchdog`](Builder::watchdog) | off | blocking detection (GREEN-30) |
#[derive(Debug)]
#[must_use]
pub struct Builder {
    hubs: usize,
    stack_size: usize,
    name: String,
    watchdog: Option<WatchdogConfig>,
    driver: Option<DriveFn>,
}

impl Default for Builder {
    fn default() -> Self {
        Builder {
            hubs: 1,
            stack_size: DEFAULT_STACK_SIZE,
            name: "osier-hub".into(),
            watchdog: None,
            driver: None,
        }
    }
}

impl Builder {
    /// Number of hub threads. **1 (the default) keeps eventlet's guarantee** that no two green
    /// threads run at the same time, so code that relies on "no switch between these lines"
    /// stays correct (GREEN-01). With `n > 1` (opt-in), each hub runs its green threads one at a
    /// time, but green threads on different hubs run in parallel: shared state needs real
    /// synchronisation. A green thread stays on the hub it was spawned on; a green thread's own
    /// spawns go to its hub; spawns from outside are spread round-robin.
    pub fn hubs(mut self, n: usize) -> Self {
        self.hubs = n;
        self
    }

    /// Default stack size of green threads, in bytes (at least 16 KiB; rounded up to a page).
    /// Stacks have a guard page: see [`GreenError::StackOverflow`] for what an overflow does.
    pub fn stack_size(mut self, bytes: usize) -> Self {
        self.stack_size = bytes;
        self
    }

    /// Name prefix of the hub threads.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Reports, through `tracing` (target `osier_green::watchdog`, level WARN), every green
    /// thread that keeps its hub busy for longer than `threshold` without yielding, naming it.
    pub fn watchdog(mut self, threshold: Duration) -> Self {
        self.watchdog = Some(WatchdogConfig {
            threshold,
            callback: None,
        });
        self
    }

    /// Like [`watchdog`](Builder::watchdog), and also calls `f` with each report.
    pub fn watchdog_with(
        mut self,
        threshold: Duration,
        f: impl Fn(&BlockedReport) + Send + Sync + 'static,
    ) -> Self {
        self.watchdog = Some(WatchdogConfig {
            threshold,
            callback: Some(Arc::new(f)),
        });
        self
    }

    /// Each hub thread calls `f` with its [`HubDriver`] instead of running its own loop: an
    /// event loop of yours (osier-bridge's tokio runtime on the hub) gives the hub its turns and
    /// sleeps for it. See the [`driver`](crate::HubDriver) docs for the contract.
    pub fn drive_with(mut self, f: impl Fn(HubDriver) + Send + Sync + 'static) -> Self {
        self.driver = Some(DriveFn(Arc::new(f)));
        self
    }

    /// Starts the runtime's hub threads.
    pub fn build(self) -> Result<Runtime, RuntimeError> {
        if self.hubs == 0 || self.hubs > 1024 {
            return Err(RuntimeError::InvalidConfig(format!(
                "hubs must be 1..=1024, got {}",
                self.hubs
            )));
        }
        if self.stack_size < MIN_STACK_SIZE || self.stack_size > (1 << 30) {
            return Err(RuntimeError::InvalidConfig(format!(
                "stack_size must be 16 KiB..=1 GiB, got {}",
                self.stack_size
            )));
        }
        let stack_size = round_to_page(self.stack_size);
        let mut polls = Vec::new();
        let mut hubs = Vec::new();
        for i in 0..self.hubs {
            let poll = mio::Poll::new()?;
            hubs.push(HubShared::new(i, &poll, self.watchdog.is_some())?);
            polls.push(poll);
        }
        let shared = Arc::new(RuntimeShared {
            config: Config {
                hubs: self.hubs,
                stack_size,
            },
            hubs,
            next_hub: AtomicUsize::new(0),
            threads: Mutex::new(Vec::new()),
            watchdog: Mutex::new(None),
        });
        for (i, poll) in polls.into_iter().enumerate() {
            let hub = shared.hubs[i].clone();
            let rt = shared.clone();
            let drive = self.driver.clone();
            let th = std::thread::Builder::new()
                .name(format!("{}-{}", self.name, i))
                .spawn(move || match drive {
                    Some(DriveFn(f)) => f(HubDriver::new(hub::HubLoop::new(hub, rt, poll, true))),
                    None => hub::run(hub, rt, poll),
                })?;
            lock(&shared.threads).push(th);
        }
        if let Some(cfg) = self.watchdog {
            *lock(&shared.watchdog) = Some(watchdog::start(shared.hubs.clone(), cfg)?);
        }
        Ok(Runtime { shared })
    }

    /// Builds the runtime and makes it the process-wide one used by the free functions. Fails
    /// if one is already installed or was already started by first use (LESSON-02).
    pub fn install(self) -> Result<Runtime, RuntimeError> {
        if GLOBAL.get().is_some() {
            return Err(RuntimeError::AlreadyInstalled);
        }
        let rt = self.build()?;
        match GLOBAL.set(rt) {
            Ok(()) => Ok(Runtime::global().clone()),
            Err(rt) => {
                let _ = rt.shutdown_timeout(Duration::from_secs(1));
                Err(RuntimeError::AlreadyInstalled)
            }
        }
    }
}

fn round_to_page(n: usize) -> usize {
    n.div_ceil(4096) * 4096
}

static GLOBAL: OnceLock<Runtime> = OnceLock::new();

fn fallback_runtime() -> Runtime {
    match Builder::default().build() {
        Ok(rt) => rt,
        // Without a hub thread nothing green can run at all; there is nothing to fall back to.
        Err(e) => panic!("osier-green: cannot start the default runtime: {e}"),
    }
}

impl Runtime {
    /// A builder with the defaults.
    pub fn builder() -> Builder {
        Builder::default()
    }

    /// The process-wide runtime, started with the defaults on first use unless one was installed.
    pub fn global() -> &'static Runtime {
        GLOBAL.get_or_init(fallback_runtime)
    }

    /// The runtime of the calling green thread, or the process-wide one.
    pub fn current() -> Runtime {
        hub::with_hub(|h| Runtime {
            shared: h.rt.clone(),
        })
        .unwrap_or_else(|| Runtime::global().clone())
    }

    /// Number of hubs.
    pub fn hubs(&self) -> usize {
        self.shared.config.hubs
    }

    /// Default stack size of this runtime's green threads, in bytes.
    pub fn stack_size(&self) -> usize {
        self.shared.config.stack_size
    }

    /// Green threads alive (spawned, not finished) on all hubs.
    pub fn live_green_threads(&self) -> usize {
        self.shared
            .hubs
            .iter()
            .map(|h| h.live.load(Ordering::Acquire))
            .sum()
    }

    /// Spawns a green thread on this runtime (see [`spawn`](crate::spawn)).
    pub fn spawn<T, F>(&self, f: F) -> GreenThread<T>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        greenthread::GreenBuilder::new().spawn_on(self, f)
    }

    /// Runs `f` in a green thread on this runtime and blocks the calling OS thread until it ends.
    /// Meant for `main` and tests; from inside a green thread it simply waits (parking only the
    /// caller).
    pub fn block_on<T, F>(&self, f: F) -> Result<T, GreenError>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        self.spawn(f).join()
    }

    /// Stops the runtime: every live green thread is killed (as by [`GreenThread::kill`]), the
    /// hubs run until they are gone, and the hub threads exit. A green thread that never yields
    /// cannot be killed; after `timeout` this returns [`RuntimeError::ShutdownTimedOut`].
    ///
    /// Must not be called from one of this runtime's own green threads.
    pub fn shutdown_timeout(&self, timeout: Duration) -> Result<(), RuntimeError> {
        if let Some(w) = lock(&self.shared.watchdog).take() {
            w.stop();
        }
        for h in &self.shared.hubs {
            h.shutdown.store(true, Ordering::Release);
            h.wake();
        }
        let deadline = Instant::now() + timeout;
        loop {
            let exited = self
                .shared
                .hubs
                .iter()
                .all(|h| h.thread_state.load(Ordering::Acquire) == 2);
            if exited {
                for th in lock(&self.shared.threads).drain(..) {
                    let _ = th.join();
                }
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(RuntimeError::ShutdownTimedOut(self.live_green_threads()));
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}
