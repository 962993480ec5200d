//! Notification endpoints on every executor, with the listener's in-flight bound, over the
//! in-memory transport (MSG-LSN-03, MSG-LSN-06, GREEN-01): each kind of callback (blocking
//! style and `async`) on tokio, in green threads and on native threads; endpoints of one
//! listener on different executors; the bound on notifications handled at once; and a stop
//! with notifications in flight.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use osier_messaging::{
    Executor, NotificationEndpoint, NotificationFilter, NotificationListener, NotificationResult,
    Priority, RequestContext, Target, Transport,
};
use serde_json::json;

mod common;
use common::{block, bridge, notifier, until};

fn unique(name: &str) -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    format!("exec-{name}-{}", N.fetch_add(1, Ordering::Relaxed))
}

const EXECUTORS: [Executor; 3] = [Executor::Tokio, Executor::Green, Executor::Threads];

/// What an endpoint does with its n-th call: requeue, panic, then handle.
fn verdict(call: usize) -> NotificationResult {
    match call {
        0 => NotificationResult::Requeue,
        1 => panic!("endpoint failed"),
        _ => NotificationResult::Handled,
    }
}

/// MSG-LSN-03, per executor and callback style: `Requeue` redelivers, a panic counts as
/// `Requeue`, and the third delivery is handled; the listener keeps serving.
#[test]
fn each_executor_handles_requeues_and_survives_panics() {
    for ex in EXECUTORS {
        for style in ["blocking", "async"] {
            let t = Transport::new("memory://").unwrap();
            let topic = unique("verdicts");
            let calls = Arc::new(AtomicUsize::new(0));
            let c = calls.clone();
            let ep = NotificationEndpoint::new("e").executor(ex);
            let ep = if style == "async" {
                ep.on_async(Priority::Info, move |_n| {
                    let call = c.fetch_add(1, Ordering::SeqCst);
                    async move { verdict(call) }
                })
            } else {
                ep.on(Priority::Info, move |_n| {
                    verdict(c.fetch_add(1, Ordering::SeqCst))
                })
            };
            let l = NotificationListener::new(&t, vec![Target::topic(&topic)], vec![ep])
                .allow_requeue(true)
                .bridge(bridge().clone());
            block(async {
                l.start().await.unwrap();
                notifier(&t, &topic)
                    .info(&RequestContext::new(), "e", json!({}))
                    .await;
                until(&format!("{ex:?}/{style}"), Duration::from_secs(5), || {
                    l.stats().handled.load(Ordering::SeqCst) == 1
                })
                .await;
                l.stop().await;
            });
            assert_eq!(calls.load(Ordering::SeqCst), 3, "{ex:?}/{style}");
            assert_eq!(
                l.stats().requeued.load(Ordering::SeqCst),
                2,
                "{ex:?}/{style}"
            );
        }
    }
}

/// A blocking-style endpoint on the green executor runs in a green thread (it may block
/// through `tpool`), and an `async` one on tokio; one listener holds both.
#[test]
fn endpoints_of_one_listener_run_on_their_own_executors() {
    let t = Transport::new("memory://").unwrap();
    let topic = unique("mixed");
    let seen: Arc<Mutex<Vec<(&'static str, bool)>>> = Arc::default();
    let (s1, s2) = (seen.clone(), seen.clone());
    let green = NotificationEndpoint::new("green")
        .executor(Executor::Green)
        .on(Priority::Info, move |_n| {
            s1.lock()
                .unwrap()
                .push(("green", osier_green::current().is_some()));
            NotificationResult::Handled
        });
    let tokio_ep = NotificationEndpoint::new("tokio").on_async(Priority::Info, move |_n| {
        let s2 = s2.clone();
        async move {
            let on_tokio = tokio::runtime::Handle::try_current().is_ok();
            s2.lock().unwrap().push(("tokio", on_tokio));
            NotificationResult::Handled
        }
    });
    let l = NotificationListener::new(&t, vec![Target::topic(&topic)], vec![green, tokio_ep])
        .bridge(bridge().clone());
    block(async {
        l.start().await.unwrap();
        notifier(&t, &topic)
            .info(&RequestContext::new(), "e", json!({}))
            .await;
        until("both endpoints", Duration::from_secs(5), || {
            seen.lock().unwrap().len() == 2
        })
        .await;
        l.stop().await;
    });
    assert_eq!(
        *seen.lock().unwrap(),
        vec![("green", true), ("tokio", true)],
        "in registration order, each where it belongs"
    );
}

/// A green endpoint that blocks (a native sleep through `tpool`) does not stall an `async`
/// endpoint of the same listener: a later notification for the async one is handled while
/// the green one still sleeps.
#[test]
fn a_blocking_green_endpoint_does_not_stall_an_async_one() {
    let t = Transport::new("memory://").unwrap();
    let topic = unique("stall");
    let slow_done = Arc::new(AtomicUsize::new(0));
    let fast_at: Arc<Mutex<Option<Instant>>> = Arc::default();
    let (sd, fa) = (slow_done.clone(), fast_at.clone());
    let slow = NotificationEndpoint::new("slow")
        .executor(Executor::Green)
        .filter(NotificationFilter::new().event_type("^slow$").unwrap())
        .on(Priority::Info, move |_n| {
            osier_green::tpool::execute(|| std::thread::sleep(Duration::from_secs(2)));
            sd.fetch_add(1, Ordering::SeqCst);
            NotificationResult::Handled
        });
    let fast = NotificationEndpoint::new("fast")
        .filter(NotificationFilter::new().event_type("^fast$").unwrap())
        .on_async(Priority::Info, move |_n| {
            let fa = fa.clone();
            async move {
                *fa.lock().unwrap() = Some(Instant::now());
                NotificationResult::Handled
            }
        });
    let l = NotificationListener::new(&t, vec![Target::topic(&topic)], vec![slow, fast])
        .bridge(bridge().clone());
    block(async {
        l.start().await.unwrap();
        let n = notifier(&t, &topic);
        let sent = Instant::now();
        n.info(&RequestContext::new(), "slow", json!({})).await;
        n.info(&RequestContext::new(), "fast", json!({})).await;
        until("the async endpoint", Duration::from_secs(5), || {
            fast_at.lock().unwrap().is_some()
        })
        .await;
        let fast_after = fast_at.lock().unwrap().unwrap() - sent;
        assert!(
            fast_after < Duration::from_secs(1) && slow_done.load(Ordering::SeqCst) == 0,
            "the async endpoint waited for the green one: {fast_after:?}"
        );
        l.stop().await;
    });
    assert_eq!(slow_done.load(Ordering::SeqCst), 1, "stop waited for it");
}

/// Counts handlers running at once, and the most at any time.
#[derive(Default)]
struct Concurrency {
    now: AtomicUsize,
    max: AtomicUsize,
}

impl Concurrency {
    fn enter(&self) {
        let n = self.now.fetch_add(1, Ordering::SeqCst) + 1;
        self.max.fetch_max(n, Ordering::SeqCst);
    }
    fn leave(&self) {
        self.now.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The in-flight bound holds under a burst, on every executor: with `max_in_flight(8)` and
/// 120 notifications at once, at most 8 handlers run together, and 8 do.
#[test]
fn the_in_flight_bound_holds_under_a_burst() {
    for ex in EXECUTORS {
        let t = Transport::new("memory://").unwrap();
        let topic = unique("burst");
        let c = Arc::new(Concurrency::default());
        let c2 = c.clone();
        let ep = NotificationEndpoint::new("e")
            .executor(ex)
            .on(Priority::Info, move |_n| {
                c2.enter();
                // Blocking style on every executor: a green thread sleeps green.
                if osier_green::current().is_some() {
                    osier_green::sleep(Duration::from_millis(10));
                } else {
                    std::thread::sleep(Duration::from_millis(10));
                }
                c2.leave();
                NotificationResult::Handled
            });
        let l = NotificationListener::new(&t, vec![Target::topic(&topic)], vec![ep])
            .max_in_flight(8)
            .bridge(bridge().clone());
        block(async {
            l.start().await.unwrap();
            let n = notifier(&t, &topic);
            for i in 0..120 {
                n.info(&RequestContext::new(), "e", json!({ "i": i })).await;
            }
            until(
                &format!("{ex:?}: all handled"),
                Duration::from_secs(20),
                || l.stats().handled.load(Ordering::SeqCst) == 120,
            )
            .await;
            l.stop().await;
        });
        assert_eq!(c.max.load(Ordering::SeqCst), 8, "{ex:?}: at most 8, and 8");
    }
}

/// A listener stopped with notifications in flight finishes them; those it had not taken wait
/// in the queue for the next listener: every notification is handled once, none lost.
#[test]
fn a_stop_with_notifications_in_flight_loses_none_and_handles_none_twice() {
    let t = Transport::new("memory://").unwrap();
    let topic = unique("stop");
    let counts: Arc<Mutex<BTreeMap<i64, u32>>> = Arc::default();
    let endpoint = |counts: Arc<Mutex<BTreeMap<i64, u32>>>| {
        NotificationEndpoint::new("e").on_async(Priority::Info, move |n| {
            let counts = counts.clone();
            async move {
                tokio::time::sleep(Duration::from_millis(30)).await;
                let i = n.payload["i"].as_i64().unwrap_or(-1);
                *counts.lock().unwrap().entry(i).or_default() += 1;
                NotificationResult::Handled
            }
        })
    };
    let listener = || {
        NotificationListener::new(
            &t,
            vec![Target::topic(&topic)],
            vec![endpoint(counts.clone())],
        )
        .pool("workers")
        .max_in_flight(10)
        .bridge(bridge().clone())
    };
    block(async {
        let first = listener();
        first.start().await.unwrap();
        let n = notifier(&t, &topic);
        for i in 0..100 {
            n.info(&RequestContext::new(), "e", json!({ "i": i })).await;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        first.stop().await;
        let by_first = counts.lock().unwrap().len();
        assert!(
            (1..100).contains(&by_first),
            "the first listener was stopped part-way: {by_first}"
        );
        let second = listener();
        second.start().await.unwrap();
        until("the rest handled", Duration::from_secs(10), || {
            counts.lock().unwrap().len() == 100
        })
        .await;
        second.stop().await;
    });
    let counts = counts.lock().unwrap();
    assert!(
        counts.values().all(|c| *c == 1),
        "handled twice: {:?}",
        counts.iter().filter(|(_, c)| **c > 1).collect::<Vec<_>>()
    );
}

/// `stop()` returns only once the notifications being handled are handled (oslo's `stop()`
/// then `wait()`): an endpoint still running when `stop()` is called has finished by the time
/// it returns.
#[test]
fn stop_returns_once_the_notifications_being_handled_are_done() {
    let t = Transport::new("memory://").unwrap();
    let topic = unique("stop-waits");
    let (started, done) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let (s, d) = (started.clone(), done.clone());
    let endpoint = NotificationEndpoint::new("e").on_async(Priority::Info, move |_n| {
        let (s, d) = (s.clone(), d.clone());
        async move {
            s.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(200)).await;
            d.fetch_add(1, Ordering::SeqCst);
            NotificationResult::Handled
        }
    });
    let listener = NotificationListener::new(&t, vec![Target::topic(&topic)], vec![endpoint])
        .bridge(bridge().clone());
    block(async {
        listener.start().await.unwrap();
        notifier(&t, &topic)
            .info(&RequestContext::new(), "e", json!({}))
            .await;
        until("the endpoint runs", Duration::from_secs(10), || {
            started.load(Ordering::SeqCst) == 1
        })
        .await;
        listener.stop().await;
        assert_eq!(
            done.load(Ordering::SeqCst),
            1,
            "stop() returned mid-handling"
        );
    });
}

/// Batch callbacks run on every executor too (MSG-LSN-06).
#[test]
fn batch_callbacks_run_on_every_executor() {
    for ex in EXECUTORS {
        for style in ["blocking", "async"] {
            let t = Transport::new("memory://").unwrap();
            let topic = unique("batch");
            let sizes: Arc<Mutex<Vec<usize>>> = Arc::default();
            let s2 = sizes.clone();
            let ep = NotificationEndpoint::new("e").executor(ex);
            let ep = if style == "async" {
                ep.on_batch_async(Priority::Info, move |b| {
                    let s2 = s2.clone();
                    async move {
                        s2.lock().unwrap().push(b.len());
                        NotificationResult::Handled
                    }
                })
            } else {
                ep.on_batch(Priority::Info, move |b| {
                    s2.lock().unwrap().push(b.len());
                    NotificationResult::Handled
                })
            };
            let l = NotificationListener::new(&t, vec![Target::topic(&topic)], vec![ep])
                .batch(5, None)
                .bridge(bridge().clone());
            block(async {
                l.start().await.unwrap();
                let n = notifier(&t, &topic);
                for i in 0..10 {
                    n.info(&RequestContext::new(), "e", json!({ "i": i })).await;
                }
                until(&format!("{ex:?}/{style}"), Duration::from_secs(5), || {
                    l.stats().handled.load(Ordering::SeqCst) == 10
                })
                .await;
                l.stop().await;
            });
            assert_eq!(*sizes.lock().unwrap(), vec![5, 5], "{ex:?}/{style}");
        }
    }
}

/// A listener needs at least one slot.
#[test]
fn max_in_flight_zero_is_refused() {
    let t = Transport::new("memory://").unwrap();
    let ep = NotificationEndpoint::new("e").on(Priority::Info, |_n| NotificationResult::Handled);
    let l = NotificationListener::new(&t, vec![Target::topic("zero")], vec![ep])
        .max_in_flight(0)
        .bridge(bridge().clone());
    let e = block(l.start()).unwrap_err();
    assert!(e.to_string().contains("max_in_flight"), "{e}");
}
