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

use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};

use crate::in_process::run_in_process;
use crate::options::{
    factory, LaunchError, LauncherHandle, LauncherOptions, Role, ServiceFactory, WorkerContext,
};
use crate::process::ProcessLauncher;
use crate::service::{BoxError, Service};
use crate::signals::Event;

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
    Process(ProcessLauncher),
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
/// worker gives a [`ServiceLauncher`], more a [`ProcessLauncher`](ProcessLauncher), and 0
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
            let mut l = ProcessLauncher::new(opts);
            l.launch_service(factory_fn, n)?;
            Ok(Launcher::Process(l))
        }
    }
}
