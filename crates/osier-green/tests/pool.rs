//! GreenPool, imap and GreenPile (GREEN-11..16, TEST-GREEN-06..08).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use osier_green::{sleep, spawn, GreenError, GreenPile, GreenPool, PoolError, Runtime};

fn green<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    Runtime::global().block_on(f).expect("test body failed")
}

/// GREEN-11/12 / TEST-GREEN-06: a full pool has free()==0, a third spawn parks until a slot
/// frees, and after waitall running is 0 and free is back to size.
#[test]
fn full_pool_parks_spawner_until_a_slot_frees() {
    green(|| {
        let pool = GreenPool::new(2);
        let t0 = Instant::now();
        pool.spawn(|| sleep(Duration::from_millis(30)));
        pool.spawn(|| sleep(Duration::from_millis(30)));
        assert_eq!(pool.running(), 2);
        assert_eq!(pool.free(), 0);
        let third = pool.spawn(|| 3);
        assert!(
            t0.elapsed() >= Duration::from_millis(25),
            "third spawn waited"
        );
        assert_eq!(third.wait(), Ok(3));
        pool.waitall().unwrap();
        assert_eq!(pool.running(), 0);
        assert_eq!(pool.free(), 2);
    });
}

/// GREEN-11: waiting() counts parked spawners.
#[test]
fn waiting_counts_parked_spawners() {
    green(|| {
        let pool = GreenPool::new(1);
        pool.spawn(|| sleep(Duration::from_millis(20)));
        let p2 = pool.clone();
        let spawner = spawn(move || {
            p2.spawn(|| ());
        });
        sleep(Duration::from_millis(2));
        assert_eq!(pool.waiting(), 1);
        spawner.wait().unwrap();
        pool.waitall().unwrap();
        assert_eq!(pool.waiting(), 0);
    });
}

/// GREEN-12 / TEST-GREEN-07: a member spawning into its own full pool runs the job inline.
#[test]
fn reentrant_spawn_into_full_pool_runs_inline() {
    green(|| {
        let pool = GreenPool::new(1);
        let p2 = pool.clone();
        let outer = pool.spawn(move || {
            let inner = p2.spawn(|| osier_green::current().unwrap().id);
            (osier_green::current().unwrap().id, inner.wait().unwrap())
        });
        let (outer_id, inner_id) = outer.wait().unwrap();
        assert_eq!(outer_id, inner_id, "ran inline in the member");
    });
}

/// GREEN-12: spawn_n member panics are never raised.
#[test]
fn spawn_n_member_panic_is_not_raised() {
    green(|| {
        let pool = GreenPool::new(4);
        let ok = Arc::new(AtomicUsize::new(0));
        for i in 0..8 {
            let ok = ok.clone();
            pool.spawn_n(move || {
                if i % 2 == 0 {
                    panic!("member panic");
                }
                ok.fetch_add(1, Ordering::SeqCst);
            });
        }
        pool.waitall().unwrap();
        assert_eq!(ok.load(Ordering::SeqCst), 4);
        assert_eq!(pool.running(), 0);
    });
}

/// GREEN-13 / TEST-GREEN-06: resize applies to later spawns, running members carry on, and
/// free() can go negative.
#[test]
fn resize_applies_to_later_spawns_and_free_can_go_negative() {
    green(|| {
        let pool = GreenPool::new(3);
        for _ in 0..3 {
            pool.spawn(|| sleep(Duration::from_millis(20)));
        }
        pool.resize(1);
        assert_eq!(pool.free(), -2);
        assert_eq!(pool.running(), 3);
        pool.resize(5);
        let more: Vec<_> = (0..2).map(|i| pool.spawn(move || i)).collect();
        assert_eq!(pool.running(), 5);
        for (i, g) in more.into_iter().enumerate() {
            assert_eq!(g.wait(), Ok(i));
        }
        pool.waitall().unwrap();
    });
}

/// GREEN-14: waitall returns at once for an empty pool, and from a member it is refused.
#[test]
fn waitall_empty_returns_and_from_member_is_refused() {
    green(|| {
        let pool = GreenPool::new(2);
        pool.waitall().unwrap();
        let p2 = pool.clone();
        let r = pool.spawn(move || p2.waitall());
        assert_eq!(r.wait().unwrap(), Err(PoolError::WaitallFromMember));
    });
}

/// A member killed before it started still frees its slot.
#[test]
fn killed_member_frees_its_slot() {
    green(|| {
        let pool = GreenPool::new(1);
        let gt = pool.spawn(|| sleep(Duration::from_secs(30)));
        gt.kill();
        pool.waitall().unwrap();
        assert_eq!(pool.free(), 1);
    });
}

/// GREEN-15 / TEST-GREEN-08: imap yields in input order whatever the finishing order, runs at
/// most `size` at once, stops after an error at its position, and an empty input is empty.
#[test]
fn imap_keeps_input_order_bounds_concurrency_and_stops_at_error() {
    green(|| {
        let pool = GreenPool::new(3);
        let live = Arc::new(AtomicUsize::new(0));
        let peak = Arc::new(AtomicUsize::new(0));
        let (l, p) = (live.clone(), peak.clone());
        let out: Vec<_> = pool
            .imap(
                move |ms: u64| {
                    let now = l.fetch_add(1, Ordering::SeqCst) + 1;
                    p.fetch_max(now, Ordering::SeqCst);
                    sleep(Duration::from_millis(ms));
                    l.fetch_sub(1, Ordering::SeqCst);
                    ms
                },
                vec![30, 10, 20, 5, 1],
            )
            .map(Result::unwrap)
            .collect();
        assert_eq!(out, vec![30, 10, 20, 5, 1]);
        assert!(peak.load(Ordering::SeqCst) <= 3);

        let with_err: Vec<_> = pool
            .imap(
                |x: u32| {
                    if x == 2 {
                        panic!("bad item");
                    }
                    x
                },
                0..5,
            )
            .collect();
        assert_eq!(with_err.len(), 3);
        assert_eq!(with_err[0], Ok(0));
        assert_eq!(with_err[1], Ok(1));
        assert_eq!(with_err[2], Err(GreenError::Panicked("bad item".into())));

        assert_eq!(pool.imap(|x: u8| x, Vec::new()).count(), 0);
    });
}

/// GREEN-16 / TEST-GREEN-08: a pile yields in spawn order, raises a job's error at its place,
/// and an empty pile stops at once.
#[test]
fn pile_yields_in_spawn_order_with_errors_in_place() {
    green(|| {
        let mut pile = GreenPile::new(10);
        let order = Arc::new(Mutex::new(Vec::new()));
        for (i, ms) in [20u64, 1, 10].into_iter().enumerate() {
            let o = order.clone();
            pile.spawn(move || {
                sleep(Duration::from_millis(ms));
                o.lock().unwrap().push(i);
                if i == 1 {
                    panic!("job 1 failed");
                }
                i
            });
        }
        let got: Vec<_> = pile.by_ref().collect();
        assert_eq!(got[0], Ok(0));
        assert_eq!(got[1], Err(GreenError::Panicked("job 1 failed".into())));
        assert_eq!(got[2], Ok(2));
        assert_eq!(
            *order.lock().unwrap(),
            vec![1, 2, 0],
            "finished out of order"
        );
        let mut empty: GreenPile<u8> = GreenPile::new(1);
        assert!(empty.next().is_none());
    });
}
