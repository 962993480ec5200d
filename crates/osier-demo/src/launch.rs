//! One stage under osier-service's `ServiceLauncher`: the metering service, and with `--load`
//! the load generator beside it, which stops the launcher when its run is checked. Signals,
//! systemd notification and the watchdog are the launcher's (TERM stops gracefully).

use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use osier_messaging::config::OsloConfig;
use osier_messaging::Transport;
use osier_service::{BoxError, LauncherHandle, LauncherOptions, Service, ServiceLauncher};
use serde_json::json;

use crate::listener::Refused;
use crate::load::{self, LoadConfig};
use crate::locked;
use crate::report::{process, StageReport};
use crate::service::{self, Config};
use crate::stage::Stage;

/// Where the transport comes from.
#[derive(Debug, Clone)]
pub enum TransportSource {
    /// A transport URL (`memory://`, `rabbit://user:pass@host:5672/`).
    Url(String),
    /// An oslo config file (`[DEFAULT] transport_url` and `[oslo_messaging_rabbit]`).
    ConfigFile(PathBuf),
}

impl TransportSource {
    /// The transport.
    pub fn open(&self) -> Result<Transport, BoxError> {
        Ok(match self {
            TransportSource::Url(u) => Transport::new(u)?,
            TransportSource::ConfigFile(p) => OsloConfig::from_file(p)?.transport()?,
        })
    }
}

/// What to run.
#[derive(Debug, Clone)]
pub struct StageOptions {
    /// Which stage.
    pub stage: Stage,
    /// The transport.
    pub transport: TransportSource,
    /// The service's settings.
    pub service: Config,
    /// Run the load generator too, and stop when it is done.
    pub load: Option<LoadConfig>,
    /// Report as JSON lines on stdout (progress, then the figures), for `tour`.
    pub report_json: bool,
}

/// Writes one line to stdout (the demo's output; logs go to stderr).
pub fn emit(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

/// Runs the stage until a signal, or until the load run is done; returns the exit status
/// (1 if the load run failed its checks).
pub fn run_stage(o: StageOptions) -> i32 {
    let mut launcher = ServiceLauncher::new(
        LauncherOptions::new().graceful_shutdown_timeout(Duration::from_secs(30)),
    );
    let handle = launcher.handle();
    // What the listener drops, counted across restarts and read by the load report.
    let refused = Arc::new(Refused::default());
    let outcome: Arc<Mutex<Option<bool>>> = Arc::default();
    let (svc_opts, counter) = (o.clone(), refused.clone());
    launcher.launch_service(move |ctx| -> Result<Arc<dyn Service>, BoxError> {
        let transport = svc_opts.transport.open()?;
        let bridge = ctx.bridge();
        let metering = bridge.tokio().block_on(service::build(
            svc_opts.stage,
            &transport,
            bridge,
            &svc_opts.service,
            counter.clone(),
        ))?;
        tracing::info!(stage = %svc_opts.stage, db = %svc_opts.service.db, transport = %transport.url(), "metering service built");
        Ok(metering)
    });
    if let Some(cfg) = o.load.clone() {
        let (o, outcome) = (o.clone(), outcome.clone());
        launcher.launch_service(move |_ctx| -> Result<LoadService, BoxError> {
            Ok(LoadService {
                transport: o.transport.open()?,
                opts: o.clone(),
                cfg: cfg.clone(),
                handle: handle.clone(),
                refused: refused.clone(),
                outcome: outcome.clone(),
                task: Mutex::new(None),
            })
        });
    }
    let code = launcher.wait();
    let failed = *locked(&outcome) == Some(false);
    if failed && code == 0 {
        1
    } else {
        code
    }
}

/// The load generator as a service of the same launcher.
struct LoadService {
    transport: Transport,
    opts: StageOptions,
    cfg: LoadConfig,
    handle: LauncherHandle,
    refused: Arc<Refused>,
    outcome: Arc<Mutex<Option<bool>>>,
    task: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

#[async_trait::async_trait]
impl Service for LoadService {
    async fn start(&self) -> Result<(), BoxError> {
        let (transport, cfg, opts) = (self.transport.clone(), self.cfg.clone(), self.opts.clone());
        let (handle, refused, outcome) = (
            self.handle.clone(),
            self.refused.clone(),
            self.outcome.clone(),
        );
        let task = tokio::spawn(async move {
            let cpu0 = process::cpu_seconds();
            let threads = std::sync::atomic::AtomicU64::new(process::threads());
            let json = opts.report_json;
            let r = load::run(&transport, &cfg, |p| {
                threads.fetch_max(process::threads(), std::sync::atomic::Ordering::Relaxed);
                if json {
                    emit(&json!({"progress": {"elapsed_s": p.elapsed.as_secs_f64(), "sent": p.sent, "stored": p.stored}}).to_string());
                }
            })
            .await;
            let ok = match r {
                Ok(load) => {
                    let report = StageReport::new(
                        opts.stage,
                        transport.url().driver(),
                        opts.service.db.kind(),
                        &load,
                        process::cpu_seconds() - cpu0,
                        threads.load(std::sync::atomic::Ordering::Relaxed),
                        refused.get(),
                    );
                    if json {
                        emit(&json!({ "report": report }).to_string());
                    } else {
                        emit(&crate::report::table(&[report]));
                    }
                    true
                }
                Err(e) => {
                    tracing::error!(error = %e, stage = %opts.stage, "the load run failed");
                    if json {
                        emit(&json!({"failed": e.to_string()}).to_string());
                    }
                    false
                }
            };
            *locked(&outcome) = Some(ok);
            handle.stop();
        });
        *locked(&self.task) = Some(task);
        Ok(())
    }

    async fn stop(&self, _graceful: bool) -> Result<(), BoxError> {
        if let Some(t) = &*locked(&self.task) {
            if !t.is_finished() {
                t.abort();
            }
        }
        Ok(())
    }

    async fn wait(&self) -> Result<(), BoxError> {
        let task = locked(&self.task).take();
        if let Some(t) = task {
            let _ = t.await;
        }
        Ok(())
    }
}
