//! `wrap_greenthread`: async code awaits a green thread, and the rest a mixed process needs.
//!
//! | aioeventlet (BRIDGE-09/10) | osier-bridge |
//! |---|---|
//! | `wrap_greenthread(gt)` only before the thread starts; RuntimeError if running or finished | [`wrap_greenthread`] works whether it has not started, is running, or has finished |
//! | a killed green thread never resolved its future | resolves with [`GreenError::Killed`] (panics: [`GreenError::Panicked`] with the message) |
//! | - | dropping the future leaves the green thread alone; [`GreenJoin::abort_on_drop`] kills it |
//!
//! ```
//! use osier_bridge::{Bridge, wrap_greenthread};
//!
//! let bridge = Bridge::builder().build().unwrap();
//! let gt = bridge.green().spawn(|| 6 * 7);
//! let v = bridge.tokio().block_on(async move { wrap_greenthread(gt).await });
//! assert_eq!(v, Ok(42));
//! # bridge.shutdown_timeout(std::time::Duration::from_secs(1)).unwrap();
//! ```

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use osier_green::{GreenError, GreenThread};

use crate::bridge::Bridge;
use crate::error::{panic_message, BridgeError};

/// The future of a green thread's result; see [`wrap_greenthread`]. Awaiting it never blocks the
/// executor's thread (it registers a waker and returns `Pending`).
#[must_use = "futures do nothing unless awaited"]
pub struct GreenJoin<T: Send + 'static> {
    gt: GreenThread<T>,
    fut: Pin<Box<dyn Future<Output = Result<T, GreenError>> + Send>>,
    abort_on_drop: bool,
    done: bool,
}

impl<T: Send + 'static> std::fmt::Debug for GreenJoin<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GreenJoin")
            .field("green_thread", &self.gt)
            .field("abort_on_drop", &self.abort_on_drop)
            .finish()
    }
}

impl<T: Send + 'static> GreenJoin<T> {
    /// Kills the green thread if this future is dropped before it completes (tokio's
    /// `AbortHandle`-on-drop pattern). Off by default.
    pub fn abort_on_drop(mut self) -> Self {
        self.abort_on_drop = true;
        self
    }

    /// The green thread behind this future.
    pub fn green_thread(&self) -> &GreenThread<T> {
        &self.gt
    }
}

impl<T: Send + 'static> Future for GreenJoin<T> {
    type Output = Result<T, GreenError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let r = self.fut.as_mut().poll(cx);
        if r.is_ready() {
            self.done = true;
        }
        r
    }
}

impl<T: Send + 'static> Drop for GreenJoin<T> {
    fn drop(&mut self) {
        if self.abort_on_drop && !self.done {
            // From a non-green thread this sets the kill and wakes the target; it never blocks.
            self.gt.kill();
        }
    }
}

/// Awaits a green thread from async code (BRIDGE-09, BRIDGE-10 fixed). Resolves with its value,
/// or an error that tells [`GreenError::Panicked`] (with the message) from [`GreenError::Killed`].
pub fn wrap_greenthread<T: Send + 'static>(gt: GreenThread<T>) -> GreenJoin<T> {
    let fut = Box::pin(gt.clone().join_async());
    GreenJoin {
        gt,
        fut,
        abort_on_drop: false,
        done: false,
    }
}

impl Bridge {
    /// Spawns a green thread from async code and returns an awaitable handle. The green thread
    /// runs inside the caller's current `tracing` span, entered only while it runs.
    pub fn spawn_green<T, F>(&self, f: F) -> GreenJoin<T>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        let gt = osier_green::GreenBuilder::new()
            .instrument(tracing::Span::current())
            .spawn_on(self.green(), f);
        wrap_greenthread(gt)
    }

    /// [`spawn_green`](Self::spawn_green) with a name for the green thread: the blocking
    /// detector names it when it holds its hub, and `osier_green::current()` shows it.
    pub fn spawn_green_named<T, F>(&self, name: impl Into<String>, f: F) -> GreenJoin<T>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        let gt = osier_green::GreenBuilder::new()
            .name(name)
            .instrument(tracing::Span::current())
            .spawn_on(self.green(), f);
        wrap_greenthread(gt)
    }

    /// Runs a blocking call on tokio's blocking pool from async code (asyncio's
    /// `run_in_executor`). From a green thread use `osier_green::tpool::execute`.
    pub async fn run_blocking<T, F>(&self, f: F) -> Result<T, BridgeError>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        match self.inner.handle.spawn_blocking(f).await {
            Ok(v) => Ok(v),
            Err(e) if e.is_cancelled() => Err(BridgeError::Cancelled),
            Err(e) => Err(BridgeError::Panicked(match e.try_into_panic() {
                Ok(p) => panic_message(&*p),
                Err(e) => e.to_string(),
            })),
        }
    }
}

/// [`Bridge::spawn_green`] on the process-wide bridge.
pub fn spawn_green<T, F>(f: F) -> GreenJoin<T>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    Bridge::global().spawn_green(f)
}
