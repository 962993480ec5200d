//! Whether a server or a listener is alive beyond "the process runs": started, its
//! subscription consuming (connected, consumers registered), and, for an RPC server with
//! oslo's `rpc_ping_enabled`, its last ping through the broker to its own topic answered.
//!
//! A process can be alive and deaf: its consumer gone while the connection reconnects, its
//! queue deleted by an operator, the broker refusing its declares. [`RpcServer::health`] and
//! [`NotificationListener::health`] say so; `osier_service` sends systemd `WATCHDOG=1` only
//! while every service is healthy, so systemd restarts a deaf process, and shows the same on
//! its metrics endpoint.
//!
//! ```
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! use osier_messaging::{Endpoint, RpcServer, Target, Transport};
//!
//! let transport = Transport::new("memory://").unwrap();
//! let server = RpcServer::builder(&transport, Target::default().with_topic("t").with_server("s"))
//!     .endpoint(Endpoint::new("e"))
//!     .build()
//!     .unwrap();
//! assert!(!server.health().is_healthy(), "not started yet");
//! server.start().await.unwrap();
//! assert!(server.health().is_healthy());
//! server.stop().await.unwrap();
//! server.wait().await.unwrap();
//! assert!(!server.health().running);
//! # });
//! ```
//!
//! [`RpcServer::health`]: crate::RpcServer::health
//! [`NotificationListener::health`]: crate::NotificationListener::health

use std::sync::Mutex;
use std::time::Duration;

use crate::driver::Liveness;
use crate::lock::lock;

/// A server's or listener's health at one moment.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Health {
    /// Started, and not stopped since.
    pub running: bool,
    /// Its subscription consumes now (false while its driver reconnects).
    pub consuming: bool,
    /// The last ping through the broker to its own topic, for an RPC server with
    /// `rpc_ping_enabled` (`None`: pings are off, or none has ended yet).
    pub ping: Option<PingOutcome>,
}

/// How the last self-ping ended.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum PingOutcome {
    /// Answered `pong`, this long after it was sent.
    Answered(Duration),
    /// Failed: the error, as text.
    Failed(String),
}

impl Health {
    /// Running, consuming, and the last ping (if any) answered.
    pub fn is_healthy(&self) -> bool {
        self.problem().is_none()
    }

    /// What is wrong, for a log line or a status: `None` when healthy.
    pub fn problem(&self) -> Option<String> {
        if !self.running {
            return Some("not running".into());
        }
        if !self.consuming {
            return Some(
                "not consuming (no connection to the broker, or its consumers gone)".into(),
            );
        }
        match &self.ping {
            Some(PingOutcome::Failed(e)) => {
                Some(format!("its ping through the broker failed: {e}"))
            }
            _ => None,
        }
    }
}

/// What a server or listener keeps to answer `health()`: the subscription's liveness while
/// started, and the last ping.
#[derive(Debug, Default)]
pub(crate) struct HealthState {
    live: Mutex<Option<Liveness>>,
    ping: Mutex<Option<PingOutcome>>,
}

impl HealthState {
    /// Started: the subscription's liveness from now on.
    pub(crate) fn started(&self, live: Liveness) {
        *lock(&self.live) = Some(live);
        *lock(&self.ping) = None;
    }

    /// Stopped.
    pub(crate) fn stopped(&self) {
        *lock(&self.live) = None;
    }

    /// A ping ended.
    pub(crate) fn pinged(&self, outcome: PingOutcome) {
        *lock(&self.ping) = Some(outcome);
    }

    pub(crate) fn health(&self) -> Health {
        let live = lock(&self.live).clone();
        Health {
            running: live.is_some(),
            consuming: live.is_some_and(|l| l.is_up()),
            ping: lock(&self.ping).clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_ping_makes_a_consuming_server_unhealthy() {
        let s = HealthState::default();
        let live = Liveness::new(true);
        s.started(live.clone());
        assert!(s.health().is_healthy());
        s.pinged(PingOutcome::Failed("timeout".into()));
        assert!(!s.health().is_healthy());
        assert!(s.health().problem().unwrap().contains("ping"));
        s.pinged(PingOutcome::Answered(Duration::from_millis(3)));
        assert!(s.health().is_healthy());
        live.set(false);
        assert!(s.health().problem().unwrap().contains("not consuming"));
        s.stopped();
        assert_eq!(s.health().problem().as_deref(), Some("not running"));
    }
}
