//! The worked example (`src/main.rs`) as a real process, driven by real
//! signals: TERM with work in flight, TERM with a stuck handler, INT, HUP, SIGKILL on a
//! worker and on the parent, a failing start, systemd notify. Requests in flight go through
//! the real RabbitMQ on 127.0.0.1:5672; the process-structure tests use the in-memory
//! transport (each worker has its own).
//!
//! The child's stderr is a pipe and its stdout is /dev/null, so it is a daemon (SVC-SIG-09).

use std::io::{BufRead, BufReader};
use std::os::unix::net::UnixDatagram;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use osier_messaging::{RequestContext, RpcClient, Target, Transport};
use serde_json::{json, Value};

/// The test broker as a transport URL: `OSIER_AMQP_URL` (`amqp://user:pass@host:port/vhost`,
/// default the local broker) with oslo's scheme.
fn rabbit() -> String {
    let uri = std::env::var("OSIER_AMQP_URL")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into());
    let rest = uri.strip_prefix("amqp://").unwrap_or(&uri);
    let rest = rest.strip_suffix("%2f").unwrap_or(rest);
    format!("rabbit://{rest}")
}
const LONG: Duration = Duration::from_secs(30);

fn unique_topic() -> String {
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    format!("osier-svc-test-{}-{n}-{t}", std::process::id())
}

/// The demo as a child process, with its stderr collected line by line.
struct Demo {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Demo {
    fn start(args: &[&str], env: &[(&str, &str)]) -> Demo {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_osier-service-demo"));
        cmd.args(args)
            .env("RUST_LOG", "info,lapin=warn")
            .env_remove("NOTIFY_SOCKET")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("start the demo");
        let stderr = child.stderr.take().expect("stderr is piped");
        Demo {
            child,
            lines: collect_lines(stderr),
        }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn log(&self) -> String {
        self.lines.lock().unwrap().join("\n")
    }

    /// Lines matching `pred`, now.
    fn matching(&self, pred: impl Fn(&str) -> bool) -> Vec<String> {
        self.lines
            .lock()
            .unwrap()
            .iter()
            .filter(|l| pred(l))
            .cloned()
            .collect()
    }

    /// Waits until at least `n` lines match `pred`; returns them.
    fn wait_lines(&self, n: usize, pred: impl Fn(&str) -> bool) -> Vec<String> {
        let t0 = Instant::now();
        loop {
            let m = self.matching(&pred);
            if m.len() >= n {
                return m;
            }
            assert!(
                t0.elapsed() < LONG,
                "timed out waiting for {n} matching lines; log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn wait_line(&self, needle: &str) -> String {
        self.wait_lines(1, |l| l.contains(needle)).remove(0)
    }

    fn signal(&self, sig: i32) {
        kill(self.pid(), sig);
    }

    fn wait_exit(&mut self, within: Duration) -> ExitStatus {
        let t0 = Instant::now();
        loop {
            if let Some(s) = self.child.try_wait().expect("try_wait") {
                return s;
            }
            assert!(
                t0.elapsed() < within,
                "the demo did not exit within {within:?}; log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// Collects the lines `r` produces, in a thread.
fn collect_lines(r: impl std::io::Read + Send + 'static) -> Arc<Mutex<Vec<String>>> {
    let lines = Arc::new(Mutex::new(Vec::new()));
    let l2 = lines.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(r).lines() {
            let Ok(line) = line else { break };
            l2.lock().unwrap().push(line);
        }
    });
    lines
}

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn kill(pid: u32, sig: i32) {
    // SAFETY: kill takes plain integers; the pids are our children or their workers.
    let rc = unsafe { libc::kill(pid as libc::pid_t, sig) };
    assert_eq!(
        rc,
        0,
        "kill({pid}, {sig}): {}",
        std::io::Error::last_os_error()
    );
}

/// Whether `pid` is gone (or a zombie nobody has reaped yet: it runs no code).
fn gone(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit_once(") ")
            .is_some_and(|(_, rest)| rest.starts_with('Z') || rest.starts_with('X')),
    }
}

/// The value of `key=` in a tracing line.
fn field(line: &str, key: &str) -> Option<u32> {
    let pat = format!(" {key}=");
    let at = line.find(&pat)? + pat.len();
    line[at..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect::<String>()
        .parse()
        .ok()
}

/// The worker pids the parent reported starting, as (service, worker id, pid).
fn started_workers(d: &Demo) -> Vec<(u32, u32, u32)> {
    d.matching(|l| l.contains("started worker"))
        .iter()
        .filter_map(|l| Some((field(l, "service")?, field(l, "worker")?, field(l, "pid")?)))
        .collect()
}

/// A client of the demo's topic on the real broker, with its own runtimes.
struct Client {
    bridge: osier_bridge::Bridge,
    client: RpcClient,
}

impl Client {
    fn new(topic: &str) -> Client {
        let bridge = osier_bridge::Bridge::builder()
            .tokio_workers(1)
            .build()
            .unwrap();
        let transport = Transport::new(&rabbit()).unwrap();
        let client = RpcClient::new(&transport, Target::topic(topic))
            .timeout(Duration::from_secs(40))
            .bridge(bridge.clone());
        Client { bridge, client }
    }

    fn call(&self, method: &str, args: Value) -> Result<Value, osier_messaging::MessagingError> {
        self.bridge.tokio().block_on(self.client.call::<Value>(
            &RequestContext::default(),
            method,
            args,
        ))
    }

    /// Starts `method` in the background; join the thread for its result.
    fn call_in_background(
        &self,
        method: &'static str,
        args: Value,
    ) -> std::thread::JoinHandle<Result<Value, osier_messaging::MessagingError>> {
        let (bridge, client) = (self.bridge.clone(), self.client.clone());
        std::thread::spawn(move || {
            bridge
                .tokio()
                .block_on(client.call::<Value>(&RequestContext::default(), method, args))
        })
    }
}

fn rabbit_demo(topic: &str, extra: &[&str]) -> Demo {
    let url = rabbit();
    let mut args = vec!["--url", url.as_str(), "--topic", topic];
    args.extend_from_slice(extra);
    let d = Demo::start(&args, &[]);
    d.wait_line("services started");
    d
}

type Call = std::thread::JoinHandle<Result<Value, osier_messaging::MessagingError>>;

/// Sends `work {secs}` to the demo through the broker, waits until the demo has begun it, sends
/// `sig`, and returns the call (answered or not), the exit status, and the time from the signal
/// to the exit.
fn signal_with_work_in_flight(
    d: &mut Demo,
    topic: &str,
    secs: f64,
    sig: i32,
) -> (Call, ExitStatus, Duration) {
    let c = Client::new(topic);
    let call = c.call_in_background("work", json!({ "secs": secs }));
    d.wait_line("work started");
    let t0 = Instant::now();
    d.signal(sig);
    let status = d.wait_exit(LONG);
    (call, status, t0.elapsed())
}

#[test]
fn term_lets_the_request_in_flight_finish_and_exits_0() {
    // SVC-SIG-02, TEST-SVC-08: TERM keeps the process alive while a request is in flight.
    let topic = unique_topic();
    let mut d = rabbit_demo(&topic, &["--graceful-timeout", "20"]);
    let (call, status, took) = signal_with_work_in_flight(&mut d, &topic, 1.5, libc::SIGTERM);
    let reply = call
        .join()
        .unwrap()
        .expect("the request in flight is answered");
    assert_eq!(reply["pid"], d.pid());
    assert_eq!(status.code(), Some(0), "log:\n{}", d.log());
    assert!(took >= Duration::from_secs(1), "it waited for the request");
    d.wait_line("services stopped");
}

#[test]
fn term_with_a_stuck_handler_exits_1_after_the_graceful_timeout() {
    // SVC-SIG-02 (the ALRM path), SVC-SIG-08, TEST-SVC-08: with a 2 s graceful timeout it
    // exits after more than 2 s, but it does exit, non-zero, and says why.
    let topic = unique_topic();
    let mut d = rabbit_demo(&topic, &["--graceful-timeout", "2"]);
    let (_stuck, status, took) = signal_with_work_in_flight(&mut d, &topic, 60.0, libc::SIGTERM);
    assert_eq!(status.code(), Some(1), "log:\n{}", d.log());
    assert!(took >= Duration::from_secs(2), "{took:?}");
    assert!(took < Duration::from_secs(15), "{took:?}");
    d.wait_line("graceful shutdown timeout exceeded");
}

#[test]
fn int_exits_1_at_once_with_work_in_flight() {
    // SVC-SIG-02, TEST-SVC-08: SIGINT exits at once.
    let topic = unique_topic();
    let mut d = rabbit_demo(&topic, &["--graceful-timeout", "60"]);
    let (_stuck, status, took) = signal_with_work_in_flight(&mut d, &topic, 60.0, libc::SIGINT);
    assert_eq!(status.code(), Some(1), "log:\n{}", d.log());
    assert!(took < Duration::from_secs(10), "{took:?}");
    d.wait_line("caught SIGINT");
}

#[test]
fn hup_runs_the_reload_hook_and_reset_and_keeps_serving() {
    // SVC-SIG-02 (a daemon restarts), SVC-BASE-03/04, TEST-SVC-05: it comes back after HUP in
    // the same process, with reset() called, and exits 0 on a later TERM.
    let topic = unique_topic();
    let mut d = rabbit_demo(&topic, &[]);
    let c = Client::new(&topic);
    let before = c.call("whoami", json!({})).unwrap();
    assert_eq!(before["resets"], 0);
    // SVC-PER-04: the periodic task, driven by a dynamic timer in the service's task group.
    d.wait_line("periodic self_check");
    d.signal(libc::SIGHUP);
    d.wait_line("reload hook ran");
    d.wait_line("api reset");
    d.wait_line("services restarted");
    let after = c.call("whoami", json!({})).unwrap();
    assert_eq!(after["resets"], 1);
    assert_eq!(after["pid"], before["pid"], "the same process");
    d.signal(libc::SIGTERM);
    assert_eq!(d.wait_exit(LONG).code(), Some(0), "log:\n{}", d.log());
}

#[test]
fn failing_start_exits_1_with_the_reason_logged() {
    // SVC-BASE-03, TEST-SVC-04 ("a service that crashes on start makes the parent exit with 1").
    let mut d = Demo::start(&["--fail-start"], &[]);
    assert_eq!(d.wait_exit(LONG).code(), Some(1), "log:\n{}", d.log());
    let line = d.wait_line("failed to start");
    assert!(line.contains("--fail-start"), "{line}");
}

#[test]
fn systemd_hears_ready_then_stopping() {
    // SVC-SYSD-01, SVC-LAUNCH-03: READY=1 once the services started, STOPPING=1 on TERM.
    let dir = std::env::temp_dir().join(unique_topic());
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("notify.sock");
    let sock = UnixDatagram::bind(&path).unwrap();
    sock.set_read_timeout(Some(LONG)).unwrap();
    let mut d = Demo::start(&[], &[("NOTIFY_SOCKET", path.to_str().unwrap())]);
    let mut buf = [0_u8; 64];
    let n = sock.recv(&mut buf).expect("READY=1");
    assert_eq!(&buf[..n], b"READY=1");
    d.signal(libc::SIGTERM);
    let n = sock.recv(&mut buf).expect("STOPPING=1");
    assert_eq!(&buf[..n], b"STOPPING=1");
    assert_eq!(d.wait_exit(LONG).code(), Some(0));
    let _ = std::fs::remove_dir_all(dir);
}

/// Two API workers and one green heartbeat worker, on the in-memory transport.
fn workers_demo(extra: &[&str]) -> Demo {
    let mut args = vec!["--workers", "2"];
    args.extend_from_slice(extra);
    let d = Demo::start(&args, &[]);
    d.wait_lines(3, |l| l.contains("services started role=Worker"));
    d
}

#[test]
fn sigkill_on_a_worker_brings_a_new_one_with_the_same_id() {
    // SVC-LAUNCH-05, SVC-THR-05, TEST-SVC-04: a dead worker is respawned with its old id.
    let d = workers_demo(&[]);
    let first = started_workers(&d);
    assert_eq!(first.len(), 3, "{first:?}");
    let (svc, id, pid) = first[1];
    kill(pid, libc::SIGKILL);
    let again = d.wait_lines(4, |l| l.contains("started worker"));
    let (svc2, id2, pid2) = started_workers(&d)[3];
    assert_eq!((svc2, id2), (svc, id), "{again:?}");
    assert_ne!(pid2, pid);
    d.wait_line("worker killed by signal");
}

#[test]
fn sigkill_on_the_parent_takes_every_worker_down() {
    // SVC-LAUNCH-07, TEST-SVC-04: through the liveness pipe.
    let mut d = workers_demo(&[]);
    let pids: Vec<u32> = started_workers(&d).iter().map(|w| w.2).collect();
    assert_eq!(pids.len(), 3);
    d.signal(libc::SIGKILL);
    d.wait_exit(LONG);
    let t0 = Instant::now();
    while !pids.iter().all(|p| gone(*p)) {
        assert!(
            t0.elapsed() < LONG,
            "workers still alive: {pids:?}\n{}",
            d.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    d.wait_lines(3, |l| l.contains("parent process died"));
}

#[test]
fn term_on_the_parent_stops_every_worker_and_exits_0() {
    // SVC-SIG-03, SVC-SIG-04, SVC-LAUNCH-06, TEST-SVC-04/06.
    let mut d = workers_demo(&[]);
    let pids: Vec<u32> = started_workers(&d).iter().map(|w| w.2).collect();
    d.signal(libc::SIGTERM);
    assert_eq!(d.wait_exit(LONG).code(), Some(0), "log:\n{}", d.log());
    assert!(pids.iter().all(|p| gone(*p)), "{pids:?}");
    assert_eq!(
        d.matching(|l| l.contains("worker exited") && l.contains("code=0"))
            .len(),
        3
    );
}

#[test]
fn int_on_the_parent_exits_1_and_the_workers_follow() {
    // SVC-SIG-03: INT exits at once; the workers follow through the pipe.
    let mut d = workers_demo(&[]);
    let pids: Vec<u32> = started_workers(&d).iter().map(|w| w.2).collect();
    d.signal(libc::SIGINT);
    assert_eq!(d.wait_exit(LONG).code(), Some(1));
    let t0 = Instant::now();
    while !pids.iter().all(|p| gone(*p)) {
        assert!(t0.elapsed() < LONG, "workers still alive: {pids:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn hup_on_the_parent_with_reload_replaces_every_worker() {
    // SVC-SIG-03 (reload), TEST-SVC-04 ("SIGHUP to the parent replaces every worker pid").
    let mut d = workers_demo(&[]);
    let old: Vec<u32> = started_workers(&d).iter().map(|w| w.2).collect();
    d.signal(libc::SIGHUP);
    d.wait_lines(6, |l| l.contains("started worker"));
    d.wait_lines(6, |l| l.contains("services started role=Worker"));
    let new: Vec<u32> = started_workers(&d)[3..].iter().map(|w| w.2).collect();
    assert!(
        new.iter().all(|p| !old.contains(p)),
        "old {old:?} new {new:?}"
    );
    assert_eq!(
        d.matching(|l| l.contains("reload hook ran")).len(),
        1,
        "in the parent only"
    );
    assert!(
        d.matching(|l| l.contains("Forking too fast")).is_empty(),
        "a reload clears the fork record"
    );
    d.signal(libc::SIGTERM);
    assert_eq!(d.wait_exit(LONG).code(), Some(0));
}

#[test]
fn hup_on_the_parent_with_mutate_restarts_the_workers_in_place() {
    // SVC-SIG-03 (mutate: bug 1794708), TEST-SVC-05: same pids, hook and reset in each worker.
    let mut d = workers_demo(&["--restart-method", "mutate"]);
    d.signal(libc::SIGHUP);
    // The parent's hook, then each of the three workers' hooks.
    d.wait_lines(4, |l| l.contains("reload hook ran"));
    d.wait_lines(2, |l| l.contains("api reset"));
    d.wait_lines(3, |l| l.contains("services restarted"));
    assert_eq!(started_workers(&d).len(), 3, "no worker was replaced");
    d.signal(libc::SIGTERM);
    assert_eq!(d.wait_exit(LONG).code(), Some(0));
}

#[test]
fn hup_on_a_worker_restarts_it_in_place() {
    // SVC-SIG-04, TEST-SVC-04 ("SIGHUP to a worker leaves the same pids").
    let mut d = workers_demo(&[]);
    let (_, _, pid) = started_workers(&d)[0];
    kill(pid, libc::SIGHUP);
    let line = d.wait_line("services restarted");
    assert_eq!(field(&line, "pid"), Some(pid), "{line}");
    assert_eq!(started_workers(&d).len(), 3, "no worker was replaced");
    d.signal(libc::SIGTERM);
    assert_eq!(d.wait_exit(LONG).code(), Some(0));
}

#[test]
fn a_worker_that_fails_to_start_is_respawned_under_the_fork_rate_limit() {
    // SVC-LAUNCH-08 (the worker exits 1 and is respawned), SVC-LAUNCH-05 ("Forking too fast"):
    // the two API workers fail at once, again and again; the heartbeat worker keeps running.
    let mut d = Demo::start(&["--workers", "2", "--fail-start"], &[]);
    // N = 2: the 4th start within 2 s is the first one held back.
    d.wait_line("Forking too fast");
    // ... and the failing workers keep being started again, one by one.
    let failed = d.wait_lines(4, |l| l.contains("worker exited") && l.contains("code=1"));
    assert!(
        failed.iter().all(|l| field(l, "service") == Some(0)),
        "only the failing service: {failed:?}"
    );
    d.signal(libc::SIGTERM);
    assert_eq!(d.wait_exit(LONG).code(), Some(0), "log:\n{}", d.log());
}

#[test]
fn hup_in_the_foreground_stops_gracefully_instead_of_hanging() {
    // SVC-SIG-09 and SVC-SIG-02's hang: under a terminal (a pty from `script`), the process is
    // not a daemon; a HUP stops it gracefully (ForegroundHup::Stop) with status 0, where oslo's
    // single-process launcher resets its handlers and keeps waiting.
    let cmd = format!(
        "{} --periodic-spacing 60",
        env!("CARGO_BIN_EXE_osier-service-demo")
    );
    let mut child = Command::new("script")
        .args(["-qec", &cmd, "/dev/null"])
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("util-linux `script` is needed for the pty");
    let out = child.stdout.take().expect("piped");
    let mut d = Demo {
        child,
        lines: collect_lines(out),
    };
    let started = d.wait_line("services started");
    let pid = field(&started, "pid").expect("pid in the line");
    kill(pid, libc::SIGHUP);
    d.wait_line("SIGHUP in the foreground");
    assert_eq!(d.wait_exit(LONG).code(), Some(0), "log:\n{}", d.log());
    assert!(d.matching(|l| l.contains("reload hook ran")).is_empty());
}

#[test]
fn term_on_the_parent_with_a_stuck_worker_exits_1_after_the_graceful_timeout() {
    // SVC-SIG-03 (TERM bounded by the graceful timeout), SVC-LAUNCH-06: the stuck worker does
    // not hold the parent past the timeout, and the parent's status says the stop was not clean.
    let topic = unique_topic();
    let url = rabbit();
    let mut d = Demo::start(
        &[
            "--workers",
            "2",
            "--url",
            &url,
            "--topic",
            &topic,
            "--graceful-timeout",
            "2",
        ],
        &[],
    );
    d.wait_lines(3, |l| l.contains("services started role=Worker"));
    let (_stuck, status, took) = signal_with_work_in_flight(&mut d, &topic, 60.0, libc::SIGTERM);
    assert_eq!(status.code(), Some(1), "log:\n{}", d.log());
    assert!(took >= Duration::from_secs(2), "{took:?}");
    assert!(took < Duration::from_secs(15), "{took:?}");
    d.wait_line("graceful shutdown timeout exceeded");
    let pids: Vec<u32> = started_workers(&d).iter().map(|w| w.2).collect();
    assert!(pids.iter().all(|p| gone(*p)), "{pids:?}");
}

/// The names of a process's threads.
fn thread_names(pid: u32) -> Vec<String> {
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    dir.filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .map(|s| s.trim().to_string())
        .collect()
}

#[test]
fn workers_are_re_executed_and_the_parent_starts_no_service_runtime() {
    // LESSON-04, SVC-THR-06, SVC-LAUNCH-04: a worker is a fresh exec of the same program with
    // the same arguments (its exec-time environment holds the worker marker, which a forked
    // child's would not), and the parent never builds the services' runtimes.
    let d = workers_demo(&["--periodic-spacing", "60"]);
    let parent_cmdline = std::fs::read(format!("/proc/{}/cmdline", d.pid())).unwrap();
    for (svc, id, pid) in started_workers(&d) {
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap();
        assert_eq!(cmdline, parent_cmdline, "same program, same arguments");
        let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap();
        let vars: Vec<&[u8]> = environ.split(|b| *b == 0).collect();
        let marker = format!("OSIER_SERVICE_WORKER={svc}:{id}");
        assert!(
            vars.contains(&marker.as_bytes()),
            "worker {pid} has {marker}"
        );
        assert!(thread_names(pid)
            .iter()
            .any(|n| n.starts_with("osier-tokio")));
    }
    let parent_threads = thread_names(d.pid());
    assert!(
        !parent_threads
            .iter()
            .any(|n| n.starts_with("osier-tokio") || n.starts_with("osier-hub")),
        "the parent runs no service runtime: {parent_threads:?}"
    );
}

#[test]
fn systemd_hears_the_parent_once_and_never_the_workers() {
    // SVC-SYSD-01: the ProcessLauncher parent sends READY=1 and STOPPING=1; the workers start
    // without NOTIFY_SOCKET.
    let dir = std::env::temp_dir().join(unique_topic());
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("notify.sock");
    let sock = UnixDatagram::bind(&path).unwrap();
    sock.set_read_timeout(Some(LONG)).unwrap();
    let mut d = Demo::start(
        &["--workers", "2"],
        &[("NOTIFY_SOCKET", path.to_str().unwrap())],
    );
    let mut buf = [0_u8; 64];
    let n = sock.recv(&mut buf).expect("READY=1");
    assert_eq!(&buf[..n], b"READY=1");
    d.wait_lines(3, |l| l.contains("services started role=Worker"));
    d.signal(libc::SIGTERM);
    let n = sock.recv(&mut buf).expect("STOPPING=1");
    assert_eq!(&buf[..n], b"STOPPING=1");
    assert_eq!(d.wait_exit(LONG).code(), Some(0));
    sock.set_nonblocking(true).unwrap();
    assert!(sock.recv(&mut buf).is_err(), "nothing else was sent");
    let _ = std::fs::remove_dir_all(dir);
}
