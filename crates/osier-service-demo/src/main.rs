//! The worked example: an RPC server run as a Service with a periodic task, next to a green
//! service, under a ServiceLauncher (`--workers 1`) or a ProcessLauncher (`--workers N`). The
//! signal tests in `tests/processes.rs` drive this binary as a real process.
//!
//! ```text
//! cargo run -p osier-service-demo
//! cargo run -p osier-service-demo -- --workers 2 --url rabbit://guest:guest@127.0.0.1:5672/
//! kill -TERM <pid>   # graceful stop;  -HUP: reload;  -INT: exit at once
//! ```
//!
//! Options: `--url URL` (default `memory://`), `--topic T` (default `osier-demo`), `--workers N`
//! (default 1), `--graceful-timeout SECS` (default 60; 0 = forever), `--restart-method
//! reload|mutate`, `--periodic-spacing SECS` (default 1), `--fail-start` (the API service's
//! start fails, SVC-BASE-03).
//!
//! The `demo` endpoint has `work {secs}` (sleeps, then answers with its pid: a request in
//! flight for the signal tests) and `whoami` (pid, worker id, how many resets it has seen).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use osier_messaging::{
    Endpoint, EndpointError, RequestContext, RpcClient, RpcServer, Target, Transport,
};
use osier_service::periodic::{PeriodicTask, PeriodicTasks};
use osier_service::{
    BoxError, Green, GreenService, LauncherOptions, ProcessLauncher, RestartMethod, Service,
    ServiceLauncher, TaskGroup, WorkerContext,
};
use serde_json::{json, Value};

#[derive(Debug)]
struct Args {
    url: String,
    topic: String,
    workers: usize,
    graceful_timeout: Duration,
    restart_method: RestartMethod,
    periodic_spacing: i64,
    fail_start: bool,
}

fn parse_args() -> Result<Args, BoxError> {
    let mut a = Args {
        url: "memory://".into(),
        topic: "osier-demo".into(),
        workers: 1,
        graceful_timeout: Duration::from_secs(60),
        restart_method: RestartMethod::Reload,
        periodic_spacing: 1,
        fail_start: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--url" => a.url = value()?,
            "--topic" => a.topic = value()?,
            "--workers" => a.workers = value()?.parse()?,
            "--graceful-timeout" => a.graceful_timeout = Duration::from_secs_f64(value()?.parse()?),
            "--restart-method" => a.restart_method = value()?.parse()?,
            "--periodic-spacing" => a.periodic_spacing = value()?.parse()?,
            "--fail-start" => a.fail_start = true,
            other => return Err(format!("unknown argument {other}").into()),
        }
    }
    Ok(a)
}

/// The API: an RPC server plus a task group running the periodic tasks.
struct Api {
    server: RpcServer,
    group: TaskGroup,
    client: RpcClient,
    spacing: i64,
    fail_start: bool,
    resets: Arc<AtomicU64>,
}

impl Api {
    fn build(ctx: &WorkerContext, args: &Args) -> Result<Api, BoxError> {
        let bridge = ctx.bridge().clone();
        let transport = Transport::new(&args.url)?;
        let resets = Arc::new(AtomicU64::new(0));
        let worker = ctx.worker_id();
        let r2 = resets.clone();
        let endpoint = Endpoint::new("demo")
            .method_async("work", |_ctx, a: Value| async move {
                let secs = a.get("secs").and_then(Value::as_f64).unwrap_or(0.0);
                tracing::info!(secs, "work started");
                tokio::time::sleep(Duration::from_secs_f64(secs)).await;
                tracing::info!(secs, "work finished");
                Ok::<_, EndpointError>(json!({"pid": std::process::id()}))
            })
            .method_async("whoami", move |_ctx, _a: Value| {
                let resets = r2.load(Ordering::Relaxed);
                async move {
                    Ok::<_, EndpointError>(
                        json!({"pid": std::process::id(), "worker": worker, "resets": resets}),
                    )
                }
            });
        let server = RpcServer::builder(
            &transport,
            Target::topic(&args.topic).with_server("demo-host"),
        )
        .bridge(bridge.clone())
        .endpoint(endpoint)
        .build()?;
        let client = RpcClient::new(&transport, Target::topic(&args.topic))
            .timeout(Duration::from_secs(5))
            .bridge(bridge.clone());
        Ok(Api {
            server,
            group: TaskGroup::new(bridge, 100),
            client,
            spacing: args.periodic_spacing,
            fail_start: args.fail_start,
            resets,
        })
    }
}

#[async_trait::async_trait]
impl Service for Api {
    async fn start(&self) -> Result<(), BoxError> {
        if self.fail_start {
            return Err("refusing to start (--fail-start)".into());
        }
        self.server.start().await?;
        let mut tasks = PeriodicTasks::new();
        tasks.add(
            PeriodicTask::new("self_check", |client: RpcClient| async move {
                let me: Value = client
                    .call(&RequestContext::default(), "whoami", json!({}))
                    .await?;
                tracing::info!(%me, "periodic self_check");
                Ok(())
            })
            .spacing(self.spacing)
            .run_immediately(),
        );
        tasks.into_timer(
            &self.group,
            self.client.clone(),
            Duration::from_secs(60),
            false,
        );
        tracing::info!(pid = std::process::id(), "api started");
        Ok(())
    }

    async fn stop(&self, graceful: bool) -> Result<(), BoxError> {
        tracing::info!(graceful, "api stopping");
        self.group.stop(graceful).await;
        self.server.stop().await?;
        Ok(())
    }

    async fn wait(&self) -> Result<(), BoxError> {
        self.server.wait().await?;
        self.group.wait().await;
        tracing::info!("api stopped");
        Ok(())
    }

    async fn reset(&self) -> Result<(), BoxError> {
        let n = self.resets.fetch_add(1, Ordering::Relaxed) + 1;
        tracing::info!(resets = n, pid = std::process::id(), "api reset");
        Ok(())
    }
}

/// A service still written green: a heartbeat in a green thread, which parks on its stop event
/// between beats (a stop wakes it at once).
#[derive(Default)]
struct Heartbeat {
    stop: Mutex<Option<osier_green::Event<(), ()>>>,
    thread: Mutex<Option<osier_green::GreenThread<u64>>>,
}

fn locked<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl GreenService for Heartbeat {
    fn start(&self) -> Result<(), BoxError> {
        let stop = osier_green::Event::new();
        let s2 = stop.clone();
        let gt = osier_green::Runtime::current().spawn(move || {
            let mut beats = 0_u64;
            while s2.wait_timeout(Duration::from_secs(1)).is_none() {
                beats += 1;
            }
            beats
        });
        *locked(&self.stop) = Some(stop);
        *locked(&self.thread) = Some(gt);
        tracing::info!("green heartbeat started");
        Ok(())
    }

    fn stop(&self, _graceful: bool) -> Result<(), BoxError> {
        if let Some(stop) = locked(&self.stop).take() {
            stop.send(())?;
        }
        Ok(())
    }

    fn wait(&self) -> Result<(), BoxError> {
        let thread = locked(&self.thread).take();
        if let Some(gt) = thread {
            let beats = gt.wait()?;
            tracing::info!(beats, "green heartbeat stopped");
        }
        Ok(())
    }
}

fn main() {
    // lapin's frames (the broker password) and returned bodies stay out of the log.
    if let Err(e) = osier_service::logging::init("info,lapin=warn") {
        eprintln!("osier-service-demo: {e}");
        std::process::exit(2);
    }
    let args = match parse_args() {
        Ok(a) => Arc::new(a),
        Err(e) => {
            tracing::error!(error = %e, "bad arguments");
            std::process::exit(2);
        }
    };
    let opts = LauncherOptions::new()
        .graceful_shutdown_timeout(args.graceful_timeout)
        .restart_method(args.restart_method)
        .on_reload(|method| {
            tracing::info!(?method, pid = std::process::id(), "reload hook ran");
            Ok(())
        });
    let a = args.clone();
    let api = move |ctx: &WorkerContext| Api::build(ctx, &a);
    let heartbeat = |ctx: &WorkerContext| {
        Ok::<_, BoxError>(Green::new(Heartbeat::default(), ctx.bridge().clone()))
    };
    let code = if args.workers <= 1 {
        let mut launcher = ServiceLauncher::new(opts);
        launcher.launch_service(api).launch_service(heartbeat);
        launcher.wait()
    } else {
        let mut launcher = ProcessLauncher::new(opts);
        let launched = launcher
            .launch_service(api, args.workers)
            .and_then(|l| l.launch_service(heartbeat, 1));
        if let Err(e) = launched {
            tracing::error!(error = %e, "cannot launch");
            std::process::exit(2);
        }
        launcher.wait()
    };
    tracing::info!(code, pid = std::process::id(), "exiting");
    std::process::exit(code);
}
