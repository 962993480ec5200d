//! The table benches: `bench` (criterion), `bench-eventlet`, `bench-bridge`,
//! `bench-messaging`, and the helpers every bench family shares (release builds of the
//! benches' binaries, their JSON lines, medians, ratio tables).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;

use crate::venv::{ensure_eventlet_venv, EVENTLET_VERSION};
use crate::{cargo, root, run, target_dir};

/// The median of some samples (the upper one of the middle two for an even count).
pub(crate) fn median(mut v: Vec<f64>) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    Some(v[v.len() / 2])
}

pub(crate) fn bench(rest: &[String]) -> Result<(), String> {
    run(
        "criterion benches",
        cargo().args(["bench", "-p", "osier-benches"]).args(rest),
    )
}

/// Reads the JSON lines printed by the table runners into (bench, impl) -> value.
pub(crate) fn parse_lines(out: &str, into: &mut BTreeMap<(String, String), f64>) {
    for line in out.lines() {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        if let (Some(b), Some(i), Some(x)) =
            (v["bench"].as_str(), v["impl"].as_str(), v["value"].as_f64())
        {
            into.insert((b.to_string(), i.to_string()), x);
        }
    }
}

pub(crate) fn bench_eventlet(rest: &[String]) -> Result<(), String> {
    let quick = rest.iter().any(|a| a == "--quick");
    let py = ensure_eventlet_venv()?;
    let mut results = BTreeMap::new();

    println!("==> Rust side (osier-green, may, tokio), release build");
    results.extend(run_table("green_table", quick, false)?);

    println!("==> Python side (eventlet {EVENTLET_VERSION})");
    let mut c = Command::new(&py);
    c.arg(root().join("xtask/py/eventlet_bench.py"));
    if quick {
        c.arg("--quick");
    }
    let out = c.output().map_err(|e| e.to_string())?;
    if !out.status.success() {
        return Err(format!(
            "eventlet bench failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    parse_lines(&String::from_utf8_lossy(&out.stdout), &mut results);

    print_table(&results);
    Ok(())
}

/// Builds and runs the table runner `bin` of osier-benches (release), pinned to CPU 0 when
/// `one_core` (every thread on one core: no cross-CPU wake-ups, so the software cost shows
/// without the VM's 5-55 us IPI noise), and reads its JSON lines.
pub(crate) fn run_table(
    bin: &str,
    quick: bool,
    one_core: bool,
) -> Result<BTreeMap<(String, String), f64>, String> {
    run_table_with(bin, quick, one_core, &[])
}

/// [`run_table`] with extra arguments for the runner.
pub(crate) fn run_table_args(
    bin: &str,
    quick: bool,
    args: &[&str],
) -> Result<BTreeMap<(String, String), f64>, String> {
    run_table_with(bin, quick, false, args)
}

/// Builds a binary of the benches crate in release mode; returns its path.
pub(crate) fn bench_bin(bin: &str) -> Result<PathBuf, String> {
    let build = cargo()
        .args([
            "build",
            "--release",
            "-q",
            "-p",
            "osier-benches",
            "--bin",
            bin,
        ])
        .status()
        .map_err(|e| e.to_string())?;
    if !build.success() {
        return Err(format!("building {bin} failed"));
    }
    Ok(target_dir().join("release").join(bin))
}

pub(crate) fn run_table_with(
    bin: &str,
    quick: bool,
    one_core: bool,
    args: &[&str],
) -> Result<BTreeMap<(String, String), f64>, String> {
    let exe = bench_bin(bin)?;
    let mut c = if one_core {
        let mut c = Command::new("taskset");
        c.args(["-c", "0"]).arg(&exe);
        c
    } else {
        Command::new(&exe)
    };
    if quick {
        c.arg("--quick");
    }
    c.args(args);
    let out = c.output().map_err(|e| format!("running {bin}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{bin} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let mut r = BTreeMap::new();
    parse_lines(&String::from_utf8_lossy(&out.stdout), &mut r);
    Ok(r)
}

pub(crate) fn bench_bridge(rest: &[String]) -> Result<(), String> {
    let quick = rest.iter().any(|a| a == "--quick");
    println!("==> bridge benchmarks, all threads on one core (taskset -c 0)");
    let one = run_table("bridge_table", quick, true)?;
    println!("==> bridge benchmarks, free to use every core");
    let all = run_table("bridge_table", quick, false)?;
    let get = |r: &BTreeMap<(String, String), f64>, b: &str| {
        r.get(&(b.to_string(), "osier".to_string())).copied()
    };
    let on_hub = |b: &str| {
        all.get(&(b.to_string(), "osier_on_hub".to_string()))
            .copied()
    };
    use self::count as f;
    println!();
    println!("| benchmark | ns/op, 1 core | ns/op, all cores | all cores, tokio on the hub | target (tokio on the hub) |");
    println!("|---|---|---|---|---|");
    let rows = [
        (
            "yield_future_ready",
            "yield_future(ready) from a green thread",
            "<= 100 ns",
        ),
        (
            "green_tokio_green",
            "green -> tokio task -> green round trip",
            "<= 1.2x the floor (<= 2000 ns)",
        ),
        (
            "wrap_greenthread_trivial",
            "spawn_green(trivial).await from a task",
            "- (<= 1000 ns)",
        ),
        (
            "stress_hop_10k_x100",
            "one hop under load (10k green x 100 hops, 10k async waiters)",
            "<= 1200 ns (<= 1200 ns)",
        ),
        (
            "stress_local_10k_x100",
            "same load, hops completing on the hub (the green side's share)",
            "-",
        ),
        (
            "stress_hop_1k_x1000",
            "one hop under load, 1k green x 1000 hops",
            "-",
        ),
        (
            "baseline_tokio_task_rt",
            "baseline: tokio task -> task round trip",
            "-",
        ),
        (
            "baseline_os_tokio_os",
            "baseline (floor): OS thread -> tokio -> OS thread",
            "-",
        ),
        (
            "baseline_may_pingpong",
            "baseline: may coroutine round trip",
            "-",
        ),
    ];
    for (k, what, target) in rows {
        println!(
            "| {what} | {} | {} | {} | {target} |",
            f(get(&one, k)),
            f(get(&all, k)),
            f(on_hub(k))
        );
    }
    let ratio = |r: &BTreeMap<(String, String), f64>| {
        get(r, "hop_over_floor_paired")
            .map(|x| format!("{x:.2}x"))
            .unwrap_or_else(|| "-".into())
    };
    println!(
        "| low-load hop / floor, paired rounds (median) | {} | {} | - | <= 1.2x |",
        ratio(&one),
        ratio(&all)
    );
    let keys: Vec<&str> = rows.iter().map(|(k, _, _)| *k).collect();
    crate::bench_charts::grouped_bars(
        "bridge.svg",
        "Crossing between green and async: ns per operation (log scale)",
        "ns per operation",
        &keys,
        &[
            ("one core", keys.iter().map(|k| get(&one, k)).collect()),
            ("every core", keys.iter().map(|k| get(&all, k)).collect()),
            (
                "every core, tokio on the hub",
                keys.iter().map(|k| on_hub(k)).collect(),
            ),
        ],
    )?;
    Ok(())
}

pub(crate) fn bench_messaging(rest: &[String]) -> Result<(), String> {
    let quick = rest.iter().any(|a| a == "--quick");
    let mut r = run_table("messaging_table", quick, false)?;
    r.extend(run_table_args("messaging_table", quick, &["--observed"])?);
    let get = |b: &str, i: &str| r.get(&(b.to_string(), i.to_string())).copied();
    use self::count as f;
    println!();
    println!("| per second | tokio executor | green executor | threads executor | tokio mpsc baseline | targets |");
    println!("|---|---|---|---|---|---|");
    for (b, what, target) in [
        (
            "call_1",
            "calls, 1 caller",
            "tokio >= 200k calls/s; green within 2x of tokio",
        ),
        (
            "call_16",
            "calls, 16 callers",
            "tokio >= 200k calls/s; green within 2x of tokio",
        ),
        ("cast", "casts (until handled)", "green within 2x of tokio"),
        (
            "notify",
            "notifications (until handled; async endpoint on tokio, blocking ones on green and threads)",
            "green >= 0.5x tokio",
        ),
    ] {
        println!(
            "| {what} | {} | {} | {} | {} | {target} |",
            f(get(b, "tokio")),
            f(get(b, "green")),
            f(get(b, "threads")),
            f(get(b, "mpsc")),
        );
    }
    crate::bench_charts::bars_from(
        &r,
        "messaging.svg",
        "In-memory RPC and notifications per executor (per second, log scale)",
        "per second",
        &["call_1", "call_16", "cast", "notify"],
        None,
        &[
            ("tokio executor", "tokio"),
            ("green executor", "green"),
            ("threads executor", "threads"),
            ("tokio mpsc baseline", "mpsc"),
        ],
    )?;
    println!("\nWith tokio on the hub's own thread (`tokio_on_hubs`: callers, server and handlers on the hub), same run:\n");
    println!("| calls per second | tokio | tokio, on the hub | green | green, on the hub | green / tokio, on the hub | targets |");
    println!("|---|---|---|---|---|---|---|");
    for b in ["call_1", "call_16"] {
        let (t, th) = (get(b, "tokio"), get(b, "tokio_on_hub"));
        let (g, gh) = (get(b, "green"), get(b, "green_on_hub"));
        println!(
            "| {b} | {} | {} | {} | {} | {} | {} |",
            f(t),
            f(th),
            f(g),
            f(gh),
            ratio(gh, th),
            if b == "call_1" {
                "tokio on the hub >= 300k; green >= 0.8x tokio"
            } else {
                "-"
            }
        );
    }
    println!("\nTracing (a subscriber at INFO formatting every span) and metrics (a Prometheus recorder) on, against off, same run:\n");
    println!("| calls per second | tokio | tokio, on | on / off | green | green, on | on / off (target >= 0.95x at 16) |");
    println!("|---|---|---|---|---|---|---|");
    for b in ["call_1", "call_16"] {
        let (t, to) = (get(b, "tokio"), get(b, "tokio_observed"));
        let (g, go) = (get(b, "green"), get(b, "green_observed"));
        println!(
            "| {b} | {} | {} | {} | {} | {} | {} |",
            f(t),
            f(to),
            ratio(to, t),
            f(g),
            f(go),
            ratio(go, g)
        );
    }
    Ok(())
}

/// A figure for a table: a whole number, or `-` when it was not measured.
pub(crate) fn count(v: Option<f64>) -> String {
    v.map(|x| format!("{x:.0}")).unwrap_or_else(|| "-".into())
}

/// `a / b` for a table (`1.23x`), or `-` when either is missing.
pub(crate) fn ratio(a: Option<f64>, b: Option<f64>) -> String {
    match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => format!("{:.2}x", a / b),
        _ => "-".into(),
    }
}

pub(crate) fn print_table(r: &BTreeMap<(String, String), f64>) {
    let get = |b: &str, i: &str| r.get(&(b.to_string(), i.to_string())).copied();
    use self::count as fmt;
    // (bench, unit, target vs may, target speed-up vs eventlet)
    let rows = [
        ("spawn_wait", "ns/op", "<= 1.15x", ">= 15x"),
        ("switch", "ns/op", "<= 1.15x", ">= 30x"),
        ("sleep0", "ns/op", "<= 1.15x", ">= 50x"),
        ("pool_100k", "ns/op", "-", ">= 50x"),
        ("parked_memory_10k", "B/unit", "-", "osier <= eventlet"),
    ];
    println!();
    println!("| benchmark | unit | osier | may 1w | tokio mt(2) | tokio ct | eventlet | osier / may (target) | eventlet / osier (target) |");
    println!("|---|---|---|---|---|---|---|---|---|");
    for (b, unit, t_may, t_ev) in rows {
        let o = get(b, "osier");
        println!(
            "| {b} | {unit} | {} | {} | {} | {} | {} | {} ({t_may}) | {} ({t_ev}) |",
            fmt(o),
            fmt(get(b, "may_1w")),
            fmt(get(b, "tokio_mt2")),
            fmt(get(b, "tokio_ct")),
            fmt(get(b, "eventlet")),
            ratio(o, get(b, "may_1w")),
            ratio(get(b, "eventlet"), o),
        );
    }
    let chart = crate::bench_charts::bars_from(
        r,
        "green.svg",
        "Green runtime: ns per operation (log scale; lower is better)",
        "ns per operation",
        &["spawn_wait", "switch", "sleep0", "pool_100k"],
        None,
        &[
            ("osier", "osier"),
            ("may, 1 worker", "may_1w"),
            ("tokio, 2 workers", "tokio_mt2"),
            ("tokio, current thread", "tokio_ct"),
            ("eventlet", "eventlet"),
        ],
    );
    if let Err(e) = chart {
        println!("(no chart: {e})");
    }
}
