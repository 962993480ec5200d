//! Hostile input on the real broker: raw messages published straight into a server's queues
//! with a plain AMQP client (lapin, not osier's client), floods at slow handlers, and what the
//! server must do with each: keep serving, answer the caller where it can, count, reject, log
//! a bounded amount of escaped text with no secrets, and leave the backlog in the broker.
//!
//! The log lines of the whole test binary go to one buffer (a global subscriber), so each test
//! looks only for its own unique markers.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use lapin::options::QueueDeclareOptions;
use lapin::types::FieldTable;
use osier_messaging::{
    Endpoint, EndpointError, Executor, MessagingError, NotificationEndpoint, NotificationListener,
    NotificationResult, Notifier, NotifyDriver, Priority, RequestContext, RpcClient, RpcServer,
    Target, Transport,
};
use serde_json::{json, Value};

mod common;
use common::raw::{envelope, publish_raw, RawReplyQueue};
use common::{block, bridge, clean_up, echo_server, raw_channel};

/// The test broker's transport URL (`OSIER_AMQP_URL`; fails at once if it is unreachable).
fn url() -> String {
    common::broker().url()
}

fn topic(name: &str) -> String {
    format!("osier-test-{name}-{}", uuid::Uuid::new_v4().simple())
}

/// Every log line of this test binary, as written.
fn logs() -> &'static Mutex<Vec<u8>> {
    common::log_capture::capture("debug")
}

fn log_text() -> String {
    common::log_capture::text()
}

/// The failure class of a reply (`failure` is a JSON string).
fn failure_class(reply: &Value) -> String {
    let f: Value = serde_json::from_str(reply["failure"].as_str().expect("a failure")).unwrap();
    f["class"].as_str().unwrap().to_string()
}

/// A call on `c` works: the server still serves.
async fn still_serves(t: &Transport, top: &str) {
    let c = RpcClient::new(t, Target::topic(top)).timeout(Duration::from_secs(20));
    let v: Value = c
        .call(&RequestContext::new(), "echo", json!({"still": "here"}))
        .await
        .unwrap();
    assert_eq!(v, json!({"still": "here"}));
}

/// Stops server `s1` of `top` and deletes the topic's queues.
async fn stop_and_clean_up(s: &RpcServer, top: &str) {
    s.stop().await.unwrap();
    s.wait().await.unwrap();
    clean_up(&[top.to_string(), format!("{top}.s1")], &[]).await;
}

async fn until(what: &str, cond: impl Fn() -> bool) {
    let t0 = Instant::now();
    while !cond() {
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn call_body(method: &str, reply_q: &str, extra: &str) -> String {
    format!(
        r#"{{"method": {}, "args": {{"x": 1}}, "_msg_id": "{}", "_reply_q": "{reply_q}", "_unique_id": "{}"{extra}}}"#,
        json!(method),
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    )
}

/// A call whose `_timeout` no duration can hold (1e20 s) is answered like any other (no call
/// monitor), and the server goes on consuming: it used to panic the consumer's owner task and
/// stay a poison message for every server of the topic.
#[test]
fn a_huge_call_monitor_timeout_is_answered_and_the_server_keeps_consuming() {
    let t = Transport::new(&url()).unwrap();
    let top = topic("huge-timeout");
    block(async {
        let s = echo_server(&t, &top, "s1");
        s.start().await.unwrap();
        let (_conn, ch) = raw_channel().await;
        let mut rq = RawReplyQueue::new().await;
        for timeout in ["1e20", "1e308", "-1"] {
            let body = call_body("echo", &rq.name, &format!(r#", "_timeout": {timeout}"#));
            publish_raw(&ch, &top, &envelope(&body)).await;
            let reply = rq.next_reply().await;
            assert_eq!(reply["result"], json!({"x": 1}), "_timeout {timeout}");
        }
        still_serves(&t, &top).await;
        stop_and_clean_up(&s, &top).await;
    });
}

/// A `_reply_q` longer than an AMQP name (255 bytes) is refused at the door: counted, rejected,
/// no reply attempted. The transport's publisher is untouched: other callers are answered and
/// `flush` returns (it used to panic the publisher's owner task, after which every reply failed).
#[test]
fn a_reply_queue_name_too_long_for_amqp_is_refused_and_replies_still_flow() {
    let t = Transport::new(&url()).unwrap();
    let top = topic("long-reply-q");
    block(async {
        let s = echo_server(&t, &top, "s1");
        s.start().await.unwrap();
        let (_conn, ch) = raw_channel().await;
        let body = call_body("echo", &"q".repeat(300), "");
        publish_raw(&ch, &top, &envelope(&body)).await;
        until("the long reply queue to be counted", || {
            s.dropped_messages() == 1
        })
        .await;
        still_serves(&t, &top).await;
        tokio::time::timeout(Duration::from_secs(20), t.flush())
            .await
            .expect("flush returns")
            .unwrap();
        assert_eq!(osier_messaging::amqp::owner_restarts(), 0);
        stop_and_clean_up(&s, &top).await;
    });
}

/// A client topic (or topic.server routing key) longer than AMQP can carry is a typed
/// `InvalidTarget` before anything is sent; the transport stays usable.
#[test]
fn a_client_topic_too_long_for_amqp_is_a_typed_error() {
    let t = Transport::new(&url()).unwrap();
    let top = topic("long-topic");
    block(async {
        let s = echo_server(&t, &top, "s1");
        s.start().await.unwrap();
        let long = RpcClient::new(&t, Target::topic("t".repeat(300))).retry(0);
        for e in [
            long.cast(&RequestContext::new(), "m", json!({}))
                .await
                .unwrap_err(),
            long.call::<Value>(&RequestContext::new(), "m", json!({}))
                .await
                .unwrap_err(),
        ] {
            match e {
                MessagingError::InvalidTarget { reason, .. } => {
                    assert!(reason.contains("at most 255"), "{reason}")
                }
                other => panic!("{other:?}"),
            }
        }
        let server_key = RpcClient::new(&t, Target::topic(&top).with_server("s".repeat(250)));
        assert!(matches!(
            server_key
                .cast(&RequestContext::new(), "m", json!({}))
                .await,
            Err(MessagingError::InvalidTarget { .. })
        ));
        still_serves(&t, &top).await;
        stop_and_clean_up(&s, &top).await;
    });
}

/// A reply to a queue that does not exist: no returned message is ever logged (lapin logs a
/// returned message whole, body and auth token included), the body and the token appear in no
/// log line, the server keeps serving, and `wait` returns shortly after `stop` instead of
/// holding for the 60 s of `kombu_missing_consumer_retry_timeout`.
#[test]
fn a_reply_to_a_missing_queue_logs_no_body_and_does_not_hold_wait() {
    logs();
    let t = Transport::new(&url()).unwrap();
    let top = topic("missing-reply-q");
    let secret = format!("SECRET-{}", uuid::Uuid::new_v4().simple());
    let big = "b".repeat(64 << 10);
    block(async {
        let s = echo_server(&t, &top, "s1");
        s.start().await.unwrap();
        let (_conn, ch) = raw_channel().await;
        let body = json!({
            "method": "echo",
            "args": {"token": secret, "big": big},
            "_context_auth_token": secret,
            "_msg_id": "m-missing",
            "_reply_q": format!("reply_nosuch_{}", uuid::Uuid::new_v4().simple()),
        });
        publish_raw(&ch, &top, &envelope(&body.to_string())).await;
        // The handler ran and the reply waits for its queue.
        tokio::time::sleep(Duration::from_millis(1500)).await;
        still_serves(&t, &top).await;
        s.stop().await.unwrap();
        let t0 = Instant::now();
        s.wait().await.unwrap();
        assert!(
            t0.elapsed() < Duration::from_secs(15),
            "wait held for {:?}",
            t0.elapsed()
        );
        let text = log_text();
        assert!(!text.contains(&secret), "the secret reached the log");
        assert!(!text.contains("Server returned us a message"));
        clean_up(&[top.clone(), format!("{top}.s1")], &[]).await;
    });
}

/// A method name with a newline and an escape sequence cannot forge a log line: it is logged
/// escaped, and the caller still gets its NoSuchMethod failure.
#[test]
fn control_characters_in_a_method_name_are_escaped_in_the_log() {
    logs();
    let t = Transport::new(&url()).unwrap();
    let top = topic("forge");
    let marker = format!("FORGED{}", uuid::Uuid::new_v4().simple());
    block(async {
        let s = echo_server(&t, &top, "s1");
        s.start().await.unwrap();
        let (_conn, ch) = raw_channel().await;
        let mut rq = RawReplyQueue::new().await;
        let method = format!("nosuch\nERROR {marker} \u{1b}[31mred");
        publish_raw(&ch, &top, &envelope(&call_body(&method, &rq.name, ""))).await;
        let reply = rq.next_reply().await;
        assert_eq!(failure_class(&reply), "NoSuchMethod");
        let text = log_text();
        assert!(
            text.contains(&format!("nosuch\\nERROR {marker} \\u{{1b}}[31mred")),
            "escaped method not found in the log"
        );
        assert!(
            !text
                .lines()
                .any(|l| l.starts_with(&format!("ERROR {marker}"))),
            "a forged line reached the log"
        );
        stop_and_clean_up(&s, &top).await;
    });
}

/// Calls that cannot be dispatched but name their reply address get a failure reply
/// (`ValueError`) instead of leaving the caller to its timeout, and each is counted as dropped:
/// no method, args that are not an object, a lone UTF-16 surrogate as Python's json writes
/// it, nesting deeper than the decoder takes, a body that is not JSON at all (not answered: no
/// address can be read).
#[test]
fn undispatchable_calls_get_a_failure_reply_and_are_counted() {
    let t = Transport::new(&url()).unwrap();
    let top = topic("undispatchable");
    block(async {
        let s = echo_server(&t, &top, "s1");
        s.start().await.unwrap();
        let (_conn, ch) = raw_channel().await;
        let mut rq = RawReplyQueue::new().await;
        let q = rq.name.clone();
        let deep = format!("{}1{}", "[".repeat(200), "]".repeat(200));
        let bodies = [
            format!(r#"{{"args": {{}}, "_msg_id": "m", "_reply_q": "{q}"}}"#),
            format!(r#"{{"method": "echo", "args": [1], "_msg_id": "m", "_reply_q": "{q}"}}"#),
            format!(
                r#"{{"method": "echo", "args": {{"s": "\ud800"}}, "_msg_id": "m", "_reply_q": "{q}"}}"#
            ),
            format!(
                r#"{{"method": "echo", "args": {{"d": {deep}}}, "_msg_id": "m", "_reply_q": "{q}"}}"#
            ),
        ];
        for (i, b) in bodies.iter().enumerate() {
            publish_raw(&ch, &top, &envelope(b)).await;
            let reply = rq.next_reply().await;
            assert_eq!(failure_class(&reply), "ValueError", "body {i}: {reply}");
            // The bare form (no envelope) too.
            publish_raw(&ch, &top, b.as_bytes()).await;
            let reply = rq.next_reply().await;
            assert_eq!(
                failure_class(&reply),
                "ValueError",
                "bare body {i}: {reply}"
            );
        }
        publish_raw(&ch, &top, b"not json at all").await;
        until("every bad request to be counted", || {
            s.dropped_messages() == 2 * bodies.len() as u64 + 1
        })
        .await;
        still_serves(&t, &top).await;
        stop_and_clean_up(&s, &top).await;
    });
}

/// A request over the receive limit (`max_receive_bytes`) is refused unparsed and counted;
/// the server keeps serving.
#[test]
fn a_request_over_the_receive_limit_is_refused_and_counted() {
    let t = Transport::new(&common::broker().url_with("max_receive_bytes=4096")).unwrap();
    let top = topic("too-big");
    block(async {
        let s = echo_server(&t, &top, "s1");
        s.start().await.unwrap();
        let (_conn, ch) = raw_channel().await;
        let rq = RawReplyQueue::new().await;
        let body = call_body(
            "echo",
            &rq.name,
            &format!(r#", "pad": "{}""#, "p".repeat(8192)),
        );
        publish_raw(&ch, &top, &envelope(&body)).await;
        until("the large request to be counted", || {
            s.dropped_messages() == 1
        })
        .await;
        still_serves(&t, &top).await;
        stop_and_clean_up(&s, &top).await;
    });
}

/// A notification listener counts what it cannot read (not JSON, an unknown priority) as
/// dropped, and keeps handling the rest.
#[test]
fn a_listener_counts_notifications_it_cannot_read() {
    let t = Transport::new(&url()).unwrap();
    let top = topic("bad-notes");
    let seen = Arc::new(AtomicUsize::new(0));
    block(async {
        let s2 = seen.clone();
        let l = NotificationListener::new(
            &t,
            vec![Target::topic(&top)],
            vec![NotificationEndpoint::new("e").on(Priority::Info, move |_| {
                s2.fetch_add(1, Ordering::SeqCst);
                NotificationResult::Handled
            })],
        )
        .bridge(bridge().clone());
        l.start().await.unwrap();
        let (_conn, ch) = raw_channel().await;
        let q = format!("{top}.info");
        publish_raw(&ch, &q, b"\xff\xfe not json").await;
        let odd = json!({"priority": "info\nforged", "event_type": "e", "payload": {}, "message_id": "x"});
        publish_raw(&ch, &q, &envelope(&odd.to_string())).await;
        Notifier::new(&t, "pub")
            .driver(NotifyDriver::MessagingV2)
            .topics(&[top.as_str()])
            .info(&RequestContext::new(), "ok", json!({}))
            .await;
        until(
            "both bad notifications to be counted and the good one handled",
            || l.stats().dropped.load(Ordering::SeqCst) == 2 && seen.load(Ordering::SeqCst) == 1,
        )
        .await;
        l.stop().await;
        clean_up(&[q], &[]).await;
    });
}

/// With `allow_requeue` and `max_requeues(Some(5))`, a notification its endpoint always
/// requeues is delivered 6 times, then rejected for good (counted once in `rejected`), and its
/// queue is empty: no redelivery loop. It is logged twice in all (first requeue, rejection),
/// with the newline of its event type escaped.
#[test]
fn a_notification_requeued_past_max_requeues_is_rejected() {
    logs();
    let t = Transport::new(&url()).unwrap();
    let top = topic("requeue-bound");
    let calls = Arc::new(AtomicUsize::new(0));
    block(async {
        let c2 = calls.clone();
        let l = NotificationListener::new(
            &t,
            vec![Target::topic(&top)],
            vec![NotificationEndpoint::new("e").on(Priority::Info, move |_| {
                c2.fetch_add(1, Ordering::SeqCst);
                NotificationResult::Requeue
            })],
        )
        .allow_requeue(true)
        .max_requeues(Some(5))
        .bridge(bridge().clone());
        l.start().await.unwrap();
        let id = uuid::Uuid::new_v4().simple();
        // With a newline, as a forged log line would need.
        let event = format!("poison.{id}\nERROR forged.{id}");
        Notifier::new(&t, "pub")
            .driver(NotifyDriver::MessagingV2)
            .topics(&[top.as_str()])
            .info(&RequestContext::new(), &event, json!({}))
            .await;
        until("the notification to be rejected", || {
            l.stats().rejected.load(Ordering::SeqCst) == 1
        })
        .await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_eq!(calls.load(Ordering::SeqCst), 6);
        assert_eq!(l.stats().requeued.load(Ordering::SeqCst), 5);
        let text = log_text();
        let escaped = format!("poison.{id}\\nERROR forged.{id}");
        assert!(!text.lines().any(|l| l.starts_with("ERROR forged")));
        let lines = text.lines().filter(|l| l.contains(&escaped)).count();
        assert_eq!(
            lines, 2,
            "one line when first requeued, one when rejected:\n{text}"
        );
        l.stop().await;
        let (_conn, ch) = raw_channel().await;
        let q = format!("{top}.info");
        let left = ch
            .queue_declare(
                q.as_str().into(),
                QueueDeclareOptions {
                    passive: true,
                    ..QueueDeclareOptions::default()
                },
                FieldTable::default(),
            )
            .await
            .unwrap()
            .message_count();
        assert_eq!(left, 0);
        clean_up(&[q], &[]).await;
    });
}

/// A server with 4 request slots under a flood of 400 casts at a blocked handler takes only
/// what it can run: 4 handlers start, at most 16 more messages wait in its prefetch (4 per
/// slot), and the backlog stays in the broker's queue. Once the handler is released,
/// everything is handled.
#[test]
fn a_slow_server_leaves_its_backlog_in_the_broker() {
    let t = Transport::new(&url()).unwrap();
    let top = topic("backlog");
    let started = Arc::new(AtomicUsize::new(0));
    let gate = Arc::new((Mutex::new(false), std::sync::Condvar::new()));
    let (s2, g2) = (started.clone(), gate.clone());
    let s = RpcServer::builder(&t, Target::topic(&top).with_server("s1"))
        .bridge(bridge().clone())
        .executor(Executor::Threads)
        .max_in_flight(4)
        .endpoint(Endpoint::new("e").method("slow", move |_c, _a: Value| {
            s2.fetch_add(1, Ordering::SeqCst);
            let (m, cv) = &*g2;
            let mut open = m.lock().unwrap();
            while !*open {
                open = cv.wait(open).unwrap();
            }
            Ok::<_, EndpointError>(())
        }))
        .build()
        .unwrap();
    block(async {
        s.start().await.unwrap();
        let (_conn, ch) = raw_channel().await;
        let n = 400;
        for _ in 0..n {
            let body = json!({"method": "slow", "args": {}, "_unique_id": uuid::Uuid::new_v4().simple().to_string()});
            publish_raw(&ch, &top, &envelope(&body.to_string())).await;
        }
        until("4 handlers to start", || {
            started.load(Ordering::SeqCst) == 4
        })
        .await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_eq!(
            started.load(Ordering::SeqCst),
            4,
            "more handlers than slots"
        );
        let waiting = ch
            .queue_declare(
                top.as_str().into(),
                QueueDeclareOptions {
                    passive: true,
                    ..QueueDeclareOptions::default()
                },
                FieldTable::default(),
            )
            .await
            .unwrap()
            .message_count();
        assert!(
            waiting >= n - 4 - 16,
            "only {waiting} of {n} messages wait in the broker"
        );
        {
            let (m, cv) = &*gate;
            *m.lock().unwrap() = true;
            cv.notify_all();
        }
        until("every cast to be handled", || {
            started.load(Ordering::SeqCst) == n as usize
        })
        .await;
        stop_and_clean_up(&s, &top).await;
    });
}

/// A flood of 1,000 malformed requests writes at most 10 lines a second about them (then one
/// line counts what was suppressed), and every one is counted.
#[test]
fn a_flood_of_malformed_requests_writes_a_bounded_log() {
    logs();
    let t = Transport::new(&url()).unwrap();
    let top = topic("log-flood");
    block(async {
        let s = echo_server(&t, &top, "s1");
        s.start().await.unwrap();
        let (_conn, ch) = raw_channel().await;
        let t0 = Instant::now();
        for _ in 0..1000 {
            publish_raw(&ch, &top, b"{not json").await;
        }
        until("every malformed request to be counted", || {
            s.dropped_messages() == 1000
        })
        .await;
        let secs = t0.elapsed().as_secs() + 1;
        let lines = log_text().lines().filter(|l| l.contains(&top)).count() as u64;
        assert!(lines <= 10 * secs, "{lines} lines about {top} in {secs} s");
        assert!(lines >= 1, "the malformed requests were not logged at all");
        stop_and_clean_up(&s, &top).await;
    });
}
