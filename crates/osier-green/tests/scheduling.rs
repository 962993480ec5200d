//! The scheduling model (GREEN-01, GREEN-06, GREEN-29): with the default single hub, green
//! threads never run at the same time and never leave their hub's OS thread, under sleeps,
//! timeouts, primitives, tpool calls and I/O.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::ThreadId;
use std::time::Duration;

use osier_green::{
    net, sleep, spawn, tpool, with_timeout, yield_now, Event, GreenBuilder, Queue, Runtime,
    Semaphore,
};

/// GREEN-01: many green threads doing a non-atomic read-modify-write on shared state between
/// switch points never interleave, so no update is lost. With real parallelism (or preemption)
/// the load/compute/store sequence below would lose updates.
#[test]
fn single_hub_read_modify_write_never_interleaves() {
    let rt = Runtime::builder().build().unwrap();
    let counter = Arc::new(AtomicU64::new(0));
    let threads = 200;
    let rounds = 200;
    let gts: Vec<_> = (0..threads)
        .map(|i| {
            let c = counter.clone();
            rt.spawn(move || {
                for r in 0..rounds {
                    let v = c.load(Ordering::Relaxed); // read
                    let mut x = v;
                    for k in 0..50u64 {
                        x = std::hint::black_box(x.wrapping_add(k) ^ k); // work between read and write
                    }
                    let _ = x;
                    c.store(v + 1, Ordering::Relaxed); // write
                    match (i + r) % 4 {
                        0 => yield_now(),
                        1 => sleep(Duration::from_micros(50)),
                        2 => sleep(Duration::ZERO),
                        _ => {}
                    }
                }
            })
        })
        .collect();
    for g in gts {
        g.wait().unwrap();
    }
    assert_eq!(counter.load(Ordering::Relaxed), threads * rounds);
    rt.shutdown_timeout(Duration::from_secs(2)).unwrap();
}

/// GREEN-01: at most one green thread of a single-hub runtime is ever inside a section, even
/// across switch kinds, and every resume happens on the same OS thread (timed wake-ups are fired
/// by the hub itself, not by a timer thread).
#[test]
fn single_hub_resumes_every_green_thread_on_one_os_thread() {
    let rt = Runtime::builder().build().unwrap();
    let inside = Arc::new(AtomicUsize::new(0));
    let max_inside = Arc::new(AtomicUsize::new(0));
    let seen: Arc<Mutex<Vec<ThreadId>>> = Arc::new(Mutex::new(Vec::new()));
    let q: Queue<u32> = Queue::new(Some(4));
    let ev: Event<()> = Event::new();
    let sem = Semaphore::new(2);
    let listener = rt.block_on(|| net::listen("127.0.0.1:0")).unwrap().unwrap();
    let addr = listener.local_addr().unwrap();
    let server = rt.spawn(move || {
        for _ in 0..8 {
            let (mut c, _) = listener.accept().unwrap();
            spawn(move || {
                use std::io::{Read, Write};
                let mut b = [0u8; 1];
                while c.read(&mut b).map(|n| n == 1).unwrap_or(false) {
                    c.write_all(&b).unwrap();
                }
            });
        }
    });
    let mut gts = Vec::new();
    for i in 0..8u32 {
        let (inside, max_inside, seen) = (inside.clone(), max_inside.clone(), seen.clone());
        let (q, ev, sem) = (q.clone(), ev.clone(), sem.clone());
        gts.push(rt.spawn(move || {
            use std::io::{Read, Write};
            let mut conn = net::connect(addr).unwrap();
            let note = || {
                seen.lock().unwrap().push(std::thread::current().id());
                let now = inside.fetch_add(1, Ordering::SeqCst) + 1;
                max_inside.fetch_max(now, Ordering::SeqCst);
                std::hint::black_box((0..1000).sum::<u32>());
                inside.fetch_sub(1, Ordering::SeqCst);
            };
            for r in 0..20u32 {
                note();
                match r % 6 {
                    0 => sleep(Duration::from_micros(200)),
                    1 => {
                        let _ = with_timeout(Duration::from_micros(100), || {
                            sleep(Duration::from_millis(5))
                        });
                    }
                    2 => {
                        q.put(i);
                        let _ = q.get();
                    }
                    3 => {
                        let _g = sem.acquire_guard();
                        sleep(Duration::ZERO);
                    }
                    4 => {
                        tpool::execute(|| std::thread::sleep(Duration::from_micros(100)));
                    }
                    _ => {
                        conn.write_all(&[r as u8]).unwrap();
                        let mut b = [0u8; 1];
                        conn.read_exact(&mut b).unwrap();
                        assert_eq!(b[0], r as u8);
                    }
                }
                note();
            }
            let _ = ev.wait_timeout(Duration::from_micros(10));
        }));
    }
    for g in gts {
        g.wait().unwrap();
    }
    server.wait().unwrap();
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 8 * 20 * 2);
    assert!(
        seen.iter().all(|t| *t == seen[0]),
        "a green thread ran on another OS thread"
    );
    assert_eq!(max_inside.load(Ordering::SeqCst), 1);
    rt.shutdown_timeout(Duration::from_secs(2)).unwrap();
}

/// The opt-in multi-hub mode has the documented weaker guarantee: green threads on different
/// hubs run at the same time (each sees the other's flag while it spins without yielding).
#[test]
fn multi_hub_runs_green_threads_in_parallel() {
    let rt = Runtime::builder().hubs(2).build().unwrap();
    let a = Arc::new(AtomicBool::new(false));
    let b = Arc::new(AtomicBool::new(false));
    let spin = |mine: Arc<AtomicBool>, other: Arc<AtomicBool>| {
        move || {
            mine.store(true, Ordering::SeqCst);
            let t0 = std::time::Instant::now();
            // no yield: only true parallelism lets the other side set its flag
            while !other.load(Ordering::SeqCst) {
                if t0.elapsed() > Duration::from_secs(5) {
                    return false;
                }
                std::hint::spin_loop();
            }
            true
        }
    };
    let g1 = GreenBuilder::new()
        .hub(0)
        .spawn_on(&rt, spin(a.clone(), b.clone()));
    let g2 = GreenBuilder::new().hub(1).spawn_on(&rt, spin(b, a));
    assert!(g1.wait().unwrap());
    assert!(g2.wait().unwrap());
    rt.shutdown_timeout(Duration::from_secs(2)).unwrap();
}

/// A green thread's own spawns stay on its hub in multi-hub mode.
#[test]
fn multi_hub_spawns_from_green_thread_stay_on_its_hub() {
    let rt = Runtime::builder().hubs(2).build().unwrap();
    for hub in 0..2 {
        let got = GreenBuilder::new()
            .hub(hub)
            .spawn_on(&rt, || {
                let me = osier_green::current().unwrap().hub;
                let child = spawn(|| osier_green::current().unwrap().hub)
                    .wait()
                    .unwrap();
                (me, child)
            })
            .wait()
            .unwrap();
        assert_eq!(got, (hub, hub));
    }
    rt.shutdown_timeout(Duration::from_secs(2)).unwrap();
}

/// GREEN-29: timers use the monotonic clock and fire in deadline order.
#[test]
fn timers_fire_in_deadline_order() {
    let rt = Runtime::builder().build().unwrap();
    let log = Arc::new(Mutex::new(Vec::new()));
    let gts: Vec<_> = [30u64, 10, 20, 0]
        .into_iter()
        .map(|ms| {
            let l = log.clone();
            rt.spawn(move || {
                sleep(Duration::from_millis(ms));
                l.lock().unwrap().push(ms);
            })
        })
        .collect();
    for g in gts {
        g.wait().unwrap();
    }
    assert_eq!(*log.lock().unwrap(), vec![0, 10, 20, 30]);
    rt.shutdown_timeout(Duration::from_secs(2)).unwrap();
}
