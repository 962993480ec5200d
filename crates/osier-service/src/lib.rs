//! # osier-service
//!
//! oslo.service's model in Rust (SVC-*), for green services, async
//! services and processes that host both, so one process can run components at different
//! stages of their migration.
//!
//! | oslo.service | osier-service |
//! |---|---|
//! | `class S(service.ServiceBase)` | `impl `[`Service`]` for S` (async) or `impl `[`GreenService`]` for S` wrapped in [`Green`] |
//! | `service.launch(conf, s, workers)`; `launcher.wait()` | [`launch`]`(opts, factory, workers)?.wait()` (returns the exit status) |
//! | `ServiceLauncher` / `ProcessLauncher` | [`ServiceLauncher`] / [`ProcessLauncher`] (workers are re-executed, not forked: see [`process`]) |
//! | `SignalHandler`, TERM / INT / HUP / ALRM | one channel ([`signals`]); the graceful timeout replaces ALRM |
//! | `threadgroup.ThreadGroup` | [`TaskGroup`] (green threads and async tasks, with a [`CancelToken`]) |
//! | `loopingcall.*` | [`looping`] |
//! | `periodic_task.PeriodicTasks` | [`periodic::PeriodicTasks`] |
//! | `systemd.notify_once()` | [`systemd`] (the launchers send READY=1 / STOPPING=1 / RELOADING=1, and WATCHDOG=1 while every service is healthy) |
//! | `[oslo_messaging_metrics]` and the oslo.metrics daemon | [`metrics_endpoint()`] (Prometheus text format over HTTP) |
//! | `log.setup(CONF, "svc")` (oslo.log) | [`logging::init`] |
//! | `oslo_messaging.get_rpc_server(...)` run by a launcher | `RpcServer` implements [`Service`] ([`rpc`]) |
//!
//! ```no_run
//! use osier_service::{launch, BoxError, LauncherOptions, Service};
//!
//! struct Api;
//!
//! #[async_trait::async_trait]
//! impl Service for Api {
//!     async fn start(&self) -> Result<(), BoxError> { Ok(()) }
//!     async fn stop(&self, _graceful: bool) -> Result<(), BoxError> { Ok(()) }
//!     async fn wait(&self) -> Result<(), BoxError> { Ok(()) }
//! }
//!
//! let opts = LauncherOptions::new().graceful_shutdown_timeout(std::time::Duration::from_secs(30));
//! let launcher = launch(opts, |_ctx| Ok::<_, BoxError>(Api), Some(4))?;
//! std::process::exit(launcher.wait());
//! # Ok::<(), osier_service::LaunchError>(())
//! ```
//!
//! Backend selection (SVC-BK-01) does not apply: both runtimes are always there, one
//! [`Bridge`](osier_bridge::Bridge) per process, and each service picks its flavour by the trait
//! it implements. The eventlet backdoor (SVC-BD-01) and the WSGI server (SVC-THR-07) are not
//! offered, as in oslo's threading backend.
#![warn(missing_docs)]

mod in_process;
mod launcher;
mod lock;
#[cfg(feature = "log")]
pub mod logging;
pub mod looping;
#[cfg(feature = "prometheus")]
pub mod metrics_endpoint;
mod options;
#[cfg(feature = "otel")]
pub mod otel;
pub mod periodic;
pub mod process;
#[cfg(feature = "rpc")]
pub mod rpc;
mod service;
pub mod signals;
pub mod systemd;
mod task_group;

pub use launcher::{launch, Launcher, ServiceLauncher};
#[cfg(feature = "prometheus")]
pub use metrics_endpoint::{metrics_endpoint, MetricsEndpoint, MetricsEndpointError};
pub use options::{ForegroundHup, LaunchError, LauncherHandle, LauncherOptions, WorkerContext};
pub use process::ProcessLauncher;
pub use service::{
    BoxError, Green, GreenService, InvalidRestartMethod, RestartMethod, Service, Services,
    StartError, SERVICES_HEALTHY,
};
pub use signals::is_daemon;
pub use task_group::{CancelToken, TaskGroup, TaskGroupError, Timer};
