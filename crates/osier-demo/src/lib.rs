//! # osier-demo: a service leaving green threads, stage by stage
//!
//! A metering service shaped like Ceilometer, the first service OpenStack's plan for leaving
//! eventlet meant to move: a notification listener taking `compute.instance.*` samples, a store
//! writing them to a database, an RPC API answering `get_samples` and `statistics`, and a
//! periodic task folding samples into aggregates. A load generator plays the rest of the
//! fleet and checks every answer.
//!
//! It runs in four [stages](stage::Stage), each moving one component from green threads to
//! async, as the plan did. Every stage gives the same answers, so a fleet can mix them:
//!
//! | eventlet / asyncio (Python) | here |
//! |---|---|
//! | `eventlet.monkey_patch()`, `oslo_messaging.get_notification_listener(..., executor='eventlet')` | [`listener::green_on_blocking`]: `NotificationEndpoint::on`, `Executor::Green` |
//! | `eventlet.tpool.execute(session.add, sample)` | `osier_green::tpool::execute(move \|\| store.insert(&s))` |
//! | `async def info(...)` with `loop.run_in_executor(None, session.add, sample)` | [`listener::async_on_blocking`]: `on_async`, `Bridge::run_blocking` |
//! | `aioeventlet.yield_future(conn.fetch(...))` in green code | [`api::green_on_async`]: `osier_bridge::yield_future(store.samples(..))` |
//! | `FixedIntervalLoopingCall(aggregate).start(interval)` | [`aggregator::GreenAggregator`], then [`aggregator::AsyncAggregator`] (`LoopingCall`) |
//! | `service.launch(conf, MeteringService()).wait()` | [`launch::run_stage`]: a `ServiceLauncher`, with a `GreenService` (stages 0-2) or a `Service` (stage 3) |
//!
//! ```text
//! cargo run --profile demo -p osier-demo                        # the four stages, a table, a chart
//! cargo run --profile demo -p osier-demo -- --stage 3           # one stage as a long-running service
//! cargo run --profile demo -p osier-demo -- --url rabbit://guest:guest@127.0.0.1:5672/ \
//!     --db postgres://postgres@127.0.0.1:5432/test
//! ```
//!
//! Code map: [`sample`] (what a notification must carry), [`store`] (the schema, blocking and
//! async drivers for SQLite and PostgreSQL), [`listener`], [`api`], [`aggregator`] (the
//! components, in each stage's shape), [`service`] (a stage's service assembled), [`load`]
//! (the load generator and checker), [`launch`] (one stage under the launcher), [`tour`] (all
//! four, each in a process of its own, with progress bars), [`report`] and [`chart`] (the
//! closing table and SVG).

pub mod aggregator;
pub mod api;
pub mod chart;
pub mod launch;
pub mod listener;
pub mod load;
pub mod report;
pub mod sample;
pub mod service;
pub mod stage;
pub mod store;
pub mod tour;

/// Locks `m`, taking the data even if a holder panicked: the demo's shared state (a store's
/// connection, a task handle) stays usable after a panic in one handler.
pub(crate) fn locked<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
