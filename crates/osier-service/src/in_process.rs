//! The event loop of a process that runs services: a [`ServiceLauncher`](crate::ServiceLauncher),
//! and each [`ProcessLauncher`](crate::ProcessLauncher) worker. It starts the runtimes, builds
//! and starts the services, and acts on signals and stop/restart requests until it is time to
//! exit; see the signal table of [`launch`](crate::launch).

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender};
use tokio::time::Instant;

use crate::options::{ForegroundHup, LauncherOptions, Role, ServiceFactory, WorkerContext};
use crate::service::{RestartMethod, Services};
use crate::signals::{self, Event, Signal};
use crate::systemd::{self, State};

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
        monitor: None,
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
    /// The health monitor (see [`monitor_health`]), while the services run.
    monitor: Option<tokio::task::JoinHandle<()>>,
}

/// How often services' health is looked at when systemd's watchdog is off.
const HEALTH_EVERY: Duration = Duration::from_secs(5);

/// Looks at every service's health at half systemd's watchdog interval (or every
/// [`HEALTH_EVERY`]): sends `WATCHDOG=1` (a ServiceLauncher only) and sets the
/// `osier_services_healthy` gauge to 1 while all are healthy; logs a warning naming what is
/// wrong when one stops being healthy, and when all are again.
async fn monitor_health(services: Arc<Services>, watchdog: Option<Duration>) {
    let every = watchdog.map_or(HEALTH_EVERY, |w| w / 2);
    let healthy_gauge = metrics::gauge!(crate::SERVICES_HEALTHY);
    let mut was_healthy = true;
    loop {
        let unhealthy = services.unhealthy();
        if unhealthy.is_empty() {
            if watchdog.is_some() {
                systemd::notify(State::Watchdog);
            }
            healthy_gauge.set(1.0);
            if !was_healthy {
                tracing::info!("every service is healthy again");
            }
        } else {
            healthy_gauge.set(0.0);
            if was_healthy {
                let problems: Vec<String> = unhealthy
                    .iter()
                    .map(|(i, why)| format!("service {i}: {why}"))
                    .collect();
                tracing::warn!(
                    problems = %problems.join("; "),
                    watchdog = watchdog.is_some(),
                    "a service is not healthy; while it is not, no systemd WATCHDOG=1 is sent (systemd restarts the process once WatchdogSec passes)"
                );
            }
        }
        was_healthy = unhealthy.is_empty();
        tokio::time::sleep(every).await;
    }
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
        self.spawn_monitor();
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

    fn spawn_monitor(&mut self) {
        // The watchdog is the main process's: a worker's is its parent's business.
        let watchdog = (self.role == Role::Single)
            .then(systemd::watchdog_interval)
            .flatten();
        self.stop_monitor();
        self.monitor = Some(tokio::spawn(monitor_health(
            self.services.clone(),
            watchdog,
        )));
    }

    fn stop_monitor(&mut self) {
        if let Some(m) = self.monitor.take() {
            m.abort();
        }
    }

    async fn graceful_stop(&mut self) -> Exit {
        self.stop_monitor();
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
        self.stop_monitor();
        tracing::error!("parent process died: stopping the services");
        if let Err(why) = self.stop_and_wait(false).await {
            return self.interrupted(why, "stop after parent death");
        }
        Exit::Clean(1)
    }

    async fn restart(&mut self) -> Result<(), Exit> {
        let method = self.opts.restart_method;
        tracing::info!(?method, "restarting the services");
        self.stop_monitor();
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
        self.spawn_monitor();
        Ok(())
    }
}
