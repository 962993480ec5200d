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
//! The tokio runtime is always driven by its own threads; the green hubs never drive it and it
//! never runs green threads. [`yield_future`] polls the future *in place* on the green thread's
//! stack, inside the tokio context for the duration of each poll only, and parks the green thread
//! between polls; the future's waker is an `osier_green::Unparker`. A hop from a green thread to
//! tokio and back therefore costs the two cross-thread wake-ups a hand-off between any two
//! threads costs, and nothing is held across a switch.
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
