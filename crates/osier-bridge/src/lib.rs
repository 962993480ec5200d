//! # osier-bridge
//!
//! Green threads and tokio in one process, so one component can move to async while its
//! neighbours stay green: aioeventlet's job (BRIDGE-01..12), done without
//! its holes.
//!
//! | aioeventlet / asyncio | osier-bridge |
//! |---|---|
//! | `asyncio.set_event_loop_policy(aioeventlet.EventLoopPolicy())` | [`Bridge::builder`]`()...install()`: both runtimes, chosen once |
//! | `aioeventlet.yield_future(fut)` in a green thread | [`yield_future`]`(fut)`: only the green thread parks |
//! | `loop.create_task(coro)` + `yield_future(task)` | [`yield_spawned`]`(fut)`: a tokio task, awaited from green |
//! | `aioeventlet.wrap_greenthread(gt)` | [`wrap_greenthread`]`(gt).await` |
//! | `eventlet.spawn(f)` from a coroutine + wrap | [`spawn_green`]`(f).await` |
//! | `loop.run_in_executor(None, f)` | [`Bridge::run_blocking`] (async side), `osier_green::tpool::execute` (green side) |
//! | eventlet `Queue`/`Event` from asyncio: not thread-safe | `Queue::get_async`, `Event::wait_async`, `Semaphore::acquire_async` |
//! | an asyncio queue from a green thread | `yield_future(rx.recv())` on any tokio channel |
//!
//! ```
//! use osier_bridge::Bridge;
//! use std::time::Duration;
//!
//! let bridge = Bridge::builder().build().unwrap();
//!
//! // green -> async: a green thread awaits a tokio future
//! let b = bridge.clone();
//! let gt = bridge.green().spawn(move || {
//!     b.yield_future(async { tokio::time::sleep(Duration::from_millis(1)).await; "from async" })
//! });
//!
//! // async -> green: a tokio task awaits green threads
//! let b = bridge.clone();
//! let (a, g) = bridge.tokio().block_on(async move {
//!     let a = osier_bridge::wrap_greenthread(gt).await;
//!     let g = b.spawn_green(|| { osier_green::sleep(Duration::from_millis(1)); "from green" }).await;
//!     (a, g)
//! });
//! assert_eq!(a.unwrap().unwrap(), "from async");
//! assert_eq!(g.unwrap(), "from green");
//! bridge.shutdown_timeout(Duration::from_secs(1)).unwrap();
//! ```
//!
//! ## Design (see `docs/architecture.md`)
//!
//! [`yield_future`] polls the future *in place* on the green thread's stack and parks the green
//! thread between polls; the future's waker is an `osier_green::Unparker`. Where tokio runs is
//! the bridge's choice:
//!
//! - **on the hub's own thread** (the default, [`Builder::tokio_on_hubs`]): each hub also runs a
//!   current-thread runtime, with the hub as one of its tasks, so a green thread and the tasks of
//!   its hub hand work to each other on one thread, with no wake-up of another thread (a hop costs
//!   a few hundred nanoseconds instead of tens of microseconds). [`Bridge::spawn_on_hub`] starts
//!   such tasks; the multi-thread runtime ([`Bridge::tokio`]) stays for parallel async work;
//! - **on threads of its own only** ([`Builder::tokio_on_own_threads`], and always for a bridge
//!   over a green runtime it did not start): the hubs never drive tokio and it never runs green
//!   threads. Each poll enters tokio's context for that poll only, and a hop from a green thread
//!   to tokio and back costs the two cross-thread wake-ups a hand-off between any two threads
//!   costs.
//!
//! ```
//! use osier_bridge::Bridge;
//!
//! let bridge = Bridge::builder().build().unwrap(); // tokio on the hub: the default
//! let b = bridge.clone();
//! let same_thread = bridge.green().block_on(move || {
//!     // a task of this green thread's hub, awaited from the green thread: one OS thread
//!     let task = b.spawn_on_hub(async { std::thread::current().id() });
//!     b.yield_future(task).unwrap().unwrap() == std::thread::current().id()
//! });
//! assert!(same_thread.unwrap());
//! bridge.shutdown_timeout(std::time::Duration::from_secs(1)).unwrap();
//! ```
//!
//! Either way nothing thread-local is held across a switch: tokio's context is entered for one
//! poll (or, on a hub, is the hub thread's own for its whole life).
//!
//! ## Tracing
//!
//! Spans cross the boundary both ways: [`spawn_green`] runs the green thread inside the caller's
//! span (entered by the hub only while the green thread runs), [`yield_spawned`] instruments the
//! tokio task with the green thread's span, and [`yield_future`] polls inside the green thread's
//! span. No span guard is ever held across a green switch.
#![warn(missing_docs)]

mod bridge;
mod error;
mod on_hub;
mod wrap;
mod yield_future;

pub use bridge::{Bridge, Builder, TokioFlavor};
pub use error::BridgeError;
pub use osier_green::GreenError as JoinError;
pub use wrap::{spawn_green, wrap_greenthread, GreenJoin};
pub use yield_future::{yield_future, yield_future_with, yield_spawned};
