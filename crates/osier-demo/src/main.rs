//! `osier-demo`: the metering service of [`osier_demo`], stage by stage.
//!
//! ```text
//! osier-demo                                   # all four stages, a few seconds each: table + chart
//! osier-demo --stage 2                         # one stage as a long-running service (TERM stops it)
//! osier-demo --stage 2 --load                  # one stage with the load generator, then exit
//! osier-demo --url rabbit://guest:guest@127.0.0.1:5672/ --db postgres://postgres@127.0.0.1:5432/test
//! ```
//!
//! Exit status: 0 when every stage's answers were right, 1 when a check or a service failed,
//! 2 for bad arguments.

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use osier_demo::launch::{run_stage, StageOptions, TransportSource};
use osier_demo::load::LoadConfig;
use osier_demo::service::Config;
use osier_demo::stage::Stage;
use osier_demo::store::DbUrl;
use osier_demo::tour::{self, TourOptions};

/// A metering service that leaves green threads stage by stage, with a load generator that
/// checks its answers.
#[derive(Parser, Debug)]
#[command(name = "osier-demo", version)]
struct Cli {
    /// Transport URL: memory:// (the default, in this process) or rabbit://user:pass@host:5672/.
    #[arg(
        long,
        env = "OSIER_URL",
        hide_env_values = true,
        conflicts_with = "config_file"
    )]
    url: Option<String>,
    /// An oslo config file with `[DEFAULT] transport_url` and `[oslo_messaging_rabbit]` options.
    #[arg(long)]
    config_file: Option<PathBuf>,
    /// Database: sqlite:PATH (default: a temporary file) or postgres://user@host:port/db.
    #[arg(long, env = "OSIER_DEMO_DB", hide_env_values = true)]
    db: Option<String>,
    /// Run one stage (0-3) as a service instead of the four in turn.
    #[arg(long, value_parser = clap::value_parser!(u8).range(0..=3))]
    stage: Option<u8>,
    /// With --stage: run the load generator too, print the figures and exit.
    #[arg(long, requires = "stage")]
    load: bool,
    /// Seconds of load per stage.
    #[arg(long, default_value_t = 3.0)]
    seconds: f64,
    /// With --load: JSON lines on stdout (progress, then the figures).
    #[arg(long, requires = "load")]
    report_json: bool,
    /// Where the four-stage run writes its SVG chart (and the table, as .md, beside it).
    #[arg(long)]
    chart: Option<PathBuf>,
    /// The host name the RPC server answers as.
    #[arg(long, default_value = "metering-1")]
    host: String,
    /// How often the periodic task folds samples, in milliseconds.
    #[arg(long, default_value_t = 250)]
    aggregate_ms: u64,
}

/// oslo.log's `log.setup`: `RUST_LOG` or `default`; lapin's frames (the broker password) and
/// returned bodies stay out of the log.
fn init_logging(default: &str) {
    if let Err(e) = osier_service::logging::init(default) {
        eprintln!("osier-demo: {e}");
        std::process::exit(2);
    }
}

fn main() {
    let cli = Cli::parse();
    let quiet = cli.stage.is_none() || cli.report_json;
    init_logging(if quiet {
        "warn,lapin=error"
    } else {
        "info,lapin=warn"
    });
    let transport = match (&cli.url, &cli.config_file) {
        (_, Some(f)) => TransportSource::ConfigFile(f.clone()),
        (Some(u), None) => TransportSource::Url(u.clone()),
        (None, None) => TransportSource::Url("memory://".into()),
    };
    let db = match cli.db.as_deref().map(DbUrl::parse).transpose() {
        Ok(db) => db,
        Err(e) => {
            tracing::error!(error = %e, "bad --db");
            std::process::exit(2);
        }
    };
    if !(cli.seconds > 0.0 && cli.seconds <= 86_400.0) {
        tracing::error!(seconds = cli.seconds, "--seconds must be within (0, 86400]");
        std::process::exit(2);
    }
    let code = match cli.stage.and_then(Stage::from_number) {
        Some(stage) => run_stage(StageOptions {
            stage,
            transport,
            service: Config {
                db: db.unwrap_or_else(DbUrl::temporary),
                host: cli.host.clone(),
                aggregate_every: Duration::from_millis(cli.aggregate_ms.max(10)),
            },
            load: cli.load.then(|| LoadConfig {
                duration: Duration::from_secs_f64(cli.seconds),
                ..LoadConfig::default()
            }),
            report_json: cli.report_json,
        }),
        None => {
            let opts = TourOptions {
                stages: Stage::ALL.to_vec(),
                seconds: cli.seconds,
                transport,
                db,
                chart: cli.chart.clone().unwrap_or_else(tour::default_chart_path),
            };
            match tour::run(&opts) {
                Ok(_) => 0,
                Err(e) => {
                    tracing::error!("{e}");
                    1
                }
            }
        }
    };
    std::process::exit(code);
}
