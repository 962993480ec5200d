//! The launchers in-process, driven through a `LauncherHandle` (no signals): the service
//! contract, `launch()`'s rules, restart methods, start failures, the graceful timeout.
//! Signals on real processes are in `processes.rs`.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use osier_service::{
    launch, BoxError, Green, GreenService, LaunchError, Launcher, LauncherOptions, RestartMethod,
    Service, ServiceLauncher,
};
use tokio::sync::watch;

/// Records every call; `wait` returns once `stop` was called (or never, with `stuck_stop`).
#[derive(Clone)]
struct Recorder {
    calls: Arc<Mutex<Vec<String>>>,
    stopped: watch::Sender<bool>,
    fail_start: bool,
    panic_start: bool,
    stuck_stop: bool,
}

impl Recorder {
    fn new() -> Recorder {
        Recorder {
            calls: Arc::new(Mutex::new(Vec::new())),
            stopped: watch::channel(false).0,
            fail_start: false,
            panic_start: false,
            stuck_stop: false,
        }
    }

    fn calls(&self) -> Vec<String> {
        self.calls.lock().unwrap().clone()
    }

    fn push(&self, s: impl Into<String>) {
        self.calls.lock().unwrap().push(s.into());
    }

    /// Polls until `pred(calls)` holds.
    fn wait_for(&self, pred: impl Fn(&[String]) -> bool) {
        let t0 = std::time::Instant::now();
        while !pred(&self.calls()) {
            assert!(t0.elapsed() < Duration::from_secs(10), "{:?}", self.calls());
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

#[async_trait::async_trait]
impl Service for Recorder {
    async fn start(&self) -> Result<(), BoxError> {
        self.push("start");
        if self.panic_start {
            panic!("boom in start");
        }
        if self.fail_start {
            return Err("no database".into());
        }
        self.stopped.send_replace(false);
        Ok(())
    }
    async fn stop(&self, graceful: bool) -> Result<(), BoxError> {
        self.push(format!("stop({graceful})"));
        if !self.stuck_stop {
            self.stopped.send_replace(true);
        }
        Ok(())
    }
    async fn wait(&self) -> Result<(), BoxError> {
        let mut rx = self.stopped.subscribe();
        let _ = rx.wait_for(|s| *s).await;
        self.push("wait");
        Ok(())
    }
    async fn reset(&self) -> Result<(), BoxError> {
        self.push("reset");
        Ok(())
    }
}

fn quiet() -> LauncherOptions {
    LauncherOptions::new().handle_signals(false)
}

fn single(opts: LauncherOptions, svc: &Recorder) -> ServiceLauncher {
    let mut l = ServiceLauncher::new(opts);
    let s = svc.clone();
    l.launch_service(move |_ctx| Ok::<_, BoxError>(s.clone()));
    l
}

#[test]
fn launch_with_zero_workers_is_refused() {
    // SVC-LAUNCH-01, TEST-SVC-02 (workers 0 -> ValueError; -1 and "1" do not compile).
    let r = launch(quiet(), |_ctx| Ok::<_, BoxError>(Recorder::new()), Some(0));
    assert!(matches!(r, Err(LaunchError::InvalidWorkers(0))));
}

#[test]
fn launch_with_none_or_one_worker_gives_a_service_launcher_and_more_a_process_launcher() {
    // SVC-LAUNCH-01, TEST-SVC-02.
    for (workers, single) in [(None, true), (Some(1), true), (Some(3), false)] {
        let l = launch(quiet(), |_ctx| Ok::<_, BoxError>(Recorder::new()), workers).unwrap();
        assert_eq!(matches!(l, Launcher::Service(_)), single, "{workers:?}");
    }
}

#[test]
fn process_launcher_refuses_zero_workers_for_a_service() {
    // SVC-LAUNCH-04: each service has its own count, at least 1.
    let mut l = osier_service::ProcessLauncher::new(quiet());
    assert!(l
        .launch_service(|_| Ok::<_, BoxError>(Recorder::new()), 2)
        .is_ok());
    assert!(matches!(
        l.launch_service(|_| Ok::<_, BoxError>(Recorder::new()), 0),
        Err(LaunchError::InvalidWorkers(0))
    ));
}

#[test]
fn stop_through_the_handle_stops_the_service_and_a_second_stop_is_harmless() {
    // TEST-SVC-03; SVC-LAUNCH-03 (wait returns the exit status).
    let svc = Recorder::new();
    let l = single(quiet(), &svc);
    let h = l.handle();
    let run = std::thread::spawn(move || l.wait());
    svc.wait_for(|c| c.contains(&"start".to_string()));
    h.stop();
    h.stop();
    assert_eq!(run.join().unwrap(), 0);
    assert_eq!(svc.calls(), ["start", "stop(true)", "wait"]);
    h.stop(); // after the end: nothing to do, no panic
}

#[test]
fn restart_with_reload_runs_the_hook_then_stops_resets_and_starts_again() {
    // SVC-BASE-03 (restart with reload), SVC-BASE-04 (reload_config_files), TEST-SVC-05.
    let svc = Recorder::new();
    let hooks = Arc::new(Mutex::new(Vec::new()));
    let h2 = hooks.clone();
    let opts = quiet().on_reload(move |m| {
        h2.lock().unwrap().push(m);
        Ok(())
    });
    let l = single(opts, &svc);
    let h = l.handle();
    let run = std::thread::spawn(move || l.wait());
    svc.wait_for(|c| c.len() == 1);
    assert!(
        hooks.lock().unwrap().is_empty(),
        "the hook never runs before a restart"
    );
    h.restart();
    svc.wait_for(|c| c.len() == 5);
    assert_eq!(*hooks.lock().unwrap(), [RestartMethod::Reload]);
    assert_eq!(
        svc.calls(),
        ["start", "stop(true)", "wait", "reset", "start"]
    );
    h.stop();
    assert_eq!(run.join().unwrap(), 0);
    assert_eq!(svc.calls()[5..], ["stop(true)", "wait"]);
}

#[test]
fn restart_with_mutate_runs_the_hook_and_reset_only() {
    // SVC-BASE-03 (mutate only resets), TEST-SVC-05 (the mutate hook runs on restart()).
    let svc = Recorder::new();
    let hooks = Arc::new(AtomicUsize::new(0));
    let h2 = hooks.clone();
    let opts = quiet()
        .restart_method(RestartMethod::Mutate)
        .on_reload(move |m| {
            assert_eq!(m, RestartMethod::Mutate);
            h2.fetch_add(1, Ordering::SeqCst);
            Ok(())
        });
    let l = single(opts, &svc);
    let h = l.handle();
    let run = std::thread::spawn(move || l.wait());
    svc.wait_for(|c| c.len() == 1);
    h.restart();
    svc.wait_for(|c| c.len() == 2);
    assert_eq!(hooks.load(Ordering::SeqCst), 1);
    h.stop();
    assert_eq!(run.join().unwrap(), 0);
    assert_eq!(svc.calls(), ["start", "reset", "stop(true)", "wait"]);
}

#[test]
fn a_failing_reload_hook_is_logged_and_the_restart_goes_on() {
    // SVC-BASE-04: a config reload that fails keeps the old settings; the service restarts.
    let svc = Recorder::new();
    let opts = quiet().on_reload(|_| Err("bad config file".into()));
    let l = single(opts, &svc);
    let h = l.handle();
    let run = std::thread::spawn(move || l.wait());
    svc.wait_for(|c| c.len() == 1);
    h.restart();
    svc.wait_for(|c| c.len() == 5);
    h.stop();
    assert_eq!(run.join().unwrap(), 0);
}

#[test]
fn a_service_that_fails_to_start_makes_wait_return_1() {
    // SVC-BASE-03, SVC-LAUNCH-08.
    let mut svc = Recorder::new();
    svc.fail_start = true;
    assert_eq!(single(quiet(), &svc).wait(), 1);
    assert_eq!(svc.calls(), ["start"]);
}

#[test]
fn a_service_that_panics_in_start_makes_wait_return_2() {
    // SVC-LAUNCH-08 ("an unhandled BaseException gives 2"); the panic does not escape.
    let mut svc = Recorder::new();
    svc.panic_start = true;
    assert_eq!(single(quiet(), &svc).wait(), 2);
}

#[test]
fn a_factory_error_makes_wait_return_1_before_anything_starts() {
    let mut l = ServiceLauncher::new(quiet());
    l.launch_service(|_ctx| Err::<Recorder, _>("cannot read config"));
    assert_eq!(l.wait(), 1);
}

#[test]
fn a_stop_slower_than_the_graceful_timeout_makes_wait_return_1() {
    // SVC-SIG-02 / SVC-SIG-08: the graceful timeout bounds the stop (oslo's ALRM -> exit 1).
    let mut svc = Recorder::new();
    svc.stuck_stop = true;
    let l = single(
        quiet().graceful_shutdown_timeout(Duration::from_millis(200)),
        &svc,
    );
    let h = l.handle();
    let run = std::thread::spawn(move || l.wait());
    svc.wait_for(|c| c.len() == 1);
    let t0 = std::time::Instant::now();
    h.stop();
    assert_eq!(run.join().unwrap(), 1);
    assert!(t0.elapsed() >= Duration::from_millis(200));
}

#[test]
fn services_that_stop_on_their_own_end_the_launcher_with_0() {
    // SVC-LAUNCH-03: wait() returns once the services' wait returned.
    let svc = Recorder::new();
    let l = single(quiet(), &svc);
    let run = std::thread::spawn(move || l.wait());
    svc.wait_for(|c| c.len() == 1);
    svc.stopped.send_replace(true);
    assert_eq!(run.join().unwrap(), 0);
    assert_eq!(svc.calls(), ["start", "wait"]);
}

#[test]
fn several_services_in_one_launcher_all_start_and_all_stop() {
    // SVC-BASE-03: Services holds them all.
    let (a, b) = (Recorder::new(), Recorder::new());
    let mut l = ServiceLauncher::new(quiet());
    let (a2, b2) = (a.clone(), b.clone());
    l.launch_service(move |_| Ok::<_, BoxError>(a2.clone()))
        .launch_service(move |_| Ok::<_, BoxError>(b2.clone()));
    let h = l.handle();
    let run = std::thread::spawn(move || l.wait());
    b.wait_for(|c| c.len() == 1);
    h.stop();
    assert_eq!(run.join().unwrap(), 0);
    assert_eq!(a.calls(), ["start", "stop(true)", "wait"]);
    assert_eq!(b.calls(), ["start", "stop(true)", "wait"]);
}

/// A green service: every method must run in a green thread.
struct GreenRecorder {
    calls: Arc<Mutex<Vec<String>>>,
    done: osier_green::Event<(), ()>,
}

impl GreenService for GreenRecorder {
    fn start(&self) -> Result<(), BoxError> {
        assert!(osier_green::in_green_thread());
        self.calls.lock().unwrap().push("start".into());
        Ok(())
    }
    fn stop(&self, graceful: bool) -> Result<(), BoxError> {
        assert!(osier_green::in_green_thread());
        self.calls.lock().unwrap().push(format!("stop({graceful})"));
        self.done.send(())?;
        Ok(())
    }
    fn wait(&self) -> Result<(), BoxError> {
        assert!(osier_green::in_green_thread());
        let _ = self.done.wait(); // parks the green thread only
        self.calls.lock().unwrap().push("wait".into());
        Ok(())
    }
}

#[test]
fn a_green_service_runs_each_method_in_a_green_thread() {
    let calls = Arc::new(Mutex::new(Vec::new()));
    let c2 = calls.clone();
    let mut l = ServiceLauncher::new(quiet());
    l.launch_service(move |ctx| {
        Ok::<_, BoxError>(Green::new(
            GreenRecorder {
                calls: c2.clone(),
                done: osier_green::Event::new(),
            },
            ctx.bridge().clone(),
        ))
    });
    let h = l.handle();
    let run = std::thread::spawn(move || l.wait());
    let t0 = std::time::Instant::now();
    while calls.lock().unwrap().is_empty() {
        assert!(t0.elapsed() < Duration::from_secs(10));
        std::thread::sleep(Duration::from_millis(5));
    }
    h.stop();
    assert_eq!(run.join().unwrap(), 0);
    assert_eq!(*calls.lock().unwrap(), ["start", "stop(true)", "wait"]);
}

#[test]
fn a_zero_graceful_timeout_waits_as_long_as_the_stop_takes() {
    // SVC-SIG-08: graceful_shutdown_timeout 0 means wait forever.
    struct SlowStop(watch::Sender<bool>);
    #[async_trait::async_trait]
    impl Service for SlowStop {
        async fn start(&self) -> Result<(), BoxError> {
            Ok(())
        }
        async fn stop(&self, _graceful: bool) -> Result<(), BoxError> {
            tokio::time::sleep(Duration::from_millis(300)).await;
            self.0.send_replace(true);
            Ok(())
        }
        async fn wait(&self) -> Result<(), BoxError> {
            let _ = self.0.subscribe().wait_for(|s| *s).await;
            Ok(())
        }
    }
    let mut l = ServiceLauncher::new(quiet().graceful_shutdown_timeout(Duration::ZERO));
    l.launch_service(|_| Ok::<_, BoxError>(SlowStop(watch::channel(false).0)));
    let h = l.handle();
    h.stop(); // queued: acted on once the service has started
    let t0 = std::time::Instant::now();
    assert_eq!(l.wait(), 0);
    assert!(t0.elapsed() >= Duration::from_millis(300));
}
