//! Stress: many green threads hopping to tokio and back while many tokio tasks await green
//! threads. Every result is checked and every wait is bounded, so a lost wake-up or a deadlock
//! fails the test instead of hanging it.
//!
//! Full size (10k green threads x 100 hops, 10k async waiters; the tightest configuration
//! repeated 20 times) runs with `OSIER_STRESS_FULL=1`, which `cargo xtask ci` sets for a release
//! build of this test. Without it the same shapes run smaller, so the debug suite stays fast.

use std::time::{Duration, Instant};

use osier_bridge::{wrap_greenthread, Bridge};

struct Size {
    green: usize,
    hops: u64,
    repeats: usize,
}

fn size() -> Size {
    if std::env::var("OSIER_STRESS_FULL").is_ok_and(|v| v == "1") {
        Size {
            green: 10_000,
            hops: 100,
            repeats: 20,
        }
    } else {
        Size {
            green: 500,
            hops: 20,
            repeats: 2,
        }
    }
}

/// One run: `n` green threads, each doing `hops` round trips through its own tokio echo task
/// (green -> tokio -> green), while `n` tokio tasks await the green threads with
/// wrap_greenthread. The tasks go where `spawn_on_hub` puts them: the multi-thread runtime, or
/// with `tokio_on_hubs` the hubs' runtimes in turn. Returns ns per hop.
fn run(b: &Bridge, n: usize, hops: u64) -> f64 {
    let t0 = Instant::now();
    let mut waiters = Vec::with_capacity(n);
    for i in 0..n {
        let (req_tx, mut req_rx) = tokio::sync::mpsc::unbounded_channel::<u64>();
        let (resp_tx, mut resp_rx) = tokio::sync::mpsc::unbounded_channel::<u64>();
        b.spawn_on_hub(async move {
            while let Some(v) = req_rx.recv().await {
                if resp_tx.send(v + 1).is_err() {
                    return;
                }
            }
        });
        let b2 = b.clone();
        let gt = b.green().spawn(move || {
            let mut v = i as u64;
            for _ in 0..hops {
                req_tx.send(v).expect("echo task alive");
                v = b2
                    .yield_future(resp_rx.recv())
                    .expect("bridge up")
                    .expect("echo reply");
            }
            v
        });
        waiters.push(b.spawn_on_hub(wrap_greenthread(gt)));
    }
    let b2 = b.clone();
    let results = b.tokio().block_on(async move {
        let mut out = Vec::with_capacity(waiters.len());
        for w in waiters {
            out.push(w.await);
        }
        tokio::time::timeout(Duration::from_secs(1), async {})
            .await
            .ok();
        drop(b2);
        out
    });
    for (i, r) in results.into_iter().enumerate() {
        let v = r.expect("waiter task").expect("green thread");
        assert_eq!(v, i as u64 + hops, "green thread {i} got a wrong result");
    }
    t0.elapsed().as_nanos() as f64 / (n as f64 * hops as f64)
}

fn bounded<T: Send + 'static>(what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(Duration::from_secs(600))
        .unwrap_or_else(|_| panic!("{what}: no result in 600 s (deadlock or lost wake-up)"))
}

/// The default configuration: one green hub with tokio on its thread, two tokio workers beside.
#[test]
fn green_hops_and_async_waiters_default_config() {
    let s = size();
    bounded("default config", move || {
        let b = Bridge::builder().build().unwrap();
        let ns = run(&b, s.green, s.hops);
        eprintln!(
            "default config: {} x {} hops, {ns:.0} ns per hop",
            s.green, s.hops
        );
        b.shutdown_timeout(Duration::from_secs(5)).unwrap();
    });
}

/// The tightest configuration with tokio on its own threads (one green hub, one tokio worker,
/// every hop a hand-off between the two threads), repeated.
#[test]
fn green_hops_and_async_waiters_tightest_config_repeated() {
    let s = size();
    bounded("tightest config", move || {
        for rep in 0..s.repeats {
            let b = Bridge::builder()
                .green_hubs(1)
                .tokio_workers(1)
                .tokio_on_own_threads()
                .build()
                .unwrap();
            let ns = run(&b, s.green, s.hops);
            eprintln!("tightest config, run {rep}: {ns:.0} ns per hop");
            b.shutdown_timeout(Duration::from_secs(5)).unwrap();
        }
    });
}

/// The same hops with tokio on the hub's own thread (one hub): every hop is local to it; fewer
/// repeats (each is quicker, and the default configuration above runs this mode too).
#[test]
fn green_hops_and_async_waiters_with_tokio_on_the_hub() {
    let s = size();
    bounded("tokio on the hub", move || {
        for rep in 0..s.repeats.min(5) {
            let b = Bridge::builder()
                .green_hubs(1)
                .tokio_workers(1)
                .tokio_on_hubs()
                .build()
                .unwrap();
            let ns = run(&b, s.green, s.hops);
            eprintln!("tokio on the hub, run {rep}: {ns:.0} ns per hop");
            b.shutdown_timeout(Duration::from_secs(5)).unwrap();
        }
    });
}

/// Tokio on two hubs: green threads and tasks are spread over both, so hops also cross from one
/// hub's thread to the other's (remote wake-ups through each runtime's inject queue).
#[test]
fn green_hops_and_async_waiters_across_two_hubs_with_tokio_on_each() {
    let s = size();
    bounded("tokio on two hubs", move || {
        let b = Bridge::builder()
            .green_hubs(2)
            .tokio_workers(1)
            .tokio_on_hubs()
            .build()
            .unwrap();
        let ns = run(&b, s.green, s.hops);
        eprintln!("tokio on two hubs: {ns:.0} ns per hop");
        b.shutdown_timeout(Duration::from_secs(5)).unwrap();
    });
}
