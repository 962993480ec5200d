//! `cargo xtask ci` (what `.ci/run` calls) and `cargo xtask loom`. `ci` also runs the cluster
//! fault scenarios (`cargo xtask chaos`).

use std::process::{Child, Command, Stdio};
use std::time::Instant;

use crate::{cargo, run};

/// An xtask task run as a child process beside the steps that follow; its output is printed
/// when it is waited for, so it does not interleave with theirs.
struct InBackground {
    step: &'static str,
    /// `None` once waited for.
    child: Option<Child>,
    started: Instant,
}

/// A step that fails before the background task is waited for does not leave it running.
impl Drop for InBackground {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl InBackground {
    fn start(step: &'static str, args: &[&str]) -> Result<InBackground, String> {
        let exe = std::env::current_exe().map_err(|e| format!("{step}: {e}"))?;
        println!(
            "\n==> {step} (in the background)\n    xtask {}",
            args.join(" ")
        );
        let child = Command::new(exe)
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("{step}: cannot start: {e}"))?;
        Ok(InBackground {
            step,
            child: Some(child),
            started: Instant::now(),
        })
    }

    fn finish(mut self) -> Result<(), String> {
        let step = self.step;
        let child = self
            .child
            .take()
            .ok_or_else(|| format!("{step}: waited for twice"))?;
        let out = child
            .wait_with_output()
            .map_err(|e| format!("{step}: {e}"))?;
        println!("\n==> {step}");
        print!("{}", String::from_utf8_lossy(&out.stdout));
        eprint!("{}", String::from_utf8_lossy(&out.stderr));
        println!(
            "<== {step}: {} in {:.1?} (beside the steps above)",
            out.status,
            self.started.elapsed()
        );
        if out.status.success() {
            Ok(())
        } else {
            Err(format!("{step} failed ({})", out.status))
        }
    }
}

pub(crate) fn loom() -> Result<(), String> {
    // A target directory of its own: `--cfg loom` rebuilds everything.
    let loom_dir = crate::target_dir().join("loom").display().to_string();
    run(
        "loom models (park/unpark and the hub's sleep/wake hand-offs)",
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
                &loom_dir,
                "--",
                "loom",
            ]),
    )
}

pub(crate) fn ci() -> Result<(), String> {
    let t0 = Instant::now();
    run("rustfmt", cargo().args(["fmt", "--all", "--", "--check"]))?;
    // `--all-targets` type-checks the benches too; `cargo xtask bench-*` builds what it runs.
    run(
        "clippy",
        cargo().args([
            "clippy",
            "--workspace",
            "--all-targets",
            // The OpenTelemetry export too (its test and example need the feature).
            "--features",
            "osier-service/otel",
            "--",
            "-D",
            "warnings",
        ]),
    )?;
    run(
        "rustdoc (every intra-doc link resolves)",
        cargo().env("RUSTDOCFLAGS", "-D warnings").args([
            "doc",
            "--no-deps",
            "--workspace",
            "--features",
            "osier-service/otel",
        ]),
    )?;
    run(
        "tests (unit, integration, doctests; broker fault tests included)",
        cargo()
            .env("OSIER_BROKER_FAULTS", "1")
            .args(["test", "--workspace"]),
    )?;
    run(
        "spans exported to OpenTelemetry (feature otel): one trace across two services",
        cargo().args([
            "test",
            "-p",
            "osier-service",
            "--features",
            "otel",
            "--test",
            "otel",
        ]),
    )?;
    run(
        "OpenTelemetry example (stdout exporter)",
        cargo().args([
            "run",
            "-q",
            "-p",
            "osier-service",
            "--features",
            "otel",
            "--example",
            "otel",
        ]),
    )?;
    loom()?;
    crate::chaos::chaos_for_ci()?;
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
    // The instruction budget of a RabbitMQ call (`cargo xtask bench-instructions`), on the dev
    // build of the bench table that `cargo test --workspace` made for the benches' own test (no
    // build of its own); callgrind's counts do not depend on what else runs
    // (docs/benchmarks.md), so it counts while the demo and interop steps run.
    let budget = InBackground::start(
        "instruction budget: an RPC call on RabbitMQ, client + server (callgrind, dev build)",
        &[
            "bench-instructions",
            "--dev",
            "--prebuilt",
            "--check",
            "--rows",
            "call_1",
            "--messages",
            "60",
        ],
    )?;
    // The README's first command, then the same with the RabbitMQ and PostgreSQL flags. The
    // README builds it with the `demo` profile (a tree of its own: minutes of compiling on two
    // cores); here it runs the build the tests already made, with the same checks of every
    // answer, to keep the suite within its time.
    let main_demo = ["run", "-p", "osier-demo"];
    run(
        "main demo run (four stages; in-memory transport, SQLite)",
        cargo().args(main_demo),
    )?;
    let pg = "postgres://postgres@127.0.0.1:5432/test";
    let mut on_rabbit = vec!["--", "--url", "rabbit://guest:guest@127.0.0.1:5672/"];
    if crate::reachable("127.0.0.1:5432") {
        on_rabbit.extend(["--db", pg]);
    } else {
        println!("\nxtask ci: PostgreSQL is not reachable at 127.0.0.1:5432: the demo runs on SQLite only (the demo's PostgreSQL tests said so too)");
    }
    run(
        "main demo run on RabbitMQ (and PostgreSQL when reachable)",
        cargo().args(main_demo).args(&on_rabbit),
    )?;
    println!("\n==> interop with Python oslo.messaging");
    crate::interop::interop()?;
    budget.finish()?;
    println!("\nxtask ci: all steps passed in {:.1?}", t0.elapsed());
    Ok(())
}
