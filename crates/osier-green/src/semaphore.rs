//! `Semaphore` and `BoundedSemaphore` (GREEN-18, GREEN-19).
//!
//! ```
//! use osier_green::{spawn, Semaphore};
//! use std::time::Duration;
//!
//! let sem = Semaphore::new(1);
//! let guard = sem.acquire_guard();
//! assert!(!sem.try_acquire());                                  // non-blocking: false
//! let s2 = sem.clone();
//! let gt = spawn(move || s2.acquire_timeout(Duration::from_millis(5)));
//! assert_eq!(gt.wait().unwrap(), false);                        // timed out
//! drop(guard);                                                  // release
//! assert!(sem.try_acquire());
//! ```

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::hub::lock;
use crate::waiter::{wait_until, WaitFuture, WaitList};

/// Errors of [`Semaphore`] operations.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SemaphoreError {
    /// A [`BoundedSemaphore`] release would go past its initial value (eventlet: ValueError).
    #[error("semaphore released too many times (limit {0})")]
    OverReleased(usize),
}

struct Inner {
    counter: isize,
    waiters: WaitList,
}

/// A counting semaphore. `release` always increments, even past the initial value. Waiters
/// are woken in FIFO order (eventlet does not promise an order). Cloning shares it.
#[derive(Clone)]
pub struct Semaphore {
    inner: Arc<Mutex<Inner>>,
}

impl std::fmt::Debug for Semaphore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Semaphore")
            .field("balance", &self.balance())
            .finish()
    }
}

impl Semaphore {
    /// A semaphore with `value` permits (a negative value is ruled out by the type).
    pub fn new(value: usize) -> Self {
        Semaphore {
            inner: Arc::new(Mutex::new(Inner {
                counter: value as isize,
                waiters: WaitList::default(),
            })),
        }
    }

    fn acquire_deadline(&self, deadline: Option<Instant>) -> bool {
        wait_until(
            &self.inner,
            |s| &mut s.waiters,
            deadline,
            |s| {
                if s.counter > 0 {
                    s.counter -= 1;
                    Some(())
                } else {
                    None
                }
            },
        )
        .is_ok()
    }

    /// Takes a permit, waiting as long as needed.
    pub fn acquire(&self) {
        self.acquire_deadline(None);
    }

    /// Takes a permit from async code, without blocking the executor's thread.
    pub async fn acquire_async(&self) {
        WaitFuture::new(
            &self.inner,
            |s| &mut s.waiters,
            |s: &mut Inner| {
                if s.counter > 0 {
                    s.counter -= 1;
                    Some(())
                } else {
                    None
                }
            },
        )
        .await
    }

    /// Takes a permit if one is free now (eventlet's `acquire(blocking=False)`).
    pub fn try_acquire(&self) -> bool {
        let mut g = lock(&self.inner);
        if g.counter > 0 {
            g.counter -= 1;
            true
        } else {
            false
        }
    }

    /// Takes a permit, waiting at most `timeout`; returns whether it got one.
    pub fn acquire_timeout(&self, timeout: Duration) -> bool {
        self.acquire_deadline(Some(Instant::now() + timeout))
    }

    /// Takes a permit and returns a guard that releases it on drop (the `with` form).
    pub fn acquire_guard(&self) -> SemaphoreGuard<'_> {
        self.acquire();
        SemaphoreGuard { sem: self }
    }

    /// Gives a permit back and wakes one waiter.
    pub fn release(&self) {
        let mut g = lock(&self.inner);
        g.counter += 1;
        g.waiters.notify_one();
    }

    /// True when no permit is free (counter <= 0).
    pub fn locked(&self) -> bool {
        lock(&self.inner).counter <= 0
    }

    /// Free permits minus waiters (eventlet's `balance`).
    pub fn balance(&self) -> isize {
        let g = lock(&self.inner);
        g.counter - g.waiters.len() as isize
    }

    /// Free permits now.
    pub fn counter(&self) -> isize {
        lock(&self.inner).counter
    }

    /// Callers waiting now.
    pub fn waiting(&self) -> usize {
        lock(&self.inner).waiters.len()
    }
}

/// Releases its permit on drop.
#[derive(Debug)]
pub struct SemaphoreGuard<'a> {
    sem: &'a Semaphore,
}

impl Drop for SemaphoreGuard<'_> {
    fn drop(&mut self) {
        self.sem.release();
    }
}

/// A semaphore whose `release` past the initial value is an error (GREEN-19).
#[derive(Clone, Debug)]
pub struct BoundedSemaphore {
    sem: Semaphore,
    limit: usize,
}

impl BoundedSemaphore {
    /// A bounded semaphore with `value` permits, which is also its limit.
    pub fn new(value: usize) -> Self {
        BoundedSemaphore {
            sem: Semaphore::new(value),
            limit: value,
        }
    }

    /// See [`Semaphore::acquire`].
    pub fn acquire(&self) {
        self.sem.acquire()
    }

    /// See [`Semaphore::try_acquire`].
    pub fn try_acquire(&self) -> bool {
        self.sem.try_acquire()
    }

    /// See [`Semaphore::acquire_timeout`].
    pub fn acquire_timeout(&self, timeout: Duration) -> bool {
        self.sem.acquire_timeout(timeout)
    }

    /// Gives a permit back; refused if it would exceed the initial value.
    pub fn release(&self) -> Result<(), SemaphoreError> {
        let mut g = lock(&self.sem.inner);
        if g.counter >= self.limit as isize {
            return Err(SemaphoreError::OverReleased(self.limit));
        }
        g.counter += 1;
        g.waiters.notify_one();
        Ok(())
    }

    /// See [`Semaphore::locked`].
    pub fn locked(&self) -> bool {
        self.sem.locked()
    }

    /// See [`Semaphore::balance`].
    pub fn balance(&self) -> isize {
        self.sem.balance()
    }
}
