//! Every dev task of the workspace: `cargo xtask <task>`.
//!
//! | task | what it does |
//! |---|---|
//! | `ci` | fmt check, clippy (`-D warnings`), the whole test suite with doctests, the loom models, the benches compiled, and a smoke run of the demo. `.ci/run` calls exactly this. |
//! | `bench` | the criterion benches (`cargo bench -p osier-benches`) |
//! | `bench-eventlet [--quick]` | the green microbenchmarks side by side in one run: osier-green, raw may, tokio and Python eventlet (in a venv under `target/xtask/`), as one table of ratios |
//! | `bench-bridge [--quick]` | the bridge benchmarks beside their baselines (tokio task round trip, OS thread -> tokio -> OS thread hand-off, may ping-pong), as one table |
//! | `bench-messaging [--quick]` | in-memory RPC calls and casts per executor beside a tokio mpsc request/reply baseline |
//! | `bench-amqp [--quick] [--rounds N]` | RabbitMQ calls, casts and notifications: osier, the raw lapin loop with the same guarantee, and Python oslo.messaging, interleaved in one run |
//! | `bench-service [--rounds N] [--workers N]` | the ProcessLauncher's start-up, respawn and stop beside Python oslo.service |
//! | `bench-flood [--quick] [--count N]` | a flood of casts at a slow RPC server on RabbitMQ: the server's RSS over time, bounded (the default) and unbounded, in one run |
//! | `interop` | osier against the real Python oslo.messaging (venv from PyPI) on the local RabbitMQ, both directions; prints `N passed, N failed` |
//! | `fuzz [--seconds N \| --runs N]` | seeds and runs the cargo-fuzz target of the whole inbound path (needs `cargo install cargo-fuzz` and nightly) |
//! | `loom` | only the loom models |
#![allow(clippy::print_stdout)]

mod bench_amqp;
mod bench_flood;
mod bench_service;
mod interop;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::Instant;

const EVENTLET_VERSION: &str = "0.41.3";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let task = args.first().map(String::as_str).unwrap_or("help");
    let rest = &args[args.len().min(1)..];
    let r = match task {
        "ci" => ci(),
        "bench" => bench(rest),
        "bench-eventlet" => bench_eventlet(rest),
        "bench-bridge" => bench_bridge(rest),
        "bench-messaging" => bench_messaging(rest),
        "loom" => loom(),
        "interop" => interop::interop(),
        "bench-amqp" => bench_amqp::bench_amqp(rest),
        "bench-service" => bench_service::bench_service(rest),
        "bench-flood" => bench_flood::bench_flood(rest),
        "fuzz" => fuzz(rest),
        _ => {
            println!(
                "usage: cargo xtask <ci | bench | bench-eventlet [--quick] | bench-bridge [--quick] | bench-messaging [--quick] | bench-amqp [--quick] | bench-service [--rounds N] [--workers N] | bench-flood [--quick] [--count N] | interop | fuzz [--seconds N | --runs N] | loom>"
            );
            return if task == "help" {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            };
        }
    };
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask {task}: FAILED: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The median of some samples (the upper one of the middle two for an even count).
fn median(mut v: Vec<f64>) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    Some(v[v.len() / 2])
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// Where cargo puts what it builds: `CARGO_TARGET_DIR` when set, else `target/`.
fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(d) => {
            let d = PathBuf::from(d);
            if d.is_absolute() {
                d
            } else {
                root().join(d)
            }
        }
        None => root().join("target"),
    }
}

fn cargo() -> Command {
    let mut c = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    c.current_dir(root());
    c
}

fn run(step: &str, cmd: &mut Command) -> Result<(), String> {
    println!("\n==> {step}\n    {cmd:?}");
    let t0 = Instant::now();
    let status = cmd
        .status()
        .map_err(|e| format!("{step}: cannot start: {e}"))?;
    println!("<== {step}: {status} in {:.1?}", t0.elapsed());
    if status.success() {
        Ok(())
    } else {
        Err(format!("{step} failed ({status})"))
    }
}

fn loom() -> Result<(), String> {
    run(
        "loom models (park/unpark hand-off)",
        cargo()
            .env("RUSTFLAGS", "--cfg loom")
            .env("LOOM_MAX_PREEMPTIONS", "3")
            .args([
                "test",
                "-p",
                "osier-green",
                "--lib",
                "--release",
                "--target-dir",
                "target/loom",
                "--",
                "loom",
            ]),
    )
}

fn ci() -> Result<(), String> {
    let t0 = Instant::now();
    run("rustfmt", cargo().args(["fmt", "--all", "--", "--check"]))?;
    run(
        "clippy",
        cargo().args([
            "clippy",
            "--workspace",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ]),
    )?;
    run(
        "tests (unit, integration, doctests; broker fault tests included)",
        cargo()
            .env("OSIER_BROKER_FAULTS", "1")
            .args(["test", "--workspace"]),
    )?;
    loom()?;
    run(
        "bridge stress at full size (release)",
        cargo().env("OSIER_STRESS_FULL", "1").args([
            "test",
            "--release",
            "-p",
            "osier-bridge",
            "--test",
            "stress",
        ]),
    )?;
    run(
        "benches compile",
        cargo().args(["bench", "--workspace", "--no-run"]),
    )?;
    run(
        "demo smoke run",
        cargo().args([
            "run",
            "--release",
            "-p",
            "osier-green",
            "--example",
            "echo",
            "--",
            "--clients",
            "20",
            "--rounds",
            "20",
        ]),
    )?;
    run(
        "bridge example run",
        cargo().args(["run", "-p", "osier-bridge", "--example", "mixed"]),
    )?;
    // The README's first command, then the same with the RabbitMQ flag.
    let main_demo = [
        "run",
        "--release",
        "-p",
        "osier-messaging",
        "--example",
        "three_executors",
    ];
    run(
        "main demo run (in-memory transport)",
        cargo().args(main_demo),
    )?;
    run(
        "main demo run on RabbitMQ",
        cargo()
            .args(main_demo)
            .args(["--", "--url", "rabbit://guest:guest@127.0.0.1:5672/"]),
    )?;
    println!("\n==> interop with Python oslo.messaging");
    interop::interop()?;
    println!("\nxtask ci: all steps passed in {:.1?}", t0.elapsed());
    Ok(())
}

/// Tokens that reach the inbound path's corners quickly (numbers no duration holds, names of
/// the members that matter, escapes Python's json writes).
const FUZZ_DICTIONARY: &str = r#"
"\x22_timeout\x22"
"\x22_reply_q\x22"
"\x22_msg_id\x22"
"\x22_unique_id\x22"
"\x22oslo.version\x22"
"\x22oslo.message\x22"
"\x222.0\x22"
"\x22method\x22"
"\x22args\x22"
"\x22namespace\x22"
"\x22version\x22"
"\x22priority\x22"
"\x22event_type\x22"
"\x22failure\x22"
"\x22ending\x22"
"1e20"
"1e308"
"-1e400"
"\x5cud800"
"\x5cudc00"
"\x5cu0000"
"[[[[[[[["
"{\x22a\x22:{\x22a\x22:"
"#;

/// Writes the captured oslo messages as seeds (one per queue kind) and the dictionary, then
/// runs the inbound-path fuzz target for `--seconds N` (default 600) or `--runs N` executions.
fn fuzz(rest: &[String]) -> Result<(), String> {
    let limit = match rest {
        [] => "-max_total_time=600".to_string(),
        [flag, n] if flag == "--seconds" => {
            let n: u64 = n.parse().map_err(|_| "--seconds takes a number")?;
            format!("-max_total_time={n}")
        }
        [flag, n] if flag == "--runs" => {
            let n: u64 = n.parse().map_err(|_| "--runs takes a number")?;
            format!("-runs={n}")
        }
        _ => return Err("usage: cargo xtask fuzz [--seconds N | --runs N]".into()),
    };
    let corpus = root().join("fuzz/corpus/inbound_delivery");
    std::fs::create_dir_all(&corpus).map_err(|e| e.to_string())?;
    let text = std::fs::read_to_string(
        root().join("crates/osier-messaging/tests/data/oslo-wire-vectors.json"),
    )
    .map_err(|e| e.to_string())?;
    let v: serde_json::Value = serde_json::from_str(&text).map_err(|e| e.to_string())?;
    for vec in v["vectors"].as_array().into_iter().flatten() {
        if let (Some(name), Some(body)) = (vec["name"].as_str(), vec["body"].as_str()) {
            // The message bare too (the driver accepts both forms), so that the dictionary's
            // member names match it as they are, unescaped.
            let bare = serde_json::from_str::<serde_json::Value>(body)
                .ok()
                .and_then(|v| v["oslo.message"].as_str().map(str::to_string));
            let forms = [Some(("", body.to_string())), bare.map(|b| ("-bare", b))];
            for (suffix, text) in forms.into_iter().flatten() {
                // The first byte chooses the queue kind: 0 request, 1 notification, 2 reply.
                for kind in 0u8..3 {
                    let mut seed = vec![kind];
                    seed.extend_from_slice(text.as_bytes());
                    std::fs::write(corpus.join(format!("{name}{suffix}-{kind}")), seed)
                        .map_err(|e| e.to_string())?;
                }
            }
        }
    }
    let dict = root().join("target/xtask/inbound.dict");
    std::fs::create_dir_all(root().join("target/xtask")).map_err(|e| e.to_string())?;
    std::fs::write(&dict, FUZZ_DICTIONARY).map_err(|e| e.to_string())?;
    run(
        "cargo fuzz (inbound_delivery)",
        Command::new("cargo")
            .current_dir(root().join("fuzz"))
            .args(["+nightly", "fuzz", "run", "inbound_delivery", "--"])
            .arg(format!("-dict={}", dict.display()))
            .arg(limit),
    )
}

fn bench(rest: &[String]) -> Result<(), String> {
    run(
        "criterion benches",
        cargo().args(["bench", "-p", "osier-benches"]).args(rest),
    )
}

/// Reads the JSON lines printed by the table runners into (bench, impl) -> value.
fn parse_lines(out: &str, into: &mut BTreeMap<(String, String), f64>) {
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

/// A venv under `target/xtask/<name>` with `package==version` from PyPI, made once; returns
/// its python. The installed version is read from the package metadata.
fn ensure_venv(name: &str, package: &str, version: &str) -> Result<PathBuf, String> {
    let venv = root().join("target/xtask").join(name);
    let py = venv.join("bin/python");
    if !py.exists() {
        run(
            "create venv",
            Command::new("python3").args(["-m", "venv"]).arg(&venv),
        )?;
    }
    let have = Command::new(&py)
        .args([
            "-c",
            &format!("import importlib.metadata as m,sys;sys.stdout.write(m.version('{package}'))"),
        ])
        .stderr(std::process::Stdio::null())
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).to_string())
        .unwrap_or_default();
    if have != version {
        run(
            &format!("install {package} from PyPI"),
            Command::new(&py).args([
                "-m",
                "pip",
                "install",
                "--quiet",
                &format!("{package}=={version}"),
            ]),
        )?;
    }
    Ok(py)
}

fn ensure_eventlet_venv() -> Result<PathBuf, String> {
    ensure_venv("venv-eventlet", "eventlet", EVENTLET_VERSION)
}

fn bench_eventlet(rest: &[String]) -> Result<(), String> {
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
fn run_table(
    bin: &str,
    quick: bool,
    one_core: bool,
) -> Result<BTreeMap<(String, String), f64>, String> {
    run_table_with(bin, quick, one_core, &[])
}

/// [`run_table`] with extra arguments for the runner.
fn run_table_args(
    bin: &str,
    quick: bool,
    args: &[&str],
) -> Result<BTreeMap<(String, String), f64>, String> {
    run_table_with(bin, quick, false, args)
}

/// Builds a binary of the benches crate in release mode; returns its path.
fn bench_bin(bin: &str) -> Result<PathBuf, String> {
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

fn run_table_with(
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

fn bench_bridge(rest: &[String]) -> Result<(), String> {
    let quick = rest.iter().any(|a| a == "--quick");
    println!("==> bridge benchmarks, all threads on one core (taskset -c 0)");
    let one = run_table("bridge_table", quick, true)?;
    println!("==> bridge benchmarks, free to use every core");
    let all = run_table("bridge_table", quick, false)?;
    let get = |r: &BTreeMap<(String, String), f64>, b: &str| {
        r.get(&(b.to_string(), "osier".to_string())).copied()
    };
    let f = |v: Option<f64>| v.map(|x| format!("{x:.0}")).unwrap_or_else(|| "-".into());
    println!();
    println!("| benchmark | ns/op, 1 core | ns/op, all cores | target |");
    println!("|---|---|---|---|");
    let rows = [
        (
            "yield_future_ready",
            "yield_future(ready) from a green thread",
            "<= 100 ns",
        ),
        (
            "green_tokio_green",
            "green -> tokio task -> green round trip",
            "<= 1.2x the floor",
        ),
        (
            "wrap_greenthread_trivial",
            "spawn_green(trivial).await from a task",
            "-",
        ),
        (
            "stress_hop_10k_x100",
            "one hop under load (10k green x 100 hops, 10k async waiters)",
            "<= 1200 ns",
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
            "| {what} | {} | {} | {target} |",
            f(get(&one, k)),
            f(get(&all, k))
        );
    }
    let ratio = |r: &BTreeMap<(String, String), f64>| {
        get(r, "hop_over_floor_paired")
            .map(|x| format!("{x:.2}x"))
            .unwrap_or_else(|| "-".into())
    };
    println!(
        "| low-load hop / floor, paired rounds (median) | {} | {} | <= 1.2x |",
        ratio(&one),
        ratio(&all)
    );
    Ok(())
}

fn bench_messaging(rest: &[String]) -> Result<(), String> {
    let quick = rest.iter().any(|a| a == "--quick");
    let r = run_table("messaging_table", quick, false)?;
    let get = |b: &str, i: &str| r.get(&(b.to_string(), i.to_string())).copied();
    let f = |v: Option<f64>| v.map(|x| format!("{x:.0}")).unwrap_or_else(|| "-".into());
    println!();
    println!("| per second | tokio executor | green executor | threads executor | tokio mpsc baseline | targets |");
    println!("|---|---|---|---|---|---|");
    for (b, what) in [
        ("call_1", "calls, 1 caller"),
        ("call_16", "calls, 16 callers"),
        ("cast", "casts (until handled)"),
    ] {
        println!(
            "| {what} | {} | {} | {} | {} | tokio >= 200k calls/s; green within 2x of tokio |",
            f(get(b, "tokio")),
            f(get(b, "green")),
            f(get(b, "threads")),
            f(get(b, "mpsc")),
        );
    }
    Ok(())
}

fn print_table(r: &BTreeMap<(String, String), f64>) {
    let get = |b: &str, i: &str| r.get(&(b.to_string(), i.to_string())).copied();
    let fmt = |v: Option<f64>| v.map(|x| format!("{x:.0}")).unwrap_or_else(|| "-".into());
    let ratio = |a: Option<f64>, b: Option<f64>| match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => format!("{:.2}x", a / b),
        _ => "-".into(),
    };
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
}
