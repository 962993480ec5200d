//! `yield_future`: a green thread waits for a future; only that green thread parks.
//!
//! The green thread polls the future **itself, on its own stack**, inside the tokio runtime's
//! context, and parks between polls; the future's `Waker` unparks it. So:
//!
//! - the future may borrow from the green thread's stack and need not be `Send` (it never leaves
//!   the green thread);
//! - tokio timers, `tokio::time::timeout`, tokio TCP and other tokio resources work inside it: the
//!   runtime context is entered for the duration of each poll and left before the green thread
//!   parks, so no thread-local state is held across a switch;
//! - a ready future costs one poll and no switch;
//! - killing the green thread (or a green `Timeout` firing) unwinds it out of the wait, and the
//!   future is dropped there, inside the runtime context.
//!
//! | aioeventlet (BRIDGE-07/08) | osier-bridge |
//! |---|---|
//! | `yield_future(coro)` wraps a coroutine in a task on the loop | [`Bridge::yield_future`] polls the future in place; [`Bridge::yield_spawned`] runs it as a tokio task |
//! | from the loop's own green thread: RuntimeError (deadlock) | from a tokio runtime thread: [`BridgeError::OnTokioThread`] |
//! | a cancelled future left the green thread parked forever | [`BridgeError::Cancelled`], [`BridgeError::RuntimeShutdown`]: never a hang |
//! | only `Exception`s were forwarded | a panic becomes [`BridgeError::Panicked`] with its message |

use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::{pin, Pin};
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};

use tracing::Instrument;

use crate::bridge::Bridge;
use crate::error::{panic_message, BridgeError};

thread_local! {
    /// Set while this OS thread polls a future for `yield_future` (no switch can happen then).
    static IN_POLL: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Holds the future being waited for and drops it inside the tokio context, also when the green
/// thread unwinds (kill, Timeout). `handle` is the runtime to enter for that; `None` when the
/// green thread's hub runs one on its thread, whose context is current already.
struct Slot<'h, F> {
    handle: Option<&'h tokio::runtime::Handle>,
    fut: Option<F>,
}

impl<F> Drop for Slot<'_, F> {
    fn drop(&mut self) {
        if self.fut.is_some() {
            let _ctx = self.handle.map(tokio::runtime::Handle::enter);
            // Drops the future in place (it is pinned; it is never moved out).
            self.fut = None;
        }
    }
}

impl<F: Future> Slot<'_, F> {
    fn poll_fut(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Option<Poll<F::Output>> {
        // SAFETY: `fut` is structurally pinned: `Slot` never moves it out (its `Drop` drops it in
        // place, and nothing else touches it), and `Slot` is `!Unpin` whenever `F` is.
        let fut = unsafe { self.map_unchecked_mut(|s| &mut s.fut) };
        fut.as_pin_mut().map(|f| f.poll(cx))
    }
}

/// Unregisters a parked caller from the bridge's shutdown list, however the wait ends.
struct Registered<'b> {
    bridge: &'b Bridge,
    slot: Option<usize>,
}

impl Drop for Registered<'_> {
    fn drop(&mut self) {
        if let Some(s) = self.slot.take() {
            self.bridge.unregister_waiter(s);
        }
    }
}

/// Restores IN_POLL even if the poll panics.
struct PollFlag;
impl PollFlag {
    fn set() -> PollFlag {
        IN_POLL.with(|f| f.set(true));
        PollFlag
    }
}
impl Drop for PollFlag {
    fn drop(&mut self) {
        IN_POLL.with(|f| f.set(false));
    }
}

impl Bridge {
    /// Waits for `fut` from a green thread, parking only that green thread (see the module docs).
    ///
    /// - From a plain OS thread it behaves like `block_on` (the OS thread blocks).
    /// - From a tokio runtime thread it is refused with [`BridgeError::OnTokioThread`], and from
    ///   inside a future it is polling with [`BridgeError::Nested`].
    /// - A panic in the future is returned as [`BridgeError::Panicked`]; a shut-down bridge gives
    ///   [`BridgeError::RuntimeShutdown`].
    ///
    /// The future is polled in place, so build tokio resources *inside* it
    /// (`async { tokio::time::sleep(d).await }`), or use [`yield_future_with`](Bridge::yield_future_with).
    /// It must not call green blocking functions (green `sleep`, `Queue::get`, ...) from inside its
    /// `poll`: it is async code; use their `_async` forms.
    pub fn yield_future<F: Future>(&self, fut: F) -> Result<F::Output, BridgeError> {
        if IN_POLL.with(|f| f.get()) {
            return Err(BridgeError::Nested);
        }
        if self.is_shutdown() {
            return Err(BridgeError::RuntimeShutdown);
        }
        if !osier_green::in_green_thread() {
            if tokio::runtime::Handle::try_current().is_ok() {
                return Err(BridgeError::OnTokioThread);
            }
            return self.block_on_os_thread(fut);
        }
        let slot = pin!(Slot {
            handle: self.runtime_to_enter(),
            fut: Some(fut),
        });
        // The green thread is its own waker; borrowing it costs nothing.
        match osier_green::with_current_waker(|waker| self.poll_loop(slot, waker)) {
            Some(r) => r,
            None => Err(BridgeError::RuntimeShutdown),
        }
    }

    fn poll_loop<F: Future>(
        &self,
        mut slot: Pin<&mut Slot<'_, F>>,
        waker: &std::task::Waker,
    ) -> Result<F::Output, BridgeError> {
        let handle = slot.handle;
        let mut cx = Context::from_waker(waker);
        let mut registered = Registered {
            bridge: self,
            slot: None,
        };
        loop {
            let polled = {
                let _ctx = handle.map(tokio::runtime::Handle::enter);
                let _flag = PollFlag::set();
                catch_unwind(AssertUnwindSafe(|| slot.as_mut().poll_fut(&mut cx)))
            };
            match polled {
                Ok(Some(Poll::Ready(v))) => return Ok(v),
                Ok(Some(Poll::Pending)) => {}
                Ok(None) => return Err(BridgeError::RuntimeShutdown),
                Err(p) => {
                    if self.is_shutdown() {
                        return Err(BridgeError::RuntimeShutdown);
                    }
                    return Err(BridgeError::Panicked(panic_message(&*p)));
                }
            }
            if registered.slot.is_none() {
                registered.slot = Some(self.register_waiter(osier_green::Unparker::current()));
            }
            if self.inner.shutdown.load(Ordering::Acquire) {
                return Err(BridgeError::RuntimeShutdown);
            }
            osier_green::park();
            if self.inner.shutdown.load(Ordering::Acquire) {
                return Err(BridgeError::RuntimeShutdown);
            }
        }
    }

    /// Builds the future with `make` inside the tokio context, then waits for it like
    /// [`yield_future`](Bridge::yield_future). For futures whose constructor needs the runtime
    /// (`tokio::time::sleep(d)` panics with "no reactor running" when built outside it).
    pub fn yield_future_with<F: Future>(
        &self,
        make: impl FnOnce() -> F,
    ) -> Result<F::Output, BridgeError> {
        let fut = {
            let _ctx = self.runtime_to_enter().map(tokio::runtime::Handle::enter);
            make()
        };
        self.yield_future(fut)
    }

    /// Runs `fut` as a tokio task (on tokio's threads, or on the green thread's own hub when the
    /// bridge runs tokio on its hubs; in the caller's current span) and waits for it from the
    /// green thread. A task that is aborted gives [`BridgeError::Cancelled`]; one
    /// that panics, [`BridgeError::Panicked`]. If the waiting green thread is killed the task is
    /// aborted.
    pub fn yield_spawned<F>(&self, fut: F) -> Result<F::Output, BridgeError>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        let handle = self
            .task_handle()
            .spawn(fut.instrument(tracing::Span::current()));
        let abort = AbortOnDrop(Some(handle.abort_handle()));
        let r = self.yield_future(handle);
        drop(abort.disarm());
        match r? {
            Ok(v) => Ok(v),
            Err(e) if e.is_cancelled() => Err(if self.is_shutdown() {
                BridgeError::RuntimeShutdown
            } else {
                BridgeError::Cancelled
            }),
            Err(e) => Err(BridgeError::Panicked(match e.try_into_panic() {
                Ok(p) => panic_message(&*p),
                Err(e) => e.to_string(),
            })),
        }
    }

    /// The runtime a green thread enters to poll a future: the multi-thread one, unless the
    /// green thread's hub runs this bridge's runtime on its thread, which is current already
    /// (entering it again would only cost).
    fn runtime_to_enter(&self) -> Option<&tokio::runtime::Handle> {
        if self.tokio_on_hubs() && self.own_hub_tokio().is_some() {
            return None;
        }
        Some(&self.inner.handle)
    }

    fn block_on_os_thread<F: Future>(&self, fut: F) -> Result<F::Output, BridgeError> {
        let handle = self.inner.handle.clone();
        match catch_unwind(AssertUnwindSafe(move || handle.block_on(fut))) {
            Ok(v) => Ok(v),
            Err(_) if self.is_shutdown() => Err(BridgeError::RuntimeShutdown),
            Err(p) => Err(BridgeError::Panicked(panic_message(&*p))),
        }
    }
}

/// Aborts a tokio task when its green waiter unwinds.
struct AbortOnDrop(Option<tokio::task::AbortHandle>);

impl AbortOnDrop {
    fn disarm(mut self) -> Self {
        self.0 = None;
        self
    }
}

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        if let Some(h) = self.0.take() {
            h.abort();
        }
    }
}

/// [`Bridge::yield_future`] on the process-wide bridge.
pub fn yield_future<F: Future>(fut: F) -> Result<F::Output, BridgeError> {
    Bridge::global().yield_future(fut)
}

/// [`Bridge::yield_future_with`] on the process-wide bridge.
pub fn yield_future_with<F: Future>(make: impl FnOnce() -> F) -> Result<F::Output, BridgeError> {
    Bridge::global().yield_future_with(make)
}

/// [`Bridge::yield_spawned`] on the process-wide bridge.
pub fn yield_spawned<F>(fut: F) -> Result<F::Output, BridgeError>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    Bridge::global().yield_spawned(fut)
}
