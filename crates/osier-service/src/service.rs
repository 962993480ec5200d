//! The service contract (`oslo_service.service.ServiceBase`, SVC-BASE-*) in an async and a green
//! flavour, and the [`Services`] container a launcher keeps.
//!
//! | oslo.service | osier-service |
//! |---|---|
//! | `class MyService(service.ServiceBase)` with `start/stop/wait/reset` | `impl `[`Service`]` for MyService` (async) or `impl `[`GreenService`] (green) |
//! | a green service run by the eventlet launcher | [`Green`]`::new(svc, bridge)`: each method runs in a green thread |
//! | `service.Services()`; `services.add(svc)` | [`Services::new`]; [`Services::add`] |
//! | `restart_method='reload'` / `'mutate'` | [`RestartMethod::Reload`] / [`RestartMethod::Mutate`] |
//!
//! A launcher refuses anything that is not a service at compile time (oslo's TypeError,
//! SVC-BASE-01):
//!
//! ```compile_fail
//! let mut s = osier_service::Services::new();
//! s.add(std::sync::Arc::new(42_u32)); // u32 is not a Service
//! ```

use std::str::FromStr;
use std::sync::Arc;

use async_trait::async_trait;

/// The gauge a launcher sets to 1 while every service is healthy ([`Service::health`]), 0
/// otherwise: the state the systemd watchdog follows.
pub const SERVICES_HEALTHY: &str = "osier_services_healthy";

/// The error type services report: any error.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// What a launcher runs (SVC-BASE-01), for services written as async code.
///
/// `start` should return once the service is running (its work goes on in tasks it spawned);
/// `wait` returns once it has stopped. `stop(graceful)` asks it to stop: `graceful` means "let
/// work in flight finish" (a launcher passes `true` on TERM and on a reload, and `false` when a
/// worker's parent has died). `reset` is called on a HUP restart, between
/// the stop and the new start (SVC-BASE-03).
#[async_trait]
pub trait Service: Send + Sync + 'static {
    /// Starts the service. An error makes the launcher exit with status 1 (SVC-BASE-03).
    async fn start(&self) -> Result<(), BoxError>;
    /// Asks the service to stop.
    async fn stop(&self, graceful: bool) -> Result<(), BoxError>;
    /// Waits until the service has stopped.
    async fn wait(&self) -> Result<(), BoxError>;
    /// Resets state on a restart (HUP). Does nothing by default, as oslo's `Service.reset`.
    async fn reset(&self) -> Result<(), BoxError> {
        Ok(())
    }
    /// Whether the service works now, beyond "the process runs" (`Err` says what is wrong).
    /// A launcher sends systemd `WATCHDOG=1` only while every service is healthy, and shows
    /// the state on its metrics endpoint. Always healthy by default; an RPC server reports
    /// its consumer and pings ([`osier_messaging::Health`] with the `rpc` feature).
    fn health(&self) -> Result<(), String> {
        Ok(())
    }
}

/// The same contract for green code (an eventlet-era service): each method runs in a green
/// thread, so it may block on green I/O and sleep greenly. Wrap it in [`Green`] to launch it.
pub trait GreenService: Send + Sync + 'static {
    /// Starts the service.
    fn start(&self) -> Result<(), BoxError>;
    /// Asks the service to stop.
    fn stop(&self, graceful: bool) -> Result<(), BoxError>;
    /// Waits until the service has stopped (parks only its green thread).
    fn wait(&self) -> Result<(), BoxError>;
    /// Resets state on a restart (HUP).
    fn reset(&self) -> Result<(), BoxError> {
        Ok(())
    }
    /// Whether the service works now (see [`Service::health`]); called from the launcher's
    /// thread, not a green thread, so it must not block.
    fn health(&self) -> Result<(), String> {
        Ok(())
    }
}

/// Runs a [`GreenService`] as a [`Service`]: each method in a green thread of `bridge`, awaited
/// from the launcher's async side through `osier_bridge::spawn_green`. A panic in the green code
/// becomes an error, never a crash of the launcher.
#[derive(Debug)]
pub struct Green<S> {
    svc: Arc<S>,
    bridge: osier_bridge::Bridge,
}

impl<S: GreenService> Green<S> {
    /// Wraps `svc`, to run on `bridge`'s green runtime.
    pub fn new(svc: S, bridge: osier_bridge::Bridge) -> Self {
        Green {
            svc: Arc::new(svc),
            bridge,
        }
    }

    /// The wrapped service.
    pub fn inner(&self) -> &S {
        &self.svc
    }

    async fn in_green(
        &self,
        f: impl FnOnce(&S) -> Result<(), BoxError> + Send + 'static,
    ) -> Result<(), BoxError> {
        let svc = self.svc.clone();
        match self.bridge.spawn_green(move || f(&svc)).await {
            Ok(r) => r,
            Err(e) => Err(Box::new(e)),
        }
    }
}

#[async_trait]
impl<S: GreenService> Service for Green<S> {
    async fn start(&self) -> Result<(), BoxError> {
        self.in_green(|s| s.start()).await
    }
    async fn stop(&self, graceful: bool) -> Result<(), BoxError> {
        self.in_green(move |s| s.stop(graceful)).await
    }
    async fn wait(&self) -> Result<(), BoxError> {
        self.in_green(|s| s.wait()).await
    }
    async fn reset(&self) -> Result<(), BoxError> {
        self.in_green(|s| s.reset()).await
    }
    fn health(&self) -> Result<(), String> {
        self.svc.health()
    }
}

#[async_trait]
impl<S: Service + ?Sized> Service for Arc<S> {
    async fn start(&self) -> Result<(), BoxError> {
        (**self).start().await
    }
    async fn stop(&self, graceful: bool) -> Result<(), BoxError> {
        (**self).stop(graceful).await
    }
    async fn wait(&self) -> Result<(), BoxError> {
        (**self).wait().await
    }
    async fn reset(&self) -> Result<(), BoxError> {
        (**self).reset().await
    }
    fn health(&self) -> Result<(), String> {
        (**self).health()
    }
}

/// What a HUP restart does (SVC-BASE-04).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RestartMethod {
    /// Run the reload hooks, then stop, `reset()` and start every service again (oslo's
    /// `reload_config_files` + `Services.restart()`). Under a [`ProcessLauncher`](crate::ProcessLauncher)
    /// the parent replaces every worker with a new process instead.
    #[default]
    Reload,
    /// Run the reload hooks and call `reset()`; the services keep running (oslo's
    /// `mutate_config_files`). Under a [`ProcessLauncher`](crate::ProcessLauncher) the workers get
    /// a HUP and do the same in place (same pids).
    Mutate,
}

/// An unknown restart method (oslo's ValueError, SVC-BASE-04).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid restart_method {0:?}: expected \"reload\" or \"mutate\"")]
pub struct InvalidRestartMethod(pub String);

impl FromStr for RestartMethod {
    type Err = InvalidRestartMethod;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "reload" => Ok(RestartMethod::Reload),
            "mutate" => Ok(RestartMethod::Mutate),
            other => Err(InvalidRestartMethod(other.to_string())),
        }
    }
}

/// The services one process runs (oslo's `Services`, SVC-BASE-03). Launchers keep one; it is
/// public so applications with their own main loop can use it.
#[derive(Default)]
pub struct Services {
    services: Vec<Arc<dyn Service>>,
}

impl std::fmt::Debug for Services {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Services")
            .field("len", &self.services.len())
            .finish()
    }
}

/// A service failed to start; the launcher logs it and exits with status 1 (SVC-BASE-03).
#[derive(Debug, thiserror::Error)]
#[error("service {index} failed to start: {source}")]
pub struct StartError {
    /// Which service (in the order added).
    pub index: usize,
    /// What it reported.
    #[source]
    pub source: BoxError,
}

impl Services {
    /// No services.
    pub fn new() -> Self {
        Services::default()
    }

    /// Adds a service (started by [`start_all`](Services::start_all)).
    pub fn add(&mut self, svc: Arc<dyn Service>) {
        self.services.push(svc);
    }

    /// How many services there are.
    pub fn len(&self) -> usize {
        self.services.len()
    }

    /// True when there are none.
    pub fn is_empty(&self) -> bool {
        self.services.is_empty()
    }

    /// The services that are not healthy now: `(index, what is wrong)`.
    pub fn unhealthy(&self) -> Vec<(usize, String)> {
        self.services
            .iter()
            .enumerate()
            .filter_map(|(i, s)| s.health().err().map(|e| (i, e)))
            .collect()
    }

    /// Starts every service in order; the first failure stops there and is returned.
    pub async fn start_all(&self) -> Result<(), StartError> {
        for (index, s) in self.services.iter().enumerate() {
            s.start()
                .await
                .map_err(|source| StartError { index, source })?;
        }
        Ok(())
    }

    /// Asks every service to stop, all at once; errors are logged.
    pub async fn stop_all(&self, graceful: bool) {
        let stops = self.services.iter().enumerate().map(|(i, s)| async move {
            if let Err(e) = s.stop(graceful).await {
                tracing::error!(service = i, error = %e, "service stop failed");
            }
        });
        futures::future::join_all(stops).await;
    }

    /// Waits for every service to stop; errors are logged.
    pub async fn wait_all(&self) {
        let waits = self.services.iter().enumerate().map(|(i, s)| async move {
            if let Err(e) = s.wait().await {
                tracing::error!(service = i, error = %e, "service wait failed");
            }
        });
        futures::future::join_all(waits).await;
    }

    /// Calls `reset()` on every service; errors are logged.
    pub async fn reset_all(&self) {
        for (i, s) in self.services.iter().enumerate() {
            if let Err(e) = s.reset().await {
                tracing::error!(service = i, error = %e, "service reset failed");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restart_method_parses_reload_and_mutate_and_refuses_others() {
        // SVC-BASE-04
        assert_eq!("reload".parse(), Ok(RestartMethod::Reload));
        assert_eq!("mutate".parse(), Ok(RestartMethod::Mutate));
        let e = "restart".parse::<RestartMethod>().unwrap_err();
        assert!(e.to_string().contains("\"restart\""), "{e}");
    }
}
