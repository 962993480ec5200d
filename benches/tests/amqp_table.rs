//! `amqp_table`'s counted mode (`OSIER_BENCH_MESSAGES=N`), which `cargo xtask
//! bench-instructions` divides by: each row must do exactly N messages, on osier and on the raw
//! lapin loop, or the instructions per message it reports are wrong. Runs the binary `cargo
//! test` built (the one `cargo xtask ci` then counts) against the local RabbitMQ.

use std::collections::BTreeMap;
use std::process::Command;
use std::time::Duration;

const MESSAGES: u64 = 24;

fn broker_reachable() {
    let addr = "127.0.0.1:5672".parse().expect("a socket address");
    if let Err(e) = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(3)) {
        panic!(
            "RabbitMQ is not reachable at {addr} ({e}): the bench table needs the local broker; \
             start it with `rabbitmq-server -detached` (`.ci/run` does)"
        );
    }
}

/// Runs `amqp_table --impl <imp>` counted, on `rows`; returns each `<row>_messages` figure.
fn counted(imp: &str, rows: &str) -> BTreeMap<String, f64> {
    broker_reachable();
    let out = Command::new(env!("CARGO_BIN_EXE_amqp_table"))
        .args(["--impl", imp])
        .env("OSIER_BENCH_MESSAGES", MESSAGES.to_string())
        .env("OSIER_BENCH_ONLY", rows)
        .output()
        .expect("amqp_table runs");
    assert!(
        out.status.success(),
        "amqp_table --impl {imp} failed: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["unit"] == "messages")
        .map(|v| {
            let bench = v["bench"].as_str().unwrap_or_default().to_string();
            (bench, v["value"].as_f64().unwrap_or(-1.0))
        })
        .collect()
}

fn expect_exact(imp: &str, got: &BTreeMap<String, f64>, rows: &[&str]) {
    for row in rows {
        assert_eq!(
            got.get(&format!("{row}_messages")).copied(),
            Some(MESSAGES as f64),
            "{imp} {row}: every figure {got:?}"
        );
    }
}

#[test]
fn a_counted_osier_run_does_exactly_the_messages_asked_for() {
    let rows = ["call_1", "cast_1", "notify_1"];
    expect_exact("osier", &counted("osier", &rows.join(",")), &rows);
}

#[test]
fn a_counted_raw_run_does_exactly_the_messages_asked_for() {
    let rows = ["call_1", "cast_1"];
    expect_exact("raw", &counted("raw", &rows.join(",")), &rows);
}
