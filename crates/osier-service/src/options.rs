//! What every launcher shares: its options ([`LauncherOptions`], [`ForegroundHup`]), what a
//! service factory gets ([`WorkerContext`]), the handle that drives a running launcher
//! ([`LauncherHandle`]), [`LaunchError`], and where the in-process loop runs (`Role`).

use std::sync::Arc;
use std::time::Duration;

use osier_bridge::{Bridge, BridgeError};
use tokio::sync::mpsc::UnboundedSender;

use crate::service::{BoxError, RestartMethod, Service};
use crate::signals::Event;

/// Builds a service in the process that runs it.
pub(crate) type ServiceFactory =
    Arc<dyn Fn(&WorkerContext) -> Result<Arc<dyn Service>, BoxError> + Send + Sync>;

type ReloadHook = Arc<dyn Fn(RestartMethod) -> Result<(), BoxError> + Send + Sync>;
type BridgeFactory = Arc<dyn Fn() -> Result<Bridge, BridgeError> + Send + Sync>;

pub(crate) fn factory<S, E, F>(f: F) -> ServiceFactory
where
    S: Service,
    E: Into<BoxError>,
    F: Fn(&WorkerContext) -> Result<S, E> + Send + Sync + 'static,
{
    Arc::new(move |ctx| match f(ctx) {
        Ok(s) => Ok(Arc::new(s) as Arc<dyn Service>),
        Err(e) => Err(e.into()),
    })
}

/// What a foreground process (not a daemon, SVC-SIG-09) does on SIGHUP. oslo's single-process
/// launcher resets its handlers and goes on waiting, so the next TERM kills it by the default
/// action (SVC-SIG-02); its ProcessLauncher stops as for TERM. Here the choice is explicit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ForegroundHup {
    /// Stop gracefully, as for TERM (a terminal hang-up: the default).
    #[default]
    Stop,
    /// Restart as a daemon would.
    Restart,
}

/// Launcher configuration (oslo's `[DEFAULT] graceful_shutdown_timeout`, `restart_method`, and
/// the conf object's reload hooks).
#[derive(Clone)]
#[must_use]
pub struct LauncherOptions {
    pub(crate) graceful_shutdown_timeout: Duration,
    pub(crate) restart_method: RestartMethod,
    pub(crate) foreground_hup: ForegroundHup,
    pub(crate) handle_signals: bool,
    pub(crate) wait_interval: Duration,
    pub(crate) reload_hooks: Vec<ReloadHook>,
    pub(crate) bridge: BridgeFactory,
}

impl std::fmt::Debug for LauncherOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LauncherOptions")
            .field("graceful_shutdown_timeout", &self.graceful_shutdown_timeout)
            .field("restart_method", &self.restart_method)
            .field("foreground_hup", &self.foreground_hup)
            .field("handle_signals", &self.handle_signals)
            .field("wait_interval", &self.wait_interval)
            .field("reload_hooks", &self.reload_hooks.len())
            .finish_non_exhaustive()
    }
}

impl Default for LauncherOptions {
    fn default() -> Self {
        LauncherOptions {
            graceful_shutdown_timeout: Duration::from_secs(60),
            restart_method: RestartMethod::Reload,
            foreground_hup: ForegroundHup::Stop,
            handle_signals: true,
            wait_interval: Duration::from_millis(10),
            reload_hooks: Vec::new(),
            bridge: Arc::new(|| Bridge::builder().build()),
        }
    }
}

impl LauncherOptions {
    /// oslo's defaults: a 60 s graceful timeout, `reload`, signals handled.
    pub fn new() -> Self {
        LauncherOptions::default()
    }

    /// How long a TERM may take before the process exits anyway with status 1 (oslo's
    /// `graceful_shutdown_timeout`, default 60 s; zero means wait forever, SVC-SIG-08).
    pub fn graceful_shutdown_timeout(mut self, t: Duration) -> Self {
        self.graceful_shutdown_timeout = t;
        self
    }

    /// What a HUP does (SVC-BASE-04).
    pub fn restart_method(mut self, m: RestartMethod) -> Self {
        self.restart_method = m;
        self
    }

    /// What a HUP does when the process is not a daemon (SVC-SIG-09).
    pub fn foreground_hup(mut self, a: ForegroundHup) -> Self {
        self.foreground_hup = a;
        self
    }

    /// Whether to install handlers for TERM, INT and HUP (default true). Turn it off to embed a
    /// launcher and drive it with a [`LauncherHandle`] only.
    pub fn handle_signals(mut self, on: bool) -> Self {
        self.handle_signals = on;
        self
    }

    /// How often a [`ProcessLauncher`](crate::ProcessLauncher) parent looks for dead workers
    /// (oslo's `wait_interval`, 0.01 s).
    pub fn wait_interval(mut self, t: Duration) -> Self {
        self.wait_interval = t.max(Duration::from_millis(1));
        self
    }

    /// A hook run on every HUP restart before the services are touched, with the restart method
    /// (oslo's `reload_config_files()` / `mutate_config_files()`). Runs in the process the HUP
    /// reached: the single process, the parent (`reload`: before it replaces the workers), or each
    /// worker (`mutate`). An error is logged and the restart goes on with the old settings.
    pub fn on_reload(
        mut self,
        hook: impl Fn(RestartMethod) -> Result<(), BoxError> + Send + Sync + 'static,
    ) -> Self {
        self.reload_hooks.push(Arc::new(hook));
        self
    }

    /// How to build the runtimes services run on (default: `Bridge::builder().build()`, one green
    /// hub and one tokio worker per core).
    pub fn bridge(
        mut self,
        f: impl Fn() -> Result<Bridge, BridgeError> + Send + Sync + 'static,
    ) -> Self {
        self.bridge = Arc::new(f);
        self
    }

    pub(crate) fn run_reload_hooks(&self) {
        for hook in &self.reload_hooks {
            if let Err(e) = hook(self.restart_method) {
                tracing::error!(error = %e, "reload hook failed; going on with the old settings");
            }
        }
    }
}

/// What a service factory gets: the runtimes, and which worker this is.
#[derive(Debug, Clone)]
pub struct WorkerContext {
    pub(crate) bridge: Bridge,
    pub(crate) worker: Option<usize>,
}

impl WorkerContext {
    /// The green and tokio runtimes of this process.
    pub fn bridge(&self) -> &Bridge {
        &self.bridge
    }

    /// The worker id under a [`ProcessLauncher`](crate::ProcessLauncher): 0 to N-1 for each
    /// service, and a respawned worker gets its old id back (SVC-THR-05). `None` in a
    /// [`ServiceLauncher`](crate::ServiceLauncher).
    pub fn worker_id(&self) -> Option<usize> {
        self.worker
    }
}

/// Launch errors.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    /// A worker count of zero (oslo's ValueError, SVC-LAUNCH-01). The count is a `usize`, so a
    /// negative or non-integer count does not compile (oslo's TypeError).
    #[error("invalid number of workers: {0} (must be at least 1)")]
    InvalidWorkers(usize),
}

/// Drives a running launcher from elsewhere (oslo's `launcher.stop()` and `restart()`).
#[derive(Debug, Clone)]
pub struct LauncherHandle {
    pub(crate) tx: UnboundedSender<Event>,
}

impl LauncherHandle {
    /// A graceful stop, as for TERM. Calling it again, or after the launcher ended, does nothing
    /// (TEST-SVC-03).
    pub fn stop(&self) {
        let _ = self.tx.send(Event::Stop);
    }

    /// A restart, as for HUP in a daemon (TEST-SVC-05).
    pub fn restart(&self) {
        let _ = self.tx.send(Event::Restart);
    }
}

/// Where [`run_in_process`] runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    /// A ServiceLauncher: tells systemd, HUP depends on [`is_daemon`](crate::is_daemon).
    Single,
    /// A ProcessLauncher worker: HUP always restarts in place (the parent sends it for
    /// `mutate`; an operator may send it to one worker, TEST-SVC-04), the parent talks to systemd.
    Worker {
        /// Which service (in the order launched).
        service: usize,
        /// The worker id, 0 to N-1.
        id: usize,
    },
}
