//! `cargo xtask bench-flood [--quick] [--count N]`: a flood of casts at a slow RPC server, and of
//! notifications at a slow notification listener, on the local RabbitMQ, and the process's
//! memory over time. The server or listener (`flood serve`, a release build of
//! `benches/src/bin/flood.rs`) has one handler that blocks its thread for 10 ms; a plain AMQP
//! client (`flood publish`) publishes N numbered casts (or `info` notifications) to its queue as
//! fast as the broker takes them, then reports the queue's depth until it is drained. xtask
//! samples the process's RSS every 250 ms from `/proc`: at start, idle after a warm-up of 256
//! messages (so that idle means a process that has served), through the flood, and until 12 s
//! after the queue is empty.
//!
//! Three processes in one run, the same flood (default 200,000): an RPC server and a listener
//! with the default bound (64 in flight, prefetch 256), and an RPC server with a bound so high
//! it is none (what every server did before the bound: take every message off the broker and
//! queue it in the process). Each bounded one must hold its RSS under 2x its idle RSS + 32 MiB,
//! come back to idle once the queue is drained, never run more than 64 handlers at once, and
//! handle every message exactly once (as many handled as published, all numbers distinct); the
//! task fails otherwise. The timelines go to `target/xtask/flood-<process>.csv`.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::target_dir;

/// One process's figures.
struct Run {
    name: &'static str,
    /// Whether it has the default bound (its figures are checked).
    bounded: bool,
    /// Before the server handled anything.
    cold_kib: u64,
    /// After a warm-up of 256 casts and the blocking pool's keep-alive: the server's idle RSS.
    idle_kib: u64,
    peak_kib: u64,
    end_kib: u64,
    publish_per_s: f64,
    peak_depth: u64,
    drain_s: f64,
    /// RSS every 5 s from the flood's start, in KiB.
    timeline: Vec<u64>,
    /// Handlers run, distinct message numbers among them, most at once (`flood serve`'s last
    /// line).
    handled: u64,
    distinct: u64,
    most_at_once: u64,
    /// Messages published (warm-up and flood).
    published: u64,
}

/// What `flood serve` runs.
#[derive(Clone, Copy)]
enum Kind {
    Rpc,
    Notify,
}

impl Kind {
    fn arg(self) -> &'static str {
        match self {
            Kind::Rpc => "rpc",
            Kind::Notify => "notify",
        }
    }
}

/// Messages sent before the flood, so that idle means a process that has served.
const WARM_UP: u32 = 256;

/// How long RSS is still sampled once the broker's queue is empty: past tokio's 10 s keep-alive
/// of idle blocking threads, so the threads the handlers ran on are gone again.
const AFTER_DRAIN: Duration = Duration::from_secs(12);

fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|n| n.parse().ok())
}

/// The task.
pub fn bench_flood(rest: &[String]) -> Result<(), String> {
    let quick = rest.iter().any(|a| a == "--quick");
    let count: u32 = match rest.iter().position(|a| a == "--count") {
        Some(i) => rest
            .get(i + 1)
            .and_then(|n| n.parse().ok())
            .ok_or("--count takes a number")?,
        None if quick => 3_000,
        None => 200_000,
    };
    let exe = crate::bench_bin("flood")?;
    let mut runs = Vec::new();
    for (name, kind, max) in [
        (
            "RPC server, bounded (default: 64 in flight)",
            Kind::Rpc,
            None,
        ),
        (
            "listener, bounded (default: 64 in flight)",
            Kind::Notify,
            None,
        ),
        (
            "RPC server, unbounded (1,000,000 in flight)",
            Kind::Rpc,
            Some(1_000_000),
        ),
    ] {
        runs.push(one_server(&exe, name, kind, max, count)?);
    }
    println!("\nflood of {count} messages at a process whose handler blocks 10 ms (RSS in MiB)\n");
    println!("| process | RSS at start | idle RSS (warm) | peak RSS | RSS after drain | peak queue depth in the broker | publish rate | drained in | handled / distinct / published | most handlers at once |");
    println!("|---|---|---|---|---|---|---|---|---|---|");
    let mib = |k: u64| k as f64 / 1024.0;
    for r in &runs {
        println!(
            "| {} | {:.1} | {:.1} | {:.1} | {:.1} | {} | {:.0}/s | {:.1} s | {} / {} / {} | {} |",
            r.name,
            mib(r.cold_kib),
            mib(r.idle_kib),
            mib(r.peak_kib),
            mib(r.end_kib),
            r.peak_depth,
            r.publish_per_s,
            r.drain_s,
            r.handled,
            r.distinct,
            r.published,
            r.most_at_once
        );
    }
    println!("\nRSS over time (MiB), every 5 s from the start of the flood:\n");
    for r in &runs {
        let points: Vec<String> = r
            .timeline
            .iter()
            .map(|k| format!("{:.1}", mib(*k)))
            .collect();
        println!("- {}: {}", r.name, points.join(", "));
    }
    for b in runs.iter().filter(|r| r.bounded) {
        let bound = 2 * b.idle_kib + 32 * 1024;
        if b.peak_kib > bound {
            return Err(format!(
                "{}: peaked at {:.1} MiB, over 2x idle + 32 MiB ({:.1} MiB)",
                b.name,
                mib(b.peak_kib),
                mib(bound)
            ));
        }
        let back = b.idle_kib + b.idle_kib / 10 + 4 * 1024;
        if b.end_kib > back {
            return Err(format!(
                "{}: stayed at {:.1} MiB after the drain (idle {:.1} MiB)",
                b.name,
                mib(b.end_kib),
                mib(b.idle_kib)
            ));
        }
        if b.most_at_once > 64 {
            return Err(format!(
                "{}: {} handlers ran at once, over the bound of 64",
                b.name, b.most_at_once
            ));
        }
        if b.handled != b.published || b.distinct != b.published {
            return Err(format!(
                "{}: {} handled, {} distinct, of {} published (not exactly once)",
                b.name, b.handled, b.distinct, b.published
            ));
        }
        println!(
            "\n{}: peak {:.1} MiB <= 2x idle + 32 MiB = {:.1} MiB; back to {:.1} MiB after the drain; at most {} handlers at once; {} of {} handled once each",
            b.name,
            mib(b.peak_kib),
            mib(bound),
            mib(b.end_kib),
            b.most_at_once,
            b.distinct,
            b.published
        );
    }
    Ok(())
}

/// Runs `flood publish` for `count` messages numbered from `first`; returns its output once the
/// queue is empty.
fn publish(
    exe: &std::path::Path,
    kind: Kind,
    topic: &str,
    first: u32,
    count: u32,
) -> Result<std::process::Output, String> {
    let out = Command::new(exe)
        .args(["publish", "--kind", kind.arg(), "--topic", topic])
        .args(["--count", &count.to_string(), "--first", &first.to_string()])
        .output()
        .map_err(|e| format!("running the publisher: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "the publisher failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(out)
}

fn one_server(
    exe: &std::path::Path,
    name: &'static str,
    kind: Kind,
    max: Option<u32>,
    count: u32,
) -> Result<Run, String> {
    let topic = format!(
        "osier-flood-{}-{}-{}",
        kind.arg(),
        std::process::id(),
        max.unwrap_or(0)
    );
    println!("==> {name}: serving {topic}");
    let mut serve = Command::new(exe);
    serve.args(["serve", "--kind", kind.arg(), "--topic", &topic]);
    if let Some(m) = max {
        serve.args(["--max-in-flight", &m.to_string()]);
    }
    let mut server = serve
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| format!("starting the flood server: {e}"))?;
    let pid = server.id();
    let mut lines = BufReader::new(server.stdout.take().ok_or("no server stdout")?).lines();
    match lines.next() {
        Some(Ok(l)) if l == "ready" => {}
        other => return Err(format!("the flood server did not start: {other:?}")),
    }
    let samples = Arc::new(Mutex::new(Vec::<(f64, u64)>::new()));
    let done = Arc::new(AtomicBool::new(false));
    let t0 = Instant::now();
    let sampler = {
        let (samples, done) = (samples.clone(), done.clone());
        std::thread::spawn(move || {
            while !done.load(Ordering::Relaxed) {
                if let Some(k) = rss_kib(pid) {
                    if let Ok(mut s) = samples.lock() {
                        s.push((t0.elapsed().as_secs_f64(), k));
                    }
                }
                std::thread::sleep(Duration::from_millis(250));
            }
        })
    };
    let max_since = |since: f64| -> Result<u64, String> {
        Ok(samples
            .lock()
            .map_err(|_| "sampler poisoned")?
            .iter()
            .filter(|s| s.0 >= since)
            .map(|s| s.1)
            .max()
            .unwrap_or(0))
    };
    std::thread::sleep(Duration::from_secs(1));
    let cold_kib = max_since(0.0)?;
    // A warm-up, so that idle means a server that has served: its runtimes, allocator arenas
    // and connections as they stay.
    // Numbered after the flood's, so that every message has its own number.
    publish(exe, kind, &topic, count, WARM_UP)?;
    std::thread::sleep(AFTER_DRAIN);
    let idle_kib = max_since(t0.elapsed().as_secs_f64() - 2.0)?;
    let flood_at = t0.elapsed().as_secs_f64();
    let out = publish(exe, kind, &topic, 0, count)?;
    let drained_at = t0.elapsed().as_secs_f64();
    let (mut publish_per_s, mut peak_depth) = (0.0, 0);
    for l in String::from_utf8_lossy(&out.stdout).lines() {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(l) else {
            continue;
        };
        if let Some(r) = v["per_s"].as_f64() {
            publish_per_s = r;
        }
        if let Some(d) = v["depth"].as_u64() {
            peak_depth = peak_depth.max(d);
        }
    }
    std::thread::sleep(AFTER_DRAIN);
    done.store(true, Ordering::Relaxed);
    let _ = sampler.join();
    drop(server.stdin.take()); // the server stops when its stdin closes
    let last = lines
        .map_while(Result::ok)
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(&l).ok())
        .last()
        .ok_or("the flood server printed no figures")?;
    let _ = server.wait();
    let samples = samples.lock().map_err(|_| "sampler poisoned")?.clone();
    let peak_kib = samples.iter().map(|s| s.1).max().unwrap_or(0);
    let timeline = (0..)
        .map(|i| flood_at + 5.0 * f64::from(i))
        .take_while(|t| *t <= samples.last().map_or(0.0, |s| s.0))
        .filter_map(|t| samples.iter().find(|s| s.0 >= t).map(|s| s.1))
        .collect();
    let end_kib = samples.last().map(|s| s.1).unwrap_or(0);
    let csv: String = std::iter::once("seconds,rss_kib\n".to_string())
        .chain(samples.iter().map(|(t, k)| format!("{t:.2},{k}\n")))
        .collect();
    let file = target_dir().join(format!(
        "xtask/flood-{}-{}.csv",
        kind.arg(),
        if max.is_some() {
            "unbounded"
        } else {
            "bounded"
        }
    ));
    std::fs::create_dir_all(target_dir().join("xtask")).map_err(|e| e.to_string())?;
    std::fs::write(&file, csv).map_err(|e| e.to_string())?;
    let _ = Command::new(exe)
        .args(["cleanup", "--topic", &topic])
        .status();
    Ok(Run {
        name,
        bounded: max.is_none(),
        handled: last["handled"].as_u64().unwrap_or(0),
        distinct: last["distinct"].as_u64().unwrap_or(0),
        most_at_once: last["max_in_flight_seen"].as_u64().unwrap_or(0),
        published: u64::from(count + WARM_UP),
        cold_kib,
        idle_kib,
        peak_kib,
        end_kib,
        publish_per_s,
        peak_depth,
        drain_s: drained_at - flood_at,
        timeline,
    })
}
