//! The runner that puts a handler on its [`Executor`] (tokio, a green thread, a native thread
//! pool), turns a panic into a `Panic` failure and logs what failed, so a panic in user code
//! never takes a server down.

// An outcome carries its failure by value: it is the reply itself, built once per request.
#![allow(clippy::result_large_err)]

use serde_json::Value;

use crate::context::RequestContext;
use crate::driver::Dict;
use crate::error::Failure;
use crate::rpc::endpoint::{EndpointError, Executor, Handler};

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
    pub(super) fn note_panic_sites() {
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

    /// Forgets an earlier panic's location (before running a handler).
    pub(super) fn clear() {
        let _ = LAST.try_with(|s| s.borrow_mut().take());
    }

    /// The location of the panic just caught on this thread.
    pub(super) fn take() -> Option<String> {
        LAST.try_with(|s| s.borrow_mut().take()).ok().flatten()
    }
}

/// A caught panic: its message and, when the hook saw it, where it happened.
type Caught = (String, Option<String>);

/// Runs `f`, turning a panic into its message and location.
fn catch<T>(f: impl FnOnce() -> T) -> Result<T, Caught> {
    site::clear();
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f))
        .map_err(|p| (osier_green::panic_message(&*p), site::take()))
}

/// Polls a boxed future, turning a panic into its message and location.
struct CatchUnwind<F>(F);

impl<T, F: std::future::Future<Output = T> + Unpin> std::future::Future for CatchUnwind<F> {
    type Output = Result<T, Caught>;

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        let fut = &mut self.0;
        match catch(|| std::pin::Pin::new(fut).poll(cx)) {
            Ok(std::task::Poll::Ready(v)) => std::task::Poll::Ready(Ok(v)),
            Ok(std::task::Poll::Pending) => std::task::Poll::Pending,
            Err(c) => std::task::Poll::Ready(Err(c)),
        }
    }
}

/// The failure for a panic: class `Panic`, the panic message, and a traceback naming where
/// it happened.
fn panic_failure((msg, at): Caught) -> Failure {
    let mut f = Failure::new("Panic", "osier", msg);
    f.tb = match at {
        Some(at) => vec![format!(
            "the endpoint panicked at {at}; the server keeps serving"
        )],
        None => vec!["the endpoint panicked; the server keeps serving".into()],
    };
    f
}

pub(crate) async fn run(
    bridge: &osier_bridge::Bridge,
    executor: Executor,
    h: Handler,
    ctx: RequestContext,
    args: Dict,
) -> Result<Value, Failure> {
    site::note_panic_sites();
    // A panic is caught where it happens (its location is noted on that thread); a join or
    // green error left is a cancellation, or a panic outside the handler.
    let join_err = |e: tokio::task::JoinError| match e.try_into_panic() {
        Ok(p) => panic_failure((osier_green::panic_message(&*p), None)),
        Err(e) => Failure::new("Cancelled", "osier", e.to_string()),
    };
    let green_err = |e: osier_green::GreenError| match e {
        osier_green::GreenError::Panicked(m) => panic_failure((m, None)),
        other => Failure::new("GreenThreadError", "osier", other.to_string()),
    };
    let caught = |r: Result<Result<Value, EndpointError>, Caught>| r.map_err(panic_failure);
    let r: Result<Result<Value, EndpointError>, Failure> = match (executor, h) {
        // Already on a tokio task of its own: run the future right here, catching a panic.
        (Executor::Tokio, Handler::Async(f)) => caught(CatchUnwind(f(ctx, args)).await),
        (Executor::Tokio | Executor::Threads, Handler::Blocking(f)) => {
            tokio::task::spawn_blocking(move || catch(|| f(ctx, args)))
                .await
                .map_err(join_err)
                .and_then(caught)
        }
        (Executor::Threads, Handler::Async(f)) => {
            let handle = bridge.tokio().clone();
            tokio::task::spawn_blocking(move || catch(|| handle.block_on(f(ctx, args))))
                .await
                .map_err(join_err)
                .and_then(caught)
        }
        (Executor::Green, Handler::Blocking(f)) => bridge
            .spawn_green(move || catch(|| f(ctx, args)))
            .await
            .map_err(green_err)
            .and_then(caught),
        (Executor::Green, Handler::Async(f)) => {
            let b = bridge.clone();
            bridge
                .spawn_green(move || b.yield_future(CatchUnwind(f(ctx, args))))
                .await
                .map_err(green_err)
                .and_then(|r| r.map_err(|e| Failure::new("BridgeError", "osier", e.to_string())))
                .and_then(caught)
        }
    };
    match r {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => {
            if e.expected {
                tracing::debug!(class = %e.class, message = %e.message, "expected endpoint failure");
            } else {
                tracing::error!(class = %e.class, message = %e.message, "endpoint failed");
            }
            Err(e.into_failure())
        }
        Err(f) => {
            tracing::error!(class = %f.class, message = %f.message, "endpoint failed");
            Err(f)
        }
    }
}
