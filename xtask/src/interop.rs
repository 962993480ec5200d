//! `cargo xtask interop`: osier against the real Python oslo.messaging on the local RabbitMQ, in
//! both directions.
//!
//! 1. A venv under `target/xtask/venv-oslo` with `oslo.messaging==18.3.1` from PyPI.
//! 2. Python client (`xtask/py/oslo_peer.py client`) -> Rust server (`interop_peer server`).
//! 3. Rust client (`interop_peer client`) -> Python server (`oslo_peer.py server`).
//!
//! Every case prints `PASS name` or `FAIL name: why`; the task prints `N passed, N failed` and
//! fails if any case failed or a peer could not start.

use std::io::{BufRead, BufReader, Write};
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

fn peer_cmd(bin: &Path, mode: &str, url: &str, topic: &str) -> Command {
    let mut c = Command::new(bin);
    c.args([mode, "--url", url, "--topic", topic]);
    c
}

fn py_cmd(py: &Path, mode: &str, url: &str, topic: &str) -> Command {
    let mut c = Command::new(py);
    c.arg(root().join("xtask/py/oslo_peer.py"))
        .args([mode, "--url", url, "--topic", topic]);
    c
}

/// The task.
pub fn interop() -> Result<(), String> {
    let url = std::env::var("OSIER_INTEROP_URL").unwrap_or_else(|_| DEFAULT_URL.into());
    let py = ensure_oslo_venv()?;
    let rs = build_rust_peer()?;
    let t0 = Instant::now();
    let (mut passed, mut failed) = (0, 0);

    println!("\n==> Python oslo.messaging {OSLO_MESSAGING_VERSION} client -> Rust server");
    let t = topic("py2rs");
    let logs = target_dir().join("xtask");
    let server = Peer::start(
        "Rust server",
        peer_cmd(&rs, "server", &url, &t),
        &logs.join("interop-rust-server.log"),
    )?;
    let r = run_client("py->rs", py_cmd(&py, "client", &url, &t));
    server.stop();
    let _ = peer_cmd(&rs, "cleanup", &url, &t).output();
    let (p, f) = r?;
    passed += p;
    failed += f;

    println!("\n==> Rust client -> Python oslo.messaging {OSLO_MESSAGING_VERSION} server");
    let t = topic("rs2py");
    let server = Peer::start(
        "Python server",
        py_cmd(&py, "server", &url, &t),
        &logs.join("interop-python-server.log"),
    )?;
    let r = run_client("rs->py", peer_cmd(&rs, "client", &url, &t));
    server.stop();
    let _ = peer_cmd(&rs, "cleanup", &url, &t).output();
    let (p, f) = r?;
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
