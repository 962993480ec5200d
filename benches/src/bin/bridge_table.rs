//! Runs the bridge benchmarks and their baselines side by side in one process and prints one
//! JSON object per line (see `green_table.rs`); `cargo xtask bench-bridge` prints the table.
//! Medians of 5 runs after a warm-up; `--quick` for a smoke run.

#![allow(clippy::print_stdout)] // its output is the JSON lines xtask reads

use std::time::Duration;

use osier_benches::bridge as b;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn ns_per_op(max: u64, runs: usize, f: &dyn Fn(u64) -> Duration) -> f64 {
    let warm = f(1_000);
    let per = warm.as_nanos().max(1) as f64 / 1_000.0;
    let n = ((150e6 / per) as u64).clamp(1_000, max);
    median(
        (0..runs)
            .map(|_| f(n).as_nanos() as f64 / n as f64)
            .collect(),
    )
}

fn emit(bench: &str, value: f64) {
    emit_unit(bench, value, "ns/op");
}

fn emit_unit(bench: &str, value: f64, unit: &str) {
    emit_as(bench, "osier", value, unit);
}

/// A figure of the bridge with tokio on the hub's own thread (`tokio_on_hubs`).
fn emit_on_hub(bench: &str, value: f64) {
    emit_as(bench, "osier_on_hub", value, "ns/op");
}

fn emit_as(bench: &str, imp: &str, value: f64, unit: &str) {
    println!(r#"{{"bench":"{bench}","impl":"{imp}","value":{value:.2},"unit":"{unit}"}}"#);
}

/// The low-load hop against its floor, interleaved: each round runs both back to back and the
/// ratio of the round is kept; the median ratio is robust to the machine's drift between rounds.
fn paired_hop_ratio(rounds: usize, iters: u64) -> f64 {
    median(
        (0..rounds)
            .map(|_| {
                let hop = b::green_tokio_green(iters).as_nanos() as f64;
                let floor = b::os_tokio_os(iters).as_nanos() as f64;
                hop / floor
            })
            .collect(),
    )
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let runs = if quick { 3 } else { 5 };
    let max = if quick { 20_000 } else { 2_000_000 };
    type Workload = Box<dyn Fn(u64) -> Duration>;
    let cases: Vec<(&str, Workload)> = vec![
        ("yield_future_ready", Box::new(b::yield_ready)),
        ("green_tokio_green", Box::new(b::green_tokio_green)),
        ("wrap_greenthread_trivial", Box::new(b::wrap_trivial)),
        ("baseline_tokio_task_rt", Box::new(b::tokio_task_rt)),
        ("baseline_os_tokio_os", Box::new(b::os_tokio_os)),
        ("baseline_may_pingpong", Box::new(b::may_pingpong)),
    ];
    let on_hub: Vec<(&str, Workload)> = vec![
        ("yield_future_ready", Box::new(b::yield_ready_on_hub)),
        ("green_tokio_green", Box::new(b::green_tokio_green_on_hub)),
        ("wrap_greenthread_trivial", Box::new(b::wrap_trivial_on_hub)),
        ("baseline_tokio_task_rt", Box::new(b::tokio_task_rt_on_hub)),
    ];
    // Each workload in both modes back to back, so drift between them stays small.
    for (name, f) in &cases {
        emit(name, ns_per_op(max, runs, f.as_ref()));
        if let Some((_, g)) = on_hub.iter().find(|(n, _)| n == name) {
            emit_on_hub(name, ns_per_op(max, runs, g.as_ref()));
        }
    }
    emit_unit(
        "hop_over_floor_paired",
        paired_hop_ratio(if quick { 3 } else { 11 }, if quick { 500 } else { 5_000 }),
        "ratio",
    );
    let (n, hops) = if quick { (1_000, 10) } else { (10_000, 100) };
    let _ = b::stress_hop_ns(n / 10, hops); // warm-up
    let _ = b::stress_hop_on_hub_ns(n / 10, hops); // warm-up
    emit(
        "stress_hop_10k_x100",
        median((0..3).map(|_| b::stress_hop_ns(n, hops)).collect()),
    );
    emit_on_hub(
        "stress_hop_10k_x100",
        median((0..3).map(|_| b::stress_hop_on_hub_ns(n, hops)).collect()),
    );
    emit(
        "stress_local_10k_x100",
        median((0..3).map(|_| b::stress_local_ns(n, hops)).collect()),
    );
    emit_on_hub(
        "stress_local_10k_x100",
        median((0..3).map(|_| b::stress_local_on_hub_ns(n, hops)).collect()),
    );
    emit(
        "stress_hop_1k_x1000",
        median(
            (0..3)
                .map(|_| b::stress_hop_ns(n / 10, hops * 10))
                .collect(),
        ),
    );
    emit_on_hub(
        "stress_hop_1k_x1000",
        median(
            (0..3)
                .map(|_| b::stress_hop_on_hub_ns(n / 10, hops * 10))
                .collect(),
        ),
    );
}
