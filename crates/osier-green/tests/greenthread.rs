//! GreenThread, spawn, spawn_n, spawn_after, sleep, kill, cancel, link (GREEN-02..10,
//! TEST-GREEN-01..05).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use osier_green::{sleep, spawn, spawn_after, spawn_n, GreenError, Runtime};

fn green<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    Runtime::global().block_on(f).expect("test body failed")
}

/// GREEN-02: spawn returns at once and the new thread does not run until the caller yields;
/// back-to-back spawns start in spawn order.
#[test]
fn spawn_does_not_run_until_caller_yields_and_keeps_order() {
    let log = green(|| {
        let log = Arc::new(Mutex::new(Vec::new()));
        let mut gts = Vec::new();
        for i in 0..3 {
            let l = log.clone();
            gts.push(spawn(move || l.lock().unwrap().push(i)));
        }
        log.lock().unwrap().push(100); // still running: nothing else ran
        for g in gts {
            g.wait().unwrap();
        }
        let v = log.lock().unwrap().clone();
        v
    });
    assert_eq!(log, vec![100, 0, 1, 2]);
}

/// GREEN-06 / TEST-GREEN-05: sleep(0) lets every runnable thread run once, in spawn order,
/// before the caller resumes.
#[test]
fn sleep_zero_runs_every_runnable_thread_once_before_caller() {
    let log = green(|| {
        let log = Arc::new(Mutex::new(Vec::new()));
        log.lock().unwrap().push("caller-before");
        for name in ["t0", "t1", "t2"] {
            let l = log.clone();
            spawn(move || l.lock().unwrap().push(name));
        }
        sleep(Duration::ZERO);
        log.lock().unwrap().push("caller-after");
        let v = log.lock().unwrap().clone();
        v
    });
    assert_eq!(log, ["caller-before", "t0", "t1", "t2", "caller-after"]);
}

/// GREEN-07: wait returns the value, to any number of waiters, again after completion.
#[test]
fn wait_returns_value_to_many_waiters_and_again() {
    green(|| {
        let gt = spawn(|| {
            sleep(Duration::from_millis(5));
            41 + 1
        });
        let waiters: Vec<_> = (0..5)
            .map(|_| {
                let g = gt.clone();
                spawn(move || g.wait())
            })
            .collect();
        for w in waiters {
            assert_eq!(w.wait().unwrap(), Ok(42));
        }
        assert_eq!(gt.wait(), Ok(42));
        assert_eq!(gt.wait(), Ok(42));
    });
}

/// GREEN-07: a panic in the body is reported to the waiter with its message.
#[test]
fn wait_reports_panic_with_message() {
    green(|| {
        let gt = spawn(|| -> u32 { panic!("boom {}", 7) });
        assert_eq!(gt.wait(), Err(GreenError::Panicked("boom 7".into())));
    });
}

/// GREEN-07: wait from a plain OS thread blocks that thread until the result is there.
#[test]
fn wait_from_os_thread_blocks_until_done() {
    let gt = spawn(|| {
        sleep(Duration::from_millis(10));
        "x"
    });
    assert_eq!(gt.wait(), Ok("x"));
}

/// join takes the value without Clone; later waits report ResultTaken.
#[test]
fn join_takes_value_once() {
    green(|| {
        let gt = spawn(|| vec![1, 2, 3]);
        let other = gt.clone();
        assert_eq!(gt.join(), Ok(vec![1, 2, 3]));
        assert_eq!(other.wait(), Err(GreenError::ResultTaken));
    });
}

/// GREEN-08 / TEST-GREEN-01: killing a thread that has not started: the body never runs,
/// wait reports Killed, the link fires once, it is dead; killing it again does nothing.
#[test]
fn kill_before_start_never_runs_body_but_fires_links() {
    green(|| {
        let ran = Arc::new(AtomicUsize::new(0));
        let linked = Arc::new(AtomicUsize::new(0));
        let r = ran.clone();
        let gt = spawn(move || {
            r.fetch_add(1, Ordering::SeqCst);
        });
        let l = linked.clone();
        gt.link(move |_| {
            l.fetch_add(1, Ordering::SeqCst);
        });
        gt.kill();
        assert_eq!(gt.wait(), Err(GreenError::Killed));
        assert!(gt.is_finished());
        gt.kill();
        sleep(Duration::from_millis(5));
        assert_eq!(ran.load(Ordering::SeqCst), 0);
        assert_eq!(linked.load(Ordering::SeqCst), 1);
    });
}

/// GREEN-08: kill raises in a parked thread, unwinding it (destructors run), and the killer
/// resumes after the target handled it.
#[test]
fn kill_parked_thread_unwinds_it_before_killer_resumes() {
    green(|| {
        struct Dropped(Arc<AtomicUsize>);
        impl Drop for Dropped {
            fn drop(&mut self) {
                self.0.fetch_add(1, Ordering::SeqCst);
            }
        }
        let drops = Arc::new(AtomicUsize::new(0));
        let d = drops.clone();
        let gt = spawn(move || {
            let _guard = Dropped(d);
            sleep(Duration::from_secs(30));
            "not reached"
        });
        sleep(Duration::ZERO); // let it start and park
        assert!(gt.is_started());
        let t0 = Instant::now();
        gt.kill();
        assert_eq!(
            drops.load(Ordering::SeqCst),
            1,
            "unwound by the time kill returns"
        );
        assert_eq!(gt.wait(), Err(GreenError::Killed));
        assert!(t0.elapsed() < Duration::from_secs(5));
    });
}

/// GREEN-08: killing a finished thread does nothing.
#[test]
fn kill_after_finish_keeps_result() {
    green(|| {
        let gt = spawn(|| 5);
        assert_eq!(gt.wait(), Ok(5));
        gt.kill();
        assert_eq!(gt.wait(), Ok(5));
    });
}

/// GREEN-08: a thread may kill itself.
#[test]
fn kill_self_unwinds_at_once() {
    green(|| {
        let slot: Arc<Mutex<Option<osier_green::GreenThread<u32>>>> = Arc::new(Mutex::new(None));
        let s2 = slot.clone();
        let gt = spawn(move || {
            let me = s2.lock().unwrap().clone().unwrap();
            me.kill();
            1
        });
        *slot.lock().unwrap() = Some(gt.clone());
        assert_eq!(gt.wait(), Err(GreenError::Killed));
    });
}

/// GREEN-08 with several hubs: a kill from another hub's green thread reaches a parked target.
#[test]
fn kill_across_hubs_reaches_parked_thread() {
    let rt = Runtime::builder().hubs(2).build().unwrap();
    let target = osier_green::GreenBuilder::new()
        .hub(0)
        .spawn_on(&rt, || sleep(Duration::from_secs(30)));
    let t2 = target.clone();
    let killer = osier_green::GreenBuilder::new()
        .hub(1)
        .spawn_on(&rt, move || {
            sleep(Duration::from_millis(10));
            t2.kill();
        });
    killer.wait().unwrap();
    assert_eq!(target.wait(), Err(GreenError::Killed));
    rt.shutdown_timeout(Duration::from_secs(2)).unwrap();
}

/// GREEN-09: cancel after start does nothing and the result is still delivered.
#[test]
fn cancel_after_start_is_a_no_op() {
    green(|| {
        let gt = spawn(|| {
            sleep(Duration::from_millis(10));
            9
        });
        sleep(Duration::ZERO);
        assert!(!gt.cancel());
        assert_eq!(gt.wait(), Ok(9));
    });
}

/// GREEN-04 / TEST-GREEN-02: spawn_after cancelled before it is due never runs.
#[test]
fn spawn_after_cancelled_before_due_never_runs() {
    green(|| {
        let ran = Arc::new(AtomicUsize::new(0));
        let r = ran.clone();
        let gt = spawn_after(Duration::from_millis(30), move || {
            r.fetch_add(1, Ordering::SeqCst);
        });
        assert!(gt.cancel());
        assert_eq!(gt.wait(), Err(GreenError::Killed));
        sleep(Duration::from_millis(60));
        assert_eq!(ran.load(Ordering::SeqCst), 0);
    });
}

/// GREEN-04 / TEST-GREEN-02: a running spawn_after thread that is cancelled finishes normally.
#[test]
fn spawn_after_cancel_while_running_returns_value() {
    green(|| {
        let gt = spawn_after(Duration::from_millis(5), || {
            sleep(Duration::from_millis(20));
            "done"
        });
        sleep(Duration::from_millis(12));
        assert!(gt.is_started());
        assert!(!gt.cancel());
        assert_eq!(gt.wait(), Ok("done"));
    });
}

/// GREEN-04: spawn_after starts after the delay, even though its spawner already ended.
#[test]
fn spawn_after_runs_after_spawner_ended() {
    green(|| {
        let t0 = Instant::now();
        let spawner = spawn(|| spawn_after(Duration::from_millis(30), Instant::now));
        let gt = spawner.join().unwrap();
        let started = gt.wait().unwrap();
        assert!(started.duration_since(t0) >= Duration::from_millis(30));
    });
}

/// GREEN-03: spawn_n threads run; a panic in one goes nowhere else.
#[test]
fn spawn_n_runs_and_swallows_panics() {
    green(|| {
        let n = Arc::new(AtomicUsize::new(0));
        for i in 0..10 {
            let n = n.clone();
            spawn_n(move || {
                if i == 3 {
                    panic!("spawn_n panic is reported, not raised");
                }
                n.fetch_add(1, Ordering::SeqCst);
            });
        }
        sleep(Duration::from_millis(5));
        assert_eq!(n.load(Ordering::SeqCst), 9);
    });
}

/// GREEN-10 / TEST-GREEN-04: link after the end runs at once inside link; a link that links
/// again runs that one once; callbacks run in order, for returned, panicked and killed threads.
#[test]
fn link_runs_in_order_at_end_and_immediately_after_end() {
    green(|| {
        let log = Arc::new(Mutex::new(Vec::new()));
        let gt = spawn(|| {
            sleep(Duration::from_millis(2));
            3
        });
        for i in 0..3 {
            let l = log.clone();
            gt.link(move |g| l.lock().unwrap().push((i, g.wait().unwrap())));
        }
        gt.wait().unwrap();
        assert_eq!(*log.lock().unwrap(), vec![(0, 3), (1, 3), (2, 3)]);

        let l = log.clone();
        let count = Arc::new(AtomicUsize::new(0));
        let c = count.clone();
        gt.link(move |g| {
            l.lock().unwrap().push((9, 9));
            let c2 = c.clone();
            g.link(move |_| {
                c2.fetch_add(1, Ordering::SeqCst);
            });
        });
        assert_eq!(
            log.lock().unwrap().last(),
            Some(&(9, 9)),
            "ran inside link()"
        );
        assert_eq!(count.load(Ordering::SeqCst), 1);

        let panicked = spawn(|| -> u8 { panic!("p") });
        let got = Arc::new(Mutex::new(None));
        let g2 = got.clone();
        panicked.link(move |g| *g2.lock().unwrap() = Some(g.wait()));
        let _ = panicked.wait();
        sleep(Duration::ZERO);
        assert_eq!(
            *got.lock().unwrap(),
            Some(Err(GreenError::Panicked("p".into())))
        );
    });
}

/// GREEN-10: unlink removes a callback and says whether it was there.
#[test]
fn unlink_reports_whether_removed() {
    green(|| {
        let hit = Arc::new(AtomicUsize::new(0));
        let h = hit.clone();
        let gt = spawn(|| sleep(Duration::from_millis(5)));
        let id = gt.link(move |_| {
            h.fetch_add(1, Ordering::SeqCst);
        });
        assert!(gt.unlink(id));
        assert!(!gt.unlink(id));
        gt.wait().unwrap();
        assert_eq!(hit.load(Ordering::SeqCst), 0);
    });
}

/// Named green threads report their name; sleep parks at least the requested time.
#[test]
fn named_thread_sees_its_name_and_sleep_waits_long_enough() {
    green(|| {
        let gt = osier_green::GreenBuilder::new()
            .name("named-one")
            .spawn(|| {
                let t0 = Instant::now();
                sleep(Duration::from_millis(20));
                (osier_green::current().unwrap().name, t0.elapsed())
            });
        let (name, took) = gt.wait().unwrap();
        assert_eq!(name.as_deref(), Some("named-one"));
        assert!(took >= Duration::from_millis(20));
    });
}

/// A per-spawn stack size lets deep recursion run that the default stack would not hold.
#[test]
fn per_spawn_stack_size_allows_deep_recursion() {
    fn depth(n: u32) -> u32 {
        let buf = [n as u8; 512];
        if n == 0 {
            0
        } else {
            std::hint::black_box(&buf);
            1 + depth(n - 1)
        }
    }
    let gt = osier_green::GreenBuilder::new()
        .stack_size(4 << 20)
        .spawn(|| depth(2000));
    assert_eq!(gt.wait(), Ok(2000));
}

/// A stack overflow fails only that green thread, with a typed error; the hub keeps running.
#[test]
fn stack_overflow_fails_only_that_green_thread() {
    fn recurse(n: u64) -> u64 {
        let buf = [n as u8; 1024];
        std::hint::black_box(&buf);
        if n == u64::MAX {
            0
        } else {
            recurse(n + 1) + buf[7] as u64
        }
    }
    let rt = Runtime::builder().build().unwrap();
    let gt = rt.spawn(|| recurse(0));
    assert!(matches!(gt.wait(), Err(GreenError::StackOverflow { .. })));
    assert_eq!(rt.block_on(|| 1 + 1), Ok(2), "the hub survived");
    rt.shutdown_timeout(Duration::from_secs(2)).unwrap();
}

/// LESSON-02: the process-wide runtime is chosen once; a second choice fails loudly.
#[test]
fn second_global_install_is_refused() {
    let _ = Runtime::global();
    let err = Runtime::builder().install().unwrap_err();
    assert!(matches!(err, osier_green::RuntimeError::AlreadyInstalled));
}

/// Invalid builder values are typed errors.
#[test]
fn invalid_runtime_config_is_refused() {
    assert!(Runtime::builder().hubs(0).build().is_err());
    assert!(Runtime::builder().stack_size(1024).build().is_err());
}

/// Shutdown kills parked green threads (their waiters see Killed) and stops the hubs; spawning
/// afterwards reports RuntimeShutdown.
#[test]
fn shutdown_kills_parked_threads_and_refuses_new_ones() {
    let rt = Runtime::builder().build().unwrap();
    let parked = rt.spawn(|| sleep(Duration::from_secs(60)));
    std::thread::sleep(Duration::from_millis(10));
    rt.shutdown_timeout(Duration::from_secs(2)).unwrap();
    assert_eq!(parked.wait(), Err(GreenError::Killed));
    assert_eq!(rt.spawn(|| 1).wait(), Err(GreenError::RuntimeShutdown));
}
