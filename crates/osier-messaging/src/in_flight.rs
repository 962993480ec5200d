//! Work handed to tasks of their own and counted until the last of it ends, so that whoever
//! handed it out can wait for it: an RPC server's requests, a notification listener's
//! notifications (or batches).
//!
//! [`InFlight::spawn`] spawns each task holding a [`Held`]. The count goes up before the task
//! is spawned, and down when its `Held` is dropped, however the task ends: finished, or unwound
//! by a panic. Panics in a handler are caught
//! before they reach the task, so one that unwinds a task is a bug of osier's: it is logged,
//! and the task still counts as ended, so a `wait()` never hangs on it.
//!
//! The tasks are spawned on their own (not into a `JoinSet` to be reaped): a task that ends
//! wakes nobody unless it is the last one and someone is waiting.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::sync::Notify;

/// The count of tasks holding a [`Held`], and a way to wait until it is zero.
#[derive(Debug)]
pub(crate) struct InFlight {
    count: AtomicUsize,
    idle: Notify,
    /// What each task handles ("request", "notification"), for the log line of a panic.
    what: &'static str,
}

/// One task's place in an [`InFlight`], given back when dropped.
#[derive(Debug)]
struct Held(Arc<InFlight>);

impl InFlight {
    /// Nothing in flight yet; each task will handle one `what` ("request", "notification").
    pub(crate) fn new(what: &'static str) -> Self {
        InFlight {
            count: AtomicUsize::new(0),
            idle: Notify::new(),
            what,
        }
    }

    /// Spawns `task` on the current tokio runtime, counted from now until it ends.
    pub(crate) fn spawn<F>(self: &Arc<Self>, task: F)
    where
        F: std::future::Future<Output = ()> + Send + 'static,
    {
        let held = self.hold();
        // Boxed: a request's task is about 1.2 KB and a notification's 0.8 KB, and tokio moves
        // a task's future by value several times between `spawn` and the end of the task (into
        // its cell, and each change of its stage). Moving a pointer instead took 1.2k-1.5k
        // instructions off a call and a cast, for one more allocation (callgrind).
        tokio::spawn(Box::pin(async move {
            let _held = held;
            task.await;
        }));
    }

    /// Counts one more task until the returned `Held` is dropped.
    fn hold(self: &Arc<Self>) -> Held {
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
                handling = self.0.what,
                "a task handling a message panicked: a bug of osier, please report it"
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
        let f = Arc::new(InFlight::new("request"));
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

    /// A subscriber writing every line into a buffer, for this thread.
    fn logged() -> (
        Arc<std::sync::Mutex<Vec<u8>>>,
        tracing::subscriber::DefaultGuard,
    ) {
        let buf = Arc::new(std::sync::Mutex::new(Vec::new()));
        let b = buf.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_writer(move || Line(b.clone()))
            .finish();
        (buf, tracing::subscriber::set_default(subscriber))
    }

    struct Line(Arc<std::sync::Mutex<Vec<u8>>>);

    impl std::io::Write for Line {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[tokio::test]
    async fn a_task_that_panics_gives_its_place_back_and_is_logged() {
        let (lines, _guard) = logged();
        let f = Arc::new(InFlight::new("notification"));
        // On this test's one thread, so the task logs through this thread's subscriber.
        f.spawn(async { panic!("a bug") });
        tokio::time::timeout(Duration::from_secs(5), f.idle())
            .await
            .expect("the unwound task counts as ended");
        let lines = String::from_utf8(lines.lock().unwrap().clone()).unwrap();
        assert!(
            lines.contains("ERROR")
                && lines.contains("handling=\"notification\"")
                && lines.contains("panicked"),
            "{lines}"
        );
    }

    #[tokio::test]
    async fn a_task_that_ends_logs_nothing() {
        let (lines, _guard) = logged();
        let f = Arc::new(InFlight::new("request"));
        drop(f.hold());
        f.idle().await;
        assert!(lines.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn idle_with_nothing_held_returns_at_once() {
        // Bounded, so a wait that never ends fails the test instead of hanging it.
        tokio::time::timeout(Duration::from_secs(5), InFlight::new("request").idle())
            .await
            .expect("nothing to wait for");
    }
}
