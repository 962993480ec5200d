//! Workloads shared by the criterion benches (`benches/green.rs`) and the side-by-side table
//! runner (`src/bin/green_table.rs`, used by `cargo xtask bench-eventlet`).
//!
//! Every workload takes an iteration count and returns the wall time of the whole batch, so
//! criterion's `iter_custom` and the table runner measure exactly the same code. The osier and
//! may workloads run *inside* a green thread / coroutine (that is where the API is used), the
//! tokio ones inside `block_on`.
//!
//! | workload | osier-green | may (1 worker) | tokio |
//! |---|---|---|---|
//! | spawn + wait | `spawn(f).join()` | `go!(f).join()` | `spawn(f).await` |
//! | one-way switch | ping-pong through two green `Queue`s | two `may::sync::mpsc` channels | two `mpsc::unbounded_channel`s |
//! | `sleep(0)` | `sleep(Duration::ZERO)` | `coroutine::yield_now()` | `task::yield_now()` |
//! | pool of trivial jobs | `GreenPool(1000).spawn_n` + `waitall` | spawn + join in batches of 1000 | spawn + join in batches of 1000 |
//! | memory per parked unit | 10k green threads parked on an `Event` | 10k coroutines parked on a channel | 10k tasks parked on a oneshot |
#![allow(missing_docs)]

pub mod amqp;
pub mod bridge;
pub mod messaging;
pub mod observe;

use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The osier runtime used by every osier workload: one hub, the defaults.
pub fn osier_rt() -> &'static osier_green::Runtime {
    static RT: OnceLock<osier_green::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        osier_green::Runtime::builder()
            .build()
            .expect("start osier runtime")
    })
}

/// Configures may once: one worker, the configuration the green runtime is compared with.
pub fn may_init() {
    static INIT: OnceLock<()> = OnceLock::new();
    INIT.get_or_init(|| {
        may::config().set_workers(1);
    });
}

pub fn tokio_mt() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("tokio")
    })
}

pub fn tokio_ct() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("tokio")
    })
}

fn in_green(f: impl FnOnce() -> Duration + Send + 'static) -> Duration {
    osier_rt().block_on(f).expect("osier workload")
}

fn in_may(f: impl FnOnce() -> Duration + Send + 'static) -> Duration {
    may_init();
    // SAFETY: the closure neither uses thread-local storage across yields nor blocks the
    // worker thread with non-may blocking calls (may's documented requirements for `spawn`).
    let h = unsafe { may::coroutine::spawn(f) };
    h.join().expect("may workload")
}

// ---------------------------------------------------------------- spawn + wait

pub fn osier_spawn_wait(iters: u64) -> Duration {
    in_green(move || {
        let t0 = Instant::now();
        for i in 0..iters {
            std::hint::black_box(osier_green::spawn(move || i).join().ok());
        }
        t0.elapsed()
    })
}

pub fn may_spawn_wait(iters: u64) -> Duration {
    in_may(move || {
        let t0 = Instant::now();
        for i in 0..iters {
            // SAFETY: as in `in_may`.
            let h = unsafe { may::coroutine::spawn(move || i) };
            std::hint::black_box(h.join().ok());
        }
        t0.elapsed()
    })
}

pub fn tokio_spawn_wait(rt: &tokio::runtime::Runtime, iters: u64) -> Duration {
    rt.block_on(async move {
        let t0 = Instant::now();
        for i in 0..iters {
            std::hint::black_box(tokio::spawn(async move { i }).await.ok());
        }
        t0.elapsed()
    })
}

// ---------------------------------------------------------------- one-way switch

/// Returns the time of `iters` one-way switches (`iters / 2` round trips).
pub fn osier_switch(iters: u64) -> Duration {
    in_green(move || {
        let rounds = iters.div_ceil(2);
        let ping: osier_green::Queue<u64> = osier_green::Queue::unbounded();
        let pong: osier_green::Queue<u64> = osier_green::Queue::unbounded();
        let (p2, q2) = (ping.clone(), pong.clone());
        let echo = osier_green::spawn(move || {
            for _ in 0..rounds {
                let v = p2.get();
                q2.put(v);
            }
        });
        let t0 = Instant::now();
        for i in 0..rounds {
            ping.put(i);
            std::hint::black_box(pong.get());
        }
        let el = t0.elapsed();
        echo.join().expect("echo");
        el
    })
}

pub fn may_switch(iters: u64) -> Duration {
    in_may(move || {
        let rounds = iters.div_ceil(2);
        let (ping_tx, ping_rx) = may::sync::mpsc::channel::<u64>();
        let (pong_tx, pong_rx) = may::sync::mpsc::channel::<u64>();
        // SAFETY: as in `in_may`.
        let echo = unsafe {
            may::coroutine::spawn(move || {
                for _ in 0..rounds {
                    let v = ping_rx.recv().expect("ping");
                    pong_tx.send(v).expect("pong");
                }
            })
        };
        let t0 = Instant::now();
        for i in 0..rounds {
            ping_tx.send(i).expect("send");
            std::hint::black_box(pong_rx.recv().expect("recv"));
        }
        let el = t0.elapsed();
        echo.join().expect("echo");
        el
    })
}

pub fn tokio_switch(rt: &tokio::runtime::Runtime, iters: u64) -> Duration {
    rt.block_on(async move {
        let rounds = iters.div_ceil(2);
        let (ping_tx, mut ping_rx) = tokio::sync::mpsc::unbounded_channel::<u64>();
        let (pong_tx, mut pong_rx) = tokio::sync::mpsc::unbounded_channel::<u64>();
        let echo = tokio::spawn(async move {
            for _ in 0..rounds {
                let Some(v) = ping_rx.recv().await else {
                    return;
                };
                let _ = pong_tx.send(v);
            }
        });
        let t0 = Instant::now();
        for i in 0..rounds {
            let _ = ping_tx.send(i);
            std::hint::black_box(pong_rx.recv().await);
        }
        let el = t0.elapsed();
        let _ = echo.await;
        el
    })
}

// ---------------------------------------------------------------- sleep(0)

pub fn osier_sleep0(iters: u64) -> Duration {
    in_green(move || {
        let t0 = Instant::now();
        for _ in 0..iters {
            osier_green::sleep(Duration::ZERO);
        }
        t0.elapsed()
    })
}

pub fn may_yield(iters: u64) -> Duration {
    in_may(move || {
        let t0 = Instant::now();
        for _ in 0..iters {
            may::coroutine::yield_now();
        }
        t0.elapsed()
    })
}

pub fn tokio_yield(rt: &tokio::runtime::Runtime, iters: u64) -> Duration {
    rt.block_on(async move {
        tokio::spawn(async move {
            let t0 = Instant::now();
            for _ in 0..iters {
                tokio::task::yield_now().await;
            }
            t0.elapsed()
        })
        .await
        .expect("yield task")
    })
}

// ---------------------------------------------------------------- pool of trivial jobs

pub fn osier_pool(jobs: u64) -> Duration {
    in_green(move || {
        let pool = osier_green::GreenPool::new(1000);
        let t0 = Instant::now();
        for i in 0..jobs {
            pool.spawn_n(move || {
                std::hint::black_box(i);
            });
        }
        pool.waitall().expect("waitall");
        t0.elapsed()
    })
}

pub fn may_pool(jobs: u64) -> Duration {
    in_may(move || {
        let t0 = Instant::now();
        let mut left = jobs;
        while left > 0 {
            let n = left.min(1000);
            let hs: Vec<_> = (0..n)
                .map(|i| {
                    // SAFETY: as in `in_may`.
                    unsafe {
                        may::coroutine::spawn(move || {
                            std::hint::black_box(i);
                        })
                    }
                })
                .collect();
            for h in hs {
                let _ = h.join();
            }
            left -= n;
        }
        t0.elapsed()
    })
}

pub fn tokio_pool(rt: &tokio::runtime::Runtime, jobs: u64) -> Duration {
    rt.block_on(async move {
        let t0 = Instant::now();
        let mut left = jobs;
        while left > 0 {
            let n = left.min(1000);
            let hs: Vec<_> = (0..n)
                .map(|i| {
                    tokio::spawn(async move {
                        std::hint::black_box(i);
                    })
                })
                .collect();
            for h in hs {
                let _ = h.await;
            }
            left -= n;
        }
        t0.elapsed()
    })
}

// ---------------------------------------------------------------- memory per parked unit

/// Resident set size of this process, in bytes (Linux).
pub fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

/// Bytes of RSS per green thread parked on an Event, for `n` threads.
pub fn osier_parked_bytes(n: usize) -> f64 {
    let rt = osier_rt();
    let before = rss_bytes();
    let ev: osier_green::Event<()> = osier_green::Event::new();
    let gts: Vec<_> = (0..n)
        .map(|_| {
            let e = ev.clone();
            rt.spawn(move || {
                let _ = e.wait();
            })
        })
        .collect();
    while ev.waiting() < n {
        std::thread::sleep(Duration::from_millis(1));
    }
    let after = rss_bytes();
    ev.send(()).expect("send");
    for g in gts {
        g.join().expect("join");
    }
    after.saturating_sub(before) as f64 / n as f64
}

pub fn may_parked_bytes(n: usize) -> f64 {
    may_init();
    let before = rss_bytes();
    let (tx, rx) = may::sync::mpmc::channel::<()>();
    let parked = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let hs: Vec<_> = (0..n)
        .map(|_| {
            let rx = rx.clone();
            let p = parked.clone();
            // SAFETY: as in `in_may`.
            unsafe {
                may::coroutine::spawn(move || {
                    p.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    let _ = rx.recv();
                })
            }
        })
        .collect();
    while parked.load(std::sync::atomic::Ordering::SeqCst) < n {
        std::thread::sleep(Duration::from_millis(1));
    }
    std::thread::sleep(Duration::from_millis(20));
    let after = rss_bytes();
    for _ in 0..n {
        let _ = tx.send(());
    }
    for h in hs {
        let _ = h.join();
    }
    after.saturating_sub(before) as f64 / n as f64
}

pub fn tokio_parked_bytes(rt: &tokio::runtime::Runtime, n: usize) -> f64 {
    let before = rss_bytes();
    let mut txs = Vec::with_capacity(n);
    let mut hs = Vec::with_capacity(n);
    let parked = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    for _ in 0..n {
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        txs.push(tx);
        let p = parked.clone();
        hs.push(rt.spawn(async move {
            p.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let _ = rx.await;
        }));
    }
    while parked.load(std::sync::atomic::Ordering::SeqCst) < n {
        std::thread::sleep(Duration::from_millis(1));
    }
    let after = rss_bytes();
    for tx in txs {
        let _ = tx.send(());
    }
    rt.block_on(async move {
        for h in hs {
            let _ = h.await;
        }
    });
    after.saturating_sub(before) as f64 / n as f64
}
