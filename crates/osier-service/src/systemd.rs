//! systemd readiness notification (`oslo_service.systemd`, SVC-SYSD-01).
//!
//! | oslo.service | osier-service |
//! |---|---|
//! | `systemd.notify()` | [`notify`]`(State::Ready)` |
//! | `systemd.notify_once()` | [`notify_once`]`(State::Ready)` (also forgets `NOTIFY_SOCKET`) |
//! | `systemd.onready(sock, timeout)` | [`wait_ready`] (for tests and supervisors) |
//! | (not in oslo) `WatchdogSec=` | [`watchdog_interval`]; the service launcher sends [`State::Watchdog`] at half the interval while every service is healthy, so systemd restarts a process that is alive but deaf |
//!
//! The datagram goes to the unix socket named by `NOTIFY_SOCKET`; a leading `@` names the
//! abstract namespace. When the variable is not set nothing is sent. Failures are logged at
//! debug and otherwise ignored, as in oslo: a service must not fail because its supervisor
//! does not listen.

use std::os::unix::net::UnixDatagram;
use std::sync::Mutex;
use std::time::Duration;

use crate::lock::lock;

/// What to tell systemd.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// `READY=1`: the service has started.
    Ready,
    /// `STOPPING=1`: the service is shutting down.
    Stopping,
    /// `RELOADING=1`: the service is reloading its configuration.
    Reloading,
    /// `WATCHDOG=1`: the service is alive (systemd's `WatchdogSec=`); the launchers send it
    /// only while every service is healthy.
    Watchdog,
}

impl State {
    fn message(self) -> &'static str {
        match self {
            State::Ready => "READY=1",
            State::Stopping => "STOPPING=1",
            State::Reloading => "RELOADING=1",
            State::Watchdog => "WATCHDOG=1",
        }
    }
}

/// The socket `notify_once` forgot: the environment is read once and then ignored, so a child
/// started later does not notify (and no `unsafe` environment mutation is needed).
static FORGOTTEN: Mutex<bool> = Mutex::new(false);

fn socket_path() -> Option<String> {
    if *lock(&FORGOTTEN) {
        return None;
    }
    std::env::var("NOTIFY_SOCKET")
        .ok()
        .filter(|s| !s.is_empty())
}

/// Sends `state` to `NOTIFY_SOCKET` if it is set. Returns whether a datagram was sent.
pub fn notify(state: State) -> bool {
    match socket_path() {
        Some(path) => send_to(&path, state.message()),
        None => false,
    }
}

/// How often systemd expects `WATCHDOG=1` from this process (`WATCHDOG_USEC`, when
/// `WATCHDOG_PID` is unset or names this process); `None` when the watchdog is off.
pub fn watchdog_interval() -> Option<Duration> {
    if let Ok(pid) = std::env::var("WATCHDOG_PID") {
        if pid.trim().parse::<u32>().ok() != Some(std::process::id()) {
            return None;
        }
    }
    let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.trim().parse().ok()?;
    (usec > 0).then(|| Duration::from_micros(usec))
}

/// [`notify`], then forgets `NOTIFY_SOCKET` for the rest of the process (oslo's `notify_once`,
/// which deletes the variable so that children stay silent). Child processes started with
/// `std::process::Command` should be given `env_remove("NOTIFY_SOCKET")` as well.
pub fn notify_once(state: State) -> bool {
    let sent = notify(state);
    *lock(&FORGOTTEN) = true;
    sent
}

fn send_to(path: &str, msg: &str) -> bool {
    let r = (|| -> std::io::Result<()> {
        let sock = UnixDatagram::unbound()?;
        if let Some(name) = path.strip_prefix('@') {
            use std::os::linux::net::SocketAddrExt;
            let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())?;
            sock.send_to_addr(msg.as_bytes(), &addr)?;
        } else {
            sock.send_to(msg.as_bytes(), path)?;
        }
        Ok(())
    })();
    match r {
        Ok(()) => true,
        Err(e) => {
            tracing::debug!(error = %e, "systemd notification not sent");
            false
        }
    }
}

/// What [`wait_ready`] saw (oslo's `onready` returns 0, 1 or 2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Readiness {
    /// `READY=1` arrived.
    Ready,
    /// Something else arrived (the message).
    Other(String),
    /// Nothing arrived in time.
    Timeout,
}

/// Waits on a bound notification socket for one message.
pub fn wait_ready(sock: &UnixDatagram, timeout: Duration) -> std::io::Result<Readiness> {
    sock.set_read_timeout(Some(timeout))?;
    let mut buf = [0u8; 4096];
    match sock.recv(&mut buf) {
        Ok(n) => {
            let msg = String::from_utf8_lossy(&buf[..n]).trim().to_string();
            Ok(if msg.lines().any(|l| l == "READY=1") {
                Readiness::Ready
            } else {
                Readiness::Other(msg)
            })
        }
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ) =>
        {
            Ok(Readiness::Timeout)
        }
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bound() -> (UnixDatagram, String) {
        let path = std::env::temp_dir().join(format!(
            "osier-notify-{}-{}",
            std::process::id(),
            fastrand::u64(..)
        ));
        let sock = UnixDatagram::bind(&path).unwrap();
        (sock, path.display().to_string())
    }

    /// SVC-SYSD-01: the datagram reaches a socket path; `wait_ready` tells READY from others.
    #[test]
    fn ready_and_stopping_reach_the_socket() {
        let (sock, path) = bound();
        assert!(send_to(&path, State::Ready.message()));
        assert_eq!(
            wait_ready(&sock, Duration::from_secs(2)).unwrap(),
            Readiness::Ready
        );
        assert!(send_to(&path, State::Stopping.message()));
        assert_eq!(
            wait_ready(&sock, Duration::from_secs(2)).unwrap(),
            Readiness::Other("STOPPING=1".into())
        );
        assert_eq!(
            wait_ready(&sock, Duration::from_millis(50)).unwrap(),
            Readiness::Timeout
        );
        let _ = std::fs::remove_file(path);
    }

    /// SVC-SYSD-01: a leading `@` is the abstract namespace.
    #[test]
    fn abstract_socket_names_work() {
        use std::os::linux::net::SocketAddrExt;
        let name = format!("osier-notify-abstract-{}", fastrand::u64(..));
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let sock = UnixDatagram::bind_addr(&addr).unwrap();
        assert!(send_to(&format!("@{name}"), State::Ready.message()));
        assert_eq!(
            wait_ready(&sock, Duration::from_secs(2)).unwrap(),
            Readiness::Ready
        );
    }

    /// A socket nobody listens on is not an error (logged at debug).
    #[test]
    fn a_missing_socket_is_not_an_error() {
        assert!(!send_to("/nonexistent/osier/notify", "READY=1"));
    }
}
