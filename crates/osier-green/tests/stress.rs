//! Stress: many green threads, many switches, contention, and cross-thread wake-ups. Every
//! result is checked, so a lost wake-up shows up as a hang (bounded by wait_timeout) or a wrong
//! sum, not as a slow test.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use osier_green::{spawn, tpool, Event, GreenBuilder, GreenPool, Queue, Runtime, Semaphore};

const LIMIT: Duration = Duration::from_secs(120);

/// 100k green threads spawned, then all joined.
#[test]
fn hundred_thousand_green_threads_spawned_and_joined() {
    let rt = Runtime::builder().build().unwrap();
    let total = rt
        .block_on(|| {
            let gts: Vec<_> = (0..100_000u64).map(|i| spawn(move || i * 2)).collect();
            gts.into_iter().map(|g| g.join().unwrap()).sum::<u64>()
        })
        .unwrap();
    assert_eq!(total, (0..100_000u64).map(|i| i * 2).sum::<u64>());
    // The count drops on the hub's turn after each thread's waiters were woken.
    let t0 = std::time::Instant::now();
    while rt.live_green_threads() != 0 && t0.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(1));
    }
    assert_eq!(rt.live_green_threads(), 0);
    rt.shutdown_timeout(Duration::from_secs(5)).unwrap();
}

/// 10k pairs ping-ponging through queues (20k green threads parked and woken in turn).
#[test]
fn ten_thousand_pairs_ping_pong_through_queues() {
    let rt = Runtime::builder().build().unwrap();
    let rounds = 20u64;
    let sum = Arc::new(AtomicU64::new(0));
    let mut gts = Vec::new();
    for _ in 0..10_000 {
        let ping: Queue<u64> = Queue::new(Some(1));
        let pong: Queue<u64> = Queue::new(Some(1));
        let (p1, q1) = (ping.clone(), pong.clone());
        gts.push(rt.spawn(move || {
            for i in 0..rounds {
                p1.put(i);
                assert_eq!(q1.get(), i + 1);
            }
        }));
        let s = sum.clone();
        gts.push(rt.spawn(move || {
            for _ in 0..rounds {
                let v = ping.get();
                s.fetch_add(1, Ordering::Relaxed);
                pong.put(v + 1);
            }
        }));
    }
    for g in gts {
        g.wait_timeout(LIMIT).expect("lost wake-up").unwrap();
    }
    assert_eq!(sum.load(Ordering::Relaxed), 10_000 * rounds);
    rt.shutdown_timeout(Duration::from_secs(5)).unwrap();
}

/// Pools under contention: many spawners share a small pool and a semaphore.
#[test]
fn pools_under_contention() {
    let rt = Runtime::builder().build().unwrap();
    let pool = GreenPool::new(8);
    let sem = Semaphore::new(3);
    let done = Arc::new(AtomicU64::new(0));
    let spawners: Vec<_> = (0..50)
        .map(|_| {
            let (pool, sem, done) = (pool.clone(), sem.clone(), done.clone());
            rt.spawn(move || {
                for _ in 0..200 {
                    let (sem, done) = (sem.clone(), done.clone());
                    pool.spawn_n(move || {
                        let _g = sem.acquire_guard();
                        osier_green::yield_now();
                        done.fetch_add(1, Ordering::Relaxed);
                    });
                }
            })
        })
        .collect();
    for s in spawners {
        s.wait_timeout(LIMIT).expect("spawner stuck").unwrap();
    }
    let p = pool.clone();
    rt.block_on(move || p.waitall()).unwrap().unwrap();
    assert_eq!(done.load(Ordering::Relaxed), 50 * 200);
    assert_eq!(pool.running(), 0);
    assert_eq!(sem.counter(), 3);
    rt.shutdown_timeout(Duration::from_secs(5)).unwrap();
}

/// Cross-thread wake-ups: four hubs plus OS threads and tpool threads wake each other's green
/// threads through events and queues; nothing is lost.
#[test]
fn cross_hub_and_os_thread_wakeups_are_not_lost() {
    let rt = Runtime::builder().hubs(4).build().unwrap();
    let n = 2_000usize;
    let q: Queue<usize> = Queue::new(Some(16));
    let events: Vec<Event<usize>> = (0..n).map(|_| Event::new()).collect();
    let waiters: Vec<_> = events
        .iter()
        .enumerate()
        .map(|(i, e)| {
            let e = e.clone();
            GreenBuilder::new()
                .hub(i)
                .spawn_on(&rt, move || e.wait().unwrap())
        })
        .collect();
    let producers: Vec<_> = (0..4)
        .map(|h| {
            let q = q.clone();
            GreenBuilder::new().hub(h).spawn_on(&rt, move || {
                for i in (h..n).step_by(4) {
                    if i % 3 == 0 {
                        q.put(tpool::execute(move || i));
                    } else {
                        q.put(i);
                    }
                }
            })
        })
        .collect();
    let evs = events.clone();
    let os = std::thread::spawn(move || {
        for _ in 0..n {
            let i = q.get();
            evs[i].send(i).unwrap();
        }
    });
    for (i, w) in waiters.into_iter().enumerate() {
        assert_eq!(w.wait_timeout(LIMIT).expect("lost wake-up"), Ok(i));
    }
    for p in producers {
        p.wait().unwrap();
    }
    os.join().unwrap();
    rt.shutdown_timeout(Duration::from_secs(5)).unwrap();
}
