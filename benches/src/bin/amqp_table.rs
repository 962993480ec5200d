//! RabbitMQ workloads for `cargo xtask bench-amqp`: one JSON line per figure. `--impl osier`,
//! `--impl osier-kolla` (osier under kolla-ansible 2025.2's option set), `--impl
//! osier-observed` (osier with tracing and metrics on: calls, casts and notifications at 16)
//! `--impl raw` (the lapin floor with the same delivery guarantee) or `--impl raw-oslo` (the
//! same loop making the broker route and read messages as oslo's protocol does: a topic
//! exchange, oslo's properties); `--quick` for a smoke run.
//! Python oslo.messaging's side is `xtask/py/oslo_bench.py`, run by xtask in the same session.

#![allow(clippy::print_stdout)] // its output is the JSON lines xtask reads

use std::time::Duration;

use osier_benches::amqp::{self as a, Stats};
use osier_messaging::Executor;

fn emit(bench: &str, imp: &str, v: f64, unit: &str) {
    println!(r#"{{"bench":"{bench}","impl":"{imp}","value":{v:.3},"unit":"{unit}"}}"#);
}

/// `OSIER_BENCH_ONLY=<row>[,<row>...]` runs those rows only (for profiling, and for
/// `cargo xtask bench-amqp --observability`).
fn wanted(row: &str) -> bool {
    std::env::var("OSIER_BENCH_ONLY").is_err() || named(row)
}

/// Rows that run only when `OSIER_BENCH_ONLY` names them (the observed casts and
/// notifications at one sender, for `cargo xtask bench-instructions --observed`).
fn named(row: &str) -> bool {
    std::env::var("OSIER_BENCH_ONLY").is_ok_and(|only| only.split(',').any(|r| r == row))
}

fn report(row: &str, imp: &str, s: Stats) {
    emit(row, imp, s.per_s, "per_s");
    if let (Some(p50), Some(p99)) = (s.p50_ms, s.p99_ms) {
        emit(&format!("{row}_p50_ms"), imp, p50, "ms");
        emit(&format!("{row}_p99_ms"), imp, p99, "ms");
    }
    // Counted runs say how many messages were done, so a count that went wrong shows.
    if a::message_budget().is_some() {
        emit(&format!("{row}_messages"), imp, s.done as f64, "messages");
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let quick = args.iter().any(|a| a == "--quick");
    let imp = args
        .iter()
        .position(|a| a == "--impl")
        .and_then(|i| args.get(i + 1))
        .cloned()
        .unwrap_or_else(|| "osier".into());
    let (warm, dur) = if quick {
        (Duration::from_millis(300), Duration::from_secs(1))
    } else {
        (Duration::from_secs(1), Duration::from_secs(5))
    };
    let rt = osier_benches::bridge::bridge().tokio().clone();
    if imp == "osier-observed" {
        let _handle = osier_benches::observe::install();
        rt.block_on(async {
            let set = a::OptionSet::Defaults;
            for (row, n) in [("call_1", 1), ("call_16", 16)] {
                if wanted(row) {
                    report(row, &imp, a::osier_calls(n, set, warm, dur).await);
                }
            }
            if named("cast_1") {
                report("cast_1", &imp, a::osier_casts(1, set, warm, dur).await);
            }
            if wanted("cast_16") {
                report("cast_16", &imp, a::osier_casts(16, set, warm, dur).await);
            }
            for (row, n) in [("notify_1", 1), ("notify_16", 16)] {
                if (n == 16 && wanted(row)) || named(row) {
                    let s = a::osier_notifications(n, set, Executor::Tokio, warm, dur).await;
                    report(row, &imp, s);
                }
            }
        });
        return;
    }
    rt.block_on(async {
        match imp.as_str() {
            "osier" | "osier-kolla" => {
                let set = if imp == "osier" {
                    a::OptionSet::Defaults
                } else {
                    a::OptionSet::Kolla
                };
                if wanted("call_1") {
                    report("call_1", &imp, a::osier_calls(1, set, warm, dur).await);
                }
                if wanted("call_16") {
                    report("call_16", &imp, a::osier_calls(16, set, warm, dur).await);
                }
                if wanted("cast_1") {
                    report("cast_1", &imp, a::osier_casts(1, set, warm, dur).await);
                }
                if wanted("cast_16") {
                    report("cast_16", &imp, a::osier_casts(16, set, warm, dur).await);
                }
                // The async endpoint on tokio is the plain row; the green and threads
                // executors' rows follow (osier's defaults only).
                let executors: &[(&str, Executor)] = if imp == "osier" {
                    &[
                        ("", Executor::Tokio),
                        ("_green", Executor::Green),
                        ("_threads", Executor::Threads),
                    ]
                } else {
                    &[("", Executor::Tokio)]
                };
                for (suffix, ex) in executors {
                    for senders in [1, 16] {
                        let row = format!("notify{suffix}_{senders}");
                        if wanted(&row) {
                            let s = a::osier_notifications(senders, set, *ex, warm, dur).await;
                            report(&row, &imp, s);
                        }
                    }
                }
            }
            "raw" | "raw-oslo" => {
                let wire = if imp == "raw" {
                    a::RawWire::Plain
                } else {
                    a::RawWire::OsloRouting
                };
                if wanted("call_1") {
                    report("call_1", &imp, a::raw_calls(wire, 1, warm, dur).await);
                }
                if wanted("call_16") {
                    report("call_16", &imp, a::raw_calls(wire, 16, warm, dur).await);
                }
                if wanted("cast_1") || wanted("notify_1") {
                    // Casts and notifications are the same loop on the wire.
                    let c1 = a::raw_casts(wire, 1, warm, dur).await;
                    report("cast_1", &imp, c1);
                    report("notify_1", &imp, c1);
                }
                if wanted("cast_16") || wanted("notify_16") {
                    let c16 = a::raw_casts(wire, 16, warm, dur).await;
                    report("cast_16", &imp, c16);
                    report("notify_16", &imp, c16);
                }
            }
            other => {
                eprintln!(
                    "unknown --impl {other}: osier, osier-kolla, osier-observed, raw or raw-oslo"
                );
                std::process::exit(2);
            }
        }
    });
}
