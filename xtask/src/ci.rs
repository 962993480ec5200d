//! `cargo xtask ci` (what `.ci/run` calls) and `cargo xtask loom`. `ci` also runs the cluster
//! fault scenarios (`cargo xtask chaos`).

use std::time::Instant;

use crate::{cargo, run};

pub(crate) fn loom() -> Result<(), String> {
    // A target directory of its own: `--cfg loom` rebuilds everything.
    let loom_dir = crate::target_dir().join("loom").display().to_string();
    run(
        "loom models (park/unpark hand-off)",
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
    println!("\nxtask ci: all steps passed in {:.1?}", t0.elapsed());
    Ok(())
}
