//! Runs a request's handler on its [`Executor`] (through [`crate::runner`]), turns a panic into
//! a `Panic` failure naming where it happened, and logs what failed, so a panic in user code
//! never takes a server down.

// An outcome carries its failure by value: it is the reply itself, built once per request.
#![allow(clippy::result_large_err)]

use serde_json::Value;

use crate::context::RequestContext;
use crate::driver::Dict;
use crate::error::Failure;
use crate::rpc::endpoint::{Executor, Handler};
use crate::runner::{run_job, Job, JobError};

/// The failure for a panic: class `Panic`, the panic message, and a traceback naming where
/// it happened.
fn panic_failure(msg: String, at: Option<String>) -> Failure {
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
    method: &str,
    h: Handler,
    ctx: RequestContext,
    args: Dict,
) -> Result<Value, Failure> {
    let job = match h {
        Handler::Async(f) => Job::Async(f(ctx, args)),
        Handler::Blocking(f) => Job::Blocking(Box::new(move || f(ctx, args))),
    };
    let r = run_job(bridge, executor, method, job)
        .await
        .map_err(|e| match e {
            JobError::Panicked { message, at } => panic_failure(message, at),
            JobError::Cancelled(m) => Failure::new("Cancelled", "osier", m),
            JobError::Green(m) => Failure::new("GreenThreadError", "osier", m),
            JobError::Bridge(m) => Failure::new("BridgeError", "osier", m),
        });
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
