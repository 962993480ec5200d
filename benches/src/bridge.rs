//! Bridge workloads, shared by `benches/bridge.rs` and `src/bin/bridge_table.rs`.
//!
//! | workload | what one op is |
//! |---|---|
//! | `yield_ready` | `yield_future(ready(x))` from a green thread |
//! | `green_tokio_green` | a green thread sends to a tokio echo task and `yield_future`s the reply |
//! | `wrap_trivial` | a tokio task `spawn_green(trivial).await`s |
//! | `stress_hop` | one hop of `green_tokio_green` while 10k green threads hop and 10k tasks await them |
//! | `stress_local` | the same load with hops that complete on the hub (the green side's share) |
//! | `stress_hop_1k` | `stress_hop` with 1k green threads (a working set that fits in cache) |
//! | baseline `tokio_task_rt` | a tokio task sends to a tokio echo task and awaits the reply |
//! | baseline `os_tokio_os` | a plain OS thread sends to a tokio echo task and blocks for the reply: the cost of waking an idle thread twice, the floor of any hop at low load |
//! | baseline `may_pingpong` | a may coroutine round trip through two channels (1 worker) |
//!
//! Each bridge workload also runs on a second bridge built with `tokio_on_hubs` (the `*_on_hub`
//! functions): the tokio tasks (echo tasks, waiters, the task that spawns green threads) run on
//! the hub's own current-thread runtime, so a hop never leaves the hub's thread.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use osier_bridge::Bridge;

/// One bridge for the workloads' first figures: one green hub, tokio on threads of its own (a
/// multi-thread runtime with one worker per core: `tokio_on_own_threads`), so the figures
/// compare with the ones recorded before tokio ran on the hubs. The default bridge (tokio on the
/// hub) is [`bridge_on_hub`], measured beside it; `OSIER_BENCH_TOKIO_ON_HUBS=1` makes this one
/// the default bridge too, for benches that use only this one (RabbitMQ's).
pub fn bridge() -> &'static Bridge {
    static B: OnceLock<Bridge> = OnceLock::new();
    B.get_or_init(|| {
        // OSIER_BENCH_TOKIO_WORKERS overrides the worker count, to compare configurations.
        let mut b = Bridge::builder();
        if !std::env::var("OSIER_BENCH_TOKIO_ON_HUBS").is_ok_and(|v| v == "1") {
            b = b.tokio_on_own_threads();
        }
        if let Some(n) = std::env::var("OSIER_BENCH_TOKIO_WORKERS")
            .ok()
            .and_then(|v| v.parse().ok())
        {
            b = b.tokio_workers(n);
        }
        b.build().expect("bridge")
    })
}

/// The default bridge: the same configuration with a tokio runtime on the hub's own thread.
pub fn bridge_on_hub() -> &'static Bridge {
    static B: OnceLock<Bridge> = OnceLock::new();
    B.get_or_init(|| {
        let mut b = Bridge::builder().tokio_on_hubs();
        if let Some(n) = std::env::var("OSIER_BENCH_TOKIO_WORKERS")
            .ok()
            .and_then(|v| v.parse().ok())
        {
            b = b.tokio_workers(n);
        }
        b.build().expect("bridge")
    })
}

type Echo = (
    tokio::sync::mpsc::UnboundedSender<u64>,
    tokio::sync::mpsc::UnboundedReceiver<u64>,
);

/// A tokio task that answers every request with request + 1, where `spawn_on_hub` puts it (the
/// multi-thread runtime, or a hub's runtime with `tokio_on_hubs`).
fn echo_task(b: &Bridge) -> Echo {
    let (req_tx, mut req_rx) = tokio::sync::mpsc::unbounded_channel::<u64>();
    let (resp_tx, resp_rx) = tokio::sync::mpsc::unbounded_channel::<u64>();
    b.spawn_on_hub(async move {
        while let Some(v) = req_rx.recv().await {
            if resp_tx.send(v + 1).is_err() {
                return;
            }
        }
    });
    (req_tx, resp_rx)
}

pub fn yield_ready(iters: u64) -> Duration {
    yield_ready_with(bridge(), iters)
}

pub fn yield_ready_on_hub(iters: u64) -> Duration {
    yield_ready_with(bridge_on_hub(), iters)
}

fn yield_ready_with(b: &Bridge, iters: u64) -> Duration {
    let b = b.clone();
    b.green()
        .clone()
        .block_on(move || {
            let t0 = Instant::now();
            for i in 0..iters {
                std::hint::black_box(b.yield_future(std::future::ready(i)).ok());
            }
            t0.elapsed()
        })
        .expect("green")
}

pub fn green_tokio_green(iters: u64) -> Duration {
    green_tokio_green_with(bridge(), iters)
}

/// green -> a task of the same hub -> green.
pub fn green_tokio_green_on_hub(iters: u64) -> Duration {
    green_tokio_green_with(bridge_on_hub(), iters)
}

fn green_tokio_green_with(b: &Bridge, iters: u64) -> Duration {
    let b = b.clone();
    let (tx, mut rx) = echo_task(&b);
    b.green()
        .clone()
        .block_on(move || {
            let t0 = Instant::now();
            for i in 0..iters {
                let _ = tx.send(i);
                std::hint::black_box(b.yield_future(rx.recv()).ok());
            }
            t0.elapsed()
        })
        .expect("green")
}

pub fn wrap_trivial(iters: u64) -> Duration {
    wrap_trivial_with(bridge(), iters)
}

/// `spawn_green(trivial).await` from a task of the hub's runtime.
pub fn wrap_trivial_on_hub(iters: u64) -> Duration {
    wrap_trivial_with(bridge_on_hub(), iters)
}

fn wrap_trivial_with(b: &Bridge, iters: u64) -> Duration {
    let b = b.clone();
    let b2 = b.clone();
    b.tokio().block_on(async move {
        b2.spawn_on_hub({
            let b3 = b2.clone();
            async move {
                let t0 = Instant::now();
                for i in 0..iters {
                    std::hint::black_box(b3.spawn_green(move || i).await.ok());
                }
                t0.elapsed()
            }
        })
        .await
        .expect("task")
    })
}

/// ns per hop with `n` green threads x `hops` hops and `n` async waiters.
pub fn stress_hop_ns(n: usize, hops: u64) -> f64 {
    stress(bridge(), n, hops, false)
}

/// [`stress_hop_ns`] with the echo tasks and the waiters on the hub's runtime.
pub fn stress_hop_on_hub_ns(n: usize, hops: u64) -> f64 {
    stress(bridge_on_hub(), n, hops, false)
}

/// The same load, but each "hop" is a `yield_future` that completes on the hub itself
/// (`tokio::task::yield_now()` polled in place): the green side's share of a loaded hop.
pub fn stress_local_ns(n: usize, hops: u64) -> f64 {
    stress(bridge(), n, hops, true)
}

/// [`stress_local_ns`] with the waiters on the hub's runtime.
pub fn stress_local_on_hub_ns(n: usize, hops: u64) -> f64 {
    stress(bridge_on_hub(), n, hops, true)
}

fn stress(b: &Bridge, n: usize, hops: u64, local: bool) -> f64 {
    let b = b.clone();
    let t0 = Instant::now();
    let mut waiters = Vec::with_capacity(n);
    for _ in 0..n {
        let (tx, mut rx) = echo_task(&b);
        let b2 = b.clone();
        let gt = b.green().spawn(move || {
            let mut v = 0;
            for _ in 0..hops {
                if local {
                    let _ = b2.yield_future(tokio::task::yield_now());
                    v += 1;
                } else {
                    let _ = tx.send(v);
                    v = b2.yield_future(rx.recv()).ok().flatten().unwrap_or(0);
                }
            }
            v
        });
        waiters.push(b.spawn_on_hub(osier_bridge::wrap_greenthread(gt)));
    }
    b.tokio().block_on(async move {
        for w in waiters {
            let _ = w.await;
        }
    });
    t0.elapsed().as_nanos() as f64 / (n as f64 * hops as f64)
}

pub fn tokio_task_rt(iters: u64) -> Duration {
    tokio_task_rt_with(bridge(), iters)
}

/// A task -> task round trip on the hub's current-thread runtime.
pub fn tokio_task_rt_on_hub(iters: u64) -> Duration {
    tokio_task_rt_with(bridge_on_hub(), iters)
}

fn tokio_task_rt_with(b: &Bridge, iters: u64) -> Duration {
    let (tx, mut rx) = echo_task(b);
    let b2 = b.clone();
    b.tokio().block_on(async move {
        b2.spawn_on_hub(async move {
            let t0 = Instant::now();
            for i in 0..iters {
                let _ = tx.send(i);
                std::hint::black_box(rx.recv().await);
            }
            t0.elapsed()
        })
        .await
        .expect("task")
    })
}

pub fn os_tokio_os(iters: u64) -> Duration {
    let b = bridge().clone();
    let (tx, mut rx) = echo_task(&b);
    let t0 = Instant::now();
    for i in 0..iters {
        let _ = tx.send(i);
        std::hint::black_box(rx.blocking_recv());
    }
    t0.elapsed()
}

/// A may round trip (two one-way switches).
pub fn may_pingpong(iters: u64) -> Duration {
    crate::may_switch(iters * 2)
}
