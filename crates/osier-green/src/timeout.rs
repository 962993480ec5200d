//! `Timeout`: interrupt whatever the current green thread is parked in (GREEN-22..24).
//!
//! eventlet's `Timeout` raises an exception inside the green thread that armed it when it fires;
//! here it unwinds that green thread's stack from its current switch point, and the scope that
//! armed it turns the unwind back into a value. Each timeout catches only itself, so nested
//! timeouts behave as in eventlet: an outer one that fires inside an inner scope goes straight
//! through it, and when two are armed the first to fire wins (GREEN-23).
//!
//! ```
//! use osier_green::{spawn, sleep, with_timeout, Timeout, TimeoutError};
//! use std::time::Duration;
//!
//! let gt = spawn(|| {
//!     // scoped: the body is interrupted at its next switch point after 10 ms
//!     let r = with_timeout(Duration::from_millis(10), || sleep(Duration::from_secs(5)));
//!     assert_eq!(r, Err(TimeoutError::Elapsed));
//!
//!     // nested: the outer one fires first and goes through the inner scope
//!     let outer = Timeout::new(Duration::from_millis(10)).unwrap();
//!     let r = outer.scope(|| {
//!         with_timeout(Duration::from_secs(5), || sleep(Duration::from_secs(5)))
//!     });
//!     assert_eq!(r, Err(TimeoutError::Elapsed));
//! });
//! gt.wait().unwrap();
//! ```
//!
//! A timeout fires only when its green thread reaches a switch point: CPU-bound code is never
//! interrupted (GREEN-01, GREEN-23).

use std::marker::PhantomData;
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::error::{GreenError, TimeoutFired};
use crate::hub::{self, TimerAction};
use crate::task::Task;

/// What a timed-out scope returns.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TimeoutError {
    /// This scope's own timeout fired.
    #[error("timed out")]
    Elapsed,
    /// A `Timeout` was asked for outside a green thread (there is nothing to interrupt).
    #[error("Timeout must be armed in a green thread")]
    NotInGreenThread,
}

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// An armed timeout for the calling green thread (eventlet's `Timeout(seconds)`).
///
/// It is armed when made and disarmed by [`cancel`](Timeout::cancel) or on drop. While armed,
/// if its time runs out, the green thread that armed it unwinds from its next switch point; use
/// [`scope`](Timeout::scope) (or [`with_timeout`]) to turn that into `Err(TimeoutError::Elapsed)`.
/// A `Timeout` stays with the green thread that made it (it is not `Send`).
#[derive(Debug)]
pub struct Timeout {
    id: u64,
    task: Option<Arc<Task>>,
    deadline: Option<Instant>,
    timer: Option<u64>,
    _not_send: PhantomData<*const ()>,
}

impl Timeout {
    /// Arms a timeout of `d` in the calling green thread.
    pub fn new(d: Duration) -> Result<Timeout, TimeoutError> {
        Self::arm(Some(d))
    }

    /// A timeout that never fires (eventlet's `Timeout(None)`); `scope` just runs the body.
    pub fn never() -> Timeout {
        Timeout {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            task: None,
            deadline: None,
            timer: None,
            _not_send: PhantomData,
        }
    }

    fn arm(d: Option<Duration>) -> Result<Timeout, TimeoutError> {
        let task = hub::current_task().ok_or(TimeoutError::NotInGreenThread)?;
        let mut t = Timeout {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            task: Some(task),
            deadline: d.map(|d| Instant::now() + d),
            timer: None,
            _not_send: PhantomData,
        };
        t.start();
        Ok(t)
    }

    fn start(&mut self) {
        if let (Some(task), Some(at), None) = (&self.task, self.deadline, self.timer) {
            self.timer =
                hub::with_hub(|h| h.add_timer(at, TimerAction::Timeout(task.clone(), self.id)));
        }
    }

    /// True while armed and not yet fired (eventlet's `pending`).
    pub fn pending(&self) -> bool {
        self.timer.is_some() && self.deadline.is_some_and(|d| Instant::now() < d)
    }

    /// Disarms it. A timeout that fired but was not raised yet is forgotten too.
    pub fn cancel(&mut self) {
        if let Some(k) = self.timer.take() {
            hub::with_hub(|h| h.cancel_timer(k));
        }
        if let Some(task) = &self.task {
            task.clear_timeout(self.id);
        }
    }

    /// Runs `body`; if this timeout fires while `body` runs, returns `Err(Elapsed)`. Any other
    /// unwind (another Timeout, a kill, a panic) passes through. The timeout is cancelled when
    /// the scope ends.
    pub fn scope<R>(mut self, body: impl FnOnce() -> R) -> Result<R, TimeoutError> {
        let r = catch_unwind(AssertUnwindSafe(body));
        self.cancel();
        match r {
            Ok(v) => Ok(v),
            Err(p) => match p.downcast_ref::<TimeoutFired>() {
                Some(f) if f.id == self.id => Err(TimeoutError::Elapsed),
                _ => resume_unwind(p),
            },
        }
    }
}

impl Drop for Timeout {
    fn drop(&mut self) {
        self.cancel();
    }
}

/// Runs `body` with a timeout of `d` (GREEN-24): `Err(Elapsed)` if this timeout fires; timeouts
/// from anywhere else pass through. Outside a green thread it returns `Err(NotInGreenThread)`.
pub fn with_timeout<R>(d: Duration, body: impl FnOnce() -> R) -> Result<R, TimeoutError> {
    Timeout::new(d)?.scope(body)
}

/// Like [`with_timeout`], returning `Ok(value)` instead of an error when the timeout fires
/// (eventlet's `timeout_value=`). Outside a green thread: `Err(NotInGreenThread)`.
pub fn with_timeout_value<R>(
    d: Duration,
    value: R,
    body: impl FnOnce() -> R,
) -> Result<R, TimeoutError> {
    match with_timeout(d, body) {
        Err(TimeoutError::Elapsed) => Ok(value),
        other => other,
    }
}

impl From<TimeoutError> for GreenError {
    fn from(e: TimeoutError) -> Self {
        match e {
            TimeoutError::Elapsed => GreenError::TimedOut,
            TimeoutError::NotInGreenThread => GreenError::NotInGreenThread("Timeout"),
        }
    }
}
