//! The multi-process launcher (oslo's `ProcessLauncher`, SVC-LAUNCH-04..08, SVC-SIG-03/04).
//!
//! ## Workers are re-executed, not forked (LESSON-04, SVC-THR-06)
//!
//! A worker is this same program started again (`std::env::current_exe()` with the same
//! arguments) with `OSIER_SERVICE_WORKER=<service>:<id>` in its environment. Its `main()` runs as
//! usual up to the launcher, which sees the variable and runs that one service in-process, as a
//! [`ServiceLauncher`](crate::ServiceLauncher) would. Why not `fork()`:
//!
//! - after a `fork()` only the calling thread exists in the child; every other thread's locks,
//!   queues and timers are frozen mid-step. A Rust process has threads before `main` reaches the
//!   launcher more often than not (tokio, `may`'s hubs, lapin's I/O, a logging thread), and
//!   oslo's threading backend lists threads-before-fork as its main hazard (SVC-THR-06);
//! - `spawn` (pickling the service) was oslo's other answer, and it flip-flopped because an object
//!   that pickles can still miss state its parent set up (LESSON-04). Here nothing crosses the
//!   process boundary except the environment and the arguments: the worker builds its service
//!   from the same factory the parent was given, after its own runtimes exist;
//! - a fresh `exec` is what every supervisor (systemd, cotyledon's spawn mode) does; its cost is
//!   one process start per worker, paid at start-up and on respawn only.
//!
//! So the parent never calls a factory and never starts a green or async runtime for services;
//! it supervises. Its own loop runs on a small current-thread tokio runtime, which is safe
//! because nothing is forked.
//!
//! ## Parent death (SVC-LAUNCH-07)
//!
//! A worker's stdin is the read end of a pipe whose write end only the parent holds. When the
//! parent dies, even by SIGKILL, the kernel closes the write end, the worker reads EOF, stops
//! its services and exits with status 1. (`PR_SET_PDEATHSIG` is Linux-only and fires when the
//! *thread* that spawned the child exits, not the process.) A worker therefore must not use its
//! stdin for anything else.
//!
//! ## Signals to the parent
//!
//! | Signal | Parent |
//! |---|---|
//! | TERM | stop respawning; systemd STOPPING=1; TERM to every worker; wait for them, bounded by the graceful timeout, then KILL the stragglers and exit 1 (oslo exits and leaves them to the pipe). Exit 0 only if every worker exited 0 |
//! | INT | exit 1 at once; the workers follow through the pipe (SVC-SIG-03) |
//! | HUP (daemon) | reload hooks; `reload`: TERM every worker, each comes back as a new process; `mutate`: HUP every worker, each restarts in place with the same pid (SVC-SIG-03) |
//! | HUP (foreground) | as TERM, like oslo's ProcessLauncher (SVC-SIG-09), unless [`ForegroundHup::Restart`](crate::ForegroundHup) |
//!
//! Respawn (SVC-LAUNCH-05): a dead worker is started again, with its old id, under oslo's fork
//! rate limit per service: when more than N starts are on record and the oldest is less than N
//! seconds old, "Forking too fast" is logged and the start waits 1 s (without blocking the
//! loop, so a TERM in the meantime is acted on at once). A reload HUP clears the record, as
//! cotyledon does (SVC-SIG-05), so replacing every worker at once is not throttled.

use std::collections::VecDeque;
use std::os::unix::process::ExitStatusExt;
use std::process::{Child, Command, ExitStatus};
use std::time::Duration;

use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};
use tokio::time::Instant;

use crate::in_process::run_in_process;
use crate::options::{
    factory, ForegroundHup, LaunchError, LauncherHandle, LauncherOptions, Role, ServiceFactory,
    WorkerContext,
};
use crate::service::{BoxError, RestartMethod, Service};
use crate::signals::{self, Event, Signal};
use crate::systemd::{self, State};

/// The environment variable that tells a re-executed program it is a worker, and which one.
pub const WORKER_ENV: &str = "OSIER_SERVICE_WORKER";

/// Runs each service in N worker processes and keeps N alive (oslo's `ProcessLauncher`).
///
/// ```no_run
/// use osier_service::{LauncherOptions, ProcessLauncher};
/// # struct Api; struct Reports;
/// # #[async_trait::async_trait]
/// # impl osier_service::Service for Api {
/// #     async fn start(&self) -> Result<(), osier_service::BoxError> { Ok(()) }
/// #     async fn stop(&self, _g: bool) -> Result<(), osier_service::BoxError> { Ok(()) }
/// #     async fn wait(&self) -> Result<(), osier_service::BoxError> { Ok(()) }
/// # }
/// # #[async_trait::async_trait]
/// # impl osier_service::Service for Reports {
/// #     async fn start(&self) -> Result<(), osier_service::BoxError> { Ok(()) }
/// #     async fn stop(&self, _g: bool) -> Result<(), osier_service::BoxError> { Ok(()) }
/// #     async fn wait(&self) -> Result<(), osier_service::BoxError> { Ok(()) }
/// # }
/// # fn main() -> Result<(), osier_service::LaunchError> {
/// let mut launcher = ProcessLauncher::new(LauncherOptions::new());
/// launcher.launch_service(|_ctx| Ok::<_, std::io::Error>(Api), 4)?;     // 4 API workers
/// launcher.launch_service(|_ctx| Ok::<_, std::io::Error>(Reports), 1)?; // and 1 reports worker
/// std::process::exit(launcher.wait()); // in a worker, this runs its one service
/// # }
/// ```
pub struct ProcessLauncher {
    opts: LauncherOptions,
    services: Vec<(ServiceFactory, usize)>,
    tx: UnboundedSender<Event>,
    rx: UnboundedReceiver<Event>,
}

impl std::fmt::Debug for ProcessLauncher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProcessLauncher")
            .field("opts", &self.opts)
            .field(
                "workers",
                &self.services.iter().map(|(_, n)| *n).collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl ProcessLauncher {
    /// A launcher with no services yet.
    pub fn new(opts: LauncherOptions) -> Self {
        let (tx, rx) = unbounded_channel();
        ProcessLauncher {
            opts,
            services: Vec::new(),
            tx,
            rx,
        }
    }

    /// Adds a service run by `workers` processes (SVC-LAUNCH-04: several services, each with its
    /// own count). Call it in the same order in every run of the program: a worker finds its
    /// service by position.
    pub fn launch_service<S, E, F>(
        &mut self,
        factory_fn: F,
        workers: usize,
    ) -> Result<&mut Self, LaunchError>
    where
        S: Service,
        E: Into<BoxError>,
        F: Fn(&WorkerContext) -> Result<S, E> + Send + Sync + 'static,
    {
        if workers == 0 {
            return Err(LaunchError::InvalidWorkers(workers));
        }
        self.services.push((factory(factory_fn), workers));
        Ok(self)
    }

    /// A handle to stop it (as TERM) or restart it (as HUP).
    pub fn handle(&self) -> LauncherHandle {
        LauncherHandle {
            tx: self.tx.clone(),
        }
    }

    /// In the parent: starts the workers and supervises them until it is time to exit; returns
    /// the exit status. In a worker: runs its service and returns the worker's exit status.
    pub fn wait(self) -> i32 {
        match worker_identity() {
            Ok(Some((service, id))) => {
                let Some((f, _)) = self.services.get(service) else {
                    tracing::error!(
                        service,
                        "{WORKER_ENV} names a service this program did not launch"
                    );
                    return 1;
                };
                let factories = vec![f.clone()];
                run_in_process(
                    self.opts,
                    factories,
                    Role::Worker { service, id },
                    self.tx,
                    self.rx,
                )
            }
            Ok(None) => self.supervise(),
            Err(e) => {
                tracing::error!(error = %e, "bad {WORKER_ENV}");
                1
            }
        }
    }

    fn supervise(self) -> i32 {
        let rt = match tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
        {
            Ok(rt) => rt,
            Err(e) => {
                tracing::error!(error = %e, "cannot start the supervisor's runtime");
                return 1;
            }
        };
        let _signals = match signals::forward_signals(self.opts.handle_signals, self.tx.clone()) {
            Ok(guard) => guard,
            Err(e) => {
                tracing::error!(error = %e, "cannot install signal handlers");
                return 1;
            }
        };
        let (reader, writer) = match std::io::pipe() {
            Ok(p) => p,
            Err(e) => {
                tracing::error!(error = %e, "cannot create the parent-liveness pipe");
                return 1;
            }
        };
        let mut sup = Supervisor {
            slots: Vec::new(),
            history: self
                .services
                .iter()
                .map(|(_, n)| ForkHistory::new(*n))
                .collect(),
            opts: self.opts,
            reader,
            _writer: writer,
            running: true,
            unclean_stop: false,
            deadline: None,
            rx: self.rx,
        };
        for (service, (_, n)) in self.services.iter().enumerate() {
            for id in 0..*n {
                sup.slots.push(Slot {
                    service,
                    id,
                    child: None,
                });
            }
        }
        rt.block_on(sup.run())
    }
}

/// Which worker this process is, from [`WORKER_ENV`].
fn worker_identity() -> Result<Option<(usize, usize)>, String> {
    let Some(v) = std::env::var_os(WORKER_ENV) else {
        return Ok(None);
    };
    parse_worker(&v.to_string_lossy()).map(Some)
}

fn parse_worker(v: &str) -> Result<(usize, usize), String> {
    let bad = || format!("{v:?} is not <service>:<worker>");
    let (s, i) = v.split_once(':').ok_or_else(bad)?;
    Ok((s.parse().map_err(|_| bad())?, i.parse().map_err(|_| bad())?))
}

struct Slot {
    service: usize,
    id: usize,
    child: Option<Child>,
}

/// oslo's `forktimes` for one service (SVC-LAUNCH-05).
struct ForkHistory {
    workers: usize,
    times: VecDeque<Instant>,
    /// Set when "Forking too fast": the next start waits until then.
    throttled_until: Option<Instant>,
}

impl ForkHistory {
    fn new(workers: usize) -> Self {
        ForkHistory {
            workers,
            times: VecDeque::new(),
            throttled_until: None,
        }
    }

    /// Whether a start may happen now; records it if so.
    fn may_start(&mut self, now: Instant) -> bool {
        if let Some(t) = self.throttled_until {
            if now < t {
                return false;
            }
            // oslo slept 1 s, then dropped the oldest record and forked.
            self.throttled_until = None;
            self.times.pop_front();
        } else if self.times.len() > self.workers {
            let window = Duration::from_secs(self.workers as u64);
            if self
                .times
                .front()
                .is_some_and(|t| now.duration_since(*t) < window)
            {
                tracing::info!("Forking too fast, sleeping");
                self.throttled_until = Some(now + Duration::from_secs(1));
                return false;
            }
            self.times.pop_front();
        }
        self.times.push_back(now);
        true
    }
}

struct Supervisor {
    opts: LauncherOptions,
    slots: Vec<Slot>,
    history: Vec<ForkHistory>,
    reader: std::io::PipeReader,
    /// Held, never written: when this process dies the workers read EOF.
    _writer: std::io::PipeWriter,
    running: bool,
    /// A worker exited badly (non-zero, or by a signal) after the stop began.
    unclean_stop: bool,
    /// When stopping with a graceful timeout: when the stragglers get KILL.
    deadline: Option<Instant>,
    rx: UnboundedReceiver<Event>,
}

impl Supervisor {
    async fn run(&mut self) -> i32 {
        self.respawn();
        systemd::notify(State::Ready);
        if systemd::watchdog_interval().is_some() {
            tracing::warn!("systemd's watchdog (WatchdogSec=) is not served by the process launcher: it sends no WATCHDOG=1 and systemd will restart it; run one ServiceLauncher per unit for the watchdog, or turn it off for this unit");
        }
        loop {
            let ev = tokio::time::timeout(self.opts.wait_interval, self.rx.recv()).await;
            self.reap();
            if self.running {
                self.respawn();
            } else if self.slots.iter().all(|s| s.child.is_none()) {
                if self.unclean_stop {
                    tracing::error!("every worker has exited, not all of them cleanly");
                    return 1;
                }
                tracing::info!("every worker has exited");
                return 0;
            } else if self.deadline.is_some_and(|d| Instant::now() >= d) {
                tracing::error!(
                    timeout = ?self.opts.graceful_shutdown_timeout,
                    "graceful shutdown timeout exceeded: killing the remaining workers"
                );
                self.signal_all(libc::SIGKILL);
                for slot in &mut self.slots {
                    if let Some(mut c) = slot.child.take() {
                        let _ = c.wait();
                    }
                }
                return 1;
            }
            match ev {
                Ok(Some(Event::Signal(Signal::Int))) => {
                    tracing::warn!("caught SIGINT: exiting at once; the workers follow");
                    return 1;
                }
                Ok(Some(Event::Signal(Signal::Term) | Event::Stop)) => self.stop(),
                Ok(Some(Event::Signal(Signal::Hup))) => {
                    if signals::is_daemon() || self.opts.foreground_hup == ForegroundHup::Restart {
                        self.restart();
                    } else {
                        tracing::info!("SIGHUP in the foreground: stopping as for SIGTERM");
                        self.stop();
                    }
                }
                Ok(Some(Event::Restart)) => self.restart(),
                // Only workers see these.
                Ok(Some(Event::ParentGone | Event::ServicesDone(_))) => {}
                Ok(None) | Err(_) => {}
            }
        }
    }

    fn stop(&mut self) {
        if !self.running {
            return; // a second TERM while stopping
        }
        tracing::info!("stopping: sending SIGTERM to every worker");
        systemd::notify(State::Stopping);
        self.running = false;
        let t = self.opts.graceful_shutdown_timeout;
        self.deadline = (!t.is_zero()).then(|| Instant::now() + t);
        self.signal_all(Signal::Term.raw());
    }

    fn restart(&mut self) {
        if !self.running {
            return;
        }
        let method = self.opts.restart_method;
        tracing::info!(?method, "restarting the workers");
        self.opts.run_reload_hooks();
        match method {
            RestartMethod::Reload => {
                for h in &mut self.history {
                    h.times.clear();
                    h.throttled_until = None;
                }
                self.signal_all(Signal::Term.raw());
            }
            RestartMethod::Mutate => self.signal_all(Signal::Hup.raw()),
        }
    }

    fn signal_all(&self, raw: i32) {
        for slot in &self.slots {
            if let Some(c) = &slot.child {
                signals::send(c.id(), raw);
            }
        }
    }

    fn reap(&mut self) {
        for slot in &mut self.slots {
            let Some(child) = &mut slot.child else {
                continue;
            };
            match child.try_wait() {
                Ok(None) => {}
                Ok(Some(status)) => {
                    log_exit(slot.service, slot.id, child.id(), status);
                    if !self.running && !status.success() {
                        self.unclean_stop = true;
                    }
                    slot.child = None;
                }
                Err(e) => {
                    tracing::warn!(pid = child.id(), error = %e, "cannot check a worker");
                }
            }
        }
    }

    fn respawn(&mut self) {
        let now = Instant::now();
        for i in 0..self.slots.len() {
            if self.slots[i].child.is_some() {
                continue;
            }
            let (service, id) = (self.slots[i].service, self.slots[i].id);
            if !self.history[service].may_start(now) {
                continue;
            }
            match self.spawn_worker(service, id) {
                Ok(child) => {
                    tracing::info!(service, worker = id, pid = child.id(), "started worker");
                    self.slots[i].child = Some(child);
                }
                Err(e) => {
                    tracing::error!(service, worker = id, error = %e, "cannot start a worker");
                }
            }
        }
    }

    fn spawn_worker(&self, service: usize, id: usize) -> std::io::Result<Child> {
        let exe = std::env::current_exe()?;
        Command::new(exe)
            .args(std::env::args_os().skip(1))
            .env(WORKER_ENV, format!("{service}:{id}"))
            // The parent tells systemd; workers stay silent (oslo's notify_once, SVC-SYSD-01).
            .env_remove("NOTIFY_SOCKET")
            .stdin(self.reader.try_clone()?)
            .spawn()
    }
}

fn log_exit(service: usize, id: usize, pid: u32, status: ExitStatus) {
    if let Some(sig) = status.signal() {
        tracing::warn!(
            service,
            worker = id,
            pid,
            signal = sig,
            "worker killed by signal"
        );
    } else {
        let code = status.code().unwrap_or(-1);
        if code == 0 {
            tracing::info!(service, worker = id, pid, code, "worker exited");
        } else {
            tracing::warn!(service, worker = id, pid, code, "worker exited");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn fork_rate_limit_waits_once_more_than_n_starts_are_recent() {
        // SVC-LAUNCH-05: N = 2 workers; 3 starts are allowed at once (the record must hold more
        // than N before it throttles), the 4th within N seconds waits 1 s.
        let mut h = ForkHistory::new(2);
        let t0 = Instant::now();
        assert!(h.may_start(t0));
        assert!(h.may_start(t0));
        assert!(h.may_start(t0));
        assert!(!h.may_start(t0), "throttled");
        assert!(!h.may_start(t0 + Duration::from_millis(999)));
        assert!(
            h.may_start(t0 + Duration::from_secs(1)),
            "after the 1 s sleep"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn fork_rate_limit_lets_old_starts_age_out() {
        let mut h = ForkHistory::new(2);
        let t0 = Instant::now();
        for _ in 0..3 {
            assert!(h.may_start(t0));
        }
        // The oldest record is N seconds old: no throttle.
        assert!(h.may_start(t0 + Duration::from_secs(2)));
        assert_eq!(h.times.len(), 3);
    }

    #[test]
    fn worker_marker_names_service_and_worker_id() {
        assert_eq!(parse_worker("1:3"), Ok((1, 3)));
        assert!(parse_worker("1").is_err());
        assert!(parse_worker("a:0").is_err());
        assert!(parse_worker("0:-1").is_err());
    }
}
