//! Signals, routed through one channel and acted on outside the handler (SVC-SIG-*, LESSON-06).
//!
//! The OS-level handler is signal-hook's: it only writes to a self-pipe. A forwarding thread
//! turns each signal into an event on the launcher's channel, and the launcher's loop acts
//! on it like on any other event (a service that stopped on its own, the parent's death, a
//! programmatic stop). Nothing runs inside the handler, so a handler can never deadlock on a
//! lock the interrupted code held, and no runtime context is needed to receive one.
//!
//! | oslo.service | osier-service |
//! |---|---|
//! | `SignalHandler().add_handler('SIGTERM', cb)` | the launcher's loop: TERM, INT and HUP arrive as events |
//! | `_is_daemon()` | [`is_daemon`] |
//! | `SignalExit(signo)` | the exit status the launcher returns |

use std::io::IsTerminal;
use tokio::sync::mpsc::UnboundedSender;

/// The signals a launcher acts on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// SIGTERM: graceful stop, bounded by the graceful shutdown timeout.
    Term,
    /// SIGINT: immediate exit with status 1.
    Int,
    /// SIGHUP: restart (a daemon), or what [`ForegroundHup`](crate::ForegroundHup) says.
    Hup,
}

impl Signal {
    pub(crate) fn from_raw(n: i32) -> Option<Signal> {
        match n {
            signal_hook::consts::SIGTERM => Some(Signal::Term),
            signal_hook::consts::SIGINT => Some(Signal::Int),
            signal_hook::consts::SIGHUP => Some(Signal::Hup),
            _ => None,
        }
    }

    pub(crate) fn raw(self) -> i32 {
        match self {
            Signal::Term => signal_hook::consts::SIGTERM,
            Signal::Int => signal_hook::consts::SIGINT,
            Signal::Hup => signal_hook::consts::SIGHUP,
        }
    }
}

/// Everything a launcher's loop reacts to, in one channel.
#[derive(Debug)]
pub(crate) enum Event {
    /// A signal arrived.
    Signal(Signal),
    /// A worker's parent died (EOF on the liveness pipe, SVC-LAUNCH-07).
    ParentGone,
    /// Every service's `wait()` returned, in this generation of the services.
    ServicesDone(u64),
    /// [`LauncherHandle::stop`](crate::LauncherHandle::stop).
    Stop,
    /// [`LauncherHandle::restart`](crate::LauncherHandle::restart).
    Restart,
}

/// Ends the forwarding of signals when dropped.
pub(crate) struct Forwarding(signal_hook::iterator::Handle);

impl Drop for Forwarding {
    fn drop(&mut self) {
        self.0.close();
    }
}

/// When `on`, installs the handlers for TERM, INT and HUP and a thread that forwards them to
/// `tx` until the returned guard is dropped.
pub(crate) fn forward_signals(
    on: bool,
    tx: UnboundedSender<Event>,
) -> std::io::Result<Option<Forwarding>> {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    if !on {
        return Ok(None);
    }
    let mut signals = signal_hook::iterator::Signals::new([SIGTERM, SIGINT, SIGHUP])?;
    let handle = signals.handle();
    std::thread::Builder::new()
        .name("osier-signals".into())
        .spawn(move || {
            for raw in signals.forever() {
                if let Some(sig) = Signal::from_raw(raw) {
                    tracing::debug!(signal = ?sig, "signal received");
                    if tx.send(Event::Signal(sig)).is_err() {
                        break;
                    }
                }
            }
        })?;
    Ok(Some(Forwarding(handle)))
}

/// Whether this process counts as a daemon (SVC-SIG-09): stdout is not a terminal, or this
/// process group is not the terminal's foreground group. Under systemd, or with output
/// redirected, it always is. HUP means "reload" only for a daemon.
pub fn is_daemon() -> bool {
    let stdout = std::io::stdout();
    if !stdout.is_terminal() {
        return true;
    }
    // SAFETY: getpgrp and tcgetpgrp take no pointers and have no preconditions; tcgetpgrp only
    // reads the terminal's foreground group of fd 1 (-1 with ENOTTY when it has none).
    let (own, foreground) = unsafe { (libc::getpgrp(), libc::tcgetpgrp(1)) };
    foreground == -1 || own != foreground
}

/// Sends signal `raw` to process `pid`. A process that has already gone is not an error
/// (SVC-LAUNCH-06: "a child that has already gone is ignored").
pub(crate) fn send(pid: u32, raw: i32) {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return;
    };
    // SAFETY: kill takes plain integers; a pid we no longer own at worst gets ESRCH, which we
    // ignore. The pids come from `std::process::Child`s this process spawned and has not reaped.
    let rc = unsafe { libc::kill(pid, raw) };
    if rc != 0 {
        tracing::debug!(pid, signal = raw, error = %std::io::Error::last_os_error(), "kill failed");
    }
}
