//! # osier-green
//!
//! Stackful green threads with the API eventlet users know, on `may`'s coroutine layer (the
//! `generator` crate) with a hub of our own. Behaviours: GREEN-01..33 (see docs/conformance.md).
//!
//! | eventlet | osier-green |
//! |---|---|
//! | `eventlet.spawn(f, *a)` | [`spawn`]`(move \|\| f(a))` → [`GreenThread`] |
//! | `eventlet.spawn_n(f)` | [`spawn_n`] |
//! | `eventlet.spawn_after(s, f)` | [`spawn_after`]`(Duration, f)` |
//! | `eventlet.sleep(0)` | [`sleep`]`(Duration::ZERO)` / [`yield_now`] |
//! | `gt.wait()` / `gt.kill()` / `gt.cancel()` / `gt.link(cb)` | [`GreenThread::wait`] (`Result<T, GreenError>`), [`kill`](GreenThread::kill), [`cancel`](GreenThread::cancel), [`link`](GreenThread::link) |
//! | `GreenPool(n)`, `pool.spawn`, `imap`, `waitall` | [`GreenPool`] |
//! | `GreenPile` | [`GreenPile`] |
//! | `event.Event()` | [`Event`] |
//! | `Semaphore`, `BoundedSemaphore` | [`Semaphore`], [`BoundedSemaphore`] |
//! | `queue.Queue(maxsize)` / `LightQueue` / `PriorityQueue` / `LifoQueue` | [`Queue`], [`LightQueue`], [`PriorityQueue`], [`LifoQueue`] (`maxsize: Option<usize>`, `Some(0)` = rendezvous) |
//! | `with Timeout(s):` / `with_timeout(s, f)` | [`Timeout::scope`], [`with_timeout`] |
//! | `eventlet.listen` / `connect` / `serve` | [`net::listen`], [`net::connect`], [`net::serve`] |
//! | `tpool.execute(f)` | [`tpool::execute`] |
//! | `debug.hub_blocking_detection(True, 0.1)` | [`Builder::watchdog`] |
//! | another hub (`eventlet.hubs.use_hub`), an event loop inside it (aioeventlet) | [`Builder::drive_with`]: an event loop of yours gives each hub its turns ([`HubDriver`]) |
//!
//! ```
//! use osier_green::{spawn, sleep, Queue};
//! use std::time::Duration;
//!
//! let q: Queue<&str> = Queue::unbounded();
//! let producer = { let q = q.clone(); spawn(move || { sleep(Duration::from_millis(1)); q.put("hi") }) };
//! let consumer = spawn(move || q.get());
//! producer.wait().unwrap();
//! assert_eq!(consumer.wait().unwrap(), "hi");
//! ```
//!
//! ## Scheduling model (GREEN-01, GREEN-06)
//!
//! A [`Runtime`] has one or more *hubs*; each hub is one OS thread that runs its green threads
//! one at a time, switching only at switch points (green I/O, `sleep`, waiting on a primitive,
//! `tpool::execute`, `yield_now`). **The default is one hub**, which keeps eventlet's guarantee
//! that no two green threads ever run at the same time. A green thread never moves to another
//! OS thread, not even after a timed wait: timers are fired by the hub itself, never by a
//! timer thread (see `docs/architecture.md` for why we do not use may's scheduler). Several hubs
//! are an explicit opt-in ([`Builder::hubs`]), with the weaker guarantee documented there.
//!
//! ## From plain OS threads
//!
//! Every primitive also works from a plain OS thread: waiting blocks that OS thread instead of
//! parking a green thread, [`sleep`] falls back to `std::thread::sleep`, [`spawn`] uses the
//! process-wide runtime, and green sockets use `poll(2)`. [`Timeout`] needs a green thread to
//! interrupt and returns [`TimeoutError::NotInGreenThread`] elsewhere.
//!
//! ## Stack overflow
//!
//! Stacks are fixed (default [`DEFAULT_STACK_SIZE`], 64 KiB of address space, configurable per
//! runtime and per spawn) with a guard page. A green thread that overflows stops there: its
//! handle reports [`GreenError::StackOverflow`], the process and every other green thread carry
//! on, but its frames are *not* unwound (destructors do not run, locks it held stay held) and
//! its stack is leaked. Large values belong on the heap (`Box`).
//!
//! ## Rules of the road
//!
//! - Never block the OS thread in a green thread (std `Mutex` held for long, `std::thread::sleep`,
//!   blocking I/O, tokio's `block_on`): it stalls every green thread of the hub. Use
//!   [`tpool::execute`]; turn on the [watchdog](Builder::watchdog) to find offenders.
//! - Do not hold a guard of thread-local state (a tracing span guard, tokio's `EnterGuard`) across
//!   a switch point: other green threads run on the same OS thread meanwhile.
//! - Kills and Timeouts unwind the green thread with a private payload ([`GreenletExit`],
//!   [`TimeoutFired`]); a `catch_unwind` in green code must re-raise payloads it does not own.
#![warn(missing_docs)]

mod doorbell;
pub mod driver;
mod error;
mod event;
mod greenthread;
mod hub;
pub mod net;
mod park;
mod pool;
mod queue;
mod runtime;
mod semaphore;
mod task;
mod timeout;
pub mod tpool;
mod waiter;
mod watchdog;

pub use driver::{driver_busy, driver_task, HubDriver, Turn};
pub use error::{panic_message, GreenError, GreenletExit, RuntimeError, TimeoutFired};
pub use event::{Event, EventError};
pub use greenthread::{
    current, current_hub, in_green_thread, sleep, spawn, spawn_after, spawn_n, yield_now, Current,
    GreenBuilder, GreenThread, LinkId,
};
pub use pool::{GreenPile, GreenPool, Imap, PoolError};
pub use queue::{
    Empty, Fifo, Full, GenericQueue, Lifo, LifoQueue, LightQueue, PriorityQueue, Queue, Smallest,
    Store, TaskDoneError,
};
pub use runtime::{Builder, Runtime, DEFAULT_STACK_SIZE};
pub use semaphore::{BoundedSemaphore, Semaphore, SemaphoreError, SemaphoreGuard};
pub use timeout::{with_timeout, with_timeout_value, Timeout, TimeoutError};
pub use waiter::{park, park_timeout, with_current_waker, Unparker};
pub use watchdog::{BlockedReport, Culprit};
