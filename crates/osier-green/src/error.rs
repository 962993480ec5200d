//! Error types of osier-green.

use std::any::Any;

/// Why a green thread did not produce its value, or why a green-only call was refused.
///
/// `wait()` on a [`GreenThread`](crate::GreenThread) returns this; it tells a panic (with its
/// message) from a kill, the way tokio's `JoinError` tells a panic from a cancel.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GreenError {
    /// The green thread was killed (eventlet's `GreenletExit`), or cancelled before it started.
    #[error("green thread was killed")]
    Killed,
    /// The green thread's function panicked; the panic message is kept.
    #[error("green thread panicked: {0}")]
    Panicked(String),
    /// A [`Timeout`](crate::Timeout) fired inside the green thread and nothing caught it.
    #[error("a Timeout fired in the green thread and was not caught")]
    TimedOut,
    /// The green thread overflowed its stack. Its frames were not unwound and its stack was leaked.
    #[error("green thread overflowed its stack ({stack_size} bytes)")]
    StackOverflow {
        /// The stack size the green thread had, in bytes.
        stack_size: usize,
    },
    /// The result was already taken by [`GreenThread::join`](crate::GreenThread::join).
    #[error("the green thread's result was already taken by join()")]
    ResultTaken,
    /// The call only makes sense inside a green thread and was made from a plain OS thread.
    #[error("{0} must be called from a green thread")]
    NotInGreenThread(&'static str),
    /// The runtime was shut down before the green thread could finish.
    #[error("the green runtime was shut down")]
    RuntimeShutdown,
}

/// Errors from building, installing or shutting down a [`Runtime`](crate::Runtime).
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// A process-wide runtime is chosen once (LESSON-02): a second, conflicting choice is refused.
    #[error("a global green runtime is already installed; it is chosen once per process")]
    AlreadyInstalled,
    /// A builder value was out of range.
    #[error("invalid runtime configuration: {0}")]
    InvalidConfig(String),
    /// An OS resource (thread, poller) could not be created.
    #[error("could not start the green runtime: {0}")]
    Io(#[from] std::io::Error),
    /// Shutdown did not finish in time: some green thread kept running without yielding.
    #[error("shutdown timed out with {0} green thread(s) still alive")]
    ShutdownTimedOut(usize),
}

/// The panic payload raised inside a green thread that is killed (eventlet's `GreenletExit`).
///
/// It unwinds the green thread's stack, running destructors. Code that uses `catch_unwind` inside
/// a green thread should re-raise it (`std::panic::resume_unwind`), as it must for any payload it
/// does not own. `std::panic::resume_unwind` is used, so the panic hook is not called.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GreenletExit;

/// Turns a panic payload into the message it carries (`&str` or `String` payloads; anything else
/// is described as such).
pub fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&'static str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "non-string panic payload".to_string()
    }
}

/// The unwind payload of a fired [`Timeout`](crate::Timeout). Code that catches panics inside a
/// green thread must re-raise payloads it does not own, this one included.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeoutFired {
    pub(crate) id: u64,
}
