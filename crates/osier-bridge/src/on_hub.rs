//! Tokio on the hub's own thread: each green hub also runs a current-thread tokio runtime, so a
//! green thread and the tokio tasks it talks to share one OS thread and hand work to each other
//! without waking another thread ([`Builder::tokio_on_hubs`](crate::Builder::tokio_on_hubs)).
//!
//! Each hub thread builds a current-thread runtime and runs it (`Runtime::block_on`) for the
//! hub's whole life. The hub itself is one task of that runtime ([`HubTask`]): each poll gives
//! the hub a turn of at most [`BUDGET`] green threads; when green threads are left it wakes
//! itself and lets the runtime's other tasks run first; when the hub is idle it waits, as any
//! task does, on a tokio timer (the hub's next green timer) and on the hub's socket poller (its
//! descriptor registered with tokio's reactor), and its waker is the one the hub wakes when
//! another thread hands it work. So both sides park in one place, tokio's I/O driver, and:
//!
//! - a green thread that wakes a task of its hub (a channel send) pushes it on the runtime's
//!   local queue; a task that wakes a green thread of its hub queues it on the hub and pushes
//!   the hub task; neither wakes a thread or makes a system call;
//! - wake-ups from other threads (other hubs, the multi-thread runtime, lapin's I/O threads)
//!   reach the runtime's inject queue and wake the hub thread from `epoll_wait`;
//! - one green thread runs at a time, and never while a task of the hub runs (one OS thread),
//!   so GREEN-01 holds for tasks and green threads together: neither preempts the other.
//!
//! The hub task is polled without tokio's cooperative budget (`unconstrained`): the green threads
//! it runs poll tokio resources through `yield_future`, and a budget spent by the first few
//! would make every later poll in the turn return `Pending` for nothing. The turn's own bound,
//! [`BUDGET`] green threads, keeps the hub from starving the runtime's tasks.

use std::future::Future;
use std::pin::Pin;
use std::sync::mpsc;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use osier_green::{HubDriver, Turn};
use tokio::io::unix::AsyncFd;

/// Green threads run per poll of the hub task before the runtime's other tasks get a turn
/// (tokio polls 61 tasks between looks at its I/O; a hub turn counts as one of them).
pub(crate) const BUDGET: u32 = 61;

/// What a hub thread reports once its runtime is up (or why it is not).
pub(crate) type Started = (usize, std::io::Result<tokio::runtime::Handle>);

/// The body of a hub thread: builds the hub's runtime, reports its handle, and runs the hub as a
/// task of it until the hub is finished. Without a runtime (it could not be built) the hub runs
/// its own loop, and the error is reported so the bridge's builder fails.
pub(crate) fn drive(hub: HubDriver, started: mpsc::Sender<Started>, watchdog: Option<Duration>) {
    let index = hub.index();
    // The blocking detector counts the runtime's own work (its tasks) as it counts green
    // threads', and its sleep as the hub's.
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .on_thread_park(|| osier_green::driver_busy(false))
        .on_thread_unpark(|| osier_green::driver_busy(true))
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            let _ = started.send((index, Err(e)));
            return;
        }
    };
    let task = {
        let _ctx = rt.enter();
        match HubTask::new(hub) {
            Ok(t) => t,
            Err((hub, e)) => {
                let _ = started.send((index, Err(e)));
                // Dropped, the driver runs the hub's own loop until the bridge stops it.
                drop(hub);
                return;
            }
        }
    };
    let _ = started.send((index, Ok(rt.handle().clone())));
    drop(started);
    let hub = rt.spawn(tokio::task::unconstrained(OnThisThread(task)));
    if let Some(threshold) = watchdog {
        // Proof that the runtime keeps turning while it is busy: a task that blocks the thread
        // stops this too, and the detector reports the hub blocked by a task.
        rt.spawn(async move {
            let mut tick = tokio::time::interval((threshold / 4).max(Duration::from_millis(1)));
            loop {
                tick.tick().await;
                osier_green::driver_busy(true);
            }
        });
    }
    if let Err(e) = rt.block_on(hub) {
        // A panic in a green thread stops at its own stack; one here is in the hub's loop.
        tracing::error!(hub = index, error = %e, "the tokio task running green hub ended abnormally");
    }
    // The runtime and the tasks still on it end here, on the hub's thread. A blocking call still
    // running on its blocking pool (a handler of the threads executor) is not waited for beyond
    // a grace: the bridge's shutdown joins this thread.
    rt.shutdown_timeout(BLOCKING_GRACE);
}

/// How long a hub's runtime waits, once the hub is finished, for calls on its blocking pool.
const BLOCKING_GRACE: Duration = Duration::from_secs(1);

/// The hub as a task of its runtime (see the module docs).
struct HubTask {
    /// The hub, registered with tokio's reactor by its socket poller's descriptor.
    hub: AsyncFd<HubDriver>,
    timer: Pin<Box<tokio::time::Sleep>>,
    /// What `timer` is set to, to reset it only when the hub's next deadline changes.
    timer_at: Option<Instant>,
}

impl HubTask {
    /// Registers the hub's poller with the current runtime's reactor.
    fn new(hub: HubDriver) -> Result<HubTask, (HubDriver, std::io::Error)> {
        // SAFETY: the descriptor is the hub's poller (its epoll instance), owned by the driver
        // for the driver's whole life and never replaced; the `AsyncFd` owns the driver, so the
        // descriptor stays open and the same until the `AsyncFd` is dropped (and deregistered).
        let hub = unsafe { AsyncFd::register_with_interest(hub, tokio::io::Interest::READABLE) }
            .map_err(|e| e.into_parts())?;
        Ok(HubTask {
            hub,
            timer: Box::pin(tokio::time::sleep_until(tokio::time::Instant::now())),
            timer_at: None,
        })
    }
}

impl Future for HubTask {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        this.hub.get_ref().set_waker(cx.waker());
        loop {
            let io_ready = match this.hub.poll_read_ready(cx) {
                Poll::Ready(Ok(mut ready)) => {
                    // Cleared before the turn takes the events: one arriving after is told again.
                    ready.clear_ready();
                    true
                }
                Poll::Ready(Err(e)) => {
                    tracing::error!(hub = this.hub.get_ref().index(), error = %e, "green hub poller failed in tokio's reactor");
                    false
                }
                Poll::Pending => false,
            };
            match this.hub.get_mut().turn(BUDGET, io_ready) {
                Turn::Finished => return Poll::Ready(()),
                Turn::Busy => {
                    // The runtime's other tasks first, then the hub again.
                    cx.waker().wake_by_ref();
                    return Poll::Pending;
                }
                Turn::Idle { deadline } => {
                    if let Some(at) = deadline {
                        if this.timer_at != Some(at) {
                            this.timer_at = Some(at);
                            this.timer.as_mut().reset(at.into());
                        }
                        if this.timer.as_mut().poll(cx).is_ready() {
                            // Due already: another turn fires it.
                            this.timer_at = None;
                            continue;
                        }
                    }
                    // Readiness taken above was cleared: look again, which registers the waker
                    // for the next event (or finds one that came during the turn).
                    if !io_ready {
                        return Poll::Pending;
                    }
                }
                _ => return Poll::Pending,
            }
        }
    }
}

/// A future that is polled and dropped on the thread that made it only, handed to `spawn`
/// (which asks for `Send`).
struct OnThisThread<F>(F);

// SAFETY: the only `OnThisThread` is the hub task, spawned on the hub's current-thread runtime
// in `drive`. A current-thread runtime polls its tasks only inside `Runtime::block_on`, and the
// `Runtime` never leaves the hub thread (`drive` builds it, blocks on it and drops it there),
// so the task is polled on the hub thread only; it is dropped there too, when it completes or
// when the runtime is dropped at the end of `drive`. Its `JoinHandle` (awaited by `drive`) is
// the only other handle, and it is never aborted.
unsafe impl<F> Send for OnThisThread<F> {}

impl<F: Future + Unpin> Future for OnThisThread<F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        Pin::new(&mut self.0).poll(cx)
    }
}

/// A task that names itself to the blocking detector while it is polled
/// ([`Bridge::spawn_on_hub_named`](crate::Bridge::spawn_on_hub_named)).
pub(crate) struct Named<F> {
    pub(crate) name: Arc<str>,
    pub(crate) fut: Pin<Box<F>>,
}

impl<F: Future> Future for Named<F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        osier_green::driver_task(Some(self.name.clone()));
        let r = self.fut.as_mut().poll(cx);
        osier_green::driver_task(None);
        r
    }
}
