//! The demo's default: the four stages one after another, each in a process of its own (this
//! same binary, `--stage N --load --report-json`), so each stage's CPU, threads and memory are
//! its own. A progress bar per stage, then the table and the chart.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use serde::Deserialize;

use crate::launch::{emit, TransportSource};
use crate::report::StageReport;
use crate::stage::Stage;
use crate::store::DbUrl;

/// What to run.
#[derive(Debug, Clone)]
pub struct TourOptions {
    /// The stages, in order.
    pub stages: Vec<Stage>,
    /// Publishing time per stage.
    pub seconds: f64,
    /// The transport.
    pub transport: TransportSource,
    /// The database; a temporary SQLite file (removed at the end) when absent.
    pub db: Option<DbUrl>,
    /// Where to write the chart (the table goes beside it, as `.md`).
    pub chart: PathBuf,
}

/// Why the tour stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TourError {
    /// A stage's process could not be started.
    #[error("cannot start {stage}: {source}")]
    Spawn {
        /// Which.
        stage: Stage,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A stage failed (its checks, or its service); the end of its log says why.
    #[error("{stage} failed ({status}): {reason}\n--- the end of its log ---\n{log}")]
    Stage {
        /// Which.
        stage: Stage,
        /// Its exit status.
        status: String,
        /// What it reported.
        reason: String,
        /// The last lines it logged.
        log: String,
    },
    /// The chart could not be written.
    #[error(transparent)]
    Chart(#[from] crate::chart::ChartError),
    /// The table could not be written.
    #[error("cannot write {path}: {source}")]
    Write {
        /// Where.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

#[derive(Deserialize)]
#[serde(rename_all = "snake_case")]
enum Line {
    Progress { elapsed_s: f64, stored: u64 },
    Report(StageReport),
    Failed(String),
}

/// How much of a stage's log is kept to show when it fails.
const LOG_TAIL: usize = 16 * 1024;

/// Runs every stage; prints the table; writes the chart and the table next to it.
pub fn run(o: &TourOptions) -> Result<Vec<StageReport>, TourError> {
    let temporary = o.db.is_none();
    let db = o.db.clone().unwrap_or_else(DbUrl::temporary);
    emit(&format!(
        "osier demo: a metering service leaving green threads in {} stages, {:.0} s each; transport {}, database {}",
        o.stages.len(),
        o.seconds,
        transport_label(&o.transport),
        db
    ));
    let mut reports = Vec::new();
    let result = o
        .stages
        .iter()
        .try_for_each(|s| run_one(*s, o, &db).map(|r| reports.push(r)));
    if temporary {
        db.remove();
    }
    result?;
    let table = crate::report::table(&reports);
    emit(&format!("\n{table}"));
    let title = format!(
        "osier demo: the metering service, stage by stage ({}, {})",
        reports.first().map_or("", |r| r.transport.as_str()),
        reports.first().map_or("", |r| r.db.as_str())
    );
    crate::chart::write(&o.chart, &title, &reports)?;
    let md = o.chart.with_extension("md");
    std::fs::write(&md, &table).map_err(|source| TourError::Write {
        path: md.clone(),
        source,
    })?;
    emit(&format!(
        "chart: {}\ntable: {}",
        o.chart.display(),
        md.display()
    ));
    Ok(reports)
}

fn transport_label(t: &TransportSource) -> String {
    match t {
        TransportSource::Url(u) => u
            .parse::<osier_messaging::TransportUrl>()
            .map(|u| u.to_string())
            .unwrap_or_else(|_| "(an unreadable URL)".into()),
        TransportSource::ConfigFile(p) => format!("from {}", p.display()),
    }
}

fn run_one(stage: Stage, o: &TourOptions, db: &DbUrl) -> Result<StageReport, TourError> {
    let exe = std::env::current_exe().map_err(|source| TourError::Spawn { stage, source })?;
    let mut cmd = Command::new(exe);
    cmd.args([
        "--stage",
        &stage.number().to_string(),
        "--load",
        "--report-json",
    ])
    .args(["--seconds", &o.seconds.to_string()])
    // The child reads the database URL from its environment, so a password never shows in
    // the process list.
    .env("OSIER_DEMO_DB", db.to_arg())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    match &o.transport {
        TransportSource::Url(u) => cmd.env("OSIER_URL", u),
        TransportSource::ConfigFile(p) => cmd.arg("--config-file").arg(p),
    };
    let mut child = cmd
        .spawn()
        .map_err(|source| TourError::Spawn { stage, source })?;
    let stderr = child.stderr.take();
    let log = std::thread::spawn(move || tail(stderr));

    let bar = ProgressBar::new((o.seconds * 1000.0) as u64);
    bar.set_style(
        ProgressStyle::with_template("{prefix:>26} [{bar:32}] {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    bar.set_prefix(stage.to_string());
    bar.enable_steady_tick(Duration::from_millis(100));
    let mut report = None;
    let mut failed = None;
    if let Some(out) = child.stdout.take() {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            match serde_json::from_str::<Line>(&line) {
                Ok(Line::Progress { elapsed_s, stored }) => {
                    bar.set_position((elapsed_s * 1000.0) as u64);
                    bar.set_message(format!("{stored} samples stored"));
                }
                Ok(Line::Report(r)) => report = Some(r),
                Ok(Line::Failed(why)) => failed = Some(why),
                Err(_) => tracing::debug!(%line, "a line from the stage that is not a report"),
            }
        }
    }
    let status = child
        .wait()
        .map_err(|source| TourError::Spawn { stage, source })?;
    let log = log.join().unwrap_or_default();
    match report {
        Some(r) if status.success() => {
            bar.finish_with_message(format!(
                "{:.0} samples/s, query p50 {:.2} ms, {} series checked",
                r.samples_per_s, r.query_p50_ms, r.checked
            ));
            if bar.is_hidden() {
                emit(&format!(
                    "{stage}: {:.0} samples/s, query p50 {:.2} ms, {} series checked",
                    r.samples_per_s, r.query_p50_ms, r.checked
                ));
            }
            Ok(r)
        }
        _ => {
            bar.abandon_with_message("failed");
            Err(TourError::Stage {
                stage,
                status: status.to_string(),
                reason: failed.unwrap_or_else(|| "it ended without a report".into()),
                log,
            })
        }
    }
}

/// The last [`LOG_TAIL`] bytes of a child's stderr.
fn tail(stderr: Option<impl Read>) -> String {
    let Some(mut r) = stderr else {
        return String::new();
    };
    let mut kept: Vec<u8> = Vec::new();
    let mut buf = [0_u8; 8192];
    while let Ok(n) = r.read(&mut buf) {
        if n == 0 {
            break;
        }
        kept.extend_from_slice(&buf[..n]);
        if kept.len() > 2 * LOG_TAIL {
            kept.drain(..kept.len() - LOG_TAIL);
        }
    }
    let start = kept.len().saturating_sub(LOG_TAIL);
    String::from_utf8_lossy(&kept[start..]).into_owned()
}

/// Where the chart goes by default: beside the binary (`target/demo/` for `cargo run
/// --profile demo`), out of the source tree.
pub fn default_chart_path() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(Path::to_path_buf))
        .unwrap_or_else(std::env::temp_dir)
        .join("osier-demo-stages.svg")
}
