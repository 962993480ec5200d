//! The `rabbit://` driver against the real broker of `OSIER_AMQP_URL` (default the local one,
//! guest/guest on 127.0.0.1:5672, which `.ci/run` makes sure is up). Every test uses its own topics. (MSG-AMQP-*, first part.)

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use osier_bridge::Bridge;
use osier_messaging::{
    BrokerError, Endpoint, EndpointError, MessagingError, NotificationEndpoint,
    NotificationListener, NotificationResult, Notifier, NotifyDriver, Priority, RequestContext,
    RpcClient, RpcServer, Target, Transport,
};
use serde::Deserialize;
use serde_json::json;

mod common;
use common::{block, bridge, clean_up, failed_cast, rabbitmqctl_cmd, raw_channel};

/// The test broker's transport URL (`OSIER_AMQP_URL`; fails at once if it is unreachable).
fn url() -> String {
    common::broker().url()
}

fn topic(name: &str) -> String {
    format!("osier-test-{name}-{}", uuid::Uuid::new_v4().simple())
}

fn rpc_queues(top: &str, servers: &[&str]) -> Vec<String> {
    let mut v = vec![top.to_string()];
    v.extend(servers.iter().map(|s| format!("{top}.{s}")));
    v
}

#[derive(Deserialize)]
struct V {
    value: i64,
}

fn server(t: &Transport, top: &str, name: &str) -> RpcServer {
    let n = name.to_string();
    RpcServer::builder(t, Target::topic(top).with_server(name))
        .bridge(bridge().clone())
        .endpoint(Endpoint::new("e").method_async("echo", move |_c, a: V| {
            let n = n.clone();
            async move { Ok::<_, EndpointError>(json!({"server": n, "value": a.value})) }
        }))
        .build()
        .unwrap()
}

/// A call and its reply go through the broker with oslo's topology and envelope; a failure
/// comes back as a RemoteError with oslo's class name.
#[test]
fn call_round_trip_and_remote_error_through_rabbitmq() {
    let t = Transport::new(&url()).unwrap();
    let top = topic("call");
    block(async {
        let s = server(&t, &top, "s1");
        s.start().await.unwrap();
        let c = RpcClient::new(&t, Target::topic(&top)).timeout(Duration::from_secs(10));
        let r: serde_json::Value = c
            .call(
                &RequestContext::with_new_request_id(),
                "echo",
                json!({"value": 41}),
            )
            .await
            .unwrap();
        assert_eq!(r, json!({"server": "s1", "value": 41}));
        let e = c
            .call::<serde_json::Value>(&RequestContext::new(), "nosuch", json!({}))
            .await;
        match e {
            Err(MessagingError::NoSuchMethod { method }) => assert_eq!(method, "nosuch"),
            other => panic!("{other:?}"),
        }
        s.stop().await.unwrap();
        s.wait().await.unwrap();
        clean_up(&rpc_queues(&top, &["s1"]), &[]).await;
    });
}

/// Directed calls reach their server; a fanout cast reaches every server on the topic.
#[test]
fn directed_calls_and_fanout_through_rabbitmq() {
    let t = Transport::new(&url()).unwrap();
    let top = topic("fanout");
    let hits = Arc::new(Mutex::new(Vec::new()));
    let mk = |name: &str| {
        let (n, h) = (name.to_string(), hits.clone());
        RpcServer::builder(&t, Target::topic(&top).with_server(name))
            .bridge(bridge().clone())
            .endpoint(
                Endpoint::new("e")
                    .method("note", move |_c, _a: serde_json::Value| {
                        h.lock().unwrap().push(n.clone());
                        Ok::<_, EndpointError>(())
                    })
                    .method("who", {
                        let n = name.to_string();
                        move |_c, _a: serde_json::Value| Ok::<_, EndpointError>(n.clone())
                    }),
            )
            .build()
            .unwrap()
    };
    block(async {
        let (a, b) = (mk("a"), mk("b"));
        a.start().await.unwrap();
        b.start().await.unwrap();
        let c = RpcClient::new(&t, Target::topic(&top)).timeout(Duration::from_secs(10));
        let ctx = RequestContext::new();
        let who: String = c
            .prepare()
            .server(Some("b"))
            .build()
            .unwrap()
            .call(&ctx, "who", json!({}))
            .await
            .unwrap();
        assert_eq!(who, "b");
        c.prepare()
            .fanout(true)
            .build()
            .unwrap()
            .cast(&ctx, "note", json!({}))
            .await
            .unwrap();
        let t0 = Instant::now();
        while hits.lock().unwrap().len() < 2 && t0.elapsed() < Duration::from_secs(10) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let mut got = hits.lock().unwrap().clone();
        got.sort();
        assert_eq!(got, ["a", "b"]);
        for s in [a, b] {
            s.stop().await.unwrap();
            s.wait().await.unwrap();
        }
        clean_up(&rpc_queues(&top, &["a", "b"]), &[]).await;
    });
}

/// Call-monitor heartbeats travel as `ending: false` replies and keep a long call alive.
#[test]
fn call_monitor_heartbeats_through_rabbitmq() {
    let t = Transport::new(&url()).unwrap();
    let top = topic("monitor");
    block(async {
        let s = RpcServer::builder(&t, Target::topic(&top).with_server("s"))
            .bridge(bridge().clone())
            .endpoint(
                Endpoint::new("e").method_async("slow", |_c, a: V| async move {
                    tokio::time::sleep(Duration::from_millis(a.value as u64)).await;
                    Ok::<_, EndpointError>(a.value)
                }),
            )
            .build()
            .unwrap();
        s.start().await.unwrap();
        let c = RpcClient::new(&t, Target::topic(&top))
            .timeout(Duration::from_secs(8))
            .call_monitor_timeout(Duration::from_secs(2));
        let v: i64 = c
            .call(&RequestContext::new(), "slow", json!({"value": 3500}))
            .await
            .unwrap();
        assert_eq!(v, 3500);
        s.stop().await.unwrap();
        s.wait().await.unwrap();
        clean_up(&rpc_queues(&top, &["s"]), &[]).await;
    });
}

/// Notifications are published to `<topic>.<priority>` (declared first, so none are lost before
/// a listener exists) and reach a listener, with requeue when asked.
#[test]
fn notifications_through_rabbitmq() {
    let t = Transport::new(&url()).unwrap();
    let top = topic("notif");
    let got = Arc::new(AtomicUsize::new(0));
    let g = got.clone();
    let ep = NotificationEndpoint::new("e").on(Priority::Info, move |n| {
        assert_eq!(n.event_type, "osier.test");
        // requeue the first delivery once, handle the rest
        if g.fetch_add(1, Ordering::SeqCst) == 0 {
            NotificationResult::Requeue
        } else {
            NotificationResult::Handled
        }
    });
    let n = Notifier::new(&t, "osier.tests")
        .driver(NotifyDriver::MessagingV2)
        .topics(&[&top]);
    block(async {
        // sent before the listener exists: kept in the declared queue
        n.info(&RequestContext::new(), "osier.test", json!({"k": 1}))
            .await;
        let l = NotificationListener::new(&t, vec![Target::topic(&top)], vec![ep])
            .allow_requeue(true)
            .bridge(bridge().clone());
        l.start().await.unwrap();
        let t0 = Instant::now();
        while got.load(Ordering::SeqCst) < 2 && t0.elapsed() < Duration::from_secs(10) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        l.stop().await;
        assert_eq!(
            got.load(Ordering::SeqCst),
            2,
            "delivered, requeued, delivered again"
        );
        clean_up(&[format!("{top}.info")], &[]).await;
    });
}

/// An unreachable broker is a typed error that does not show the password.
#[test]
fn unreachable_broker_is_a_typed_error_without_password() {
    let t = Transport::new("rabbit://guest:secretpw@127.0.0.1:1/").unwrap();
    block(async {
        let e = failed_cast(&t).await;
        assert!(
            matches!(e, MessagingError::Broker(BrokerError::Unreachable { .. })),
            "{e:?}"
        );
        let text = e.to_string();
        assert!(text.contains("127.0.0.1:1"), "{text}");
        assert!(!text.contains("secretpw"), "{text}");
        assert!(!format!("{e:?}").contains("secretpw"), "{e:?}");
    });
}

/// A broker error keeps the AMQP client's error as its source: `Error::source()` leads to it.
#[test]
fn unreachable_broker_error_keeps_the_client_error_as_its_source() {
    use std::error::Error as _;
    let t = Transport::new("rabbit://guest:guest@127.0.0.1:1/").unwrap();
    block(async {
        let e = failed_cast(&t).await;
        let cause = e.source().expect("a source");
        let cause = cause
            .downcast_ref::<osier_messaging::Cause>()
            .expect("the cause is kept as a Cause");
        assert!(
            cause.get().downcast_ref::<lapin::Error>().is_some(),
            "the cause is lapin's error: {cause:?}"
        );
    });
}

/// Several hosts in the URL: a dead first host fails over to the next one on connect.
#[test]
fn connect_fails_over_to_the_next_host() {
    let b = common::broker();
    let t = Transport::new(&format!(
        "rabbit://{}:{}@127.0.0.1:1,{}:{}@{}/",
        b.user,
        b.pass,
        b.user,
        b.pass,
        b.addr()
    ))
    .unwrap();
    let top = topic("failover");
    block(async {
        let s = server(&t, &top, "s1");
        s.start().await.unwrap();
        let c = RpcClient::new(&t, Target::topic(&top)).timeout(Duration::from_secs(10));
        let r: serde_json::Value = c
            .call(&RequestContext::new(), "echo", json!({"value": 2}))
            .await
            .unwrap();
        assert_eq!(r["value"], 2);
        s.stop().await.unwrap();
        s.wait().await.unwrap();
        clean_up(&rpc_queues(&top, &["s1"]), &[]).await;
    });
}

/// Casts and notifications return once written; `Transport::flush` returns once the broker has
/// confirmed every one of them, so all of them are in the queue by then.
#[test]
fn flush_returns_once_every_notification_is_confirmed() {
    let t = Transport::new(&url()).unwrap();
    let top = topic("flush");
    let n = Notifier::new(&t, "osier.tests")
        .driver(NotifyDriver::MessagingV2)
        .topics(&[&top]);
    block(async {
        for i in 0..300 {
            n.info(&RequestContext::new(), "osier.flush", json!({ "i": i }))
                .await;
        }
        t.flush().await.unwrap();
        let (conn, ch) = raw_channel().await;
        let q = ch
            .queue_declare(
                format!("{top}.info").as_str().into(),
                lapin::options::QueueDeclareOptions {
                    passive: true,
                    ..Default::default()
                },
                lapin::types::FieldTable::default(),
            )
            .await
            .unwrap();
        assert_eq!(q.message_count(), 300);
        let _ = conn.close(200, "bye".into()).await;
        clean_up(&[format!("{top}.info")], &[]).await;
    });
}

/// A wrong password is `BrokerError::AuthRefused` with the broker's reason, not retried, and
/// the password appears nowhere.
#[test]
fn refused_login_is_a_typed_error() {
    let t = Transport::new(&common::broker().url_as("guest", "wrongpw")).unwrap();
    block(async {
        let c = RpcClient::new(&t, Target::topic("x"));
        let t0 = Instant::now();
        let e = c
            .cast(&RequestContext::new(), "m", json!({}))
            .await
            .unwrap_err();
        assert!(
            matches!(e, MessagingError::Broker(BrokerError::AuthRefused { ref user, .. }) if user == "guest"),
            "{e:?}"
        );
        assert!(
            t0.elapsed() < Duration::from_secs(5),
            "retried a refused login"
        );
        assert!(!format!("{e} {e:?}").contains("wrongpw"));
    });
}

/// A virtual host that does not exist is `BrokerError::VhostRefused`.
#[test]
fn missing_vhost_is_a_typed_error() {
    let b = common::broker();
    let t = Transport::new(&format!(
        "rabbit://{}:{}@{}/osier-no-such-vhost",
        b.user,
        b.pass,
        b.addr()
    ))
    .unwrap();
    block(async {
        let e = RpcServer::builder(&t, Target::topic("x").with_server("s"))
            .bridge(bridge().clone())
            .endpoint(Endpoint::new("e"))
            .build()
            .unwrap()
            .start()
            .await
            .unwrap_err();
        assert!(
            matches!(e, MessagingError::Broker(BrokerError::VhostRefused { ref vhost, .. }) if vhost == "osier-no-such-vhost"),
            "{e:?}"
        );
    });
}

/// MSG-AMQP-03 on the real broker: quorum queues and a prefetch set in the URL query; the topic
/// queue is declared as a quorum queue and calls go through.
#[test]
fn quorum_queues_and_prefetch_from_the_url_query() {
    let ex = topic("qexchange");
    let t = Transport::with_options(
        &common::broker().url_with("rabbit_quorum_queue=true&rabbit_qos_prefetch_count=4"),
        osier_messaging::TransportOptions {
            control_exchange: ex.clone(),
            ..Default::default()
        },
    )
    .unwrap();
    let top = topic("quorum");
    block(async {
        let s = server(&t, &top, "s1");
        s.start().await.unwrap();
        let c = RpcClient::new(&t, Target::topic(&top)).timeout(Duration::from_secs(10));
        let r: serde_json::Value = c
            .call(&RequestContext::new(), "echo", json!({"value": 7}))
            .await
            .unwrap();
        assert_eq!(r["value"], 7);
        let out = rabbitmqctl_cmd()
            .args(["list_queues", "-q", "name", "type", "durable"])
            .output()
            .unwrap();
        let listing = String::from_utf8_lossy(&out.stdout);
        let line = listing
            .lines()
            .find(|l| l.split_whitespace().next() == Some(top.as_str()))
            .unwrap_or_else(|| panic!("{top} not listed:\n{listing}"));
        assert!(line.contains("quorum") && line.contains("true"), "{line}");
        s.stop().await.unwrap();
        s.wait().await.unwrap();
        clean_up(&rpc_queues(&top, &["s1"]), &[ex]).await;
    });
}

/// This process's connections whose `rabbitmqctl list_connections` column `column` reads
/// `value`: their `connection_name`s.
fn our_connections(column: &str, value: &str) -> std::collections::BTreeSet<String> {
    let out = rabbitmqctl_cmd()
        .args(["list_connections", "-q", column, "client_properties"])
        .output()
        .unwrap();
    let key = "{\"connection_name\",\"";
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let (v, props) = l.split_once('\t')?;
            let name = props.split(key).nth(1)?.split('"').next()?;
            (v.trim() == value && name.contains(&format!(":{}:", std::process::id())))
                .then(|| name.to_string())
        })
        .collect()
}

/// Our connections with a negotiated heartbeat of `secs`: their `connection_name`s.
fn connections_with_heartbeat(secs: u32) -> std::collections::BTreeSet<String> {
    our_connections("timeout", &secs.to_string())
}

/// LESSON-03, MSG-AMQP-04, MSG-AMQP-12: the heartbeat asked for in the URL is negotiated, and it
/// keeps the connections alive while every tokio worker is blocked for longer than the broker's
/// limit (two missed heartbeats): lapin sends them from its own I/O thread. No connection is
/// replaced, and calls work at once afterwards. Connection names are `<program>:<pid>:<uuid>`.
#[test]
fn heartbeats_keep_connections_alive_while_the_runtime_is_blocked() {
    let b = Bridge::builder().tokio_workers(1).build().unwrap();
    let t = Transport::new(&common::broker().url_with("heartbeat_timeout_threshold=2")).unwrap();
    let top = topic("heartbeat");
    let s = RpcServer::builder(&t, Target::topic(&top).with_server("s"))
        .bridge(b.clone())
        .endpoint(
            Endpoint::new("e").method_async("echo", |_c, a: V| async move {
                Ok::<_, EndpointError>(a.value)
            }),
        )
        .build()
        .unwrap();
    let c = RpcClient::new(&t, Target::topic(&top)).timeout(Duration::from_secs(10));
    let call = |c: &RpcClient, v: i64| {
        let c = c.clone();
        b.tokio().block_on(async move {
            c.call::<i64>(&RequestContext::new(), "echo", json!({"value": v}))
                .await
        })
    };
    b.tokio().block_on(s.start()).unwrap();
    assert_eq!(call(&c, 1).unwrap(), 1);
    let before = connections_with_heartbeat(2);
    assert!(
        before.len() >= 3,
        "listener, publisher and reply connections: {before:?}"
    );
    for name in &before {
        let parts: Vec<&str> = name.rsplitn(3, ':').collect();
        assert_eq!(parts.len(), 3, "{name}");
        assert!(uuid::Uuid::parse_str(parts[0]).is_ok(), "{name}");
        assert_eq!(parts[1], std::process::id().to_string(), "{name}");
    }
    // Block the only tokio worker for 7 s: the broker gives up after ~4 s without heartbeats.
    b.tokio()
        .block_on(
            b.tokio()
                .spawn(async { std::thread::sleep(Duration::from_secs(7)) }),
        )
        .unwrap();
    assert_eq!(call(&c, 2).unwrap(), 2);
    assert_eq!(
        connections_with_heartbeat(2),
        before,
        "a connection was replaced"
    );
    b.tokio().block_on(async {
        s.stop().await.unwrap();
        s.wait().await.unwrap();
        clean_up(&rpc_queues(&top, &["s"]), &[]).await;
    });
}

/// MSG-RPC-09: with `at_least_once`, a cast or call to a topic nobody consumes fails with
/// `Undeliverable` at once instead of vanishing (or timing out); without it, the cast succeeds.
#[test]
fn at_least_once_makes_unroutable_requests_an_error() {
    let top = topic("nobody");
    let strict = Transport::with_options(
        &url(),
        osier_messaging::TransportOptions {
            at_least_once: true,
            ..Default::default()
        },
    )
    .unwrap();
    let lax = Transport::new(&url()).unwrap();
    block(async {
        let ctx = RequestContext::new();
        let e = RpcClient::new(&strict, Target::topic(&top))
            .cast(&ctx, "m", json!({}))
            .await
            .unwrap_err();
        assert!(
            matches!(&e, MessagingError::Broker(BrokerError::Undeliverable { routing_key, .. }) if *routing_key == top),
            "{e:?}"
        );
        let t0 = Instant::now();
        let e = RpcClient::new(&strict, Target::topic(&top))
            .timeout(Duration::from_secs(20))
            .call::<serde_json::Value>(&ctx, "m", json!({}))
            .await
            .unwrap_err();
        assert!(
            matches!(
                &e,
                MessagingError::Broker(BrokerError::Undeliverable { .. })
            ),
            "{e:?}"
        );
        assert!(
            t0.elapsed() < Duration::from_secs(5),
            "waited for the timeout"
        );
        RpcClient::new(&lax, Target::topic(&top))
            .cast(&ctx, "m", json!({}))
            .await
            .unwrap();
    });
}

/// A declaration the broker refuses closes the channel: `BrokerError::ChannelClosed` with the
/// broker's code and reason (here 406 PRECONDITION_FAILED: the topic queue exists as durable,
/// the server declares it non-durable).
#[test]
fn a_refused_declaration_is_a_typed_channel_error() {
    let t = Transport::new(&url()).unwrap();
    let top = topic("inequivalent");
    block(async {
        let (conn, ch) = raw_channel().await;
        ch.queue_declare(
            top.as_str().into(),
            lapin::options::QueueDeclareOptions {
                durable: true,
                ..Default::default()
            },
            lapin::types::FieldTable::default(),
        )
        .await
        .unwrap();
        let e = server(&t, &top, "s1").start().await.unwrap_err();
        match &e {
            MessagingError::Broker(BrokerError::ChannelClosed { code, reason, .. }) => {
                assert_eq!(*code, 406, "{reason}");
                assert!(reason.contains("durable"), "{reason}");
            }
            other => panic!("{other:?}"),
        }
        let _ = conn.close(200, "bye".into()).await;
        clean_up(&[top.clone(), format!("{top}.s1")], &[]).await;
    });
}

/// `rabbit_login_method`: PLAIN and AMQPLAIN (oslo's default) both log in to the broker, and
/// the broker saw the mechanism asked for.
#[test]
fn plain_and_amqplain_logins_work() {
    for method in ["PLAIN", "AMQPLAIN"] {
        let t =
            Transport::new(&common::broker().url_with(&format!("rabbit_login_method={method}")))
                .unwrap();
        let top = topic("login");
        block(async {
            let s = common::echo_server(&t, &top, "s1");
            s.start().await.unwrap();
            let c = RpcClient::new(&t, Target::topic(&top)).timeout(Duration::from_secs(10));
            let v: serde_json::Value = c
                .call(&RequestContext::new(), "echo", json!({"login": method}))
                .await
                .unwrap();
            assert_eq!(v, json!({"login": method}));
            assert!(
                !our_connections("auth_mechanism", method).is_empty(),
                "no connection of this process logged in with {method}"
            );
            s.stop().await.unwrap();
            s.wait().await.unwrap();
            clean_up(&rpc_queues(&top, &["s1"]), &[]).await;
        });
    }
}

/// `rabbit_quorum_delivery_limit`: the broker drops a notification its endpoint requeues after
/// the limit (2 here: three deliveries in all), so a poison message cannot loop for ever.
#[test]
fn a_quorum_delivery_limit_ends_a_requeue_loop() {
    // An exchange of its own: quorum queues make the control exchange durable.
    let ex = topic("dlexchange");
    let t = Transport::with_options(
        &common::broker().url_with("rabbit_quorum_queue=true&rabbit_quorum_delivery_limit=2"),
        osier_messaging::TransportOptions {
            control_exchange: ex.clone(),
            ..Default::default()
        },
    )
    .unwrap();
    let top = topic("delivery-limit");
    let got = Arc::new(AtomicUsize::new(0));
    let g = got.clone();
    let ep = NotificationEndpoint::new("e").on(Priority::Info, move |_n| {
        g.fetch_add(1, Ordering::SeqCst);
        NotificationResult::Requeue
    });
    let n = Notifier::new(&t, "osier.tests")
        .driver(NotifyDriver::MessagingV2)
        .topics(&[&top]);
    block(async {
        let l = NotificationListener::new(&t, vec![Target::topic(&top)], vec![ep])
            .allow_requeue(true)
            .bridge(bridge().clone());
        l.start().await.unwrap();
        n.info(&RequestContext::new(), "osier.poison", json!({}))
            .await;
        let t0 = Instant::now();
        while got.load(Ordering::SeqCst) < 3 && t0.elapsed() < Duration::from_secs(10) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        // Nothing after the third delivery.
        tokio::time::sleep(Duration::from_secs(1)).await;
        l.stop().await;
        assert_eq!(
            got.load(Ordering::SeqCst),
            3,
            "the first delivery and two more"
        );
        clean_up(&[format!("{top}.info")], &[]).await;
    });
}

/// MSG-AMQP-03: a control exchange another service declared non-durable does not stop a server
/// configured for durable queues: as oslo does, it declares its exchange and queues
/// non-durable (with a WARN) and serves.
#[test]
fn a_durability_conflict_falls_back_to_non_durable_as_oslo_does() {
    let ex = topic("shared-exchange");
    let top = topic("durability");
    block(async {
        // The other service's exchange: non-durable.
        let (_conn, ch) = raw_channel().await;
        ch.exchange_declare(
            ex.as_str().into(),
            lapin::ExchangeKind::Topic,
            lapin::options::ExchangeDeclareOptions::default(),
            lapin::types::FieldTable::default(),
        )
        .await
        .unwrap();
        let t = Transport::with_options(
            &common::broker().url_with("amqp_durable_queues=true"),
            osier_messaging::TransportOptions {
                control_exchange: ex.clone(),
                ..Default::default()
            },
        )
        .unwrap();
        let s = server(&t, &top, "s1");
        s.start().await.unwrap();
        let out = rabbitmqctl_cmd()
            .args(["list_queues", "-q", "--no-table-headers", "name", "durable"])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        let line = text
            .lines()
            .find(|l| l.split_whitespace().next() == Some(top.as_str()))
            .unwrap_or_else(|| panic!("topic queue listed: {text}"));
        assert!(line.ends_with("false"), "declared non-durable: {line}");
        s.stop().await.unwrap();
        s.wait().await.unwrap();
        clean_up(&rpc_queues(&top, &["s1"]), &[ex]).await;
    });
}

/// The AMQP client writes a call's arguments straight to JSON text; what it refuses, it
/// refuses as the in-memory client does, with the same words and the same size counted: an
/// argument list that is not an object, and a message over `max_message_size`.
#[test]
fn arguments_are_refused_through_rabbitmq_as_in_memory() {
    let opts = osier_messaging::TransportOptions {
        max_message_size: 1024,
        ..osier_messaging::TransportOptions::default()
    };
    let amqp = Transport::with_options(&url(), opts.clone()).unwrap();
    let memory = Transport::with_options("memory://", opts).unwrap();
    let top = topic("refused");
    block(async {
        let refusal = |t: &Transport, args: serde_json::Value| {
            let c = RpcClient::new(t, Target::topic(&top)).timeout(Duration::from_secs(2));
            async move {
                let r: Result<serde_json::Value, _> =
                    c.call(&RequestContext::new(), "echo", args).await;
                match r {
                    Err(MessagingError::Serialization { reason, .. }) => reason,
                    Err(MessagingError::TooLarge { size, limit }) => format!("{size} > {limit}"),
                    other => panic!("not refused: {other:?}"),
                }
            }
        };
        for args in [
            json!([1, 2]),
            json!("s"),
            json!(3),
            json!(true),
            json!({"value": 1, "pad": "x".repeat(2000)}),
        ] {
            assert_eq!(
                refusal(&amqp, args.clone()).await,
                refusal(&memory, args.clone()).await,
                "{args}"
            );
        }
    });
}
