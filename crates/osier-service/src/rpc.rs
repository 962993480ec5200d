//! An RPC server is a [`Service`], as oslo's `MessageHandlingServer` is a `ServiceBase`, so a
//! launcher runs it like any other service; so is a notification listener.
//!
//! `start` starts listening; `stop` stops taking new requests (requests in flight carry on:
//! oslo's graceful behaviour, whatever the flag, since a request cannot be cut short without
//! leaving its caller waiting); `wait` returns once every request in flight has been answered;
//! `reset` does nothing (MSG-SRV-04). The launcher's `wait` starts as soon as the server has
//! started, so it logs no "possible hang" warning while the server runs.
//!
//! ```no_run
//! use osier_messaging::{Endpoint, RpcServer, Target, Transport};
//! use osier_service::{launch, LauncherOptions};
//!
//! let launcher = launch(
//!     LauncherOptions::new(),
//!     |ctx| {
//!         let transport = Transport::new("rabbit://guest:guest@127.0.0.1:5672/")?;
//!         RpcServer::builder(&transport, Target::default().with_topic("compute").with_server("host-1"))
//!             .bridge(ctx.bridge().clone())
//!             .endpoint(Endpoint::new("ping"))
//!             .build()
//!     },
//!     Some(4),
//! )?;
//! std::process::exit(launcher.wait());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use async_trait::async_trait;
use osier_messaging::{NotificationListener, RpcServer, StepOptions};

use crate::service::{BoxError, Service};

#[async_trait]
impl Service for RpcServer {
    async fn start(&self) -> Result<(), BoxError> {
        Ok(RpcServer::start(self).await?)
    }
    async fn stop(&self, _graceful: bool) -> Result<(), BoxError> {
        Ok(RpcServer::stop(self).await?)
    }
    async fn wait(&self) -> Result<(), BoxError> {
        // A launcher waits from the moment the server started: that is not a hang, so no
        // "possible hang" warning (MSG-SRV-05's log_after is for a stop that never comes).
        let opts = StepOptions {
            log_after: None,
            timeout: None,
        };
        Ok(RpcServer::wait_with(self, opts).await?)
    }
    async fn reset(&self) -> Result<(), BoxError> {
        RpcServer::reset(self);
        Ok(())
    }
    fn health(&self) -> Result<(), String> {
        match RpcServer::health(self).problem() {
            None => Ok(()),
            Some(p) => Err(format!("RPC server {}: {p}", self.target())),
        }
    }
}

/// A notification listener is a service too (oslo's `get_notification_listener` result is a
/// `MessageHandlingServer`): `stop` stops taking messages and settles those taken, `wait`
/// returns once that is done, and its health (consuming or not) feeds the launcher's watchdog.
#[async_trait]
impl Service for NotificationListener {
    async fn start(&self) -> Result<(), BoxError> {
        Ok(NotificationListener::start(self).await?)
    }
    async fn stop(&self, _graceful: bool) -> Result<(), BoxError> {
        NotificationListener::stop(self).await;
        Ok(())
    }
    async fn wait(&self) -> Result<(), BoxError> {
        NotificationListener::wait(self).await;
        Ok(())
    }
    fn health(&self) -> Result<(), String> {
        match NotificationListener::health(self).problem() {
            None => Ok(()),
            Some(p) => Err(format!("notification listener: {p}")),
        }
    }
}
