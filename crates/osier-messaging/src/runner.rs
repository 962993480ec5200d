//! Runs user code on an [`Executor`]: a future awaited on tokio, a blocking-style closure in a
//! green thread of the bridge, or either on tokio's blocking pool. A panic is caught where it
//! happens, with its message and its location, so a panic in an RPC method or a notification
//! endpoint never takes a server or a listener down.
//!
//! | job \ executor | `Tokio` | `Green` | `Threads` |
//! |---|---|---|---|
//! | future | awaited on the calling task | `yield_future` in a green thread | `block_on` on a blocking thread |
//! | closure | a blocking thread | a green thread | a blocking thread |

use std::future::Future;
use std::pin::Pin;

use crate::rpc::endpoint::Executor;

/// Where the last panic on this thread happened, as the panic hook saw it.
///
/// The payload a `catch_unwind` gets carries no location; the hook does. The hook installed by
/// [`note_panic_sites`] writes it here, on the panicking thread, and the catch on that same
/// thread reads it back before anything else runs there (no green switch or await between).
mod site {
    use std::cell::RefCell;
    use std::sync::Once;

    thread_local! {
        static LAST: RefCell<Option<String>> = const { RefCell::new(None) };
    }

    /// Chains a hook in front of the process's panic hook (which still runs: the panic is
    /// still printed as before) that notes each panic's location. Once per process; an
    /// application that replaces the hook later only loses the location in failures.
    pub(crate) fn note_panic_sites() {
        static ONCE: Once = Once::new();
        ONCE.call_once(|| {
            let previous = std::panic::take_hook();
            std::panic::set_hook(Box::new(move |info| {
                if let Some(l) = info.location() {
                    let at = format!("{}:{}:{}", l.file(), l.line(), l.column());
                    let _ = LAST.try_with(|s| *s.borrow_mut() = Some(at));
                }
                previous(info);
            }));
        });
    }

    /// Forgets an earlier panic's location (before running a job).
    pub(super) fn clear() {
        let _ = LAST.try_with(|s| s.borrow_mut().take());
    }

    /// The location of the panic just caught on this thread.
    pub(super) fn take() -> Option<String> {
        LAST.try_with(|s| s.borrow_mut().take()).ok().flatten()
    }
}

pub(crate) use site::note_panic_sites;

/// User code to run.
pub(crate) enum Job<T> {
    /// Blocking style: may block its thread (a green one on the green executor).
    Blocking(Box<dyn FnOnce() -> T + Send>),
    /// A future.
    Async(Pin<Box<dyn Future<Output = T> + Send>>),
}

/// Why a job gave no value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum JobError {
    /// It panicked: the message, and where when the hook saw it.
    #[error("panicked{}: {message}", at.as_ref().map(|a| format!(" at {a}")).unwrap_or_default())]
    Panicked { message: String, at: Option<String> },
    /// Its task was cancelled (the runtime shutting down).
    #[error("cancelled: {0}")]
    Cancelled(String),
    /// The green runtime could not run it.
    #[error("the green runtime could not run it: {0}")]
    Green(String),
    /// The bridge could not drive its future from the green thread.
    #[error("the bridge could not drive it: {0}")]
    Bridge(String),
}

/// A caught panic: its message and, when the hook saw it, where it happened.
type Caught = (String, Option<String>);

fn panicked((message, at): Caught) -> JobError {
    JobError::Panicked { message, at }
}

/// Runs `f`, turning a panic into its message and location.
fn catch<T>(f: impl FnOnce() -> T) -> Result<T, Caught> {
    site::clear();
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f))
        .map_err(|p| (osier_green::panic_message(&*p), site::take()))
}

/// Polls a boxed future, turning a panic into its message and location.
struct CatchUnwind<F>(F);

impl<T, F: Future<Output = T> + Unpin> Future for CatchUnwind<F> {
    type Output = Result<T, Caught>;

    fn poll(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        let fut = &mut self.0;
        match catch(|| Pin::new(fut).poll(cx)) {
            Ok(std::task::Poll::Ready(v)) => std::task::Poll::Ready(Ok(v)),
            Ok(std::task::Poll::Pending) => std::task::Poll::Pending,
            Err(c) => std::task::Poll::Ready(Err(c)),
        }
    }
}

/// Runs `job` on `executor` (see the module docs), catching a panic where it happens, inside
/// the caller's current `tracing` span whatever the executor (so a handler's log lines carry
/// its request's fields; a green thread or a future takes it from the task it runs in). On the
/// green executor the green thread is named `name` (the blocking detector names the culprit
/// by it).
pub(crate) async fn run_job<T: Send + 'static>(
    bridge: &osier_bridge::Bridge,
    executor: Executor,
    name: &str,
    job: Job<T>,
) -> Result<T, JobError> {
    // A join or green error left is a cancellation, or a panic outside the job.
    let join_err = |e: tokio::task::JoinError| match e.try_into_panic() {
        Ok(p) => panicked((osier_green::panic_message(&*p), None)),
        Err(e) => JobError::Cancelled(e.to_string()),
    };
    let green_err = |e: osier_green::GreenError| match e {
        osier_green::GreenError::Panicked(m) => panicked((m, None)),
        other => JobError::Green(other.to_string()),
    };
    match (executor, job) {
        // Already on a tokio task of its own: run the future right here.
        (Executor::Tokio, Job::Async(f)) => CatchUnwind(f).await.map_err(panicked),
        (Executor::Tokio | Executor::Threads, Job::Blocking(f)) => {
            let span = tracing::Span::current();
            tokio::task::spawn_blocking(move || span.in_scope(|| catch(f)))
                .await
                .map_err(join_err)?
                .map_err(panicked)
        }
        (Executor::Threads, Job::Async(f)) => {
            let (handle, span) = (bridge.tokio().clone(), tracing::Span::current());
            tokio::task::spawn_blocking(move || span.in_scope(|| catch(|| handle.block_on(f))))
                .await
                .map_err(join_err)?
                .map_err(panicked)
        }
        (Executor::Green, Job::Blocking(f)) => bridge
            .spawn_green_named(name, move || catch(f))
            .await
            .map_err(green_err)?
            .map_err(panicked),
        (Executor::Green, Job::Async(f)) => {
            let b = bridge.clone();
            bridge
                .spawn_green_named(name, move || b.yield_future(CatchUnwind(f)))
                .await
                .map_err(green_err)?
                .map_err(|e| JobError::Bridge(e.to_string()))?
                .map_err(panicked)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bridge() -> &'static osier_bridge::Bridge {
        static B: std::sync::OnceLock<osier_bridge::Bridge> = std::sync::OnceLock::new();
        B.get_or_init(|| osier_bridge::Bridge::builder().build().unwrap())
    }

    const ALL: [Executor; 3] = [Executor::Tokio, Executor::Green, Executor::Threads];

    /// Both kinds of job give their value on every executor.
    #[test]
    fn jobs_run_on_every_executor() {
        for ex in ALL {
            let v = bridge().tokio().block_on(async {
                let a = run_job(bridge(), ex, "t", Job::Async(Box::pin(async { 1 }))).await;
                let b = run_job(bridge(), ex, "t", Job::Blocking(Box::new(|| 2))).await;
                (a, b)
            });
            assert_eq!(v, (Ok(1), Ok(2)), "{ex:?}");
        }
    }

    /// A panic is a `Panicked` error naming this file, on every executor, for both kinds.
    #[test]
    fn a_panic_is_caught_with_its_location() {
        note_panic_sites();
        for ex in ALL {
            let (a, b) = bridge().tokio().block_on(async {
                let a = run_job::<()>(
                    bridge(),
                    ex,
                    "t",
                    Job::Async(Box::pin(async { panic!("async boom") })),
                )
                .await;
                let b = run_job::<()>(
                    bridge(),
                    ex,
                    "t",
                    Job::Blocking(Box::new(|| panic!("sync boom"))),
                )
                .await;
                (a, b)
            });
            for (r, msg) in [(a, "async boom"), (b, "sync boom")] {
                match r {
                    Err(JobError::Panicked { message, at }) => {
                        assert_eq!(message, msg, "{ex:?}");
                        assert!(
                            at.as_deref().is_some_and(|a| a.contains("runner.rs")),
                            "{ex:?}: {at:?}"
                        );
                    }
                    other => panic!("{ex:?}: {other:?}"),
                }
            }
        }
    }
}
