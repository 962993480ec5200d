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

/// Polls a boxed future, turning a panic into its message.
struct CatchUnwind<F>(F);

impl<T, F: std::future::Future<Output = T> + Unpin> std::future::Future for CatchUnwind<F> {
    type Output = Result<T, String>;

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        let fut = &mut self.0;
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            std::pin::Pin::new(fut).poll(cx)
        })) {
            Ok(std::task::Poll::Ready(v)) => std::task::Poll::Ready(Ok(v)),
            Ok(std::task::Poll::Pending) => std::task::Poll::Pending,
            Err(p) => std::task::Poll::Ready(Err(osier_green::panic_message(&*p))),
        }
    }
}

fn panic_failure(msg: String) -> Failure {
    let mut f = Failure::new("Panic", "osier", msg);
    f.tb = vec!["the endpoint panicked; the server keeps serving".into()];
    f
}

pub(crate) async fn run(
    bridge: &osier_bridge::Bridge,
    executor: Executor,
    h: Handler,
    ctx: RequestContext,
    args: Dict,
) -> Result<Value, Failure> {
    let join_err = |e: tokio::task::JoinError| match e.try_into_panic() {
        Ok(p) => panic_failure(osier_green::panic_message(&*p)),
        Err(e) => Failure::new("Cancelled", "osier", e.to_string()),
    };
    let green_err = |e: osier_green::GreenError| match e {
        osier_green::GreenError::Panicked(m) => panic_failure(m),
        other => Failure::new("GreenThreadError", "osier", other.to_string()),
    };
    let r: Result<Result<Value, EndpointError>, Failure> = match (executor, h) {
        // Already on a tokio task of its own: run the future right here, catching a panic.
        (Executor::Tokio, Handler::Async(f)) => {
            CatchUnwind(f(ctx, args)).await.map_err(panic_failure)
        }
        (Executor::Tokio | Executor::Threads, Handler::Blocking(f)) => {
            tokio::task::spawn_blocking(move || f(ctx, args))
                .await
                .map_err(join_err)
        }
        (Executor::Threads, Handler::Async(f)) => {
            let handle = bridge.tokio().clone();
            tokio::task::spawn_blocking(move || handle.block_on(f(ctx, args)))
                .await
                .map_err(join_err)
        }
        (Executor::Green, Handler::Blocking(f)) => bridge
            .spawn_green(move || f(ctx, args))
            .await
            .map_err(green_err),
        (Executor::Green, Handler::Async(f)) => {
            let b = bridge.clone();
            bridge
                .spawn_green(move || b.yield_future(f(ctx, args)))
                .await
                .map_err(green_err)
                .and_then(|r| r.map_err(|e| Failure::new("BridgeError", "osier", e.to_string())))
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
