//! The order of an RPC server's steps (MSG-SRV-05): `start`, `stop` and `wait` each run once per
//! cycle, a step called early waits for the one before it (logging a "possible hang" warning
//! after `log_after`, failing after `timeout`), and a start after a full cycle begins a new one.

use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::{watch, Notify};

use crate::error::MessagingError;
use crate::lock::lock;
use crate::target::Target;

/// Where the server is in its start -> stop -> wait cycle (MSG-SRV-05).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Phase {
    /// Not started in this cycle.
    Idle,
    Starting,
    Started,
    Stopping,
    Stopped,
    Waiting,
    /// The cycle is complete; `start` begins a new one.
    Done,
}

/// One server's place in its cycles, and what its running cycle owns.
pub(crate) struct Lifecycle {
    pub(crate) cycle: u64,
    pub(crate) phase: Phase,
    /// Tells the server loop to stop.
    pub(crate) stop: Option<watch::Sender<bool>>,
    /// The server loop.
    pub(crate) task: Option<tokio::task::JoinHandle<()>>,
}

/// `Some(true)` once cycle `cycle` reached `phase`, `Some(false)` before, `None` once a later
/// cycle began.
pub(crate) fn at(l: &Lifecycle, cycle: u64, phase: Phase) -> Option<bool> {
    if l.cycle < cycle {
        Some(false)
    } else if l.cycle == cycle {
        Some(l.phase >= phase)
    } else {
        None
    }
}

/// Options of one lifecycle step (oslo's `log_after` and `timeout` arguments, MSG-SRV-05).
#[derive(Debug, Clone, Copy)]
pub struct StepOptions {
    /// Log one "possible hang" warning after this long blocked behind the previous step
    /// (default 30 s; zero or `None` turns it off).
    pub log_after: Option<Duration>,
    /// Fail with [`MessagingError::TaskTimeout`] after this long blocked (default: never).
    pub timeout: Option<Duration>,
}

impl Default for StepOptions {
    fn default() -> Self {
        StepOptions {
            log_after: Some(Duration::from_secs(30)),
            timeout: None,
        }
    }
}

/// A server's lifecycle and the signal of its every change.
pub(crate) struct Steps {
    life: Mutex<Lifecycle>,
    /// Signalled on every phase change.
    changed: Notify,
}

impl Steps {
    pub(crate) fn new() -> Self {
        Steps {
            life: Mutex::new(Lifecycle {
                cycle: 0,
                phase: Phase::Idle,
                stop: None,
                task: None,
            }),
            changed: Notify::new(),
        }
    }

    /// The lifecycle, locked.
    pub(crate) fn lock(&self) -> MutexGuard<'_, Lifecycle> {
        lock(&self.life)
    }

    /// Blocks until `ready(phase)` holds in cycle `cycle` (or the cycle moved on: returns
    /// `None`), logging once after `log_after` and failing after `timeout`.
    pub(crate) async fn await_phase(
        &self,
        step: &str,
        target: &Target,
        opts: StepOptions,
        mut ready: impl FnMut(&Lifecycle) -> Option<bool>,
    ) -> Result<Option<()>, MessagingError> {
        let t0 = tokio::time::Instant::now();
        let mut logged = false;
        loop {
            let notified = self.changed.notified();
            {
                let life = lock(&self.life);
                match ready(&life) {
                    Some(true) => return Ok(Some(())),
                    None => return Ok(None),
                    Some(false) => {}
                }
            }
            let mut until = None;
            if let Some(t) = opts.timeout {
                until = Some(t0 + t);
            }
            if let Some(l) = opts.log_after.filter(|l| !l.is_zero() && !logged) {
                if until.is_none_or(|u| t0 + l < u) {
                    until = Some(t0 + l);
                }
            }
            match until {
                None => notified.await,
                Some(u) => {
                    if tokio::time::timeout_at(u, notified).await.is_err() {
                        if opts.timeout.is_some_and(|t| t0.elapsed() >= t) {
                            return Err(MessagingError::TaskTimeout(format!(
                                "{step} timed out waiting for the previous step"
                            )));
                        }
                        logged = true;
                        tracing::warn!(step, target = %target, "possible hang: still waiting for the previous step");
                    }
                }
            }
        }
    }

    /// Returns once the current cycle's `stop` has been called (at once if it already was).
    pub(crate) async fn stopping(&self) {
        loop {
            let notified = self.changed.notified();
            if self.lock().phase >= Phase::Stopping {
                return;
            }
            notified.await;
        }
    }

    /// Moves the current cycle to `phase` and wakes every step waiting for it.
    pub(crate) fn set_phase(&self, phase: Phase) {
        lock(&self.life).phase = phase;
        self.changed.notify_waiters();
    }

    /// The cycle a stop or wait called now belongs to: the current one, or, before the first
    /// start or after a completed cycle, the next one.
    pub(crate) fn current_or_next_cycle(&self) -> u64 {
        let life = lock(&self.life);
        match life.phase {
            Phase::Idle => life.cycle + 1,
            Phase::Done => life.cycle, // a stop/wait after a full cycle does nothing
            _ => life.cycle,
        }
    }
}
