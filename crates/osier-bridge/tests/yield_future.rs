//! yield_future (BRIDGE-07, BRIDGE-08 fixed, TEST-BRIDGE-01).

use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use osier_bridge::{Bridge, BridgeError};
use osier_green::{sleep, with_timeout, GreenError, TimeoutError};

fn bridge() -> Bridge {
    Bridge::builder().build().unwrap()
}

fn done(b: Bridge) {
    b.shutdown_timeout(Duration::from_secs(2)).unwrap();
}

/// TEST-BRIDGE-01: a green thread yields three futures in turn (two values, one error); its log
/// reads [1, 10, 2, 20, error, 4] and the tokio side stays responsive all the while.
#[test]
fn three_futures_in_turn_and_tokio_stays_responsive() {
    let b = bridge();
    let ticks = Arc::new(AtomicUsize::new(0));
    let t = ticks.clone();
    b.tokio().spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_millis(1)).await;
            t.fetch_add(1, Ordering::SeqCst);
        }
    });
    let b2 = b.clone();
    let log = b
        .green()
        .block_on(move || {
            let mut log: Vec<String> = vec!["1".into()];
            let v = b2.yield_future(async {
                tokio::time::sleep(Duration::from_millis(10)).await;
                10
            });
            log.push(v.unwrap().to_string());
            log.push("2".into());
            let v = b2.yield_future(async { 20 });
            log.push(v.unwrap().to_string());
            let r: Result<Result<u8, String>, _> = b2.yield_future(async {
                tokio::time::sleep(Duration::from_millis(10)).await;
                Err("error".to_string())
            });
            log.push(r.unwrap().unwrap_err());
            log.push("4".into());
            log
        })
        .unwrap();
    assert_eq!(log, ["1", "10", "2", "20", "error", "4"]);
    assert!(ticks.load(Ordering::SeqCst) >= 5, "tokio kept ticking");
    done(b);
}

/// Only the green thread parks, never its hub: another green thread on the same (single) hub
/// keeps running while the first waits on tokio.
#[test]
fn only_the_green_thread_parks_not_its_hub() {
    let b = bridge();
    let progress = Arc::new(AtomicUsize::new(0));
    let p = progress.clone();
    let other = b.green().spawn(move || {
        for _ in 0..20 {
            sleep(Duration::from_millis(1));
            p.fetch_add(1, Ordering::SeqCst);
        }
    });
    let b2 = b.clone();
    let seen = b
        .green()
        .block_on(move || {
            b2.yield_future(async {
                tokio::time::sleep(Duration::from_millis(60)).await;
            })
            .unwrap();
            progress.load(Ordering::SeqCst)
        })
        .unwrap();
    assert!(
        seen >= 10,
        "the hub kept running other green threads: {seen}"
    );
    other.wait().unwrap();
    done(b);
}

/// A future that borrows from the green thread's stack, and a !Send future, both work.
#[test]
fn borrowed_and_non_send_futures() {
    let b = bridge();
    let b2 = b.clone();
    let r = b
        .green()
        .block_on(move || {
            let mut local = vec![1, 2, 3];
            let borrowed = b2
                .yield_future(async {
                    tokio::task::yield_now().await;
                    local.push(4);
                    local.len()
                })
                .unwrap();
            let rc = Rc::new(5); // !Send, held across an await inside the future
            let not_send = b2
                .yield_future(async move {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                    *rc + 1
                })
                .unwrap();
            (borrowed, not_send, local)
        })
        .unwrap();
    assert_eq!(r, (4, 6, vec![1, 2, 3, 4]));
    done(b);
}

/// tokio timers, tokio::time::timeout and yield_future_with (a future built in the context).
#[test]
fn tokio_timers_timeout_and_yield_future_with() {
    let b = bridge();
    let b2 = b.clone();
    let r = b
        .green()
        .block_on(move || {
            let t0 = Instant::now();
            b2.yield_future_with(|| tokio::time::sleep(Duration::from_millis(20)))
                .unwrap();
            let slept = t0.elapsed();
            let to = b2
                .yield_future(async {
                    tokio::time::timeout(Duration::from_millis(5), std::future::pending::<()>())
                        .await
                })
                .unwrap();
            (slept, to.is_err())
        })
        .unwrap();
    assert!(r.0 >= Duration::from_millis(20));
    assert!(r.1, "tokio::time::timeout fired");
    done(b);
}

/// tokio TCP across many hops from green threads on several hubs.
#[test]
fn tokio_tcp_across_many_hops_on_several_hubs() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let b = Bridge::builder().green_hubs(2).build().unwrap();
    let listener = b
        .tokio()
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let addr = listener.local_addr().unwrap();
    b.tokio().spawn(async move {
        loop {
            let Ok((mut s, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let mut buf = [0u8; 8];
                while let Ok(n) = s.read(&mut buf).await {
                    if n == 0 || s.write_all(&buf[..n]).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    let gts: Vec<_> = (0..8)
        .map(|i| {
            let b2 = b.clone();
            osier_green::GreenBuilder::new()
                .hub(i)
                .spawn_on(b.green(), move || {
                    let mut s = b2
                        .yield_future(tokio::net::TcpStream::connect(addr))
                        .unwrap()
                        .unwrap();
                    for r in 0..100u64 {
                        let msg = (r * 8 + i as u64).to_le_bytes();
                        b2.yield_future(s.write_all(&msg)).unwrap().unwrap();
                        let mut back = [0u8; 8];
                        b2.yield_future(s.read_exact(&mut back)).unwrap().unwrap();
                        assert_eq!(back, msg);
                        if r % 10 == 0 {
                            sleep(Duration::ZERO); // mix in green switches
                        }
                    }
                })
        })
        .collect();
    for g in gts {
        g.wait().unwrap();
    }
    done(b);
}

/// A panic inside the future is a typed error; the green thread and the hub carry on.
#[test]
fn panic_in_future_is_a_typed_error() {
    let b = bridge();
    let b2 = b.clone();
    let r = b
        .green()
        .block_on(move || {
            b2.yield_future(async {
                tokio::task::yield_now().await;
                if true {
                    panic!("future blew up");
                }
            })
        })
        .unwrap();
    assert!(matches!(r, Err(BridgeError::Panicked(m)) if m == "future blew up"));
    done(b);
}

/// BRIDGE-08 fixed: a cancelled tokio task gives a typed error, never a hang.
#[test]
fn cancelled_task_gives_cancelled_error() {
    let b = bridge();
    let b2 = b.clone();
    let r = b
        .green()
        .block_on(move || {
            let h = b2.tokio().spawn(std::future::pending::<u8>());
            let abort = h.abort_handle();
            b2.tokio().spawn(async move {
                tokio::time::sleep(Duration::from_millis(5)).await;
                abort.abort();
            });
            let via_handle = b2.yield_future(h).unwrap();
            let spawned = b2.yield_spawned(async {
                tokio::task::yield_now().await;
                panic!("task panicked")
            });
            (via_handle.map_err(|e| e.is_cancelled()), spawned)
        })
        .unwrap();
    assert_eq!(r.0, Err(true));
    assert!(matches!(r.1, Err(BridgeError::Panicked(m)) if m == "task panicked"));
    done(b);
}

/// BRIDGE-08 fixed: shutting the bridge down while a green thread waits gives RuntimeShutdown.
#[test]
fn shutdown_while_waiting_gives_runtime_shutdown() {
    let green = osier_green::Runtime::builder().build().unwrap();
    let b = Bridge::builder()
        .green_runtime(green.clone())
        .build()
        .unwrap();
    let b2 = b.clone();
    let waiter = green.spawn(move || b2.yield_future(std::future::pending::<()>()));
    std::thread::sleep(Duration::from_millis(20));
    b.shutdown_timeout(Duration::from_secs(2)).unwrap();
    assert!(matches!(
        waiter.join().unwrap(),
        Err(BridgeError::RuntimeShutdown)
    ));
    let b3 = b.clone();
    assert!(matches!(
        green
            .block_on(move || b3.yield_future(async { 1 }))
            .unwrap(),
        Err(BridgeError::RuntimeShutdown)
    ));
    green.shutdown_timeout(Duration::from_secs(2)).unwrap();
}

/// Killing the green thread while it waits drops the future, inside the tokio context.
#[test]
fn kill_while_waiting_drops_the_future_in_context() {
    struct NeedsRuntimeOnDrop(Arc<AtomicBool>);
    impl Drop for NeedsRuntimeOnDrop {
        fn drop(&mut self) {
            self.0.store(
                tokio::runtime::Handle::try_current().is_ok(),
                Ordering::SeqCst,
            );
        }
    }
    let b = bridge();
    let dropped_in_ctx = Arc::new(AtomicBool::new(false));
    let d = dropped_in_ctx.clone();
    let b2 = b.clone();
    let gt = b.green().spawn(move || {
        let guard = NeedsRuntimeOnDrop(d);
        b2.yield_future(async move {
            let _g = guard;
            std::future::pending::<()>().await
        })
    });
    std::thread::sleep(Duration::from_millis(20));
    gt.kill();
    assert!(matches!(gt.join(), Err(GreenError::Killed)));
    assert!(dropped_in_ctx.load(Ordering::SeqCst));
    done(b);
}

/// A green Timeout around yield_future interrupts the wait and drops the future.
#[test]
fn green_timeout_around_yield_future() {
    let b = bridge();
    let b2 = b.clone();
    let r = b
        .green()
        .block_on(move || {
            with_timeout(Duration::from_millis(10), || {
                b2.yield_future(std::future::pending::<()>())
            })
        })
        .unwrap();
    assert!(matches!(r, Err(TimeoutError::Elapsed)));
    done(b);
}

/// BRIDGE-07: refused on a tokio runtime thread and when nested; a plain OS thread blocks.
#[test]
fn refused_on_tokio_thread_and_nested_blocks_on_os_thread() {
    let b = bridge();
    let b2 = b.clone();
    let on_tokio = b
        .tokio()
        .block_on(async move { b2.tokio().spawn(async {}).await.map(|_| ()) })
        .map(|_| ());
    assert!(on_tokio.is_ok());
    let b3 = b.clone();
    let r = b
        .tokio()
        .block_on(
            b.tokio()
                .spawn(async move { b3.yield_future(async { 1 }).map_err(|e| e.to_string()) }),
        )
        .unwrap();
    assert!(r.unwrap_err().contains("tokio runtime thread"));

    let b4 = b.clone();
    let nested = b
        .green()
        .block_on(move || {
            let inner = b4.clone();
            b4.yield_future(async move {
                matches!(inner.yield_future(async { 1 }), Err(BridgeError::Nested))
            })
        })
        .unwrap()
        .unwrap();
    assert!(nested);

    let from_os = b.yield_future(async {
        tokio::time::sleep(Duration::from_millis(2)).await;
        5
    });
    assert_eq!(from_os.unwrap(), 5);
    done(b);
}

/// A tokio channel used from a green thread, and a green queue from async code, both ways,
/// with neither side's threads blocked.
#[test]
fn tokio_channel_from_green_and_green_queue_from_async() {
    let b = Bridge::builder().tokio_current_thread().build().unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::channel::<u32>(4);
    let q: osier_green::Queue<u32> = osier_green::Queue::new(Some(1));
    let q2 = q.clone();
    let b2 = b.clone();
    let green = b.green().spawn(move || {
        let mut sum = 0;
        for _ in 0..50 {
            let v = b2.yield_future(rx.recv()).unwrap().unwrap();
            q2.put(v * 2);
            sum += v;
        }
        sum
    });
    let results = Arc::new(Mutex::new(Vec::new()));
    let r2 = results.clone();
    b.tokio().block_on(async move {
        let consumer = tokio::spawn(async move {
            for _ in 0..50 {
                let v = q.get_async().await;
                r2.lock().unwrap().push(v);
            }
        });
        for i in 0..50 {
            tx.send(i).await.unwrap();
        }
        consumer.await.unwrap();
    });
    assert_eq!(green.wait().unwrap(), (0..50).sum::<u32>());
    assert_eq!(
        *results.lock().unwrap(),
        (0..50).map(|i| i * 2).collect::<Vec<_>>()
    );
    done(b);
}

/// LESSON-02: one process-wide bridge; a second install is refused.
#[test]
fn second_install_is_refused() {
    let first = Bridge::builder().install();
    let second = Bridge::builder().install();
    assert!(first.is_ok() || matches!(first, Err(BridgeError::AlreadyInstalled)));
    assert!(matches!(second, Err(BridgeError::AlreadyInstalled)));
}
