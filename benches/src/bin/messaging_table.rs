//! In-memory RPC and notifications per executor beside the tokio mpsc baseline, one JSON line per figure (calls/s
//! or casts/s); `cargo xtask bench-messaging` prints the table. Medians of 5; `--quick` for a
//! smoke run; `--observed` measures the calls again with tracing and metrics on.

#![allow(clippy::print_stdout)] // its output is the JSON lines xtask reads

use osier_benches::messaging as m;

#[cfg(feature = "mimalloc")]
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;
use osier_messaging::Executor;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn per_sec(runs: usize, n: u64, f: &dyn Fn(u64) -> std::time::Duration) -> f64 {
    let _ = f(n / 10 + 1);
    median((0..runs).map(|_| n as f64 / f(n).as_secs_f64()).collect())
}

fn emit(bench: &str, imp: &str, v: f64) {
    println!(r#"{{"bench":"{bench}","impl":"{imp}","value":{v:.0},"unit":"per_s"}}"#);
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let (runs, n) = if quick { (3, 2_000) } else { (5, 50_000) };
    if std::env::args().any(|a| a == "--observed") {
        // Tracing and metrics on: the calls of the tokio and green executors again.
        let _handle = osier_benches::observe::install();
        for (name, e) in [
            ("tokio_observed", Executor::Tokio),
            ("green_observed", Executor::Green),
        ] {
            emit("call_1", name, per_sec(runs, n / 5, &|k| m::calls(e, k, 1)));
            emit("call_16", name, per_sec(runs, n, &|k| m::calls(e, k, 16)));
        }
        return;
    }
    for (name, e) in [
        ("tokio", Executor::Tokio),
        ("green", Executor::Green),
        ("threads", Executor::Threads),
    ] {
        emit("call_1", name, per_sec(runs, n / 5, &|k| m::calls(e, k, 1)));
        emit("call_16", name, per_sec(runs, n, &|k| m::calls(e, k, 16)));
        if e != Executor::Threads {
            // The same calls with tokio on the hub's own thread, right after.
            let on_hub = format!("{name}_on_hub");
            emit(
                "call_1",
                &on_hub,
                per_sec(runs, n / 5, &|k| m::calls_on_hub(e, k, 1)),
            );
            emit(
                "call_16",
                &on_hub,
                per_sec(runs, n, &|k| m::calls_on_hub(e, k, 16)),
            );
        }
        emit("cast", name, per_sec(runs, n, &|k| m::casts(e, k)));
        emit(
            "notify",
            name,
            per_sec(runs, n, &|k| m::notifications(e, k)),
        );
    }
    emit(
        "call_1",
        "mpsc",
        per_sec(runs, n / 5, &|k| m::mpsc_baseline(k, 1)),
    );
    emit(
        "call_16",
        "mpsc",
        per_sec(runs, n, &|k| m::mpsc_baseline(k, 16)),
    );
}
