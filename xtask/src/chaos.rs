//! `cargo xtask chaos [--python] [--keep]`: the cluster fault scenarios of
//! `crates/osier-messaging/tests/cluster_faults.rs` on a three-node RabbitMQ cluster of our own
//! (`xtask/scripts/rabbit-cluster.sh`, nodes on 127.0.0.1:5673-5675 beside the default node),
//! then one table of what each scenario measured. With `--python`, the same scenarios also run
//! with Python oslo.messaging (`xtask/py/oslo_chaos.py`, in the interop venv) and their rows
//! follow. The cluster is removed afterwards unless `--keep` is given.

use std::process::Command;

use crate::{cargo, root, run, target_dir};

fn script() -> Command {
    let mut c = Command::new("bash");
    c.arg(root().join("xtask/scripts/rabbit-cluster.sh"));
    c
}

/// `cargo xtask ci`'s part: every scenario, no Python.
pub(crate) fn chaos_for_ci() -> Result<(), String> {
    run_chaos(false, false)
}

pub(crate) fn chaos(args: &[String]) -> Result<(), String> {
    let keep = args.iter().any(|a| a == "--keep");
    let python = args.iter().any(|a| a == "--python");
    if let Some(other) = args.iter().find(|a| *a != "--keep" && *a != "--python") {
        return Err(format!(
            "unknown flag {other} (chaos takes --python, --keep)"
        ));
    }
    run_chaos(keep, python)
}

fn run_chaos(keep: bool, python: bool) -> Result<(), String> {
    run(
        "start the test cluster (127.0.0.1:5673-5675)",
        script().arg("start"),
    )?;
    let report = target_dir().join("xtask").join("chaos.jsonl");
    if let Some(dir) = report.parent() {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    let _ = std::fs::remove_file(&report);
    // Before the faults, while every node is up: `osier topology` against node 1's
    // management API.
    let topology = run(
        "osier topology against the test cluster's management API (127.0.0.1:15673)",
        cargo()
            .env("OSIER_MANAGEMENT_URL", "http://127.0.0.1:15673")
            .env("OSIER_TOPOLOGY_URL", "rabbit://guest:guest@127.0.0.1:5673/")
            .args(["test", "-p", "osier-cli", "--test", "topology"]),
    );
    let result = topology.and_then(|()| {
        run(
            "cluster fault scenarios",
            cargo()
                .env("OSIER_CLUSTER_FAULTS", "1")
                .env("OSIER_CHAOS_REPORT", &report)
                .args([
                    "test",
                    "-p",
                    "osier-messaging",
                    "--test",
                    "cluster_faults",
                    "--",
                    "--test-threads=1",
                ]),
        )
    });
    if python {
        let py = crate::interop::ensure_oslo_venv()?;
        let mut rows = String::new();
        for scenario in SCENARIOS {
            let out = Command::new(&py)
                .arg(root().join("xtask/py/oslo_chaos.py"))
                .arg("--script")
                .arg(root().join("xtask/scripts/rabbit-cluster.sh"))
                .args(["--scenario", scenario])
                .stderr(std::process::Stdio::null())
                .output()
                .map_err(|e| format!("oslo_chaos.py: {e}"))?;
            let text = String::from_utf8_lossy(&out.stdout);
            match text.lines().rev().find(|l| l.starts_with('{')) {
                Some(line) => {
                    println!("python {scenario}: {line}");
                    rows.push_str(&line.replace("\"scenario\": \"", "\"scenario\": \"python "));
                    rows.push('\n');
                }
                None => println!("python {scenario}: no figures ({})", out.status),
            }
        }
        let _ = std::fs::OpenOptions::new()
            .append(true)
            .open(&report)
            .and_then(|mut f| std::io::Write::write_all(&mut f, rows.as_bytes()));
    }
    if !keep {
        let _ = run("remove the test cluster", script().arg("clean"));
    }
    print_table(&report);
    result
}

/// The scenarios, as the Rust tests name them in their figures.
const SCENARIOS: &[&str] = &[
    "classic-kill",
    "quorum-kill",
    "classic-close",
    "quorum-close",
    "classic-freeze",
    "quorum-freeze",
    "classic-outage",
    "quorum-outage",
];

/// The scenarios' figures, one row each.
fn print_table(report: &std::path::Path) {
    let Ok(text) = std::fs::read_to_string(report) else {
        return;
    };
    println!("\n| scenario | first call after a node can take over (s) | longest call (s) | calls ok / failed | errors | notifications accepted | lost | delivered twice |");
    println!("|---|---|---|---|---|---|---|---|");
    for line in text.lines() {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        let errors: Vec<&str> = v["errors"]
            .as_array()
            .map(|a| a.iter().filter_map(|e| e.as_str()).collect())
            .unwrap_or_default();
        println!(
            "| {} | {} | {:.2} | {} / {} | {} | {} | {} | {} |",
            v["scenario"].as_str().unwrap_or("?"),
            match v["leader_elected_s"].as_f64() {
                Some(l) => format!(
                    "{:.2} (queue leader {l:.2} s after the majority)",
                    v["recovery_s"].as_f64().unwrap_or(f64::NAN)
                ),
                None => format!("{:.2}", v["recovery_s"].as_f64().unwrap_or(f64::NAN)),
            },
            v["longest_call_s"].as_f64().unwrap_or(f64::NAN),
            v["calls_ok"],
            v["calls_failed"],
            if errors.is_empty() {
                "-".to_string()
            } else {
                errors.join(", ")
            },
            v["notifications_accepted"],
            v["notifications_lost"],
            v["notifications_duplicated"],
        );
    }
}
