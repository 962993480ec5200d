//! Launchers (SVC-LAUNCH-*, SVC-SIG-*): run services until a signal says stop.
//!
//! | oslo.service | osier-service |
//! |---|---|
//! | `service.launch(conf, svc, workers=None or 1)` | [`launch`]`(opts, factory, None or Some(1))` → [`Launcher::Service`] |
//! | `service.launch(conf, svc, workers=4)` | [`launch`]`(opts, factory, Some(4))` → [`Launcher::Process`] |
//! | `ServiceLauncher(conf).launch_service(svc)` | [`ServiceLauncher::new`]`(opts).launch_service(factory)` |
//! | `launcher.wait()` | [`Launcher::wait`]: drives the runtimes, returns the exit status |
//! | `launcher.stop()` / `launcher.restart()` | [`LauncherHandle::stop`] / [`LauncherHandle::restart`] |
//! | `graceful_shutdown_timeout` (0 = forever) | [`LauncherOptions::graceful_shutdown_timeout`] |
//! | `restart_method` | [`LauncherOptions::restart_method`] |
//! | `conf.reload_config_files()` / mutate hooks | [`LauncherOptions::on_reload`] |
//!
//! A launcher takes a *factory* rather than a service: `Fn(&WorkerContext) -> Result<S, E>`.
//! The factory runs in the process that will run the service, after that process's runtimes
//! (a [`Bridge`](osier_bridge::Bridge): the green hubs and tokio) exist. So the parent of a
//! [`ProcessLauncher`](crate::ProcessLauncher) never builds a service or a runtime it would have
//! to share with its workers, and a service builds its connections where it uses them.
//!
//! `wait()` is the seed's "launcher.wait() must now call loop.run_forever()": it starts the
//! runtimes, builds and starts the services, and then acts on events until it is time to exit.
//! It returns the exit status; pass it to `std::process::exit`.
//!
//! ## What each signal does (single process, and in each worker)
//!
//! | Signal | Effect | Exit status |
//! |---|---|---|
//! | TERM | systemd STOPPING=1; `stop(graceful=true)` then `wait()` on every service, bounded by the graceful shutdown timeout (SVC-SIG-02) | 0; 1 after the timeout ("graceful shutdown timeout exceeded") |
//! | INT | exit at once, services not stopped (SVC-SIG-02) | 1 |
//! | HUP, daemon | reload hooks, then restart in place as `restart_method` says; systemd RELOADING=1 then READY=1 (SVC-SIG-02) | keeps running |
//! | HUP, foreground | [`ForegroundHup`]: a graceful stop as for TERM by default, or a restart (SVC-SIG-09) | 0 |
//! | parent died (worker) | `stop(graceful=false)`, bounded by the timeout (SVC-LAUNCH-07) | 1 |
//! | every service's `wait()` returned by itself | — | 0 |
//!
//! A service that fails to build or start makes the launcher exit with status 1, a panic in it
//! with 2 (SVC-BASE-03, SVC-LAUNCH-08), with the reason logged.
//!
//! Differences from oslo, on purpose: a second TERM during a graceful stop is ignored (oslo puts
//! the default action back, so the second TERM kills the process without a word); a foreground
//! HUP never leaves the process hanging with its handlers reset (SVC-SIG-02's hang); TERM
//! stops services with `graceful=true` (oslo's `Services.stop()` passes no flag, and the
//! default is `False`), because that is what TERM means to a user.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use osier_bridge::{Bridge, BridgeError};
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};
use tokio::time::Instant;

use crate::service::{BoxError, RestartMethod, Service, Services};
use crate::signals::{self, Event, Signal};
use crate::systemd::{self, State};

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
    /// [`ServiceLauncher`].
    pub fn worker_id(&self) -> Option<usize> {
        self.worker
    }
}

/// Launch errors.
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

/// Runs services in this process (oslo's `ServiceLauncher`, SVC-LAUNCH-03).
///
/// ```no_run
/// use osier_service::{LauncherOptions, ServiceLauncher};
/// # struct Api;
/// # #[async_trait::async_trait]
/// # impl osier_service::Service for Api {
/// #     async fn start(&self) -> Result<(), osier_service::BoxError> { Ok(()) }
/// #     async fn stop(&self, _g: bool) -> Result<(), osier_service::BoxError> { Ok(()) }
/// #     async fn wait(&self) -> Result<(), osier_service::BoxError> { Ok(()) }
/// # }
/// let mut launcher = ServiceLauncher::new(LauncherOptions::new());
/// launcher.launch_service(|_ctx| Ok::<_, std::io::Error>(Api));
/// std::process::exit(launcher.wait());
/// ```
pub struct ServiceLauncher {
    opts: LauncherOptions,
    factories: Vec<ServiceFactory>,
    tx: UnboundedSender<Event>,
    rx: UnboundedReceiver<Event>,
}

impl std::fmt::Debug for ServiceLauncher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceLauncher")
            .field("opts", &self.opts)
            .field("services", &self.factories.len())
            .finish()
    }
}

impl ServiceLauncher {
    /// A launcher with no services yet.
    pub fn new(opts: LauncherOptions) -> Self {
        let (tx, rx) = unbounded_channel();
        ServiceLauncher {
            opts,
            factories: Vec::new(),
            tx,
            rx,
        }
    }

    /// Adds a service, built by `factory` once the runtimes exist. There is no worker count: a
    /// ServiceLauncher runs one copy (oslo raises ValueError for workers > 1, SVC-LAUNCH-02).
    pub fn launch_service<S, E, F>(&mut self, factory_fn: F) -> &mut Self
    where
        S: Service,
        E: Into<BoxError>,
        F: Fn(&WorkerContext) -> Result<S, E> + Send + Sync + 'static,
    {
        self.factories.push(factory(factory_fn));
        self
    }

    /// A handle to stop or restart it from another thread.
    pub fn handle(&self) -> LauncherHandle {
        LauncherHandle {
            tx: self.tx.clone(),
        }
    }

    /// Runs the services until it is time to exit, and returns the exit status.
    pub fn wait(self) -> i32 {
        run_in_process(self.opts, self.factories, Role::Single, self.tx, self.rx)
    }
}

/// What [`launch`] returns.
#[derive(Debug)]
pub enum Launcher {
    /// One process (workers `None` or 1).
    Service(ServiceLauncher),
    /// N worker processes.
    Process(crate::ProcessLauncher),
}

impl Launcher {
    /// Runs until it is time to exit; returns the exit status.
    pub fn wait(self) -> i32 {
        match self {
            Launcher::Service(l) => l.wait(),
            Launcher::Process(l) => l.wait(),
        }
    }

    /// A handle to stop or restart it.
    pub fn handle(&self) -> LauncherHandle {
        match self {
            Launcher::Service(l) => l.handle(),
            Launcher::Process(l) => l.handle(),
        }
    }
}

/// oslo's `service.launch(conf, service, workers, restart_method)` (SVC-LAUNCH-01): `None` or 1
/// worker gives a [`ServiceLauncher`], more a [`ProcessLauncher`](crate::ProcessLauncher), and 0
/// is [`LaunchError::InvalidWorkers`]. A worker count that is not an integer does not compile:
///
/// ```compile_fail
/// # use osier_service::{launch, BoxError, LauncherOptions, Service};
/// # struct Api;
/// # #[async_trait::async_trait]
/// # impl Service for Api {
/// #     async fn start(&self) -> Result<(), BoxError> { Ok(()) }
/// #     async fn stop(&self, _g: bool) -> Result<(), BoxError> { Ok(()) }
/// #     async fn wait(&self) -> Result<(), BoxError> { Ok(()) }
/// # }
/// let l = launch(LauncherOptions::new(), |_ctx| Ok::<_, BoxError>(Api), "1");
/// ```
///
/// (The same call with `Some(1)` compiles.)
pub fn launch<S, E, F>(
    opts: LauncherOptions,
    factory_fn: F,
    workers: Option<usize>,
) -> Result<Launcher, LaunchError>
where
    S: Service,
    E: Into<BoxError>,
    F: Fn(&WorkerContext) -> Result<S, E> + Send + Sync + 'static,
{
    match workers {
        Some(0) => Err(LaunchError::InvalidWorkers(0)),
        None | Some(1) => {
            let mut l = ServiceLauncher::new(opts);
            l.launch_service(factory_fn);
            Ok(Launcher::Service(l))
        }
        Some(n) => {
            let mut l = crate::ProcessLauncher::new(opts);
            l.launch_service(factory_fn, n)?;
            Ok(Launcher::Process(l))
        }
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

/// How the in-process loop ended.
enum Exit {
    /// The services stopped: shut the runtimes down, then exit with this status.
    Clean(i32),
    /// Exit now, without waiting for anything (oslo's `os._exit`).
    Now(i32),
}

/// The loop of a ServiceLauncher, and of each ProcessLauncher worker.
pub(crate) fn run_in_process(
    opts: LauncherOptions,
    factories: Vec<ServiceFactory>,
    role: Role,
    tx: UnboundedSender<Event>,
    rx: UnboundedReceiver<Event>,
) -> i32 {
    let bridge = match (opts.bridge)() {
        Ok(b) => b,
        Err(e) => {
            tracing::error!(error = %e, "cannot start the runtimes");
            return 1;
        }
    };
    let ctx = WorkerContext {
        bridge: bridge.clone(),
        worker: match role {
            Role::Single => None,
            Role::Worker { id, .. } => Some(id),
        },
    };
    let mut services = Services::new();
    for (index, f) in factories.iter().enumerate() {
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(&ctx))) {
            Ok(Ok(s)) => services.add(s),
            Ok(Err(e)) => {
                tracing::error!(service = index, error = %e, "service could not be built; exiting");
                return 1;
            }
            Err(_) => {
                tracing::error!(service = index, "service factory panicked; exiting");
                return 2;
            }
        }
    }
    let _signals = match signals::forward_signals(opts.handle_signals, tx.clone()) {
        Ok(guard) => guard,
        Err(e) => {
            tracing::error!(error = %e, "cannot install signal handlers");
            return 1;
        }
    };
    if matches!(role, Role::Worker { .. }) {
        watch_parent(tx.clone());
    }
    let mut run = InProcess {
        opts,
        services: Arc::new(services),
        role,
        tx,
        rx,
        pending: VecDeque::new(),
        generation: 0,
        waiter: None,
    };
    // Everything the launcher logs in a worker carries the worker's id.
    let span = match role {
        Role::Single => tracing::Span::none(),
        Role::Worker { service, id } => tracing::info_span!("worker", service, id),
    };
    let exit = bridge
        .tokio()
        .block_on(tracing::Instrument::instrument(run.serve(), span));
    match exit {
        Exit::Clean(code) => {
            drop(run);
            if let Err(e) = bridge.shutdown_timeout(Duration::from_secs(1)) {
                tracing::debug!(error = %e, "runtime shutdown");
            }
            code
        }
        Exit::Now(code) => {
            // Leave every runtime and service as it is: a stuck service must not hold the exit
            // up in a destructor. The caller exits the process with `code`.
            std::mem::forget(run);
            std::mem::forget(ctx);
            std::mem::forget(bridge);
            code
        }
    }
}

/// A worker's stdin is the read end of the parent's liveness pipe: EOF means the parent died,
/// however it died (SVC-LAUNCH-07).
fn watch_parent(tx: UnboundedSender<Event>) {
    let spawned = std::thread::Builder::new()
        .name("osier-parent-watch".into())
        .spawn(move || {
            use std::io::Read;
            let mut buf = [0_u8; 64];
            let mut stdin = std::io::stdin();
            loop {
                match stdin.read(&mut buf) {
                    Ok(0) => break,
                    Ok(_) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(_) => break,
                }
            }
            let _ = tx.send(Event::ParentGone);
        });
    if let Err(e) = spawned {
        tracing::error!(error = %e, "cannot watch the parent process");
    }
}

/// Why an interruptible step ended early.
enum Interrupted {
    /// SIGINT.
    Int,
    /// The parent died.
    ParentGone,
    /// The deadline passed.
    Deadline,
}

struct InProcess {
    opts: LauncherOptions,
    services: Arc<Services>,
    role: Role,
    tx: UnboundedSender<Event>,
    rx: UnboundedReceiver<Event>,
    /// Events that arrived while a step was running, handled after it.
    pending: VecDeque<Event>,
    /// Bumped on every restart, so a stale "services done" is ignored.
    generation: u64,
    /// The task that calls every service's `wait()` (the only caller of `wait`, so a service
    /// never sees two concurrent waits).
    waiter: Option<tokio::task::JoinHandle<()>>,
}

impl InProcess {
    /// Awaits `task`; SIGINT, the parent's death and `deadline` cut it short, other events wait
    /// in `pending`.
    async fn interruptible<T: Send + 'static>(
        &mut self,
        task: tokio::task::JoinHandle<T>,
        deadline: Option<Instant>,
    ) -> Result<Result<T, tokio::task::JoinError>, Interrupted> {
        tokio::pin!(task);
        let sleep = async {
            match deadline {
                Some(d) => tokio::time::sleep_until(d).await,
                None => std::future::pending().await,
            }
        };
        tokio::pin!(sleep);
        loop {
            tokio::select! {
                r = &mut task => return Ok(r),
                () = &mut sleep => return Err(Interrupted::Deadline),
                ev = self.rx.recv() => match ev {
                    Some(Event::Signal(Signal::Int)) => return Err(Interrupted::Int),
                    Some(Event::ParentGone) => return Err(Interrupted::ParentGone),
                    Some(ev) => self.pending.push_back(ev),
                    None => {}
                },
            }
        }
    }

    fn interrupted(&self, why: Interrupted, step: &str) -> Exit {
        match why {
            Interrupted::Int => {
                tracing::warn!(step, "caught SIGINT: exiting at once");
                Exit::Now(1)
            }
            Interrupted::ParentGone => {
                tracing::error!(step, "parent process died: exiting");
                Exit::Now(1)
            }
            Interrupted::Deadline => {
                tracing::error!(
                    step,
                    timeout = ?self.opts.graceful_shutdown_timeout,
                    "graceful shutdown timeout exceeded: exiting without waiting for the services"
                );
                Exit::Now(1)
            }
        }
    }

    async fn start(&mut self) -> Result<(), Exit> {
        let services = self.services.clone();
        let task = tokio::spawn(async move { services.start_all().await });
        match self.interruptible(task, None).await {
            Ok(Ok(Ok(()))) => Ok(()),
            Ok(Ok(Err(e))) => {
                tracing::error!(error = %e, "a service failed to start: exiting with status 1");
                Err(Exit::Now(1))
            }
            Ok(Err(panic)) => {
                tracing::error!(error = %panic, "a service panicked while starting: exiting with status 2");
                Err(Exit::Now(2))
            }
            Err(why) => Err(self.interrupted(why, "start")),
        }
    }

    fn spawn_waiter(&mut self) {
        self.generation += 1;
        let generation = self.generation;
        let services = self.services.clone();
        let tx = self.tx.clone();
        self.waiter = Some(tokio::spawn(async move {
            services.wait_all().await;
            let _ = tx.send(Event::ServicesDone(generation));
        }));
    }

    /// Stops every service and waits (through the waiter task) until they have stopped, bounded
    /// by the graceful shutdown timeout.
    async fn stop_and_wait(&mut self, graceful: bool) -> Result<(), Interrupted> {
        let services = self.services.clone();
        let waiter = self.waiter.take();
        let task = tokio::spawn(async move {
            services.stop_all(graceful).await;
            if let Some(w) = waiter {
                let _ = w.await;
            }
        });
        let deadline = self.deadline();
        self.interruptible(task, deadline).await.map(|_| ())
    }

    async fn serve(&mut self) -> Exit {
        if let Err(exit) = self.start().await {
            return exit;
        }
        if self.role == Role::Single {
            systemd::notify(State::Ready);
        }
        tracing::info!(role = ?self.role, pid = std::process::id(), "services started");
        self.spawn_waiter();
        loop {
            let ev = match self.pending.pop_front() {
                Some(ev) => ev,
                None => match self.rx.recv().await {
                    Some(ev) => ev,
                    None => return Exit::Clean(0),
                },
            };
            match ev {
                Event::Signal(Signal::Int) => return self.interrupted(Interrupted::Int, "run"),
                Event::ParentGone => return self.parent_gone().await,
                Event::Signal(Signal::Term) | Event::Stop => {
                    tracing::info!("stopping the services gracefully");
                    return self.graceful_stop().await;
                }
                Event::Signal(Signal::Hup) => {
                    let restart = match self.role {
                        Role::Worker { .. } => true,
                        Role::Single => {
                            signals::is_daemon()
                                || self.opts.foreground_hup == ForegroundHup::Restart
                        }
                    };
                    if restart {
                        if let Err(exit) = self.restart().await {
                            return exit;
                        }
                    } else {
                        tracing::info!(
                            "SIGHUP in the foreground: stopping gracefully (ForegroundHup::Stop)"
                        );
                        return self.graceful_stop().await;
                    }
                }
                Event::Restart => {
                    if let Err(exit) = self.restart().await {
                        return exit;
                    }
                }
                Event::ServicesDone(g) if g == self.generation => {
                    tracing::info!("every service has stopped on its own");
                    return Exit::Clean(0);
                }
                Event::ServicesDone(_) => {} // from before a restart
            }
        }
    }

    fn deadline(&self) -> Option<Instant> {
        let t = self.opts.graceful_shutdown_timeout;
        (!t.is_zero()).then(|| Instant::now() + t)
    }

    async fn graceful_stop(&mut self) -> Exit {
        if self.role == Role::Single {
            systemd::notify(State::Stopping);
        }
        match self.stop_and_wait(true).await {
            Ok(()) => {
                tracing::info!("services stopped");
                Exit::Clean(0)
            }
            Err(why) => self.interrupted(why, "graceful stop"),
        }
    }

    async fn parent_gone(&mut self) -> Exit {
        tracing::error!("parent process died: stopping the services");
        if let Err(why) = self.stop_and_wait(false).await {
            return self.interrupted(why, "stop after parent death");
        }
        Exit::Clean(1)
    }

    async fn restart(&mut self) -> Result<(), Exit> {
        let method = self.opts.restart_method;
        tracing::info!(?method, "restarting the services");
        if self.role == Role::Single {
            systemd::notify(State::Reloading);
        }
        self.opts.run_reload_hooks();
        let services = self.services.clone();
        let waiter = match method {
            RestartMethod::Reload => self.waiter.take(),
            RestartMethod::Mutate => None,
        };
        // oslo's `Services.restart()` (SVC-BASE-03); the waiter task is the one that waits.
        let task = tokio::spawn(async move {
            if method == RestartMethod::Reload {
                services.stop_all(true).await;
                if let Some(w) = waiter {
                    let _ = w.await;
                }
            }
            services.reset_all().await;
            if method == RestartMethod::Reload {
                services.start_all().await?;
            }
            Ok::<(), crate::service::StartError>(())
        });
        match self.interruptible(task, None).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(e))) => {
                tracing::error!(error = %e, "a service failed to start again: exiting with status 1");
                return Err(Exit::Now(1));
            }
            Ok(Err(panic)) => {
                tracing::error!(error = %panic, "a service panicked while restarting: exiting with status 2");
                return Err(Exit::Now(2));
            }
            Err(why) => return Err(self.interrupted(why, "restart")),
        }
        if method == RestartMethod::Reload {
            self.spawn_waiter();
        }
        if self.role == Role::Single {
            systemd::notify(State::Ready);
        }
        tracing::info!(?method, pid = std::process::id(), "services restarted");
        Ok(())
    }
}
