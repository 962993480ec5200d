//! Semaphore and BoundedSemaphore (GREEN-18, GREEN-19, TEST-GREEN-12).

use std::time::Duration;

use osier_green::{sleep, spawn, BoundedSemaphore, Runtime, Semaphore, SemaphoreError};

fn green<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    Runtime::global().block_on(f).expect("test body failed")
}

/// TEST-GREEN-12: non-blocking acquire on a locked semaphore gives false.
#[test]
fn try_acquire_on_locked_semaphore_is_false() {
    let s = Semaphore::new(1);
    assert!(s.try_acquire());
    assert!(s.locked());
    assert!(!s.try_acquire());
}

/// TEST-GREEN-12: acquire with a timeout on a locked semaphore gives false after the timeout.
#[test]
fn acquire_timeout_on_locked_semaphore_is_false() {
    green(|| {
        let s = Semaphore::new(0);
        let t0 = std::time::Instant::now();
        assert!(!s.acquire_timeout(Duration::from_millis(10)));
        assert!(t0.elapsed() >= Duration::from_millis(10));
        assert_eq!(s.waiting(), 0);
    });
}

/// GREEN-18: release always increments, even past the initial value; balance counts waiters.
#[test]
fn release_goes_past_initial_value_and_balance_counts_waiters() {
    green(|| {
        let s = Semaphore::new(1);
        s.release();
        assert_eq!(s.counter(), 2);
        s.acquire();
        s.acquire();
        let s2 = s.clone();
        let w = spawn(move || s2.acquire());
        sleep(Duration::ZERO);
        assert_eq!(s.balance(), -1);
        s.release();
        w.wait().unwrap();
        assert_eq!(s.balance(), 0);
    });
}

/// GREEN-18: the guard form releases on drop, and a parked acquirer gets the permit.
#[test]
fn guard_releases_to_parked_acquirer() {
    green(|| {
        let s = Semaphore::new(1);
        let g = s.acquire_guard();
        let s2 = s.clone();
        let w = spawn(move || {
            let _g = s2.acquire_guard();
            "got it"
        });
        sleep(Duration::from_millis(2));
        assert!(!w.is_finished());
        drop(g);
        assert_eq!(w.wait(), Ok("got it"));
        assert!(!s.locked());
    });
}

/// GREEN-19 / TEST-GREEN-12: a bounded release past the start value is refused.
#[test]
fn bounded_release_past_initial_is_refused() {
    let b = BoundedSemaphore::new(2);
    assert_eq!(b.release(), Err(SemaphoreError::OverReleased(2)));
    b.acquire();
    b.release().unwrap();
    assert_eq!(b.release(), Err(SemaphoreError::OverReleased(2)));
}

/// A waiter killed while parked does not take the permit from the next waiter.
#[test]
fn killed_waiter_passes_permit_on() {
    green(|| {
        let s = Semaphore::new(0);
        let (a, b) = (s.clone(), s.clone());
        let first = spawn(move || a.acquire());
        let second = spawn(move || b.acquire());
        sleep(Duration::ZERO);
        s.release(); // picks `first`
        first.kill(); // ... which dies before taking it
        assert_eq!(
            second.wait_timeout(Duration::from_secs(2)),
            Some(Ok(())),
            "the permit went on to the second waiter"
        );
    });
}
