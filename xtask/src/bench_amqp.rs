//! `cargo xtask bench-amqp [--quick] [--rounds N] [--observability]`: osier's RabbitMQ driver (with oslo's default
//! options, with kolla-ansible 2025.2's option set, and with tracing and metrics on), the raw lapin loop with the same
//! delivery guarantee (plain, and routed as oslo's protocol routes: a topic exchange, oslo's
//! properties), and Python oslo.messaging (threading executor), on the local broker in
//! one session. Rounds are interleaved (osier, raw, oslo, osier, ...) so that
//! the machine's noise falls on every implementation alike; each figure is the median over the
//! rounds.
//! `--observability` compares osier with tracing and metrics off and on alone, over more rounds,
//! the two runs of a round swapping places every round, each round giving its own on/off ratio.

use std::collections::BTreeMap;
use std::process::Command;

use crate::interop::ensure_oslo_venv;
use crate::{median, parse_lines, root, run_table_args};

/// The rows the on/off comparison of tracing and metrics measures.
const OBSERVED_ROWS: [&str; 4] = ["call_1", "call_16", "cast_16", "notify_16"];

/// `--observability`: osier with tracing and metrics off and on, interleaved, more rounds
/// (default 8) and only the rows they share, so that the machine's noise (several percent from
/// run to run) averages out of a difference of a few percent. The two runs of a round swap
/// places every round (off first, then on first), and each round gives its own on/off ratio:
/// whatever the second run of a round gains or loses from the first (the broker's queues and
/// memory, the machine's other work drifting) falls on both sides alike, and shows as the
/// difference between the two orders.
fn observability(quick: bool, rest: &[String]) -> Result<(), String> {
    let rounds = rounds(rest, quick, 8)?;
    one_tokio_worker();
    std::env::set_var("OSIER_BENCH_ONLY", OBSERVED_ROWS.join(","));
    let mut samples: BTreeMap<(String, String), Vec<f64>> = BTreeMap::new();
    let mut paired = Paired::default();
    for round in 1..=rounds {
        let off_first = round % 2 == 1;
        let order = if off_first {
            ["osier", "osier-observed"]
        } else {
            ["osier-observed", "osier"]
        };
        println!(
            "==> round {round}/{rounds}: {}, then {}",
            order[0], order[1]
        );
        let mut r = BTreeMap::new();
        for imp in order {
            r.extend(run_table_args("amqp_table", quick, &["--impl", imp])?);
        }
        paired.add(&r, off_first);
        for (k, v) in r {
            samples.entry(k).or_default().push(v);
        }
    }
    let med = medians(samples);
    print_observed(&med);
    paired.print();
    Ok(())
}

/// Each round's on/off ratio per row, kept by which of the two ran first.
#[derive(Default)]
struct Paired {
    ratios: BTreeMap<(&'static str, bool), Vec<f64>>,
}

impl Paired {
    fn add(&mut self, round: &BTreeMap<(String, String), f64>, off_first: bool) {
        let get = |k: &str, i: &str| round.get(&(k.to_string(), i.to_string())).copied();
        for k in OBSERVED_ROWS {
            if let (Some(off), Some(on)) = (get(k, "osier"), get(k, "osier-observed")) {
                if off > 0.0 {
                    self.ratios
                        .entry((k, off_first))
                        .or_default()
                        .push(on / off);
                }
            }
        }
    }

    fn print(&self) {
        let of = |k: &str, first: Option<bool>| -> Vec<f64> {
            self.ratios
                .iter()
                .filter(|((row, f), _)| *row == k && first.is_none_or(|want| *f == want))
                .flat_map(|(_, v)| v.iter().copied())
                .collect()
        };
        let x = |v: Option<f64>| v.map(|r| format!("{r:.3}x")).unwrap_or_else(|| "-".into());
        println!("Each round's own on / off, the runs of a round in alternating order:\n");
        println!("| workload | median of the rounds' on / off | lowest - highest | rounds with off first | rounds with on first |");
        println!("|---|---|---|---|---|");
        for k in OBSERVED_ROWS {
            let all = of(k, None);
            let low = all.iter().copied().reduce(f64::min);
            let high = all.iter().copied().reduce(f64::max);
            println!(
                "| {k} | {} | {} - {} | {} | {} |",
                x(median(all)),
                x(low),
                x(high),
                x(median(of(k, Some(true)))),
                x(median(of(k, Some(false)))),
            );
        }
        println!();
    }
}

/// The on/off table of tracing and metrics.
fn print_observed(med: &BTreeMap<(String, String), f64>) {
    let get = |b: &str, i: &str| med.get(&(b.to_string(), i.to_string())).copied();
    use crate::bench_tables::{count as f, ratio};
    println!("\nTracing (a subscriber at INFO formatting every span) and metrics (a Prometheus recorder) on, against off, same rounds:\n");
    println!(
        "| workload | osier | osier, tracing + metrics on | on / off (target >= 0.95x at 16) |"
    );
    println!("|---|---|---|---|");
    for k in OBSERVED_ROWS {
        let (off, on) = (get(k, "osier"), get(k, "osier-observed"));
        println!("| {k} | {} | {} | {} |", f(off), f(on), ratio(on, off));
    }
    println!();
}

/// `--rounds N`, or `default` (1 with `--quick`).
fn rounds(rest: &[String], quick: bool, default: usize) -> Result<usize, String> {
    match rest.iter().position(|a| a == "--rounds") {
        Some(i) => rest
            .get(i + 1)
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| "--rounds takes a number".to_string()),
        None if quick => Ok(1),
        None => Ok(default),
    }
}

/// One tokio worker for the Rust sides: on this 2-core machine, where the broker needs a core,
/// it avoids cross-thread wake-ups (measured: current_thread did best). A service chooses its
/// runtime the same way (`Bridge::builder().tokio_workers(1)`).
fn one_tokio_worker() {
    if std::env::var("OSIER_BENCH_TOKIO_WORKERS").is_err() {
        std::env::set_var("OSIER_BENCH_TOKIO_WORKERS", "1");
    }
}

/// Each figure's median over the rounds.
fn medians(samples: BTreeMap<(String, String), Vec<f64>>) -> BTreeMap<(String, String), f64> {
    samples
        .into_iter()
        .filter_map(|(k, v)| median(v).map(|m| (k, m)))
        .collect()
}

/// The task.
pub fn bench_amqp(rest: &[String]) -> Result<(), String> {
    let quick = rest.iter().any(|a| a == "--quick");
    let rounds = rounds(rest, quick, 3)?;
    if rest.iter().any(|a| a == "--observability") {
        return observability(quick, rest);
    }
    let py = ensure_oslo_venv()?;
    one_tokio_worker();
    let mut samples: BTreeMap<(String, String), Vec<f64>> = BTreeMap::new();
    for round in 1..=rounds {
        println!("==> round {round}/{rounds}: osier");
        let mut r = run_table_args("amqp_table", quick, &["--impl", "osier"])?;
        println!("==> round {round}/{rounds}: osier, kolla 2025.2 option set");
        r.extend(run_table_args(
            "amqp_table",
            quick,
            &["--impl", "osier-kolla"],
        )?);
        println!("==> round {round}/{rounds}: osier, tracing and metrics on");
        r.extend(run_table_args(
            "amqp_table",
            quick,
            &["--impl", "osier-observed"],
        )?);
        println!("==> round {round}/{rounds}: raw lapin");
        r.extend(run_table_args("amqp_table", quick, &["--impl", "raw"])?);
        println!("==> round {round}/{rounds}: raw lapin, routed as oslo's protocol routes");
        r.extend(run_table_args(
            "amqp_table",
            quick,
            &["--impl", "raw-oslo"],
        )?);
        println!("==> round {round}/{rounds}: Python oslo.messaging");
        let mut c = Command::new(&py);
        c.arg(root().join("xtask/py/oslo_bench.py"))
            .env("PYTHONWARNINGS", "ignore");
        if quick {
            c.arg("--quick");
        }
        let out = c.output().map_err(|e| e.to_string())?;
        if !out.status.success() {
            return Err(format!(
                "oslo bench failed: {}",
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        parse_lines(&String::from_utf8_lossy(&out.stdout), &mut r);
        for (k, v) in r {
            samples.entry(k).or_default().push(v);
        }
    }
    let med = medians(samples);
    let get = |b: &str, i: &str| med.get(&(b.to_string(), i.to_string())).copied();
    println!("\nRabbitMQ 127.0.0.1, median of {rounds} interleaved round(s)\n");
    println!("| workload | osier | osier, kolla set | raw lapin (same guarantee) | raw lapin, oslo's routing | oslo.messaging | osier / oslo (target >= 5x) | osier / raw (target >= 0.9x) | osier / raw with oslo's routing | kolla set / defaults |");
    println!("|---|---|---|---|---|---|---|---|---|---|");
    // (osier's row, what it measures, the row of raw lapin and Python it compares with)
    let rows = [
        ("call_1", "RPC call, 1 caller: calls/s", "call_1"),
        ("call_16", "RPC call, 16 callers: calls/s", "call_16"),
        ("cast_1", "cast, 1 sender: casts/s end to end", "cast_1"),
        ("cast_16", "cast, 16 senders: casts/s end to end", "cast_16"),
        (
            "notify_1",
            "notification, 1 sender: /s end to end (async endpoint, tokio)",
            "notify_1",
        ),
        (
            "notify_16",
            "notification, 16 senders: /s end to end (async endpoint, tokio)",
            "notify_16",
        ),
        (
            "notify_green_1",
            "notification, 1 sender (blocking endpoint, green executor)",
            "notify_1",
        ),
        (
            "notify_green_16",
            "notification, 16 senders (blocking endpoint, green executor)",
            "notify_16",
        ),
        (
            "notify_threads_1",
            "notification, 1 sender (blocking endpoint, threads executor)",
            "notify_1",
        ),
        (
            "notify_threads_16",
            "notification, 16 senders (blocking endpoint, threads executor)",
            "notify_16",
        ),
    ];
    use crate::bench_tables::{count as f, ratio};
    for (k, what, peer) in rows {
        let (o, kolla) = (get(k, "osier"), get(k, "osier-kolla"));
        let (r, ro, p) = (get(peer, "raw"), get(peer, "raw-oslo"), get(peer, "oslo"));
        println!(
            "| {what} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            f(o),
            f(kolla),
            f(r),
            f(ro),
            f(p),
            ratio(o, p),
            ratio(o, r),
            ratio(o, ro),
            ratio(kolla, o)
        );
    }
    // Latency in the same table: the ratio columns say p50 against p50 (lower is better).
    let ms = |v: Option<f64>| v.map(|x| format!("{x:.2}")).unwrap_or_else(|| "-".into());
    for (k, what) in [
        ("call_1", "call, 1 caller"),
        ("call_16", "call, 16 callers"),
    ] {
        for q in ["p50", "p99"] {
            let key = format!("{k}_{q}_ms");
            let at = |i: &str| get(&key, i);
            let target = if (k, q) == ("call_1", "p50") {
                " (target p50 <= 1.2x raw)"
            } else {
                ""
            };
            let against = |peer: &str| match q {
                "p50" => format!("p50 {}", ratio(at("osier"), at(peer))),
                _ => String::new(),
            };
            println!(
                "| {what}: latency {q}, ms{target} | {} | {} | {} | {} | {} | | {} | {} | |",
                ms(at("osier")),
                ms(at("osier-kolla")),
                ms(at("raw")),
                ms(at("raw-oslo")),
                ms(at("oslo")),
                against("raw"),
                against("raw-oslo"),
            );
        }
    }
    print_observed(&med);
    charts(&med)?;
    Ok(())
}

/// Throughput per implementation, and call latency (p50, p99) per implementation.
fn charts(med: &BTreeMap<(String, String), f64>) -> Result<(), String> {
    let impls = [
        ("osier", "osier"),
        ("osier, kolla set", "osier-kolla"),
        ("raw lapin", "raw"),
        ("raw lapin, oslo's routing", "raw-oslo"),
        ("Python oslo.messaging", "oslo"),
    ];
    crate::bench_charts::bars_from(
        med,
        "amqp-throughput.svg",
        "RabbitMQ: messages per second per implementation (log scale)",
        "per second",
        &[
            "call_1",
            "call_16",
            "cast_1",
            "cast_16",
            "notify_1",
            "notify_16",
        ],
        None,
        &impls,
    )?;
    crate::bench_charts::bars_from(
        med,
        "amqp-latency.svg",
        "RabbitMQ: RPC call latency, p50 and p99 (ms, log scale)",
        "milliseconds",
        &[
            "call_1_p50_ms",
            "call_1_p99_ms",
            "call_16_p50_ms",
            "call_16_p99_ms",
        ],
        Some(&["call 1 p50", "call 1 p99", "call 16 p50", "call 16 p99"]),
        &impls,
    )?;
    Ok(())
}
