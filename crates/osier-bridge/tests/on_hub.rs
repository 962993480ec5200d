//! Tokio on the hub's own thread (`Builder::tokio_on_hubs`): green threads and the tasks of their
//! hub share one OS thread, hand work to each other, and keep every guarantee of the default
//! mode (one runs at a time, GREEN-01; a green thread never leaves its hub; remote wake-ups,
//! timers, sockets and shutdown still work).

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::ThreadId;
use std::time::{Duration, Instant};

use osier_bridge::{wrap_greenthread, Bridge, BridgeError};

fn on_hubs(hubs: usize) -> Bridge {
    Bridge::builder()
        .green_hubs(hubs)
        .tokio_workers(1)
        .tokio_on_hubs()
        .build()
        .unwrap()
}

fn me() -> ThreadId {
    std::thread::current().id()
}

#[test]
fn a_task_spawned_from_a_green_thread_runs_on_the_green_threads_own_thread() {
    let b = on_hubs(1);
    let b2 = b.clone();
    let (green, task) = b
        .green()
        .block_on(move || {
            let task = b2.spawn_on_hub(async { std::thread::current().id() });
            (me(), b2.yield_future(task).unwrap().unwrap())
        })
        .unwrap();
    assert_eq!(green, task);
    b.shutdown_timeout(Duration::from_secs(5)).unwrap();
}

#[test]
fn tokio_spawn_inside_a_yielded_future_lands_on_the_hub_runtime() {
    let b = on_hubs(1);
    let b2 = b.clone();
    let (green, task) = b
        .green()
        .block_on(move || {
            let task = b2
                .yield_future(async { tokio::spawn(async { me() }).await })
                .unwrap()
                .unwrap();
            (me(), task)
        })
        .unwrap();
    assert_eq!(green, task);
    b.shutdown_timeout(Duration::from_secs(5)).unwrap();
}

#[test]
fn a_green_thread_spawned_from_a_hub_task_runs_on_that_hub_and_is_awaited_there() {
    let b = on_hubs(2);
    for hub in 0..2 {
        let b2 = b.clone();
        let (task, green) = b.hub_tokio(hub).unwrap().clone().block_on(async move {
            b2.tokio().spawn(async {}).await.unwrap();
            let b3 = b2.clone();
            b2.hub_tokio(hub)
                .unwrap()
                .spawn(async move {
                    let green = b3.spawn_green(me).await.unwrap();
                    (me(), green)
                })
                .await
                .unwrap()
        });
        assert_eq!(task, green, "hub {hub}");
    }
    b.shutdown_timeout(Duration::from_secs(5)).unwrap();
}

#[test]
fn round_trips_between_a_green_thread_and_a_task_of_its_hub_all_complete() {
    let b = on_hubs(1);
    let b2 = b.clone();
    let sum = b
        .green()
        .block_on(move || {
            let (req_tx, mut req_rx) = tokio::sync::mpsc::unbounded_channel::<u64>();
            let (resp_tx, mut resp_rx) = tokio::sync::mpsc::unbounded_channel::<u64>();
            b2.spawn_on_hub(async move {
                while let Some(v) = req_rx.recv().await {
                    let _ = resp_tx.send(v * 2);
                }
            });
            (0..10_000u64)
                .map(|i| {
                    req_tx.send(i).unwrap();
                    b2.yield_future(resp_rx.recv()).unwrap().unwrap()
                })
                .sum::<u64>()
        })
        .unwrap();
    assert_eq!(sum, 2 * (0..10_000u64).sum::<u64>());
    b.shutdown_timeout(Duration::from_secs(5)).unwrap();
}

#[test]
fn a_wake_up_from_another_thread_reaches_a_green_thread_on_a_hub_runtime() {
    let b = on_hubs(1);
    let b2 = b.clone();
    let (tx, rx) = tokio::sync::oneshot::channel::<u32>();
    std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(30));
        let _ = tx.send(7);
    });
    let got = b
        .green()
        .block_on(move || b2.yield_future(rx).unwrap().unwrap())
        .unwrap();
    assert_eq!(got, 7);
    // And from the multi-thread runtime.
    let b2 = b.clone();
    let got = b
        .green()
        .block_on(move || {
            let t = b2.tokio().spawn(async {
                tokio::time::sleep(Duration::from_millis(10)).await;
                9
            });
            b2.yield_future(t).unwrap().unwrap()
        })
        .unwrap();
    assert_eq!(got, 9);
    b.shutdown_timeout(Duration::from_secs(5)).unwrap();
}

#[test]
fn green_timers_and_tokio_timers_fire_on_a_hub_runtime() {
    let b = on_hubs(1);
    let b2 = b.clone();
    let (green, tokio_sleep, timed_out) = b
        .green()
        .block_on(move || {
            let t0 = Instant::now();
            osier_green::sleep(Duration::from_millis(40));
            let green = t0.elapsed();
            let t0 = Instant::now();
            b2.yield_future_with(|| tokio::time::sleep(Duration::from_millis(40)))
                .unwrap();
            let tokio_sleep = t0.elapsed();
            let timed_out = osier_green::with_timeout(Duration::from_millis(20), || {
                osier_green::sleep(Duration::from_secs(5))
            })
            .is_err();
            (green, tokio_sleep, timed_out)
        })
        .unwrap();
    assert!(
        green >= Duration::from_millis(40) && green < Duration::from_secs(2),
        "{green:?}"
    );
    assert!(
        tokio_sleep >= Duration::from_millis(39) && tokio_sleep < Duration::from_secs(2),
        "{tokio_sleep:?}"
    );
    assert!(timed_out);
    b.shutdown_timeout(Duration::from_secs(5)).unwrap();
}

#[test]
fn a_green_thread_spawned_after_a_delay_from_a_hub_task_starts_on_time() {
    let b = on_hubs(1);
    let (tx, rx) = std::sync::mpsc::channel();
    let b2 = b.clone();
    b.hub_tokio(0).unwrap().spawn(async move {
        let _keep = b2;
        let t0 = Instant::now();
        // Armed from a task, outside any hub turn: the hub must wake for it on time.
        osier_green::spawn_after(Duration::from_millis(30), move || {
            let _ = tx.send(t0.elapsed());
        });
    });
    let waited = rx.recv_timeout(Duration::from_secs(5)).unwrap();
    assert!(
        waited >= Duration::from_millis(30) && waited < Duration::from_secs(2),
        "{waited:?}"
    );
    b.shutdown_timeout(Duration::from_secs(5)).unwrap();
}

#[test]
fn green_sockets_and_tokio_sockets_work_on_the_same_hub() {
    let b = on_hubs(1);
    let b2 = b.clone();
    let echoed = b
        .green()
        .block_on(move || {
            use std::io::{Read, Write};
            // A green echo server and a tokio client on the same hub thread...
            let listener = osier_green::net::listen("127.0.0.1:0").unwrap();
            let addr = listener.local_addr().unwrap();
            osier_green::spawn(move || {
                let (mut s, _) = listener.accept().unwrap();
                let mut buf = [0u8; 5];
                s.read_exact(&mut buf).unwrap();
                s.write_all(&buf).unwrap();
            });
            let from_tokio = b2
                .yield_future(async move {
                    use tokio::io::{AsyncReadExt, AsyncWriteExt};
                    let mut c = tokio::net::TcpStream::connect(addr).await.unwrap();
                    c.write_all(b"hello").await.unwrap();
                    let mut buf = [0u8; 5];
                    c.read_exact(&mut buf).await.unwrap();
                    buf
                })
                .unwrap();
            // ...and a tokio echo server with a green client.
            let tl = b2
                .yield_future(tokio::net::TcpListener::bind("127.0.0.1:0"))
                .unwrap()
                .unwrap();
            let addr = tl.local_addr().unwrap();
            b2.spawn_on_hub(async move {
                use tokio::io::{AsyncReadExt, AsyncWriteExt};
                let (mut s, _) = tl.accept().await.unwrap();
                let mut buf = [0u8; 5];
                s.read_exact(&mut buf).await.unwrap();
                s.write_all(&buf).await.unwrap();
            });
            let mut c = osier_green::net::connect(addr).unwrap();
            c.write_all(b"world").unwrap();
            let mut from_green = [0u8; 5];
            c.read_exact(&mut from_green).unwrap();
            (from_tokio, from_green)
        })
        .unwrap();
    assert_eq!(&echoed.0, b"hello");
    assert_eq!(&echoed.1, b"world");
    b.shutdown_timeout(Duration::from_secs(5)).unwrap();
}

/// GREEN-01 with tasks: on a hub, a green thread and a task of its runtime never run at once.
/// Each body marks itself running, works a little without a switch point, and checks nobody
/// else was marked meanwhile; green threads and tasks interleave by switching often.
#[test]
fn green_threads_and_hub_tasks_never_run_at_the_same_time() {
    let b = on_hubs(1);
    let busy = Arc::new(AtomicBool::new(false));
    let overlaps = Arc::new(AtomicUsize::new(0));
    let stretch = |busy: &AtomicBool, overlaps: &AtomicUsize| {
        if busy.swap(true, Ordering::SeqCst) {
            overlaps.fetch_add(1, Ordering::SeqCst);
        }
        let t0 = Instant::now();
        while t0.elapsed() < Duration::from_micros(50) {
            std::hint::spin_loop();
        }
        busy.store(false, Ordering::SeqCst);
    };
    let mut greens = Vec::new();
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let (bu, ov) = (busy.clone(), overlaps.clone());
        greens.push(b.green().spawn(move || {
            for _ in 0..50 {
                stretch(&bu, &ov);
                osier_green::yield_now();
            }
        }));
        let (bu, ov) = (busy.clone(), overlaps.clone());
        tasks.push(b.spawn_on_hub(async move {
            for _ in 0..50 {
                stretch(&bu, &ov);
                tokio::task::yield_now().await;
            }
        }));
    }
    b.tokio().block_on(async {
        for t in tasks {
            t.await.unwrap();
        }
        for g in greens {
            wrap_greenthread(g).await.unwrap();
        }
    });
    assert_eq!(overlaps.load(Ordering::SeqCst), 0);
    b.shutdown_timeout(Duration::from_secs(5)).unwrap();
}

#[test]
fn yield_future_from_a_hub_task_is_refused_as_on_any_tokio_thread() {
    let b = on_hubs(1);
    let b2 = b.clone();
    let r = b
        .tokio()
        .block_on(
            b.spawn_on_hub(async move { b2.yield_future(async { 1 }).map_err(|e| e.to_string()) }),
        )
        .unwrap();
    assert_eq!(r, Err(BridgeError::OnTokioThread.to_string()));
    b.shutdown_timeout(Duration::from_secs(5)).unwrap();
}

#[test]
fn shutdown_frees_a_green_thread_waiting_on_a_hub_task_that_never_ends() {
    let b = on_hubs(1);
    let b2 = b.clone();
    let gt = b.green().spawn(move || {
        let never = b2.spawn_on_hub(std::future::pending::<()>());
        b2.yield_future(never).map(|_| ())
    });
    std::thread::sleep(Duration::from_millis(50));
    let t0 = Instant::now();
    b.shutdown_timeout(Duration::from_secs(5)).unwrap();
    assert!(t0.elapsed() < Duration::from_secs(5));
    // Freed by the bridge (its waiters are woken first), or killed by the green runtime's stop.
    let r = gt.join();
    assert!(
        matches!(
            r,
            Ok(Err(BridgeError::RuntimeShutdown)) | Err(osier_green::GreenError::Killed)
        ),
        "{r:?}"
    );
}

#[test]
fn tokio_on_hubs_over_a_green_runtime_it_did_not_start_is_refused() {
    let green = osier_green::Runtime::builder().build().unwrap();
    let r = Bridge::builder()
        .green_runtime(green.clone())
        .tokio_on_hubs()
        .build();
    assert!(matches!(r, Err(BridgeError::Runtime(_))), "{r:?}");
    green.shutdown_timeout(Duration::from_secs(5)).unwrap();
}

#[test]
fn by_default_a_bridge_runs_tokio_on_its_hubs() {
    let b = Bridge::builder().green_hubs(2).build().unwrap();
    assert!(b.tokio_on_hubs());
    assert!(b.hub_tokio(0).is_some() && b.hub_tokio(1).is_some());
    b.shutdown_timeout(Duration::from_secs(5)).unwrap();
}

#[test]
fn a_bridge_over_a_green_runtime_it_did_not_start_keeps_tokio_on_its_own_threads() {
    let green = osier_green::Runtime::builder().build().unwrap();
    let b = Bridge::builder()
        .green_runtime(green.clone())
        .build()
        .unwrap();
    assert!(!b.tokio_on_hubs());
    b.shutdown_timeout(Duration::from_secs(5)).unwrap();
    green.shutdown_timeout(Duration::from_secs(5)).unwrap();
}

#[test]
fn with_tokio_on_its_own_threads_tasks_go_to_the_multi_thread_runtime() {
    let b = Bridge::builder()
        .tokio_workers(1)
        .tokio_on_own_threads()
        .build()
        .unwrap();
    assert!(!b.tokio_on_hubs());
    assert!(b.hub_tokio(0).is_none());
    let b2 = b.clone();
    let (green, task) = b
        .green()
        .block_on(move || {
            let t = b2.spawn_on_hub(async { me() });
            (me(), b2.yield_future(t).unwrap().unwrap())
        })
        .unwrap();
    assert_ne!(green, task);
    b.shutdown_timeout(Duration::from_secs(5)).unwrap();
}

#[test]
fn shutdown_does_not_wait_for_a_blocking_call_left_on_a_hub_runtime() {
    let b = on_hubs(1);
    let started = Arc::new(AtomicBool::new(false));
    let s2 = started.clone();
    // Detached: nobody waits for it but the runtime's shutdown.
    drop(b.spawn_on_hub(async move {
        let _ = tokio::task::spawn_blocking(move || {
            s2.store(true, Ordering::SeqCst);
            std::thread::sleep(Duration::from_secs(30));
        })
        .await;
    }));
    let t0 = Instant::now();
    while !started.load(Ordering::SeqCst) && t0.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(5));
    }
    let t0 = Instant::now();
    b.shutdown_timeout(Duration::from_secs(5)).unwrap();
    assert!(t0.elapsed() < Duration::from_secs(4), "{:?}", t0.elapsed());
}
