//! `osier-demo --stage N` as a long-running service under the launcher: it starts, says so,
//! and stops gracefully on TERM with status 0.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

fn runs_until_term(stage: &str) {
    let db = std::env::temp_dir().join(format!(
        "osier-demo-svc-{}-{stage}.sqlite",
        std::process::id()
    ));
    let mut child = Command::new(env!("CARGO_BIN_EXE_osier-demo"))
        .args(["--stage", stage, "--db"])
        .arg(&db)
        .env("RUST_LOG", "info")
        .stderr(Stdio::piped())
        .spawn()
        .expect("osier-demo starts");
    let mut err = BufReader::new(child.stderr.take().expect("stderr"));
    let mut line = String::new();
    while !line.contains("metering service started") {
        line.clear();
        assert!(
            err.read_line(&mut line).expect("reads stderr") > 0,
            "stage {stage} ended before it started"
        );
    }
    // SAFETY: kill(2) on our own child's pid with a valid signal.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGTERM) }, 0);
    let mut rest = String::new();
    while err.read_line(&mut line).unwrap_or(0) > 0 {
        rest.push_str(&line);
        line.clear();
    }
    let status = child.wait().expect("it ends");
    osier_demo::store::DbUrl::Sqlite(db).remove();
    assert_eq!(status.code(), Some(0), "stage {stage}: {rest}");
    assert!(
        rest.contains("metering service stopped"),
        "stage {stage}: {rest}"
    );
}

#[test]
fn a_green_stage_runs_until_term_and_stops_gracefully() {
    runs_until_term("0");
}

#[test]
fn the_async_stage_runs_until_term_and_stops_gracefully() {
    runs_until_term("3");
}
