//! Keeps an owner task alive: the publisher's and each listener's owner hold a connection and
//! everything sent through it, so one that ended on a panic would leave a silent zombie (a
//! server that no longer consumes, a transport whose every send fails). A panic is a bug, never
//! an input (every decode path returns an error); when one happens anyway, the owner's state is
//! kept, the panic is logged at ERROR and counted ([`owner_restarts`]), and the owner starts
//! again with a fresh connection.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures::FutureExt;

static RESTARTS: AtomicU64 = AtomicU64::new(0);

/// How many times an owner task of this process panicked and was restarted. Anything but zero
/// is a bug to report; a health check should fail on a rising count.
pub fn owner_restarts() -> u64 {
    RESTARTS.load(Ordering::Relaxed)
}

/// One run of an owner over its state.
pub(crate) type Run<S> = for<'a> fn(&'a mut S) -> Pin<Box<dyn Future<Output = ()> + Send + 'a>>;

/// Runs `run(state)` until it returns; restarts it after a panic (after `pause`, so a panic
/// that repeats does not spin).
pub(crate) async fn supervise<S: Send>(
    what: &'static str,
    state: &mut S,
    run: Run<S>,
    pause: Duration,
) {
    loop {
        match AssertUnwindSafe(run(state)).catch_unwind().await {
            Ok(()) => return,
            Err(p) => {
                RESTARTS.fetch_add(1, Ordering::Relaxed);
                let msg = osier_green::panic_message(&*p);
                tracing::error!(
                    owner = what,
                    panic = %crate::Untrusted(&msg),
                    "an AMQP owner task panicked and is restarted with a new connection (a bug: please report it)"
                );
                tokio::time::sleep(pause).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Flaky {
        runs: u32,
    }

    fn run(s: &mut Flaky) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        Box::pin(async move {
            s.runs += 1;
            if s.runs < 3 {
                panic!("boom {}", s.runs);
            }
        })
    }

    #[tokio::test]
    async fn a_panicking_owner_is_restarted_with_its_state() {
        let before = owner_restarts();
        let mut s = Flaky { runs: 0 };
        supervise("test", &mut s, run, Duration::ZERO).await;
        assert_eq!(s.runs, 3);
        assert!(owner_restarts() >= before + 2);
    }
}
