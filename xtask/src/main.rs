//! Every dev task of the workspace: `cargo xtask <task>`.
//!
//! | task | what it does |
//! |---|---|
//! | `ci` | fmt check, clippy (`-D warnings`), the whole test suite with doctests, the loom models, the cluster fault scenarios (those reliable so far), the benches compiled, a smoke run of the demo, and the instruction budget of a RabbitMQ call (`bench-instructions --dev --prebuilt --check`, on the table `cargo test` built). `.ci/run` calls exactly this. |
//! | `bench` | the criterion benches (`cargo bench -p osier-benches`) |
//! | `bench-eventlet [--quick]` | the green microbenchmarks side by side in one run: osier-green, raw may, tokio and Python eventlet (in a venv under `target/xtask/`), as one table of ratios |
//! | `bench-bridge [--quick]` | the bridge benchmarks beside their baselines (tokio task round trip, OS thread -> tokio -> OS thread hand-off, may ping-pong), as one table |
//! | `bench-messaging [--quick]` | in-memory RPC calls and casts per executor beside a tokio mpsc request/reply baseline |
//! | `bench-amqp [--quick] [--rounds N]` | RabbitMQ calls, casts and notifications: osier, the raw lapin loop with the same guarantee, and Python oslo.messaging, interleaved in one run |
//! | `bench-instructions [--messages N] [--rows R,..] [--dev] [--prebuilt] [--observed] [--check]` | CPU instructions per RabbitMQ message (call, cast, notification), osier beside the raw lapin loop, split by stage, counted by callgrind; `--dev` counts the dev build, `--prebuilt` counts the binary the last build left, `--observed` adds osier with tracing and metrics on, `--check` holds osier's rows to `benches/instruction-budget.json` (+10%) |
//! | `bench-service [--rounds N] [--workers N]` | the ProcessLauncher's start-up, respawn and stop beside Python oslo.service |
//! | `bench-flood [--quick] [--count N]` | a flood of casts at a slow RPC server on RabbitMQ: the server's RSS over time, bounded (the default) and unbounded, in one run |
//! | `chaos [--python] [--keep]` | the cluster fault scenarios (a node killed, frozen, its connections closed, the whole cluster stopped; classic and quorum queues) on a three-node RabbitMQ cluster of our own on 127.0.0.1:5673-5675, then a table of their figures; `--python` runs them with Python oslo.messaging too |
//! | `interop` | osier against the real Python oslo.messaging (venv from PyPI) on the local RabbitMQ, both directions; prints `N passed, N failed` |
//! | `fuzz [--seconds N \| --runs N]` | seeds and runs the cargo-fuzz target of the whole inbound path (needs `cargo install cargo-fuzz` and nightly) |
//! | `loom` | only the loom models |
//!
//! Where each lives: `ci.rs` (ci, loom), `bench_tables.rs` (bench, bench-eventlet, bench-bridge,
//! bench-messaging, and the helpers of every bench family), `bench_amqp.rs`, `bench_instructions.rs`, `bench_service.rs`,
//! `bench_flood.rs`, `chaos.rs` (with `scripts/rabbit-cluster.sh`), `interop.rs`, `fuzz.rs`; `venv.rs` makes the Python venvs. Everything
//! built or written goes under cargo's target directory (`cargo metadata`), so
//! `CARGO_TARGET_DIR` is honoured.
#![allow(clippy::print_stdout)]

mod bench_amqp;
mod bench_charts;
mod bench_flood;
mod bench_instructions;
mod bench_service;
mod bench_tables;
mod chaos;
mod ci;
mod fuzz;
mod interop;
mod venv;

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::Instant;

use bench_tables::{
    bench, bench_bin, bench_bridge, bench_eventlet, bench_messaging, median, parse_lines,
    run_table_args,
};
use venv::ensure_venv;

/// Every task with its flags, as the table above lists them (the usage line).
const TASKS: &[&str] = &[
    "ci",
    "bench",
    "bench-eventlet [--quick]",
    "bench-bridge [--quick]",
    "bench-messaging [--quick]",
    "bench-amqp [--quick] [--rounds N]",
    "bench-instructions [--messages N] [--rows R,..] [--dev] [--prebuilt] [--observed] [--check]",
    "bench-service [--rounds N] [--workers N]",
    "bench-flood [--quick] [--count N]",
    "chaos [--python] [--keep]",
    "interop",
    "fuzz [--seconds N | --runs N]",
    "loom",
];

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let task = args.first().map(String::as_str).unwrap_or("help");
    let rest = &args[args.len().min(1)..];
    let r = match task {
        "ci" => ci::ci(),
        "bench" => bench(rest),
        "bench-eventlet" => bench_eventlet(rest),
        "bench-bridge" => bench_bridge(rest),
        "bench-messaging" => bench_messaging(rest),
        "loom" => ci::loom(),
        "interop" => interop::interop(),
        "bench-amqp" => bench_amqp::bench_amqp(rest),
        "bench-instructions" => bench_instructions::bench_instructions(rest),
        "bench-service" => bench_service::bench_service(rest),
        "bench-flood" => bench_flood::bench_flood(rest),
        "fuzz" => fuzz::fuzz(rest),
        "chaos" => chaos::chaos(rest),
        _ => {
            println!("usage: cargo xtask <{}>", TASKS.join(" | "));
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

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// Where cargo puts what it builds, as cargo itself reports it (`cargo metadata`: honours
/// `CARGO_TARGET_DIR`, `build.target-dir` and the rest); `target/` if cargo cannot say.
fn target_dir() -> PathBuf {
    static DIR: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    DIR.get_or_init(|| {
        cargo()
            .args(["metadata", "--format-version", "1", "--no-deps"])
            .output()
            .ok()
            .filter(|o| o.status.success())
            .and_then(|o| serde_json::from_slice::<serde_json::Value>(&o.stdout).ok())
            .and_then(|v| v["target_directory"].as_str().map(PathBuf::from))
            .unwrap_or_else(|| root().join("target"))
    })
    .clone()
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

/// Whether something listens at `addr` (`host:port`), within two seconds.
fn reachable(addr: &str) -> bool {
    use std::net::ToSocketAddrs;
    addr.to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
        .is_some_and(|a| {
            std::net::TcpStream::connect_timeout(&a, std::time::Duration::from_secs(2)).is_ok()
        })
}
