//! `cargo xtask interop`: osier against the real Python oslo.messaging on the local RabbitMQ, in
//! both directions.
//!
//! 1. A venv under `target/xtask/venv-oslo` with `oslo.messaging==18.3.1` from PyPI.
//! 2. Python client (`xtask/py/oslo_peer.py client`) -> Rust server (`interop_peer server`).
//! 3. Rust client (`interop_peer client`) -> Python server (`oslo_peer.py server`).
//!
//! Both directions run under each option set of [`OPTION_SETS`]: oslo's defaults (the URL
//! alone), and the set today's deployments turn on, given to both peers as the same oslo.config
//! file, as a fleet's services share one. Every case prints `PASS name` or `FAIL name: why`;
//! the task prints `N passed, N failed` and fails if any case failed or a peer could not start.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::{cargo, root, run, target_dir};

/// The oslo.messaging release the wire spec was captured from.
pub const OSLO_MESSAGING_VERSION: &str = "18.3.1";

/// The broker the interop runs on, unless `OSIER_INTEROP_URL` says otherwise.
const DEFAULT_URL: &str = "rabbit://guest:guest@127.0.0.1:5672/";

/// The venv with oslo.messaging, made once.
pub fn ensure_oslo_venv() -> Result<PathBuf, String> {
    crate::ensure_venv("venv-oslo", "oslo.messaging", OSLO_MESSAGING_VERSION)
}

/// Builds the Rust peer and returns its path.
pub fn build_rust_peer() -> Result<PathBuf, String> {
    run(
        "build the Rust interop peer",
        cargo().args(["build", "-p", "osier-interop-peer", "--bin", "interop_peer"]),
    )?;
    Ok(target_dir().join("debug/interop_peer"))
}

struct Peer {
    child: Child,
    name: &'static str,
}

impl Peer {
    /// Starts a server peer and waits for its `READY` line.
    fn start(name: &'static str, mut cmd: Command, log: &Path) -> Result<Peer, String> {
        let log_file = std::fs::File::create(log).map_err(|e| format!("{}: {e}", log.display()))?;
        println!("    ({name}'s log: {})", log.display());
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(log_file)
            .env("PYTHONWARNINGS", "ignore")
            .spawn()
            .map_err(|e| format!("{name}: cannot start: {e}"))?;
        let out = child.stdout.take().ok_or("no stdout")?;
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                let ready = line.trim() == "READY";
                let _ = tx.send(ready);
                if ready {
                    break;
                }
            }
        });
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(true) => return Ok(Peer { child, name }),
                Ok(false) => continue,
                Err(_) => {
                    let _ = child.kill();
                    return Err(format!("{name} did not get READY within 60 s"));
                }
            }
        }
    }

    /// The peer's process id (the leader of its process group).
    fn pid(&self) -> i32 {
        i32::try_from(self.child.id()).unwrap_or(0)
    }

    /// Closes the peer's stdin (its signal to stop) and waits for it.
    fn stop(mut self) {
        drop(self.child.stdin.take());
        let t0 = Instant::now();
        while t0.elapsed() < Duration::from_secs(20) {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        println!("    ({} did not stop within 20 s; killed)", self.name);
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs a client peer; returns (passed, failed) from its PASS/FAIL lines.
fn run_client(direction: &str, mut cmd: Command) -> Result<(usize, usize), String> {
    let out = cmd
        .env("PYTHONWARNINGS", "ignore")
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| format!("{direction}: cannot start the client: {e}"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    let (mut passed, mut failed) = (0, 0);
    for line in text.lines() {
        if let Some(name) = line.strip_prefix("PASS ") {
            passed += 1;
            println!("    PASS {direction}: {name}");
        } else if let Some(rest) = line.strip_prefix("FAIL ") {
            failed += 1;
            println!("    FAIL {direction}: {rest}");
        }
    }
    if passed + failed == 0 {
        return Err(format!(
            "{direction}: the client ran no case ({}); output:\n{text}",
            out.status
        ));
    }
    Ok((passed, failed))
}

fn topic(direction: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("osier-interop-{direction}-{}-{nanos}", std::process::id())
}

/// Where the peers find the broker: the URL alone, or a config file.
enum Source {
    Url(String),
    ConfigFile(PathBuf),
}

impl Source {
    fn args(&self) -> [String; 2] {
        match self {
            Source::Url(u) => ["--url".into(), u.clone()],
            Source::ConfigFile(f) => ["--config-file".into(), f.display().to_string()],
        }
    }
}

fn peer_cmd(bin: &Path, mode: &str, src: &Source, topic: &str) -> Command {
    let mut c = Command::new(bin);
    c.arg(mode).args(src.args()).args(["--topic", topic]);
    c
}

fn py_cmd(py: &Path, mode: &str, src: &Source, topic: &str) -> Command {
    let mut c = Command::new(py);
    c.arg(root().join("xtask/py/oslo_peer.py"))
        .arg(mode)
        .args(src.args())
        .args(["--topic", topic]);
    c
}

/// The option sets: a name, and the config file's sections after `[DEFAULT] transport_url`
/// (`None`: the URL alone, oslo's defaults). kolla-ansible 2025.2's migration set is quorum
/// queues, transient quorum queues, stream fanout (which needs a prefetch), the queue manager
/// and durable queues. Its own control exchange: a durable exchange cannot be declared over
/// the defaults' transient one.
const OPTION_SETS: &[(&str, Option<&str>)] = &[
    ("defaults", None),
    (
        "kolla 2025.2 (quorum, transient quorum, stream fanout, queue manager, durable)",
        Some(
            "control_exchange = osier_interop_kolla\n\
             [oslo_messaging_rabbit]\n\
             rabbit_quorum_queue = true\n\
             rabbit_transient_quorum_queue = true\n\
             rabbit_stream_fanout = true\n\
             rabbit_qos_prefetch_count = 64\n\
             use_queue_manager = true\n\
             amqp_durable_queues = true\n\
             hostname = osier-interop\n\
             processname = interop-peer\n",
        ),
    ),
];

/// The task.
pub fn interop() -> Result<(), String> {
    let url = std::env::var("OSIER_INTEROP_URL").unwrap_or_else(|_| DEFAULT_URL.into());
    let py = ensure_oslo_venv()?;
    let rs = build_rust_peer()?;
    let t0 = Instant::now();
    let (mut passed, mut failed) = (0, 0);
    let logs = target_dir().join("xtask");
    // The queue manager's lock (Python's lockutils and osier take the same one).
    let locks = logs.join("interop-locks");
    std::fs::create_dir_all(&locks).map_err(|e| format!("{}: {e}", locks.display()))?;
    for (i, (set, sections)) in OPTION_SETS.iter().enumerate() {
        let src = match sections {
            None => Source::Url(url.clone()),
            Some(sections) => {
                let file = logs.join(format!("interop-options-{i}.conf"));
                let text = format!("[DEFAULT]\ntransport_url = {url}\n{sections}");
                std::fs::write(&file, text).map_err(|e| format!("{}: {e}", file.display()))?;
                Source::ConfigFile(file)
            }
        };
        println!("\n==> option set: {set}");
        let (p, f) = both_ways(&py, &rs, &src, &logs, &locks, i)?;
        passed += p;
        failed += f;
    }
    println!(
        "\n==> the osier CLI -> Python oslo.messaging {OSLO_MESSAGING_VERSION} server and notifier"
    );
    let (p, f) = cli_against_python(&py, &url, &logs, &locks)?;
    passed += p;
    failed += f;
    println!(
        "\ninterop: {passed} passed, {failed} failed ({:.1?})",
        t0.elapsed()
    );
    let _ = std::io::stdout().flush();
    if failed > 0 {
        return Err(format!("{failed} interop case(s) failed"));
    }
    Ok(())
}

/// Python client -> Rust server, then Rust client -> Python server, under one option set.
fn both_ways(
    py: &Path,
    rs: &Path,
    src: &Source,
    logs: &Path,
    locks: &Path,
    set: usize,
) -> Result<(usize, usize), String> {
    let (mut passed, mut failed) = (0, 0);
    let with_locks = |mut c: Command| {
        c.env("OSLO_LOCK_PATH", locks);
        c
    };
    // The queue manager numbers queues per service generation, a process group and its
    // leader: each server leads a group of its own and its client joins it, so the two
    // count together whoever started xtask (a group whose leader has exited would make
    // Python's queue manager fail).
    let leader = |mut c: Command| {
        c.process_group(0);
        c
    };
    let member = |mut c: Command, server: &Peer| {
        c.process_group(server.pid());
        c
    };
    println!("\n==> Python oslo.messaging {OSLO_MESSAGING_VERSION} client -> Rust server");
    let t = topic("py2rs");
    let server = Peer::start(
        "Rust server",
        leader(with_locks(peer_cmd(rs, "server", src, &t))),
        &logs.join(format!("interop-rust-server-{set}.log")),
    )?;
    let client = member(with_locks(py_cmd(py, "client", src, &t)), &server);
    let r = run_client("py->rs", client);
    server.stop();
    let _ = peer_cmd(rs, "cleanup", src, &t).output();
    let (p, f) = r?;
    passed += p;
    failed += f;

    println!("\n==> Rust client -> Python oslo.messaging {OSLO_MESSAGING_VERSION} server");
    let t = topic("rs2py");
    let server = Peer::start(
        "Python server",
        leader(with_locks(py_cmd(py, "server", src, &t))),
        &logs.join(format!("interop-python-server-{set}.log")),
    )?;
    let client = member(with_locks(peer_cmd(rs, "client", src, &t)), &server);
    let r = run_client("rs->py", client);
    server.stop();
    let _ = peer_cmd(rs, "cleanup", src, &t).output();
    let (p, f) = r?;
    Ok((passed + p, failed + f))
}

/// The `osier` CLI as an operator uses it against Python services: pointed at their config file
/// (transport URL and control exchange), calling, casting, notifying, pinging, and listening to
/// a Python notifier.
fn cli_against_python(
    py: &Path,
    url: &str,
    logs: &Path,
    locks: &Path,
) -> Result<(usize, usize), String> {
    run(
        "build the osier CLI",
        cargo().args(["build", "-p", "osier-cli", "--bin", "osier"]),
    )?;
    let osier = target_dir().join("debug/osier");
    let conf = logs.join("interop-cli.conf");
    std::fs::write(
        &conf,
        format!("[DEFAULT]\ntransport_url = {url}\ncontrol_exchange = osier_interop\n"),
    )
    .map_err(|e| format!("{}: {e}", conf.display()))?;
    let src = Source::ConfigFile(conf.clone());
    let t = topic("cli2py");
    let mut server_cmd = py_cmd(py, "server", &src, &t);
    server_cmd.env("OSLO_LOCK_PATH", locks).process_group(0);
    let server = Peer::start(
        "Python server",
        server_cmd,
        &logs.join("interop-python-server-cli.log"),
    )?;
    let cli = |args: &[&str]| {
        Command::new(&osier)
            .arg("--config-file")
            .arg(&conf)
            .args(args)
            .output()
            .map(|o| {
                (
                    o.status.code(),
                    String::from_utf8_lossy(&o.stdout).trim().to_string(),
                    String::from_utf8_lossy(&o.stderr).to_string(),
                )
            })
            .map_err(|e| format!("cannot run osier: {e}"))
    };
    let until = |args: &[&str], want: &str| -> Result<bool, String> {
        let t0 = Instant::now();
        while t0.elapsed() < Duration::from_secs(15) {
            let (code, out, _) = cli(args)?;
            if code == Some(0) && out.contains(want) {
                return Ok(true);
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        Ok(false)
    };
    let marker = format!("cli-{}", std::process::id());
    let mut cases: Vec<(&str, Result<bool, String>)> = Vec::new();
    cases.push((
        "osier call prints a Python server's result as JSON",
        cli(&["call", "--topic", &t, "--server", "s1", "echo", "value=42"])
            .map(|(c, o, _)| c == Some(0) && o == "42"),
    ));
    cases.push((
        "osier call of a method that raises exits 1 naming the exception",
        cli(&["call", "--topic", &t, "--server", "s1", "fail"])
            .map(|(c, _, e)| c == Some(1) && e.contains("ValueError: boom")),
    ));
    cases.push((
        "osier call with a namespace and a version reaches the versioned endpoint",
        cli(&[
            "call",
            "--topic",
            &t,
            "--server",
            "s1",
            "--namespace",
            "ns2",
            "--rpc-version",
            "2.1",
            "v2echo",
            "value=21",
        ])
        .map(|(c, o, _)| c == Some(0) && o == "42"),
    ));
    cases.push((
        "osier cast reaches a Python server",
        cli(&[
            "cast",
            "--topic",
            &t,
            "--server",
            "s1",
            "note",
            &format!("value:={marker}"),
        ])
        .and_then(|(c, _, _)| {
            Ok(
                c == Some(0)
                    && until(&["call", "--topic", &t, "--server", "s1", "notes"], &marker)?,
            )
        }),
    ));
    cases.push((
        "osier notify reaches a Python notification listener",
        cli(&[
            "notify",
            "--topic",
            &format!("{t}_notif"),
            "--event-type",
            "cli.interop",
            "--publisher-id",
            "osier-cli",
            &format!("marker:={marker}"),
        ])
        .and_then(|(c, _, _)| {
            Ok(c == Some(0)
                && until(
                    &["call", "--topic", &t, "--server", "s1", "notifications"],
                    &marker,
                )?)
        }),
    ));
    cases.push((
        "osier ping of a Python server without rpc_ping_enabled exits 1 saying so",
        cli(&["ping", "--topic", &t, "--server", "s1", "--timeout", "10"])
            .map(|(c, _, e)| c == Some(1) && e.contains("rpc_ping_enabled is off")),
    ));
    cases.push((
        "osier listen prints a Python notifier's notification, its secret masked",
        listen_to_python(py, &osier, &conf, &src, &t),
    ));
    server.stop();
    let (mut passed, mut failed) = (0, 0);
    for (name, r) in cases {
        match r {
            Ok(true) => {
                passed += 1;
                println!("    PASS cli->py: {name}");
            }
            Ok(false) => {
                failed += 1;
                println!("    FAIL cli->py: {name}");
            }
            Err(e) => {
                failed += 1;
                println!("    FAIL cli->py: {name}: {e}");
            }
        }
    }
    Ok((passed, failed))
}

fn listen_to_python(
    py: &Path,
    osier: &Path,
    conf: &Path,
    src: &Source,
    t: &str,
) -> Result<bool, String> {
    let topic = format!("{t}_cli");
    let mut listen = Command::new(osier)
        .arg("--config-file")
        .arg(conf)
        .args(["listen", "--topic", &topic, "--json", "--count", "1"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run osier listen: {e}"))?;
    let mut err = BufReader::new(listen.stderr.take().ok_or("no stderr")?);
    let mut line = String::new();
    while !line.contains("listening on") {
        line.clear();
        if err.read_line(&mut line).map_err(|e| e.to_string())? == 0 {
            return Err("osier listen ended before listening".into());
        }
    }
    let sent = py_cmd(py, "notify", src, &topic)
        .env("PYTHONWARNINGS", "ignore")
        .status()
        .map_err(|e| format!("cannot run the Python notifier: {e}"))?;
    if !sent.success() {
        let _ = listen.kill();
        return Err(format!("the Python notifier failed ({sent})"));
    }
    let out = listen.wait_with_output().map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&out.stdout);
    let v: serde_json::Value = serde_json::from_str(text.trim())
        .map_err(|e| format!("not one JSON line ({e}): {text}"))?;
    Ok(out.status.success()
        && v["event_type"] == "py.interop"
        && v["publisher_id"] == "python.peer"
        && v["payload"]["from"] == "python"
        && !text.contains("hunter2-py"))
}
