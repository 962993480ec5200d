//! `cargo xtask bench-service [--rounds N] [--workers N]`: the lifecycle costs of a
//! ProcessLauncher, osier against Python oslo.service 4.8.0 (eventlet backend, fork), timed
//! from the outside on real processes: start-up (launch until every worker reports its service
//! started), respawn (SIGKILL on a worker until its replacement reports), and stop (SIGTERM on
//! the parent until it has exited with every worker). Rounds alternate osier and oslo so the
//! machine's noise falls on both; each figure is the median over the rounds.
//!
//! osier's side is the demo binary on the in-memory transport: each worker builds a bridge (a
//! green hub and tokio), an RPC server and a task group, and the demo adds its green heartbeat
//! service in one more worker, so osier starts N + 1 processes against oslo's N. oslo's side is
//! an idle `Service` (`xtask/py/oslo_service_bench.py`).

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::{cargo, ensure_venv, median, root, run, target_dir};

const OSLO_SERVICE_VERSION: &str = "4.8.0";
const PATIENCE: Duration = Duration::from_secs(60);

#[derive(Clone, Copy, PartialEq)]
enum Side {
    Osier,
    Oslo,
}

impl Side {
    fn name(self) -> &'static str {
        match self {
            Side::Osier => "osier",
            Side::Oslo => "oslo.service",
        }
    }

    /// The line a worker prints once its service has started.
    fn ready(self) -> &'static str {
        match self {
            Side::Osier => "services started role=Worker",
            Side::Oslo => "ready pid=",
        }
    }
}

struct Launched {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Launched {
    fn ready_pids(&self, side: Side) -> Vec<u32> {
        let lines = self.lines.lock().unwrap_or_else(|e| e.into_inner());
        lines
            .iter()
            .filter(|l| l.contains(side.ready()))
            .filter_map(|l| {
                let at = l.find("pid=")? + 4;
                l[at..]
                    .chars()
                    .take_while(char::is_ascii_digit)
                    .collect::<String>()
                    .parse()
                    .ok()
            })
            .collect()
    }

    fn wait_ready(&self, side: Side, n: usize) -> Result<Vec<u32>, String> {
        let t0 = Instant::now();
        loop {
            let pids = self.ready_pids(side);
            if pids.len() >= n {
                return Ok(pids);
            }
            if t0.elapsed() > PATIENCE {
                let log = self
                    .lines
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .join("\n");
                return Err(format!(
                    "{}: {} of {n} workers ready after {PATIENCE:?}; its log:\n{log}",
                    side.name(),
                    pids.len()
                ));
            }
            std::thread::sleep(Duration::from_micros(200));
        }
    }
}

fn kill(pid: u32, sig: i32) -> Result<(), String> {
    let pid = i32::try_from(pid).map_err(|e| e.to_string())?;
    // SAFETY: kill takes plain integers; the pid is a process this task started (or one of its
    // workers, alive: it just reported ready).
    let rc = unsafe { libc::kill(pid, sig) };
    if rc == 0 {
        Ok(())
    } else {
        Err(format!(
            "kill({pid}, {sig}): {}",
            std::io::Error::last_os_error()
        ))
    }
}

fn launch(side: Side, workers: usize, py: &std::path::Path) -> Result<Launched, String> {
    let mut cmd = match side {
        Side::Osier => {
            let mut c = Command::new(target_dir().join("release/osier-service-demo"));
            c.args([
                "--workers",
                &workers.to_string(),
                "--periodic-spacing",
                "3600",
            ])
            .env("RUST_LOG", "info");
            c
        }
        Side::Oslo => {
            let mut c = Command::new(py);
            c.arg(root().join("xtask/py/oslo_service_bench.py"))
                .arg(workers.to_string());
            c
        }
    };
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("start {}: {e}", side.name()))?;
    let stderr = child.stderr.take().ok_or("stderr is piped")?;
    let lines = Arc::new(Mutex::new(Vec::new()));
    let l2 = lines.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            l2.lock().unwrap_or_else(|e| e.into_inner()).push(line);
        }
    });
    Ok(Launched { child, lines })
}

/// One round on one side: (start-up, respawn, stop) in milliseconds.
fn round(side: Side, workers: usize, py: &std::path::Path) -> Result<[f64; 3], String> {
    let processes = match side {
        Side::Osier => workers + 1,
        Side::Oslo => workers,
    };
    let t0 = Instant::now();
    let mut l = launch(side, workers, py)?;
    let pids = l.wait_ready(side, processes)?;
    let start = t0.elapsed();
    let t1 = Instant::now();
    kill(pids[0], libc::SIGKILL)?;
    l.wait_ready(side, processes + 1)?;
    let respawn = t1.elapsed();
    let t2 = Instant::now();
    kill(l.child.id(), libc::SIGTERM)?;
    let status = l.child.wait().map_err(|e| e.to_string())?;
    let stop = t2.elapsed();
    if !status.success() {
        return Err(format!("{}: TERM gave {status}", side.name()));
    }
    Ok([start, respawn, stop].map(|d| d.as_secs_f64() * 1e3))
}

/// The task.
pub fn bench_service(rest: &[String]) -> Result<(), String> {
    let arg = |flag: &str, default: usize| -> Result<usize, String> {
        match rest.iter().position(|a| a == flag) {
            Some(i) => rest
                .get(i + 1)
                .and_then(|n| n.parse().ok())
                .ok_or(format!("{flag} takes a number")),
            None => Ok(default),
        }
    };
    let rounds = arg("--rounds", 5)?;
    let workers = arg("--workers", 4)?.max(1);
    let py = ensure_venv("venv-oslo-service", "oslo.service", OSLO_SERVICE_VERSION)?;
    run(
        "build the demo (release)",
        cargo().args([
            "build",
            "--release",
            "-p",
            "osier-service-demo",
            "--bin",
            "osier-service-demo",
        ]),
    )?;
    let mut samples: [[Vec<f64>; 3]; 2] = Default::default();
    for r in 1..=rounds {
        for (i, side) in [Side::Osier, Side::Oslo].into_iter().enumerate() {
            let s = round(side, workers, &py)?;
            println!(
                "round {r}/{rounds} {:>12}: start {:7.1} ms, respawn {:7.1} ms, stop {:7.1} ms",
                side.name(),
                s[0],
                s[1],
                s[2]
            );
            for (k, v) in s.into_iter().enumerate() {
                samples[i][k].push(v);
            }
        }
    }
    println!("\nProcessLauncher with {workers} workers, medians of {rounds} rounds (ms):");
    println!("| step | osier | oslo.service {OSLO_SERVICE_VERSION} | osier / oslo |");
    println!("|---|---|---|---|");
    for (k, step) in ["start-up", "respawn", "stop (TERM)"]
        .into_iter()
        .enumerate()
    {
        let o = median(samples[0][k].clone()).unwrap_or(f64::NAN);
        let p = median(samples[1][k].clone()).unwrap_or(f64::NAN);
        println!("| {step} | {o:.1} | {p:.1} | {:.2} |", o / p);
    }
    Ok(())
}
