//! tpool (GREEN-31, GREEN-33, TEST-GREEN-13).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use osier_green::{sleep, spawn, tpool, with_timeout, GreenError, Runtime, TimeoutError};

/// Runs `f` in a green thread. The pool is process-global and `killall_then_execute...` checks
/// its thread count, so the tests of this file take turns (cargo runs them on parallel threads;
/// another test's `execute` between `killall` and the check made it flaky).
fn green<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    static TURN: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _turn = TURN.lock().unwrap_or_else(|e| e.into_inner());
    Runtime::global().block_on(f).expect("test body failed")
}

/// TEST-GREEN-13: while a native call blocks for 50 ms, other green threads keep running.
#[test]
fn other_green_threads_run_during_native_call() {
    green(|| {
        let ticks = Arc::new(AtomicUsize::new(0));
        let t = ticks.clone();
        let ticker = spawn(move || {
            for _ in 0..5 {
                sleep(Duration::from_millis(5));
                t.fetch_add(1, Ordering::SeqCst);
            }
        });
        let v = tpool::execute(|| {
            std::thread::sleep(Duration::from_millis(50));
            "blocking done"
        });
        assert_eq!(v, "blocking done");
        assert!(ticks.load(Ordering::SeqCst) >= 4, "ticker made progress");
        ticker.wait().unwrap();
    });
}

/// TEST-GREEN-13: a panic in the native call is raised again in the caller.
#[test]
fn panic_is_raised_again_in_caller() {
    green(|| {
        let r = std::panic::catch_unwind(|| tpool::execute(|| -> u8 { panic!("native failed") }));
        let p = r.unwrap_err();
        assert_eq!(p.downcast_ref::<&str>(), Some(&"native failed"));
        assert_eq!(
            tpool::try_execute(|| -> u8 { panic!("again") }),
            Err(GreenError::Panicked("again".into()))
        );
    });
}

/// TEST-GREEN-13: killall followed by a new execute works; set_num_threads changes the size.
#[test]
fn killall_then_execute_and_set_num_threads() {
    green(|| {
        assert_eq!(tpool::execute(|| 1), 1);
        tpool::killall();
        assert_eq!(tpool::threads_started(), 0);
        assert_eq!(tpool::execute(|| 2), 2);
        let before = tpool::num_threads();
        tpool::set_num_threads(5);
        assert_eq!(tpool::num_threads(), 5);
        tpool::set_num_threads(before);
    });
}

/// GREEN-31: a call made from a pool thread runs inline (no deadlock, even with one thread).
#[test]
fn nested_execute_runs_inline() {
    green(|| {
        let v =
            tpool::execute(|| tpool::execute(|| std::thread::current().name().map(String::from)));
        assert!(v.unwrap_or_default().starts_with("osier-tpool"));
    });
}

/// TEST-GREEN-13 (adapted): a green Timeout around execute interrupts the waiting green thread;
/// the native call finishes on its own and its result is dropped.
#[test]
fn timeout_around_execute_interrupts_the_caller() {
    green(|| {
        let r = with_timeout(Duration::from_millis(10), || {
            tpool::execute(|| std::thread::sleep(Duration::from_millis(100)))
        });
        assert_eq!(r, Err(TimeoutError::Elapsed));
    });
}

/// From a plain OS thread, execute runs inline.
#[test]
fn execute_from_os_thread_runs_inline() {
    let me = std::thread::current().id();
    assert!(tpool::execute(move || std::thread::current().id() == me));
}
