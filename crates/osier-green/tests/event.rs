//! Event (GREEN-17, TEST-GREEN-09).

use std::time::Duration;

use osier_green::{sleep, spawn, Event, EventError, Runtime};

fn green<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    Runtime::global().block_on(f).expect("test body failed")
}

/// TEST-GREEN-09: a second send is refused.
#[test]
fn second_send_is_refused() {
    let ev: Event<u8> = Event::new();
    ev.send(1).unwrap();
    assert_eq!(ev.send(2), Err(EventError::AlreadySent));
    assert_eq!(ev.wait(), Ok(1));
}

/// TEST-GREEN-09: wait with a timeout on an unsent event returns None (no error raised).
#[test]
fn wait_timeout_on_unsent_event_returns_none() {
    green(|| {
        let ev: Event<u8> = Event::new();
        assert_eq!(ev.wait_timeout(Duration::from_millis(5)), None);
        assert_eq!(ev.waiting(), 0, "the timed-out waiter left the list");
    });
}

/// TEST-GREEN-09 / GREEN-17: every one of several waiters gets the value; send never yields.
#[test]
fn every_waiter_gets_the_value_and_send_does_not_yield() {
    green(|| {
        let ev: Event<String> = Event::new();
        let waiters: Vec<_> = (0..5)
            .map(|_| {
                let e = ev.clone();
                spawn(move || e.wait())
            })
            .collect();
        sleep(Duration::ZERO);
        assert_eq!(ev.waiting(), 5);
        ev.send("v".into()).unwrap();
        // send did not yield: no waiter has run yet
        assert!(waiters.iter().all(|w| !w.is_finished()));
        for w in waiters {
            assert_eq!(w.wait().unwrap(), Ok("v".to_string()));
        }
    });
}

/// TEST-GREEN-09: send_error makes every waiter get the error.
#[test]
fn send_error_reaches_every_waiter() {
    green(|| {
        let ev: Event<u8, &'static str> = Event::new();
        let ws: Vec<_> = (0..3)
            .map(|_| {
                let e = ev.clone();
                spawn(move || e.wait())
            })
            .collect();
        sleep(Duration::ZERO);
        ev.send_error("broken").unwrap();
        for w in ws {
            assert_eq!(w.wait().unwrap(), Err("broken"));
        }
        assert!(ev.has_error() && !ev.has_result() && ev.ready());
    });
}

/// TEST-GREEN-09: reset on a fresh event is refused; after a send it re-arms.
#[test]
fn reset_requires_a_previous_send() {
    let ev: Event<u8> = Event::new();
    assert_eq!(ev.reset(), Err(EventError::NotSent));
    ev.send(1).unwrap();
    assert_eq!(ev.poll(), Some(Ok(1)));
    ev.reset().unwrap();
    assert!(!ev.ready());
    ev.send(2).unwrap();
    assert_eq!(ev.wait(), Ok(2));
}

/// An OS thread can wait on an event sent from a green thread.
#[test]
fn os_thread_waits_for_green_send() {
    let ev: Event<u32> = Event::new();
    let e = ev.clone();
    osier_green::spawn(move || {
        sleep(Duration::from_millis(5));
        e.send(11).unwrap();
    });
    assert_eq!(ev.wait(), Ok(11));
}
