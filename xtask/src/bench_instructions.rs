//! `cargo xtask bench-instructions [--messages N] [--rows R,..] [--dev] [--prebuilt]
//! [--observed] [--oslo-routing] [--check]`: CPU instructions per RabbitMQ message, counted by
//! callgrind, osier beside the raw lapin loop with the same delivery guarantee. Instruction
//! counts repeat on a shared machine where seconds do not.
//!
//! Each row runs `amqp_table` under callgrind twice, sending N/6 and N messages
//! (`OSIER_BENCH_MESSAGES`): the difference is N*5/6 messages' worth of work, with start-up,
//! connection set-up and tear-down cancelled out. Both sides of each message run in the one
//! process (the caller and the server, the sender and the receiver), so a call's figure is
//! client plus server. Stages are the inclusive cost of the functions that do them, differenced
//! the same way: osier's envelope and message encoding and decoding (`amqp::wire`), lapin's
//! `basic_publish`, lapin's I/O loop (frames written and parsed, deliveries handed out), and
//! the rest (tokio's scheduling, osier's owner tasks and channels, dispatch, the allocator).
//!
//! `--dev` counts the dev build instead of the release build the figures in docs/benchmarks.md
//! come from; `--prebuilt` counts the binary the last build left instead of building it
//! (`cargo xtask ci`: the dev table `cargo test --workspace` built, so the budget costs it no
//! build). `--check` compares the osier rows with `benches/instruction-budget.json` (one budget
//! per profile) and fails when a row costs more than its budget plus 10%. `--observed` adds
//! osier with tracing at INFO and metrics on (`benches/src/observe.rs`) beside it.
//! `--oslo-routing` also counts the raw loop routed as oslo's protocol routes (`--impl
//! raw-oslo`: a topic exchange, oslo's properties on every message) and prints a second table
//! against it: the share of osier's count that is oslo's wire (lapin writing and parsing the
//! properties) rather than osier's own work. Work done
//! once per process whose cost varies run to run (the metrics recorder's clock calibration)
//! is taken out of each run's total before the difference.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::bench_tables::bench_bin;
use crate::{root, target_dir};

/// The rows: `amqp_table`'s row name and what one message of it is.
const ROWS: [(&str, &str); 3] = [
    ("call_1", "RPC call, 1 caller (client + server)"),
    ("cast_1", "cast, 1 sender (sender + server)"),
    ("notify_1", "notification, 1 sender (notifier + listener)"),
];

/// A stage: its name and the functions whose inclusive cost it is in osier and in the raw
/// loop (substrings of callgrind's function names; the functions of one stage never call one
/// another).
type Stage = (
    &'static str,
    &'static [&'static str],
    &'static [&'static str],
);

const STAGES: [Stage; 4] = [
    (
        "encode",
        &[
            "osier_messaging::amqp::wire::encode_body",
            "osier_messaging::amqp::wire::encode_body_v1",
            "osier_messaging::amqp::wire::encode_request",
            "osier_messaging::amqp::wire::encode_reply",
            "osier_messaging::amqp::wire::encode_notification",
            // `encode_request_body` itself only calls this.
            "osier_messaging::amqp::wire::body::encode_request_body_with_args",
            "osier_messaging::amqp::wire::body::encode_reply_body",
            "osier_messaging::amqp::wire::body::encode_notification_body",
        ],
        &[],
    ),
    (
        "decode",
        &[
            "osier_messaging::amqp::wire::decode_body",
            "osier_messaging::amqp::wire::decode_request",
            "osier_messaging::amqp::wire::decode_reply",
            "osier_messaging::amqp::wire::decode_notification",
            "osier_messaging::amqp::wire::decode_request_body",
            "osier_messaging::amqp::wire::decode_reply_body",
            "osier_messaging::amqp::wire::decode_notification_body",
        ],
        &[],
    ),
    (
        // osier: the publisher's owner task, lapin's `basic_publish` inlined into it; raw:
        // `basic_publish` where it is called.
        "publish",
        &["osier_messaging::amqp::publisher::owner"],
        &["lapin::channel::Channel::basic_publish"],
    ),
    (
        "lapin I/O loop",
        &["lapin::io_loop::IoLoop::run"],
        &["lapin::io_loop::IoLoop::run"],
    ),
];

/// Work done once per process whose cost varies from run to run, taken out of each run's
/// total so that it does not land in the difference: quanta's clock calibration (the
/// Prometheus recorder's clock, `--observed` only) loops until its estimate settles, about
/// 11M instructions under callgrind give or take 1M, which was ±2,000 instructions in a
/// message's figure.
const ONCE_PER_PROCESS: [&str; 1] = ["quanta::Clock::new"];

/// The budget file: osier's instructions per message, by row.
fn budget_file() -> PathBuf {
    root().join("benches").join("instruction-budget.json")
}

/// How much a row may grow over its budget before `--check` fails.
const TOLERANCE: f64 = 0.10;

pub(crate) fn bench_instructions(rest: &[String]) -> Result<(), String> {
    let check = rest.iter().any(|a| a == "--check");
    let profile = if rest.iter().any(|a| a == "--dev") {
        "dev"
    } else {
        "release"
    };
    let n: u64 = match rest.iter().position(|a| a == "--messages") {
        Some(i) => rest
            .get(i + 1)
            .and_then(|v| v.parse().ok())
            .filter(|&n| n >= 12)
            .ok_or("--messages takes a number of at least 12")?,
        None => 1200,
    };
    let n1 = n / 6;
    let rows: Vec<&str> = match rest.iter().position(|a| a == "--rows") {
        Some(i) => rest
            .get(i + 1)
            .map(|v| v.split(',').collect())
            .ok_or("--rows takes a comma-separated list of rows")?,
        None => ROWS.iter().map(|(r, _)| *r).collect(),
    };
    if let Some(bad) = rows.iter().find(|r| !ROWS.iter().any(|(k, _)| k == *r)) {
        return Err(format!(
            "no row {bad}: the rows are {}",
            ROWS.map(|(r, _)| r).join(", ")
        ));
    }
    if Command::new("valgrind").arg("--version").output().is_err() {
        return Err("valgrind is not installed (apt-get install valgrind)".into());
    }
    let exe = if rest.iter().any(|a| a == "--prebuilt") {
        prebuilt("amqp_table", profile)?
    } else if profile == "dev" {
        dev_bin("amqp_table")?
    } else {
        bench_bin("amqp_table")?
    };
    let out_dir = target_dir().join("xtask").join("callgrind").join(profile);
    std::fs::create_dir_all(&out_dir).map_err(|e| e.to_string())?;
    let mut per: BTreeMap<(&str, &str), Counted> = BTreeMap::new();
    // The check needs osier's rows only; `--observed` adds osier with tracing and metrics on.
    let observed = rest.iter().any(|a| a == "--observed");
    let oslo_routing = rest.iter().any(|a| a == "--oslo-routing");
    let mut impls = vec!["osier"];
    if !check {
        if observed {
            impls.push("osier-observed");
        }
        impls.push("raw");
        if oslo_routing {
            impls.push("raw-oslo");
        }
    }
    for &row in &rows {
        for &imp in &impls {
            println!("==> {imp} {row}: {n1} and {n} messages under callgrind");
            let small = count(&exe, &out_dir, imp, row, n1)?;
            let large = count(&exe, &out_dir, imp, row, n)?;
            per.insert((row, imp), large.per_message_over(&small, n - n1));
        }
    }
    print_table(profile, &per, "raw", "raw lapin");
    if impls.contains(&"raw-oslo") {
        print_table(profile, &per, "raw-oslo", "raw lapin, oslo's routing");
    }
    if check {
        check_budget(profile, &per)
    } else {
        Ok(())
    }
}

/// The binary as the last build left it (`--prebuilt`: `cargo xtask ci` counts the one `cargo
/// test --workspace` has just built for the benches' own test, with the workspace's features;
/// a build of the benches crate alone would compile its dependencies again with fewer).
fn prebuilt(bin: &str, profile: &str) -> Result<PathBuf, String> {
    let dir = if profile == "dev" { "debug" } else { "release" };
    let exe = target_dir().join(dir).join(bin);
    if exe.is_file() {
        Ok(exe)
    } else {
        Err(format!(
            "--prebuilt: no {} (build it first, e.g. `cargo test -p osier-benches`)",
            exe.display()
        ))
    }
}

/// Builds a binary of the benches crate with the dev profile; returns its path.
fn dev_bin(bin: &str) -> Result<PathBuf, String> {
    let build = crate::cargo()
        .args(["build", "-q", "-p", "osier-benches", "--bin", bin])
        .status()
        .map_err(|e| e.to_string())?;
    if !build.success() {
        return Err(format!("building {bin} failed"));
    }
    Ok(target_dir().join("debug").join(bin))
}

/// Instructions in one run, or per message once differenced: the total and each stage.
#[derive(Debug, Clone, Default)]
struct Counted {
    total: f64,
    stages: BTreeMap<&'static str, f64>,
}

impl Counted {
    fn per_message_over(&self, smaller: &Counted, messages: u64) -> Counted {
        let m = messages as f64;
        Counted {
            total: (self.total - smaller.total) / m,
            stages: self
                .stages
                .iter()
                .map(|(k, v)| (*k, (v - smaller.stages.get(k).unwrap_or(&0.0)) / m))
                .collect(),
        }
    }
}

/// Runs one row of `amqp_table` under callgrind with `messages` messages.
fn count(exe: &Path, dir: &Path, imp: &str, row: &str, messages: u64) -> Result<Counted, String> {
    let file = dir.join(format!("{imp}-{row}-{messages}.out"));
    let out = Command::new("valgrind")
        .arg("--tool=callgrind")
        .arg(format!("--callgrind-out-file={}", file.display()))
        .arg(exe)
        .args(["--impl", imp])
        .env("OSIER_BENCH_ONLY", row)
        .env("OSIER_BENCH_MESSAGES", messages.to_string())
        .output()
        .map_err(|e| format!("running valgrind: {e}"))?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        return Err(format!("{imp} {row} under callgrind failed:\n{stderr}"));
    }
    let total = stderr
        .lines()
        .find_map(|l| l.split("Collected :").nth(1))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .ok_or_else(|| format!("no \"Collected\" line from callgrind:\n{stderr}"))?;
    // Run where no source file is: in the workspace, callgrind_annotate finds the sources by
    // relative paths and tags another line of each function with its object, which is the line
    // `inclusive` reads.
    let annotated = Command::new("callgrind_annotate")
        .current_dir(dir)
        .args(["--inclusive=yes", "--threshold=100", "--auto=no"])
        .arg(&file)
        .output()
        .map_err(|e| format!("running callgrind_annotate: {e}"))?;
    let text = String::from_utf8_lossy(&annotated.stdout);
    let total = total - inclusive(&text, &ONCE_PER_PROCESS);
    let stages = STAGES
        .iter()
        .map(|(name, osier, raw)| {
            let fns = if imp.starts_with("raw") { raw } else { osier };
            (*name, inclusive(&text, fns))
        })
        .collect();
    Ok(Counted { total, stages })
}

/// The summed inclusive cost of the functions named in `fns` in `callgrind_annotate
/// --inclusive=yes` output: the line of each function's own symbol (`file:function [object]`),
/// not the lines of code inlined into it from elsewhere.
fn inclusive(annotated: &str, fns: &[&str]) -> f64 {
    annotated
        .lines()
        .filter(|l| l.trim_end().ends_with(']'))
        .filter_map(|l| {
            let (cost, rest) = l.trim_start().split_once(' ')?;
            let function = rest.split_once(':')?.1.split(" [").next()?;
            let name = without_generics(function);
            let name = name.split("::{{closure}}").next()?;
            fns.iter()
                .any(|f| name == *f || name.starts_with(&format!("{f}::")))
                .then(|| cost.replace(',', "").parse::<f64>().ok())
                .flatten()
        })
        .sum()
}

/// `a::B<T>::c` as `a::B::c`: a function's path without its type arguments.
fn without_generics(name: &str) -> String {
    let mut depth = 0usize;
    name.chars()
        .filter(|&c| {
            match c {
                '<' => depth += 1,
                '>' => depth = depth.saturating_sub(1),
                _ => return depth == 0,
            }
            false
        })
        .collect()
}

/// The table of osier against the raw loop `raw` (`raw` or `raw-oslo`), named `raw_name`.
fn print_table(profile: &str, per: &BTreeMap<(&str, &str), Counted>, raw: &str, raw_name: &str) {
    println!(
        "\nInstructions per message ({profile} build, callgrind; both ends of each message in one process), against {raw_name}:\n"
    );
    let stage_names: Vec<&str> = STAGES.iter().map(|(s, _, _)| *s).collect();
    println!(
        "| workload | osier | {raw_name} | osier / {raw} | {} | rest |",
        stage_names
            .iter()
            .map(|s| format!("{s}: osier ({raw})"))
            .collect::<Vec<_>>()
            .join(" | ")
    );
    println!("|---|---|---|---|{}---|", "---|".repeat(stage_names.len()));
    let none = Counted::default();
    for (row, label) in ROWS {
        let Some(o) = per.get(&(row, "osier")) else {
            continue;
        };
        let r = per.get(&(row, raw)).unwrap_or(&none);
        let stages = stage_names
            .iter()
            .map(|s| {
                format!(
                    "{:.0} ({:.0})",
                    o.stages.get(s).unwrap_or(&0.0),
                    r.stages.get(s).unwrap_or(&0.0)
                )
            })
            .collect::<Vec<_>>()
            .join(" | ");
        let rest = |c: &Counted| c.total - c.stages.values().sum::<f64>();
        let stages = format!("{stages} | {:.0} ({:.0})", rest(o), rest(r));
        let observed = per
            .get(&(row, "osier-observed"))
            .map(|ob| {
                format!(
                    " (observed: {:.0}, {:+.1}%)",
                    ob.total,
                    (ob.total / o.total - 1.0) * 100.0
                )
            })
            .unwrap_or_default();
        let (raw, ratio) = if r.total > 0.0 {
            (
                format!("{:.0}", r.total),
                format!("{:.2}x", o.total / r.total),
            )
        } else {
            ("-".to_string(), "-".to_string())
        };
        println!(
            "| {label} | {:.0}{observed} | {raw} | {ratio} | {stages} |",
            o.total
        );
    }
}

/// Fails when an osier row costs more than its budget plus [`TOLERANCE`]; says which.
fn check_budget(profile: &str, per: &BTreeMap<(&str, &str), Counted>) -> Result<(), String> {
    let file = budget_file();
    let text =
        std::fs::read_to_string(&file).map_err(|e| format!("reading {}: {e}", file.display()))?;
    let budgets: BTreeMap<String, BTreeMap<String, f64>> =
        serde_json::from_str(&text).map_err(|e| {
            format!(
                "{} is not a map of profile to a map of row to instructions: {e}",
                file.display()
            )
        })?;
    let budget = budgets
        .get(profile)
        .ok_or_else(|| format!("{} has no budget for the {profile} build", file.display()))?;
    let mut over = Vec::new();
    for (row, _) in ROWS {
        if !per.contains_key(&(row, "osier")) {
            continue;
        }
        let Some(b) = budget.get(row) else {
            over.push(format!("{row}: no budget in {}", file.display()));
            continue;
        };
        let Some(got) = per.get(&(row, "osier")).map(|c| c.total) else {
            continue;
        };
        let verdict = if got > b * (1.0 + TOLERANCE) {
            over.push(format!(
                "{row}: {got:.0} instructions per message, budget {b:.0} (+{:.1}%)",
                (got / b - 1.0) * 100.0
            ));
            "OVER"
        } else {
            "ok"
        };
        println!("budget {row}: {got:.0} / {b:.0} ({verdict})");
    }
    if over.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "the instruction budget is exceeded by more than {:.0}%: {}. If the cost is \
             deliberate, change {} in the same commit and say why.",
            TOLERANCE * 100.0,
            over.join("; "),
            file.display()
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_function_is_found_by_its_path_without_type_arguments_or_closures() {
        let text = "\
  1,000 (10.0%)  /x/lapin/src/io_loop.rs:lapin::io_loop::IoLoop<RK>::run [/t/amqp_table]
    500 ( 5.0%)  /x/wire.rs:osier_messaging::amqp::wire::encode_body [/t/amqp_table]
    400 ( 4.0%)  /rustc/core/fmt.rs:osier_messaging::amqp::wire::encode_body
    300 ( 3.0%)  /x/gen.rs:lapin::channel::Channel::basic_publish::{{closure}} [/t/amqp_table]
    200 ( 2.0%)  /x/wire.rs:osier_messaging::amqp::wire::encode_body_v1 [/t/amqp_table]
";
        assert_eq!(inclusive(text, &["lapin::io_loop::IoLoop::run"]), 1000.0);
        assert_eq!(
            inclusive(text, &["osier_messaging::amqp::wire::encode_body"]),
            500.0
        );
        assert_eq!(
            inclusive(text, &["lapin::channel::Channel::basic_publish"]),
            300.0
        );
    }

    #[test]
    fn the_clock_calibration_is_found_once_though_inlined_into_other_files() {
        // As callgrind_annotate prints quanta's calibration: the function's own line, then
        // the lines inlined into it from other crates (not to be counted again).
        let text = "\
 11,956,149 ( 5.60%)  /x/quanta-0.12.6/src/lib.rs:quanta::Clock::new [/t/amqp_table]
 11,955,923 ( 5.60%)  /x/once_cell-1.21.4/src/lib.rs:quanta::Clock::new
        181 ( 0.00%)  /x/quanta-0.12.6/src/detection.rs:quanta::Clock::new
";
        assert_eq!(inclusive(text, &ONCE_PER_PROCESS), 11_956_149.0);
    }
}
