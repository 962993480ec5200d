//! Work handed to tasks of their own and counted until the last of it ends, so that whoever
//! handed it out can wait for it: an RPC server's requests, a notification listener's
//! notifications (or batches).
//!
//! Each task holds a [`Held`] while it runs. The count goes down when the `Held` is dropped,
//! however the task ends: finished, or unwound by a panic. Panics in a handler are caught
//! before they reach the task, so one that unwinds a task is a bug of osier's: it is logged,
//! and the task still counts as ended, so a `wait()` never hangs on it.
//!
//! The tasks are spawned on their own (not into a `JoinSet` to be reaped): a task that ends
//! wakes nobody unless it is the last one and someone is waiting.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::sync::Notify;

/// The count of tasks holding a [`Held`], and a way to wait until it is zero.
#[derive(Debug, Default)]
pub(crate) struct InFlight {
    count: AtomicUsize,
    idle: Notify,
}

/// One task's place in an [`InFlight`], given back when dropped.
#[derive(Debug)]
pub(crate) struct Held(Arc<InFlight>);

impl InFlight {
    /// Counts one more task until the returned `Held` is dropped.
    pub(crate) fn hold(self: &Arc<Self>) -> Held {
        self.count.fetch_add(1, Ordering::AcqRel);
        Held(self.clone())
    }

    /// How many tasks hold a place now.
    pub(crate) fn count(&self) -> usize {
        self.count.load(Ordering::Acquire)
    }

    /// Waits until no task holds a place (at once if none does).
    pub(crate) async fn idle(&self) {
        loop {
            // Made before the count is read: `notify_waiters` reaches a `Notified` from the
            // moment it is made, polled or not, so the last drop cannot slip in between.
            let idle = self.idle.notified();
            if self.count() == 0 {
                return;
            }
            idle.await;
        }
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        if std::thread::panicking() {
            tracing::error!(
                "a task handling a message panicked (a bug of osier: please report it)"
            );
        }
        if self.0.count.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn idle_waits_for_the_last_held_place() {
        let f = Arc::new(InFlight::default());
        let (a, b) = (f.hold(), f.hold());
        assert_eq!(f.count(), 2);
        let waiting = tokio::spawn({
            let f = f.clone();
            async move { f.idle().await }
        });
        drop(a);
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiting.is_finished(), "one task still holds a place");
        drop(b);
        tokio::time::timeout(Duration::from_secs(5), waiting)
            .await
            .expect("idle once the last place is given back")
            .unwrap();
        assert_eq!(f.count(), 0);
    }

    #[tokio::test]
    async fn a_task_that_panics_gives_its_place_back() {
        let f = Arc::new(InFlight::default());
        let held = f.hold();
        let task = tokio::spawn(async move {
            let _held = held;
            panic!("a bug");
        });
        assert!(task.await.unwrap_err().is_panic());
        tokio::time::timeout(Duration::from_secs(5), f.idle())
            .await
            .expect("the unwound task counts as ended");
    }

    #[tokio::test]
    async fn idle_with_nothing_held_returns_at_once() {
        InFlight::default().idle().await;
    }
}
