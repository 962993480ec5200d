//! Timeout (GREEN-22..24, TEST-GREEN-11).

use std::time::{Duration, Instant};

use osier_green::{
    sleep, spawn, with_timeout, with_timeout_value, GreenError, Queue, Runtime, Timeout,
    TimeoutError, TimeoutFired,
};

fn green<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    Runtime::global().block_on(f).expect("test body failed")
}

/// GREEN-22 / TEST-GREEN-11: the scoped ("silent") form turns its own firing into a value.
#[test]
fn scope_returns_elapsed_when_own_timeout_fires() {
    green(|| {
        let t0 = Instant::now();
        let r = Timeout::new(Duration::from_millis(10))
            .unwrap()
            .scope(|| sleep(Duration::from_secs(10)));
        assert_eq!(r, Err(TimeoutError::Elapsed));
        assert!(t0.elapsed() < Duration::from_secs(2));
    });
}

/// GREEN-22 / TEST-GREEN-11: an unscoped timeout that fires unwinds the thread (the default form
/// raises the Timeout itself): the handle reports TimedOut, and the payload is recognisable.
#[test]
fn unscoped_timeout_unwinds_the_green_thread() {
    green(|| {
        let gt = spawn(|| {
            let _t = Timeout::new(Duration::from_millis(5)).unwrap();
            sleep(Duration::from_secs(10));
        });
        assert_eq!(gt.wait(), Err(GreenError::TimedOut));
        let caught = spawn(|| {
            let _t = Timeout::new(Duration::from_millis(5)).unwrap();
            std::panic::catch_unwind(|| sleep(Duration::from_secs(10)))
                .err()
                .map(|p| p.is::<TimeoutFired>())
        });
        assert_eq!(caught.wait(), Ok(Some(true)));
    });
}

/// GREEN-23 / TEST-GREEN-11: an outer timeout goes through an inner silent scope.
#[test]
fn outer_timeout_goes_through_inner_scope() {
    green(|| {
        let r = with_timeout(Duration::from_millis(10), || {
            let inner = with_timeout(Duration::from_secs(10), || sleep(Duration::from_secs(10)));
            unreachable!("inner scope must not swallow the outer timeout: {inner:?}")
        });
        assert_eq!(r, Err(TimeoutError::Elapsed));
    });
}

/// GREEN-23 / TEST-GREEN-11: when two are armed, the first to fire wins.
#[test]
fn first_timeout_to_fire_wins() {
    green(|| {
        let outer = with_timeout(Duration::from_secs(10), || {
            with_timeout(Duration::from_millis(5), || sleep(Duration::from_secs(10)))
        });
        assert_eq!(
            outer,
            Ok(Err(TimeoutError::Elapsed)),
            "the inner one fired first"
        );
    });
}

/// GREEN-23 / TEST-GREEN-11: a busy loop is not interrupted (it never yields).
#[test]
fn busy_loop_is_not_interrupted() {
    green(|| {
        let r = with_timeout(Duration::from_millis(5), || {
            let t0 = Instant::now();
            let mut n = 0u64;
            while t0.elapsed() < Duration::from_millis(30) {
                n = std::hint::black_box(n + 1);
            }
            n
        });
        assert!(r.is_ok(), "no switch point, so the timeout could not fire");
    });
}

/// GREEN-24 / TEST-GREEN-11: with_timeout_value returns the given value on timeout.
#[test]
fn with_timeout_value_returns_value() {
    green(|| {
        let v = with_timeout_value(Duration::from_millis(5), "late", || {
            sleep(Duration::from_secs(10));
            "on time"
        });
        assert_eq!(v, Ok("late"));
        let v = with_timeout_value(Duration::from_secs(5), "late", || "on time");
        assert_eq!(v, Ok("on time"));
    });
}

/// GREEN-22: cancel disarms; pending tells whether it is armed; a timeout whose deadline passed
/// during CPU work (no switch point, so it could not fire) and that is cancelled before the next
/// switch point never fires.
#[test]
fn cancel_disarms_and_pending_reports() {
    green(|| {
        let mut t = Timeout::new(Duration::from_millis(5)).unwrap();
        assert!(t.pending());
        t.cancel();
        assert!(!t.pending());
        sleep(Duration::from_millis(15)); // would have fired

        let mut t = Timeout::new(Duration::from_millis(1)).unwrap();
        let t0 = Instant::now();
        while t0.elapsed() < Duration::from_millis(5) {} // due while running
        t.cancel();
        sleep(Duration::from_millis(2)); // must not raise

        // ... but one that is still armed fires at the next switch point
        let gt = spawn(|| {
            let _t = Timeout::new(Duration::from_millis(1)).unwrap();
            let t0 = Instant::now();
            while t0.elapsed() < Duration::from_millis(5) {}
            osier_green::yield_now();
        });
        assert_eq!(gt.wait(), Err(GreenError::TimedOut));
    });
}

/// Timeout works around queue gets, and outside a green thread it is a typed error.
#[test]
fn timeout_around_queue_get_and_outside_green() {
    green(|| {
        let q: Queue<u8> = Queue::unbounded();
        assert_eq!(
            with_timeout(Duration::from_millis(5), || q.get()),
            Err(TimeoutError::Elapsed)
        );
        q.put(1);
        assert_eq!(q.get(), 1, "the queue still works");
    });
    assert_eq!(
        with_timeout(Duration::from_millis(5), || 1).unwrap_err(),
        TimeoutError::NotInGreenThread
    );
    assert_eq!(Timeout::never().scope(|| 3), Ok(3));
}
