//! `Event`: one value (or error) sent once to any number of waiters (GREEN-17).
//!
//! ```
//! use osier_green::{spawn, Event};
//!
//! let ev: Event<u32> = Event::new();
//! let waiter = { let ev = ev.clone(); spawn(move || ev.wait()) };
//! ev.send(7).unwrap();              // never yields; the waiter wakes on a later turn
//! assert_eq!(waiter.wait().unwrap(), Ok(7));
//! assert!(ev.send(8).is_err());     // a second send is refused (eventlet: AssertionError)
//! ```

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::hub::lock;
use crate::waiter::{wait_until, WaitFuture, WaitList};

/// Misuse of an [`Event`] that eventlet reports with an assertion.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum EventError {
    /// `send` on an event that was already sent (and not reset).
    #[error("event already sent")]
    AlreadySent,
    /// `reset` on an event that was never sent.
    #[error("event was never sent; nothing to reset")]
    NotSent,
}

struct Inner<T, E> {
    value: Option<Result<T, E>>,
    waiters: WaitList,
}

/// A one-shot broadcast of a value or an error. Cloning gives another handle to the same event.
pub struct Event<T, E = String> {
    inner: Arc<Mutex<Inner<T, E>>>,
}

impl<T, E> Clone for Event<T, E> {
    fn clone(&self) -> Self {
        Event {
            inner: self.inner.clone(),
        }
    }
}

impl<T, E> std::fmt::Debug for Event<T, E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Event")
            .field("ready", &lock(&self.inner).value.is_some())
            .finish()
    }
}

impl<T: Clone, E: Clone> Default for Event<T, E> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T: Clone, E: Clone> Event<T, E> {
    /// A new, unsent event.
    pub fn new() -> Self {
        Event {
            inner: Arc::new(Mutex::new(Inner {
                value: None,
                waiters: WaitList::default(),
            })),
        }
    }

    fn put(&self, v: Result<T, E>) -> Result<(), EventError> {
        let mut g = lock(&self.inner);
        if g.value.is_some() {
            return Err(EventError::AlreadySent);
        }
        g.value = Some(v);
        g.waiters.notify_all();
        Ok(())
    }

    /// Sends `value` to every current and future waiter. Never yields.
    pub fn send(&self, value: T) -> Result<(), EventError> {
        self.put(Ok(value))
    }

    /// Makes every waiter get `Err(error)` (eventlet's `send_exception`).
    pub fn send_error(&self, error: E) -> Result<(), EventError> {
        self.put(Err(error))
    }

    /// Waits until the event is sent and returns what was sent.
    pub fn wait(&self) -> Result<T, E> {
        match self.wait_deadline(None) {
            Some(v) => v,
            None => unreachable_wait(),
        }
    }

    /// Waits at most `timeout`; `None` if it was not sent in time (eventlet returns None and
    /// raises nothing).
    pub fn wait_timeout(&self, timeout: Duration) -> Option<Result<T, E>> {
        self.wait_deadline(Some(Instant::now() + timeout))
    }

    fn wait_deadline(&self, deadline: Option<Instant>) -> Option<Result<T, E>> {
        wait_until(
            &self.inner,
            |s| &mut s.waiters,
            deadline,
            |s| s.value.clone(),
        )
        .ok()
    }

    /// Waits from async code, without blocking the executor's thread.
    pub async fn wait_async(&self) -> Result<T, E> {
        WaitFuture::new(
            &self.inner,
            |s| &mut s.waiters,
            |s: &mut Inner<T, E>| s.value.clone(),
        )
        .await
    }

    /// True once sent (eventlet's `ready()`).
    pub fn ready(&self) -> bool {
        lock(&self.inner).value.is_some()
    }

    /// True if a value (not an error) was sent.
    pub fn has_result(&self) -> bool {
        matches!(lock(&self.inner).value, Some(Ok(_)))
    }

    /// True if an error was sent.
    pub fn has_error(&self) -> bool {
        matches!(lock(&self.inner).value, Some(Err(_)))
    }

    /// What was sent, without waiting.
    pub fn poll(&self) -> Option<Result<T, E>> {
        lock(&self.inner).value.clone()
    }

    /// Re-arms a sent event. Resetting an event that was never sent is refused.
    pub fn reset(&self) -> Result<(), EventError> {
        let mut g = lock(&self.inner);
        if g.value.take().is_none() {
            return Err(EventError::NotSent);
        }
        Ok(())
    }

    /// Number of callers waiting now.
    pub fn waiting(&self) -> usize {
        lock(&self.inner).waiters.len()
    }
}

#[cold]
fn unreachable_wait() -> ! {
    // wait_until without a deadline only returns once the attempt succeeds.
    unreachable!("an untimed wait returned without a value")
}
