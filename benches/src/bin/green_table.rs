//! Runs the green-runtime microbenchmarks side by side (osier-green, raw may with one worker,
//! tokio multi-thread and current-thread) in one process and prints one JSON object per line:
//! `{"bench": "...", "impl": "...", "value": f64, "unit": "ns/op" | "B/unit"}`.
//! Medians of 5 runs after a warm-up run. `cargo xtask bench-eventlet` adds eventlet and prints
//! the ratio table; `--quick` uses fewer iterations (for CI smoke runs).

#![allow(clippy::print_stdout)] // its output is the JSON lines xtask reads

use std::time::Duration;

use osier_benches as b;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// Median ns per op over `runs` runs. With `fixed`, every run does exactly `iters` ops; else the
/// count is calibrated so one run takes about 150 ms (at most `iters`, at least 1,000).
fn ns_per_op(iters: u64, fixed: bool, runs: usize, f: &dyn Fn(u64) -> Duration) -> f64 {
    let warm = f(1_000); // warm-up and calibration
    let n = if fixed {
        iters
    } else {
        let per = warm.as_nanos().max(1) as f64 / 1_000.0;
        ((150e6 / per) as u64).clamp(1_000, iters)
    };
    median(
        (0..runs)
            .map(|_| f(n).as_nanos() as f64 / n as f64)
            .collect(),
    )
}

/// Memory is measured in a fresh child process per implementation, so allocator pages freed by
/// earlier benchmarks cannot hide the cost.
fn mem_child(imp: &str) -> f64 {
    let n = 10_000;
    match imp {
        "osier" => b::osier_parked_bytes(n),
        "may_1w" => b::may_parked_bytes(n),
        _ => b::tokio_parked_bytes(b::tokio_mt(), n),
    }
}

fn emit(bench: &str, imp: &str, value: f64, unit: &str) {
    println!(r#"{{"bench":"{bench}","impl":"{imp}","value":{value:.1},"unit":"{unit}"}}"#);
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--mem-child") {
        let imp = args.get(i + 1).map(String::as_str).unwrap_or("osier");
        println!("{}", mem_child(imp));
        return;
    }
    let only = args
        .iter()
        .position(|a| a == "--only")
        .and_then(|i| args.get(i + 1).cloned());
    let quick = args.iter().any(|a| a == "--quick");
    let scale = if quick { 10 } else { 1 };
    let runs = if quick { 3 } else { 5 };
    let mt = b::tokio_mt();
    let ct = b::tokio_ct();

    type Case<'a> = (
        &'a str,
        u64,
        bool,
        Vec<(&'a str, Box<dyn Fn(u64) -> Duration + 'a>)>,
    );
    let cases: Vec<Case> = vec![
        (
            "spawn_wait",
            200_000 / scale,
            false,
            vec![
                ("osier", Box::new(b::osier_spawn_wait)),
                ("may_1w", Box::new(b::may_spawn_wait)),
                ("tokio_mt2", Box::new(|n| b::tokio_spawn_wait(mt, n))),
                ("tokio_ct", Box::new(|n| b::tokio_spawn_wait(ct, n))),
            ],
        ),
        (
            "switch",
            1_000_000 / scale,
            false,
            vec![
                ("osier", Box::new(b::osier_switch)),
                ("may_1w", Box::new(b::may_switch)),
                ("tokio_mt2", Box::new(|n| b::tokio_switch(mt, n))),
                ("tokio_ct", Box::new(|n| b::tokio_switch(ct, n))),
            ],
        ),
        (
            "sleep0",
            2_000_000 / scale,
            false,
            vec![
                ("osier", Box::new(b::osier_sleep0)),
                ("may_1w", Box::new(b::may_yield)),
                ("tokio_mt2", Box::new(|n| b::tokio_yield(mt, n))),
                ("tokio_ct", Box::new(|n| b::tokio_yield(ct, n))),
            ],
        ),
        (
            "pool_100k",
            100_000 / scale,
            true,
            vec![
                ("osier", Box::new(b::osier_pool)),
                ("may_1w", Box::new(b::may_pool)),
                ("tokio_mt2", Box::new(|n| b::tokio_pool(mt, n))),
                ("tokio_ct", Box::new(|n| b::tokio_pool(ct, n))),
            ],
        ),
    ];
    for (bench, iters, fixed, impls) in &cases {
        if only.as_deref().is_some_and(|o| o != *bench) {
            continue;
        }
        for (imp, f) in impls {
            emit(
                bench,
                imp,
                ns_per_op(*iters, *fixed, runs, f.as_ref()),
                "ns/op",
            );
        }
    }
    if only.as_deref().is_some_and(|o| o != "parked_memory_10k") {
        return;
    }
    let exe = std::env::current_exe().expect("own path");
    for imp in ["osier", "may_1w", "tokio_mt2"] {
        let vals: Vec<f64> = (0..3)
            .filter_map(|_| {
                let out = std::process::Command::new(&exe)
                    .args(["--mem-child", imp])
                    .output()
                    .ok()?;
                String::from_utf8_lossy(&out.stdout).trim().parse().ok()
            })
            .collect();
        if !vals.is_empty() {
            emit("parked_memory_10k", imp, median(vals), "B/unit");
        }
    }
}
