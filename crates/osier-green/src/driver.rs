//! Driving hubs from an event loop of your own.
//!
//! A hub normally runs its own loop: it runs green threads, fires their timers and sleeps in its
//! socket poller. [`Builder::drive_with`](crate::Builder::drive_with) hands each hub thread to a
//! function of yours instead, with a [`HubDriver`]; that function runs its event loop (tokio's
//! current-thread runtime, in osier-bridge) and gives the hub turns:
//!
//! - [`HubDriver::turn`] runs green threads until none is runnable or a budget ran out, and says
//!   what the hub waits for next ([`Turn`]);
//! - when the hub is idle, your loop sleeps until the earliest of: the [`Turn::Idle`] deadline,
//!   the hub's poller becoming readable (its descriptor, [`AsRawFd`]), or the waker given to
//!   [`HubDriver::set_waker`] being woken: from another thread that hands the hub work, and from
//!   this thread when code that is not a green thread (a task of your loop) wakes a green thread
//!   or spawns one here.
//!
//! Green threads, their timers and their sockets still never leave the hub's thread, so a green
//! thread and the tasks of a loop on the same thread can hand work to each other without waking
//! another thread. Everything else stays as with the hub's own loop: one green thread at a time
//! per hub (GREEN-01), the same order of turns.
//!
//! If the function returns before the hub is finished (the runtime shut down and its green
//! threads ended), the hub carries on with its own loop, so no green thread is lost.
//!
//! ```
//! use std::task::{Wake, Waker};
//! use std::sync::Arc;
//! use osier_green::{Runtime, Turn};
//!
//! // The simplest driver there is: a loop that parks its thread while the hub is idle.
//! struct Unpark(std::thread::Thread);
//! impl Wake for Unpark {
//!     fn wake(self: Arc<Self>) { self.0.unpark() }
//! }
//!
//! let rt = Runtime::builder()
//!     .drive_with(|mut hub| {
//!         hub.set_waker(&Waker::from(Arc::new(Unpark(std::thread::current()))));
//!         loop {
//!             match hub.turn(64, false) {
//!                 Turn::Busy => {}
//!                 Turn::Idle { deadline } => match deadline {
//!                     Some(d) => std::thread::park_timeout(d.saturating_duration_since(std::time::Instant::now())),
//!                     None => std::thread::park(),
//!                 },
//!                 Turn::Finished => return,
//!                 _ => {}
//!             }
//!         }
//!     })
//!     .build()
//!     .unwrap();
//! assert_eq!(rt.block_on(|| 6 * 7).unwrap(), 42);
//! rt.shutdown_timeout(std::time::Duration::from_secs(1)).unwrap();
//! ```
//! (A driver that sleeps like this one must also watch the poller's descriptor when the hub has
//! sockets; [`Turn::Idle`] comes with that in mind.)

use std::os::fd::{AsRawFd, RawFd};
use std::sync::Arc;
use std::task::Waker;
use std::time::Instant;

use crate::hub::{self, HubLoop, Step};

/// What a hub's [`turn`](HubDriver::turn) ended with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Turn {
    /// Green threads are still runnable (the budget ran out): give the hub another turn soon,
    /// after your loop's own work if you like.
    Busy,
    /// Nothing to run until `deadline` (the hub's next timer), an event on the poller, or a
    /// wake-up through the registered waker.
    Idle {
        /// When the hub's next timer is due, if it has one.
        deadline: Option<Instant>,
    },
    /// The runtime shut down and the hub's green threads have ended: return from the driver.
    Finished,
}

/// One hub, handed to the function given to [`Builder::drive_with`](crate::Builder::drive_with)
/// on the hub's own thread (see the [module docs](crate::driver)). It stays on that thread (`!Send`).
pub struct HubDriver {
    hub: HubLoop,
}

impl std::fmt::Debug for HubDriver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HubDriver")
            .field("hub", &self.hub.shared().index)
            .finish_non_exhaustive()
    }
}

impl HubDriver {
    pub(crate) fn new(hub: HubLoop) -> HubDriver {
        HubDriver { hub }
    }

    /// The hub's index in its runtime.
    pub fn index(&self) -> usize {
        self.hub.shared().index
    }

    /// The waker to wake when the hub has work while it is idle: from other threads (a green
    /// thread handed over, woken or spawned there), and from this thread outside a turn. Call
    /// it before every [`turn`](HubDriver::turn) that may end idle, as a future re-registers
    /// its waker before it returns `Pending`; an unchanged waker costs a comparison.
    pub fn set_waker(&self, waker: &Waker) {
        self.hub.set_driver_waker(waker);
    }

    /// Runs the hub: due timers fire, work handed over from other threads is taken, and
    /// runnable green threads run one at a time until none is left or `budget` of them ran.
    /// `io_ready`: the poller's descriptor was seen readable (its events are taken first).
    pub fn turn(&mut self, budget: u32, io_ready: bool) -> Turn {
        match self.hub.turn(budget.max(1), io_ready) {
            Step::More => Turn::Busy,
            Step::Idle { deadline, .. } => Turn::Idle { deadline },
            Step::Exited => Turn::Finished,
        }
    }
}

/// The hub's socket poller: readable when a green socket of the hub has an event. It reports
/// new events only (edge-triggered): after it was seen readable, pass `io_ready` to the next
/// [`turn`](HubDriver::turn), which takes all of them.
impl AsRawFd for HubDriver {
    fn as_raw_fd(&self) -> RawFd {
        self.hub.poll_fd()
    }
}

/// Tells the blocking detector what the event loop driving this thread's hub does between the
/// hub's turns: `true` when it runs work of its own (its tasks), `false` just before it sleeps.
/// A hub's loop counts as busy from the end of each turn, so a loop need only call this when it
/// sleeps and when it wakes (tokio's `on_thread_park` / `on_thread_unpark`), and now and then
/// while it works (a timer every quarter of the watchdog's threshold): each call while busy is
/// progress, and a loop busy for longer than the threshold without one is reported as blocked
/// by a task. Does nothing on a thread that is not a driven hub's, or inside a turn.
pub fn driver_busy(busy: bool) {
    hub::with_hub(|h| h.set_driver_busy(busy, None));
}

/// Names the task of the driving loop that runs now (`None` when it ends), so a stall it causes
/// is reported by name. Call it on the hub's thread around each poll of the task.
pub fn driver_task(name: Option<Arc<str>>) {
    let busy = name.is_some();
    hub::with_hub(|h| h.set_driver_busy(true, name.filter(|_| busy)));
}

/// The function [`Builder::drive_with`](crate::Builder::drive_with) runs on each hub thread.
#[derive(Clone)]
pub(crate) struct DriveFn(pub(crate) Arc<dyn Fn(HubDriver) + Send + Sync>);

impl std::fmt::Debug for DriveFn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DriveFn")
    }
}
