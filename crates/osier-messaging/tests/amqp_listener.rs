//! Notification listeners on the real broker with endpoints on every executor (MSG-LSN-03,
//! MSG-LSN-07): handled, requeued and panicking endpoints per executor; the in-flight bound under
//! a burst, with the rest of the burst waiting in RabbitMQ; and a stop with notifications in
//! flight, with another listener of the pool taking over.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use lapin::options::QueueDeclareOptions;
use lapin::types::FieldTable;
use osier_messaging::{
    Executor, NotificationEndpoint, NotificationListener, NotificationResult, Priority,
    RequestContext, Target, Transport,
};
use serde_json::json;

mod common;
use common::{block, bridge, clean_up, notifier, raw_channel, until};

fn topic(name: &str) -> String {
    format!("osier-test-{name}-{}", uuid::Uuid::new_v4().simple())
}

/// Messages waiting in queue `name` (a passive declare with a plain client).
async fn depth(name: &str) -> u32 {
    let (conn, ch) = raw_channel().await;
    let passive = QueueDeclareOptions {
        passive: true,
        ..QueueDeclareOptions::default()
    };
    let n = ch
        .queue_declare(name.into(), passive, FieldTable::default())
        .await
        .unwrap()
        .message_count();
    let _ = tokio::time::timeout(Duration::from_secs(5), conn.close(200, "bye".into())).await;
    n
}

/// MSG-LSN-03/07 on RabbitMQ, per executor: an `async` endpoint requeues a notification, a
/// blocking-style one then panics on it (a requeue), and the third delivery is handled by both.
#[test]
fn endpoints_on_every_executor_requeue_and_survive_panics() {
    for ex in [Executor::Tokio, Executor::Green, Executor::Threads] {
        let t = Transport::new(&common::broker().url()).unwrap();
        let top = topic("executors");
        let calls = Arc::new(AtomicUsize::new(0));
        let (c1, c2) = (calls.clone(), calls.clone());
        let first =
            NotificationEndpoint::new("async")
                .executor(ex)
                .on_async(Priority::Info, move |_n| {
                    let c1 = c1.clone();
                    async move {
                        if c1.fetch_add(1, Ordering::SeqCst) == 0 {
                            NotificationResult::Requeue
                        } else {
                            NotificationResult::Handled
                        }
                    }
                });
        let second =
            NotificationEndpoint::new("blocking")
                .executor(ex)
                .on(Priority::Info, move |_n| {
                    if c2.fetch_add(1, Ordering::SeqCst) == 2 {
                        panic!("endpoint failed");
                    }
                    NotificationResult::Handled
                });
        let l = NotificationListener::new(&t, vec![Target::topic(&top)], vec![first, second])
            .allow_requeue(true)
            .bridge(bridge().clone());
        block(async {
            l.start().await.unwrap();
            notifier(&t, &top)
                .info(&RequestContext::new(), "osier.test", json!({}))
                .await;
            until(&format!("{ex:?}"), Duration::from_secs(10), || {
                l.stats().handled.load(Ordering::SeqCst) == 1
            })
            .await;
            l.stop().await;
            clean_up(&[format!("{top}.info")], &[]).await;
        });
        // async: requeue | async, blocking: panic | async, blocking: handled
        assert_eq!(calls.load(Ordering::SeqCst), 5, "{ex:?}");
        assert_eq!(l.stats().requeued.load(Ordering::SeqCst), 2, "{ex:?}");
    }
}

/// The in-flight bound holds on RabbitMQ, whose prefetch is four times it: with
/// `max_in_flight(8)` and a burst of 300, at most 8 handlers run together (and 8 do), and the
/// rest of the burst waits in the broker's queue, not in the process.
#[test]
fn the_in_flight_bound_holds_and_the_backlog_waits_in_the_broker() {
    let t = Transport::new(&common::broker().url()).unwrap();
    let top = topic("burst");
    let now = Arc::new(AtomicUsize::new(0));
    let max = Arc::new(AtomicUsize::new(0));
    let (n2, m2) = (now.clone(), max.clone());
    let ep = NotificationEndpoint::new("e").on_async(Priority::Info, move |_n| {
        let (now, max) = (n2.clone(), m2.clone());
        async move {
            let n = now.fetch_add(1, Ordering::SeqCst) + 1;
            max.fetch_max(n, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(20)).await;
            now.fetch_sub(1, Ordering::SeqCst);
            NotificationResult::Handled
        }
    });
    let l = NotificationListener::new(&t, vec![Target::topic(&top)], vec![ep])
        .max_in_flight(8)
        .bridge(bridge().clone());
    block(async {
        let n = notifier(&t, &top);
        // Queued before the listener starts: the whole burst is in the broker.
        for i in 0..300 {
            n.info(&RequestContext::new(), "osier.test", json!({ "i": i }))
                .await;
        }
        t.flush().await.unwrap();
        l.start().await.unwrap();
        until("a few handled", Duration::from_secs(10), || {
            l.stats().handled.load(Ordering::SeqCst) >= 16
        })
        .await;
        let waiting = depth(&format!("{top}.info")).await;
        // 8 running and at most 32 prefetched are out of the queue; the rest are in it.
        assert!(
            waiting >= 300 - 16 - 8 - 32 - 40,
            "only {waiting} of 300 wait in the broker"
        );
        until("all handled", Duration::from_secs(30), || {
            l.stats().handled.load(Ordering::SeqCst) == 300
        })
        .await;
        l.stop().await;
        clean_up(&[format!("{top}.info")], &[]).await;
    });
    assert_eq!(max.load(Ordering::SeqCst), 8, "at most 8 at once, and 8");
}

/// Settlements made out of order (endpoints that finish in any order, requeues, rejected
/// unreadable bodies) reach the broker as coalesced frames (`amqp/ack_batch.rs`) that never
/// settle a delivery twice nor one still held: notifications published by a plain AMQP client
/// without `_unique_id` (so a redelivery after a channel closed over a bad ack would be
/// handled again) are each handled exactly once, the requeued ones after one requeue, and the
/// queue ends empty.
#[test]
fn acks_settled_out_of_order_settle_every_delivery_once() {
    use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
    const N: u64 = 400;
    let t = Transport::new(&common::broker().url()).unwrap();
    let top = topic("acks");
    let seen: Arc<Mutex<BTreeMap<u64, u32>>> = Arc::default();
    let s2 = seen.clone();
    let ep = NotificationEndpoint::new("e").on_async(Priority::Info, move |n| {
        let seen = s2.clone();
        async move {
            let i = n.payload["i"].as_u64().unwrap_or(u64::MAX);
            // Finished in an order of their own: 0 to 3 ms each.
            tokio::time::sleep(Duration::from_micros(i * 7919 % 4000)).await;
            let mut seen = seen.lock().unwrap();
            let times = seen.entry(i).or_default();
            *times += 1;
            if i % 5 == 0 && *times == 1 {
                NotificationResult::Requeue
            } else {
                NotificationResult::Handled
            }
        }
    });
    let l = NotificationListener::new(&t, vec![Target::topic(&top)], vec![ep])
        .allow_requeue(true)
        .max_in_flight(32)
        .bridge(bridge().clone());
    block(async {
        l.start().await.unwrap();
        let (conn, ch) = raw_channel().await;
        ch.confirm_select(ConfirmSelectOptions::default())
            .await
            .unwrap();
        let key = format!("{top}.info");
        for i in 0..N {
            let body = if i % 7 == 3 {
                // Not JSON: counted, and rejected.
                b"not json".to_vec()
            } else {
                let msg = json!({
                    "message_id": uuid::Uuid::new_v4().to_string(),
                    "publisher_id": "plain-client",
                    "event_type": "osier.test",
                    "priority": "INFO",
                    "payload": {"i": i},
                    "timestamp": "2026-12-04 00:00:00.000000",
                });
                serde_json::to_vec(&json!({
                    "oslo.version": "2.0",
                    "oslo.message": msg.to_string(),
                }))
                .unwrap()
            };
            ch.basic_publish(
                "openstack".into(),
                key.as_str().into(),
                BasicPublishOptions::default(),
                &body,
                lapin::BasicProperties::default().with_content_type("application/json".into()),
            )
            .await
            .unwrap()
            .await
            .unwrap();
        }
        let readable = (0..N).filter(|i| i % 7 != 3).count() as u64;
        let dropped = N - readable;
        until("every delivery settled", Duration::from_secs(60), || {
            let st = l.stats();
            st.handled.load(Ordering::SeqCst) == readable
                && st.dropped.load(Ordering::SeqCst) == dropped
        })
        .await;
        // Anything delivered again would show here within a moment.
        tokio::time::sleep(Duration::from_millis(300)).await;
        l.stop().await;
        assert_eq!(
            depth(&key).await,
            0,
            "nothing left or put back in the queue"
        );
        let _ = tokio::time::timeout(Duration::from_secs(5), conn.close(200, "bye".into())).await;
        clean_up(&[key], &[]).await;
        let st = l.stats();
        assert_eq!(st.handled.load(Ordering::SeqCst), readable);
        assert_eq!(st.dropped.load(Ordering::SeqCst), dropped);
        let requeued = (0..N).filter(|i| i % 5 == 0 && i % 7 != 3).count() as u64;
        assert_eq!(st.requeued.load(Ordering::SeqCst), requeued);
    });
    let seen = seen.lock().unwrap();
    for i in (0..N).filter(|i| i % 7 != 3) {
        let want = if i % 5 == 0 { 2 } else { 1 };
        assert_eq!(seen.get(&i), Some(&want), "notification {i}");
    }
}

/// A listener stopped with notifications in flight on RabbitMQ finishes them, and what it had
/// prefetched goes back to the queue for the next member of its pool: every notification is
/// handled once.
#[test]
fn a_stop_in_flight_hands_the_rest_to_the_pool_and_loses_none() {
    let t = Transport::new(&common::broker().url()).unwrap();
    let top = topic("stop");
    // On RabbitMQ a pool's queue is named after the pool.
    let pool = format!("{top}-workers");
    let counts: Arc<Mutex<BTreeMap<i64, u32>>> = Arc::default();
    let listener = || {
        let c = counts.clone();
        let ep =
            NotificationEndpoint::new("e")
                .executor(Executor::Green)
                .on(Priority::Info, move |n| {
                    osier_green::sleep(Duration::from_millis(20));
                    let i = n.payload["i"].as_i64().unwrap_or(-1);
                    *c.lock().unwrap().entry(i).or_default() += 1;
                    NotificationResult::Handled
                });
        NotificationListener::new(&t, vec![Target::topic(&top)], vec![ep])
            .pool(&pool)
            .max_in_flight(10)
            .bridge(bridge().clone())
    };
    block(async {
        let first = listener();
        first.start().await.unwrap();
        let n = notifier(&t, &top);
        for i in 0..200 {
            n.info(&RequestContext::new(), "osier.test", json!({ "i": i }))
                .await;
        }
        t.flush().await.unwrap();
        until("some handled", Duration::from_secs(10), || {
            counts.lock().unwrap().len() >= 20
        })
        .await;
        first.stop().await;
        let by_first = counts.lock().unwrap().len();
        assert!(by_first < 200, "stopped part-way: {by_first}");
        let second = listener();
        second.start().await.unwrap();
        until("the rest handled", Duration::from_secs(30), || {
            counts.lock().unwrap().len() == 200
        })
        .await;
        second.stop().await;
        clean_up(&[format!("{top}.info"), pool.clone()], &[]).await;
    });
    let counts = counts.lock().unwrap();
    let twice: Vec<_> = counts.iter().filter(|(_, c)| **c > 1).collect();
    assert!(twice.is_empty(), "handled twice: {twice:?}");
}
