//! TaskGroup (oslo's ThreadGroup, SVC-TG-*, TEST-SVC-09) with green threads and async tasks.
//! Members run on a real bridge, so the timings here are lower bounds and generous upper bounds,
//! never exact sleeps.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use osier_bridge::Bridge;
use osier_service::looping::{LoopingCall, Step};
use osier_service::{TaskGroup, TaskGroupError};

fn bridge() -> Bridge {
    Bridge::builder().tokio_workers(2).build().unwrap()
}

async fn until(what: &str, f: impl Fn() -> bool) {
    let t0 = Instant::now();
    while !f() {
        assert!(t0.elapsed() < Duration::from_secs(10), "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[test]
fn finished_members_drop_out_on_their_own() {
    // SVC-TG-01/02: finished threads are removed.
    let b = bridge();
    let g = TaskGroup::new(b.clone(), 10);
    b.tokio().block_on(async {
        g.add_task(|_| async {}).unwrap();
        g.add_green(|_| {}).unwrap();
        until("members gone", || g.is_empty()).await;
    });
}

#[test]
fn a_full_group_refuses_a_new_member() {
    // SVC-TG-02: the limit raises (here: a typed error) instead of blocking.
    let b = bridge();
    let g = TaskGroup::new(b.clone(), 1);
    b.tokio().block_on(async {
        g.add_task(|c| async move { c.cancelled().await }).unwrap();
        assert_eq!(g.add_task(|_| async {}), Err(TaskGroupError::Full(1)));
        assert_eq!(g.add_green(|_| {}), Err(TaskGroupError::Full(1)));
        g.stop(false).await;
    });
}

#[test]
fn a_non_graceful_stop_returns_at_once_and_empties_both_lists() {
    // SVC-TG-04, TEST-SVC-09: under 1 s, both lists empty; async and green members killed.
    let b = bridge();
    let g = TaskGroup::new(b.clone(), 10);
    b.tokio().block_on(async {
        for _ in 0..2 {
            g.add_task(|_| tokio::time::sleep(Duration::from_secs(60)))
                .unwrap();
        }
        g.add_green(|_| osier_green::sleep(Duration::from_secs(60)))
            .unwrap();
        g.add_timer(
            LoopingCall::fixed_interval(Duration::from_secs(60)),
            || async { Ok::<_, String>(Step::Continue) },
        );
        assert_eq!((g.len(), g.timers_len()), (3, 1));
        let t0 = Instant::now();
        g.stop(false).await;
        assert!(t0.elapsed() < Duration::from_secs(1), "{:?}", t0.elapsed());
        assert_eq!((g.len(), g.timers_len()), (0, 0));
        // wait() after a non-graceful stop has nothing left to wait for.
        tokio::time::timeout(Duration::from_secs(5), g.wait())
            .await
            .expect("wait returns");
    });
}

#[test]
fn a_graceful_stop_waits_for_the_members_to_finish() {
    // SVC-TG-04, TEST-SVC-07/09: a 1 s task finishes; the stop takes at least 1 s.
    let b = bridge();
    let g = TaskGroup::new(b.clone(), 10);
    let finished = Arc::new(AtomicUsize::new(0));
    b.tokio().block_on(async {
        let f = finished.clone();
        g.add_task(move |_| async move {
            tokio::time::sleep(Duration::from_secs(1)).await;
            f.fetch_add(1, Ordering::SeqCst);
        })
        .unwrap();
        let f = finished.clone();
        g.add_green(move |_| {
            osier_green::sleep(Duration::from_secs(1));
            f.fetch_add(1, Ordering::SeqCst);
        })
        .unwrap();
        let t0 = Instant::now();
        g.stop(true).await;
        assert!(t0.elapsed() >= Duration::from_secs(1));
        assert_eq!(finished.load(Ordering::SeqCst), 2);
        assert!(g.is_empty());
    });
}

#[test]
fn stop_called_from_a_member_leaves_exactly_that_member() {
    // TEST-SVC-09: stop from inside a member thread leaves exactly that thread in the list.
    let b = bridge();
    let g = TaskGroup::new(b.clone(), 10);
    let (tx, rx) = tokio::sync::oneshot::channel();
    b.tokio().block_on(async {
        for _ in 0..2 {
            g.add_task(|_| tokio::time::sleep(Duration::from_secs(60)))
                .unwrap();
        }
        let g2 = g.clone();
        g.add_task(move |_| async move {
            g2.stop(false).await;
            let _ = tx.send(g2.len());
        })
        .unwrap();
        assert_eq!(rx.await.unwrap(), 1, "only the caller is left");
        until("caller gone", || g.is_empty()).await;
    });
}

#[test]
fn cancel_lets_cooperative_members_return_and_kills_the_rest() {
    // SVC-TG-06, TEST-SVC-09 ("cancel with a timeout ends up stopping it"); cooperative
    // cancellation for async and green members alike.
    let b = bridge();
    let g = TaskGroup::new(b.clone(), 10);
    let polite_async = Arc::new(AtomicBool::new(false));
    let polite_green = Arc::new(AtomicBool::new(false));
    b.tokio().block_on(async {
        let p = polite_async.clone();
        g.add_task(move |c| async move {
            c.cancelled().await;
            p.store(true, Ordering::SeqCst);
        })
        .unwrap();
        let p = polite_green.clone();
        g.add_green(move |c| {
            while !c.is_cancelled() {
                osier_green::sleep(Duration::from_millis(5));
            }
            p.store(true, Ordering::SeqCst);
        })
        .unwrap();
        g.add_task(|_| tokio::time::sleep(Duration::from_secs(60)))
            .unwrap();
        let t0 = Instant::now();
        g.cancel(Duration::from_millis(300)).await;
        assert!(
            t0.elapsed() >= Duration::from_millis(300),
            "the stubborn one held it"
        );
        assert!(t0.elapsed() < Duration::from_secs(5));
        assert!(polite_async.load(Ordering::SeqCst));
        assert!(polite_green.load(Ordering::SeqCst));
        assert!(g.is_empty());
    });
}

#[test]
fn a_stopped_timer_stays_listed_until_timer_done_and_stop_timers_empties_the_list() {
    // SVC-TG-03, SVC-TG-05, TEST-SVC-09.
    let b = bridge();
    let g = TaskGroup::new(b.clone(), 10);
    b.tokio().block_on(async {
        let tick = || async { Ok::<_, String>(Step::Continue) };
        let t1 = g.add_timer(LoopingCall::fixed_interval(Duration::from_millis(10)), tick);
        let _t2 = g.add_timer(LoopingCall::fixed_interval(Duration::from_millis(10)), tick);
        t1.stop();
        assert_eq!(g.timers_len(), 2, "stop() alone keeps the entry");
        g.timer_done(&t1);
        assert_eq!(g.timers_len(), 1);
        g.stop_timers();
        assert_eq!(g.timers_len(), 0);
        tokio::time::timeout(Duration::from_secs(5), g.wait())
            .await
            .expect("nothing left to wait for");
    });
}

#[test]
fn a_dynamic_timer_is_running_once_added() {
    // SVC-TG-03, TEST-SVC-09 ("the dynamic timer is running after it is added").
    let b = bridge();
    let g = TaskGroup::new(b.clone(), 10);
    let runs = Arc::new(AtomicUsize::new(0));
    b.tokio().block_on(async {
        let r = runs.clone();
        g.add_timer(
            LoopingCall::dynamic().periodic_interval_max(Duration::from_secs(1)),
            move || {
                r.fetch_add(1, Ordering::SeqCst);
                async { Ok::<_, String>(Step::Sleep(Some(Duration::from_millis(10)))) }
            },
        );
        until("three runs", || runs.load(Ordering::SeqCst) >= 3).await;
        g.stop(true).await;
        let n = runs.load(Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(runs.load(Ordering::SeqCst), n, "stopped");
    });
}

#[test]
fn a_panicking_member_is_logged_and_does_not_disturb_the_others() {
    let b = bridge();
    let g = TaskGroup::new(b.clone(), 10);
    b.tokio().block_on(async {
        g.add_task(|_| async { panic!("boom (async)") }).unwrap();
        g.add_green(|_| panic!("boom (green)")).unwrap();
        let ok = Arc::new(AtomicBool::new(false));
        let o = ok.clone();
        g.add_task(move |_| async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            o.store(true, Ordering::SeqCst);
        })
        .unwrap();
        until("all done", || g.is_empty()).await;
        assert!(ok.load(Ordering::SeqCst));
    });
}
