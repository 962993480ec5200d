//! wrap_greenthread and spawn_green (BRIDGE-09, BRIDGE-10 fixed, TEST-BRIDGE-*).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use osier_bridge::{wrap_greenthread, Bridge, BridgeError};
use osier_green::{sleep, GreenError};

fn ct_bridge() -> Bridge {
    Bridge::builder().tokio_current_thread().build().unwrap()
}

/// Awaiting a green thread never blocks a tokio worker: on a current_thread runtime another task
/// keeps running while one awaits a sleeping green thread.
#[test]
fn await_does_not_block_current_thread_runtime() {
    let b = ct_bridge();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let ticks = Arc::new(AtomicUsize::new(0));
    let t = ticks.clone();
    let gt = b.green().spawn(|| {
        sleep(Duration::from_millis(50));
        "slow green"
    });
    let v = rt.block_on(async move {
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(2)).await;
                t.fetch_add(1, Ordering::SeqCst);
            }
        });
        wrap_greenthread(gt).await
    });
    assert_eq!(v, Ok("slow green"));
    assert!(
        ticks.load(Ordering::SeqCst) >= 10,
        "the runtime kept running"
    );
    b.shutdown_timeout(Duration::from_secs(2)).unwrap();
}

/// BRIDGE-09 fixed: works for a thread not yet started, running, and already finished.
#[test]
fn works_before_start_while_running_and_after_finish() {
    let b = ct_bridge();
    let green = b.green().clone();
    let r = b.tokio().block_on(async move {
        let not_started = green.spawn(|| 1);
        let a = wrap_greenthread(not_started).await;
        let running = green.spawn(|| {
            sleep(Duration::from_millis(20));
            2
        });
        tokio::time::sleep(Duration::from_millis(5)).await;
        assert!(running.is_started() && !running.is_finished());
        let bb = wrap_greenthread(running).await;
        let finished = green.spawn(|| 3);
        while !finished.is_finished() {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let c = wrap_greenthread(finished).await;
        (a, bb, c)
    });
    assert_eq!(r, (Ok(1), Ok(2), Ok(3)));
    b.shutdown_timeout(Duration::from_secs(2)).unwrap();
}

/// BRIDGE-10 fixed: a panic resolves with Panicked(message), a kill with Killed.
#[test]
fn panic_and_kill_resolve_with_distinct_errors() {
    let b = ct_bridge();
    let green = b.green().clone();
    let (p, k) = b.tokio().block_on(async move {
        let panics = green.spawn(|| -> u8 { panic!("green panic") });
        let p = wrap_greenthread(panics).await;
        let victim = green.spawn(|| sleep(Duration::from_secs(30)));
        let v2 = victim.clone();
        let waiting = tokio::spawn(wrap_greenthread(victim));
        tokio::time::sleep(Duration::from_millis(10)).await;
        v2.kill();
        (p, waiting.await.unwrap())
    });
    assert_eq!(p, Err(GreenError::Panicked("green panic".into())));
    assert_eq!(k, Err(GreenError::Killed));
    b.shutdown_timeout(Duration::from_secs(2)).unwrap();
}

/// Dropping the future leaves the green thread alone; abort_on_drop kills it.
#[test]
fn drop_keeps_thread_and_abort_on_drop_kills_it() {
    let b = ct_bridge();
    let green = b.green().clone();
    let kept = green.spawn(|| {
        sleep(Duration::from_millis(20));
        "kept"
    });
    let aborted = green.spawn(|| {
        sleep(Duration::from_secs(30));
        "not reached"
    });
    let (k2, a2) = (kept.clone(), aborted.clone());
    b.tokio().block_on(async move {
        let f1 = wrap_greenthread(k2);
        let f2 = wrap_greenthread(a2).abort_on_drop();
        let _ = tokio::time::timeout(Duration::from_millis(5), f1).await;
        let _ = tokio::time::timeout(Duration::from_millis(5), f2).await;
    });
    assert_eq!(kept.wait(), Ok("kept"));
    assert_eq!(aborted.wait(), Err(GreenError::Killed));
    b.shutdown_timeout(Duration::from_secs(2)).unwrap();
}

/// spawn_green from async code, and run_blocking on tokio's blocking pool.
#[test]
fn spawn_green_and_run_blocking_from_async() {
    let b = Bridge::builder().build().unwrap();
    let b2 = b.clone();
    let r = b.tokio().block_on(async move {
        let g = b2
            .spawn_green(|| {
                sleep(Duration::from_millis(2));
                osier_green::in_green_thread()
            })
            .await;
        let blocking = b2
            .run_blocking(|| {
                std::thread::sleep(Duration::from_millis(5));
                "blocked a pool thread"
            })
            .await;
        let panicked = b2.run_blocking(|| -> u8 { panic!("blocking panic") }).await;
        (g, blocking, panicked)
    });
    assert_eq!(r.0, Ok(true));
    assert_eq!(r.1.unwrap(), "blocked a pool thread");
    assert!(matches!(r.2, Err(BridgeError::Panicked(m)) if m == "blocking panic"));
    b.shutdown_timeout(Duration::from_secs(2)).unwrap();
}
