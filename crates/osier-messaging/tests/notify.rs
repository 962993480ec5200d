//! Notifier and notification listener over the in-memory transport (MSG-NOT-*, MSG-LSN-*,
//! TEST-MSG-12..14).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use osier_bridge::Bridge;
use osier_messaging::notify::notifier::Recorded;
use osier_messaging::{
    NotificationEndpoint, NotificationFilter, NotificationListener, NotificationResult, Notifier,
    NotifyDriver, Priority, RequestContext, Target, Transport,
};
use serde_json::json;

fn bridge() -> &'static Bridge {
    static B: OnceLock<Bridge> = OnceLock::new();
    B.get_or_init(|| Bridge::builder().build().unwrap())
}

fn block<F: std::future::Future>(f: F) -> F::Output {
    bridge().tokio().block_on(f)
}

fn unique(name: &str) -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    format!("{name}-{}", N.fetch_add(1, Ordering::Relaxed))
}

async fn until(cond: impl Fn() -> bool) {
    let t0 = Instant::now();
    while !cond() && t0.elapsed() < Duration::from_secs(3) {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// MSG-NOT-02/03/06/10 / TEST-MSG-12: every priority, the message fields, the sanitized context,
/// prepare's publisher id and retry, one message per topic.
#[test]
fn notifier_message_fields_priorities_and_prepare() {
    let t = Transport::new("memory://").unwrap();
    let store = Arc::new(Mutex::new(Vec::<Recorded>::new()));
    let n = Notifier::new(&t, "pub.one").driver(NotifyDriver::Test(store.clone()));
    let mut ctx = RequestContext::new();
    ctx.set("user_id", "u");
    ctx.set("auth_token", "secret-token");
    block(async {
        for p in Priority::ALL {
            n.notify(&ctx, p, "thing.happened", json!({"k": 1})).await;
        }
        n.prepare(Some("pub.two"), Some(5))
            .warn(&ctx, "other", json!(null))
            .await;
    });
    let got = store.lock().unwrap().clone();
    assert_eq!(got.len(), 8);
    let prios: Vec<String> = got
        .iter()
        .map(|r| r.message["priority"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        prios,
        ["AUDIT", "DEBUG", "INFO", "WARN", "ERROR", "CRITICAL", "SAMPLE", "WARN"]
    );
    let first = &got[0];
    assert_eq!(first.message["publisher_id"], "pub.one");
    assert_eq!(first.message["event_type"], "thing.happened");
    assert_eq!(first.message["payload"], json!({"k": 1}));
    assert!(uuid::Uuid::parse_str(first.message["message_id"].as_str().unwrap()).is_ok());
    let ts = first.message["timestamp"].as_str().unwrap();
    assert!(ts.len() >= 19 && ts.as_bytes()[10] == b' ', "{ts}");
    assert_eq!(first.ctxt.get("user_id"), Some(&json!("u")));
    assert!(
        first.ctxt.get("auth_token").is_none(),
        "secrets are not sent (MSG-NOT-03)"
    );
    assert_eq!(got[7].message["publisher_id"], "pub.two");
    assert_eq!(got[7].retry, Some(5));
    assert_eq!(first.retry, None);
}

/// MSG-NOT-01/07: no driver sends nothing but reports enabled; only [noop] is disabled.
#[test]
fn enabled_unless_only_noop() {
    let t = Transport::new("memory://").unwrap();
    assert!(Notifier::new(&t, "p").is_enabled());
    assert!(!Notifier::new(&t, "p")
        .driver(NotifyDriver::Noop)
        .is_enabled());
    assert!(Notifier::new(&t, "p")
        .driver(NotifyDriver::Noop)
        .driver(NotifyDriver::Log)
        .is_enabled());
}

/// MSG-LSN-02/03 / MSG-NOT-04: a listener gets the priorities its endpoints handle, from every
/// topic, with the metadata; unhandled priorities are not consumed.
#[test]
fn listener_receives_handled_priorities_per_topic() {
    let t = Transport::new("memory://").unwrap();
    let topic = unique("notif");
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s2 = seen.clone();
    let ep = NotificationEndpoint::new("e").on(Priority::Info, move |n| {
        s2.lock().unwrap().push((
            n.priority,
            n.event_type.clone(),
            n.publisher_id.clone(),
            n.metadata.contains_key("message_id"),
        ));
        NotificationResult::Handled
    });
    let l = NotificationListener::new(&t, vec![Target::topic(&topic)], vec![ep])
        .bridge(bridge().clone());
    let n = Notifier::new(&t, "p1")
        .driver(NotifyDriver::MessagingV2)
        .topics(&[&topic]);
    block(async {
        l.start().await.unwrap();
        let ctx = RequestContext::new();
        n.info(&ctx, "a.b", json!({"x": 1})).await;
        n.error(&ctx, "not.for.us", json!({})).await;
        until(|| !seen.lock().unwrap().is_empty()).await;
        tokio::time::sleep(Duration::from_millis(20)).await;
        l.stop().await;
    });
    assert_eq!(
        *seen.lock().unwrap(),
        vec![(Priority::Info, "a.b".to_string(), "p1".to_string(), true)]
    );
}

/// MSG-LSN-03/07 / TEST-MSG-14: REQUEUE once gives two deliveries when requeue is allowed; an
/// endpoint panic counts as REQUEUE; without allow_requeue the message is acked.
#[test]
fn requeue_redelivers_and_panics_count_as_requeue() {
    let t = Transport::new("memory://").unwrap();
    let topic = unique("requeue");
    let calls = Arc::new(AtomicUsize::new(0));
    let c2 = calls.clone();
    let ep = NotificationEndpoint::new("e").on(Priority::Info, move |_n| {
        match c2.fetch_add(1, Ordering::SeqCst) {
            0 => NotificationResult::Requeue,
            1 => panic!("endpoint failed"),
            _ => NotificationResult::Handled,
        }
    });
    let l = NotificationListener::new(&t, vec![Target::topic(&topic)], vec![ep])
        .allow_requeue(true)
        .bridge(bridge().clone());
    let n = Notifier::new(&t, "p")
        .driver(NotifyDriver::MessagingV2)
        .topics(&[&topic]);
    block(async {
        l.start().await.unwrap();
        n.info(&RequestContext::new(), "e", json!({})).await;
        until(|| calls.load(Ordering::SeqCst) >= 3).await;
        l.stop().await;
    });
    assert_eq!(
        calls.load(Ordering::SeqCst),
        3,
        "requeue, panic (requeue), then handled"
    );
    assert_eq!(l.stats().requeued.load(Ordering::SeqCst), 2);
    assert_eq!(l.stats().handled.load(Ordering::SeqCst), 1);
}

/// MSG-LSN-05 / TEST-MSG-14: each pool gets every message, members of one pool share them, and
/// the default group gets its own copy.
#[test]
fn pools_each_get_every_message_and_members_share() {
    let t = Transport::new("memory://").unwrap();
    let topic = unique("pools");
    let counter = |c: &Arc<AtomicUsize>| {
        let c = c.clone();
        NotificationEndpoint::new("e").on(Priority::Info, move |_n| {
            c.fetch_add(1, Ordering::SeqCst);
            NotificationResult::Handled
        })
    };
    let (p1, p2a, p2b, dflt) = (
        Arc::new(AtomicUsize::new(0)),
        Arc::new(AtomicUsize::new(0)),
        Arc::new(AtomicUsize::new(0)),
        Arc::new(AtomicUsize::new(0)),
    );
    let mk = |c: &Arc<AtomicUsize>, pool: Option<&str>| {
        let l = NotificationListener::new(&t, vec![Target::topic(&topic)], vec![counter(c)])
            .bridge(bridge().clone());
        match pool {
            Some(p) => l.pool(p),
            None => l,
        }
    };
    let listeners = [
        mk(&p1, Some("pool1")),
        mk(&p2a, Some("pool2")),
        mk(&p2b, Some("pool2")),
        mk(&dflt, None),
    ];
    let n = Notifier::new(&t, "p")
        .driver(NotifyDriver::MessagingV2)
        .topics(&[&topic]);
    block(async {
        for l in &listeners {
            l.start().await.unwrap();
        }
        for i in 0..100 {
            n.info(&RequestContext::new(), "e", json!({"i": i})).await;
        }
        until(|| {
            p1.load(Ordering::SeqCst) == 100
                && p2a.load(Ordering::SeqCst) + p2b.load(Ordering::SeqCst) == 100
                && dflt.load(Ordering::SeqCst) == 100
        })
        .await;
        for l in &listeners {
            l.stop().await;
        }
    });
    assert_eq!(p1.load(Ordering::SeqCst), 100);
    assert_eq!(dflt.load(Ordering::SeqCst), 100);
    let (a, b) = (p2a.load(Ordering::SeqCst), p2b.load(Ordering::SeqCst));
    assert_eq!(a + b, 100);
    assert!(a > 0 && b > 0, "pool members share: {a} + {b}");
}

/// MSG-LSN-04 / TEST-MSG-13: filters with match semantics on publisher, event type, context and
/// payload; a missing key or a non-string value skips the endpoint.
#[test]
fn filters_select_endpoints() {
    let t = Transport::new("memory://").unwrap();
    let topic = unique("filters");
    let hits = Arc::new(Mutex::new(Vec::new()));
    let ep = |name: &'static str, f: NotificationFilter| {
        let h = hits.clone();
        NotificationEndpoint::new(name)
            .filter(f)
            .on(Priority::Info, move |_n| {
                h.lock().unwrap().push(name);
                NotificationResult::Handled
            })
    };
    let eps = vec![
        ep(
            "by_publisher",
            NotificationFilter::new().publisher_id("^compute").unwrap(),
        ),
        ep(
            "by_event",
            NotificationFilter::new().event_type("instance\\.").unwrap(),
        ),
        ep(
            "by_ctx",
            NotificationFilter::new().context("user_id", "ad").unwrap(),
        ),
        ep(
            "by_payload",
            NotificationFilter::new().payload("state", "act").unwrap(),
        ),
        ep(
            "missing_key",
            NotificationFilter::new().payload("nope", ".*").unwrap(),
        ),
        ep(
            "not_a_string",
            NotificationFilter::new().payload("count", ".*").unwrap(),
        ),
    ];
    let l =
        NotificationListener::new(&t, vec![Target::topic(&topic)], eps).bridge(bridge().clone());
    let n = Notifier::new(&t, "compute.host")
        .driver(NotifyDriver::MessagingV2)
        .topics(&[&topic]);
    let mut ctx = RequestContext::new();
    ctx.set("user_id", "admin");
    block(async {
        l.start().await.unwrap();
        n.info(
            &ctx,
            "instance.create",
            json!({"state": "active", "count": 3}),
        )
        .await;
        until(|| hits.lock().unwrap().len() >= 4).await;
        tokio::time::sleep(Duration::from_millis(20)).await;
        l.stop().await;
    });
    let got = hits.lock().unwrap().clone();
    assert_eq!(got, ["by_publisher", "by_event", "by_ctx", "by_payload"]);
    assert!(
        NotificationFilter::new().event_type("(").is_err(),
        "a bad pattern is a typed error"
    );
}

/// MSG-LSN-03: an unknown priority is acked, dropped and counted, never a crash.
#[test]
fn unknown_priority_is_dropped() {
    use osier_messaging::driver::{Driver, Outgoing};
    let t = Transport::new("memory://").unwrap();
    let topic = unique("unknown");
    let ep = NotificationEndpoint::new("e").on(Priority::Info, |_n| NotificationResult::Handled);
    let l = NotificationListener::new(&t, vec![Target::topic(&topic)], vec![ep])
        .bridge(bridge().clone());
    block(async {
        l.start().await.unwrap();
        let d = osier_messaging::memory::MemoryDriver::new("openstack");
        d.notify(Outgoing {
            target: Target::topic(format!("{topic}.info")),
            ctxt: Default::default(),
            message: json!({"priority": "LOUD", "event_type": "x", "payload": {}})
                .as_object()
                .unwrap()
                .clone(),
            timeout: None,
            args_json: None,
            call_monitor_timeout: None,
            retry: None,
        })
        .await
        .unwrap();
        until(|| l.stats().dropped.load(Ordering::SeqCst) == 1).await;
        l.stop().await;
    });
    assert_eq!(l.stats().dropped.load(Ordering::SeqCst), 1);
    assert!("LOUD".parse::<Priority>().is_err());
    assert_eq!("warning".parse::<Priority>().unwrap(), Priority::Warn);
}

fn batch_listener(
    t: &Transport,
    topic: &str,
    size: usize,
    timeout: Option<Duration>,
    sizes: Arc<Mutex<Vec<usize>>>,
) -> NotificationListener {
    let ep = NotificationEndpoint::new("b").on_batch(Priority::Info, move |batch| {
        sizes.lock().unwrap().push(batch.len());
        NotificationResult::Handled
    });
    NotificationListener::new(t, vec![Target::topic(topic)], vec![ep])
        .batch(size, timeout)
        .bridge(bridge().clone())
}

/// MSG-LSN-06 / TEST-MSG-14: batches (5, 1 s) over 12 messages give 5, 5, 2 (the last after the
/// timeout); (5, None) over 10 give 5, 5.
#[test]
fn batches_by_size_and_timeout() {
    let t = Transport::new("memory://").unwrap();
    let n_for = |topic: &str| {
        Notifier::new(&t, "p")
            .driver(NotifyDriver::MessagingV2)
            .topics(&[topic])
    };
    let (top1, top2) = (unique("batch"), unique("batch"));
    let (s1, s2) = (
        Arc::new(Mutex::new(Vec::new())),
        Arc::new(Mutex::new(Vec::new())),
    );
    let l1 = batch_listener(&t, &top1, 5, Some(Duration::from_millis(300)), s1.clone());
    let l2 = batch_listener(&t, &top2, 5, None, s2.clone());
    block(async {
        l1.start().await.unwrap();
        l2.start().await.unwrap();
        let (n1, n2) = (n_for(&top1), n_for(&top2));
        for i in 0..12 {
            n1.info(&RequestContext::new(), "e", json!({"i": i})).await;
        }
        for i in 0..10 {
            n2.info(&RequestContext::new(), "e", json!({"i": i})).await;
        }
        until(|| {
            s1.lock().unwrap().iter().sum::<usize>() == 12
                && s2.lock().unwrap().iter().sum::<usize>() == 10
        })
        .await;
        l1.stop().await;
        l2.stop().await;
    });
    assert_eq!(*s1.lock().unwrap(), vec![5, 5, 2]);
    assert_eq!(*s2.lock().unwrap(), vec![5, 5]);
}

/// MSG-NOT-09: the routing driver sends to every driver whose rules match (the union over
/// groups, each driver once); a driver with no rules gets everything; an empty config routes
/// nothing.
#[test]
fn routing_driver_selects_by_event_and_priority() {
    use osier_messaging::notify::notifier::{RoutingConfig, RoutingRule};
    let t = Transport::new("memory://").unwrap();
    let (compute, errors, all) = (
        Arc::new(Mutex::new(Vec::<Recorded>::new())),
        Arc::new(Mutex::new(Vec::<Recorded>::new())),
        Arc::new(Mutex::new(Vec::<Recorded>::new())),
    );
    let cfg = RoutingConfig::new()
        .route(
            "g1",
            "compute",
            NotifyDriver::Test(compute.clone()),
            RoutingRule {
                accepted_events: Some(vec!["compute.*".into()]),
                accepted_priorities: None,
            },
        )
        .route(
            "g1",
            "errors",
            NotifyDriver::Test(errors.clone()),
            RoutingRule {
                accepted_events: Some(vec!["*".into()]),
                accepted_priorities: Some(vec!["ERROR".into(), "crit*".into()]),
            },
        )
        .route(
            "g2",
            "compute",
            NotifyDriver::Test(compute.clone()),
            RoutingRule::default(),
        )
        .route(
            "g2",
            "all",
            NotifyDriver::Test(all.clone()),
            RoutingRule::default(),
        );
    let n = Notifier::new(&t, "p").driver(NotifyDriver::Routing(Arc::new(cfg)));
    let empty =
        Notifier::new(&t, "p").driver(NotifyDriver::Routing(Arc::new(RoutingConfig::new())));
    block(async {
        let ctx = RequestContext::new();
        n.info(&ctx, "compute.start", json!({})).await;
        n.error(&ctx, "network.down", json!({})).await;
        n.critical(&ctx, "compute.dead", json!({})).await;
        empty.info(&ctx, "compute.start", json!({})).await;
    });
    let events = |v: &Arc<Mutex<Vec<Recorded>>>| -> Vec<String> {
        v.lock()
            .unwrap()
            .iter()
            .map(|r| r.message["event_type"].as_str().unwrap().to_string())
            .collect()
    };
    // "compute" has g2's empty rule (everything) besides its g1 rule; the union gives it every
    // message, each once even where both groups select it
    assert_eq!(
        events(&compute),
        ["compute.start", "network.down", "compute.dead"]
    );
    assert_eq!(events(&errors), ["network.down", "compute.dead"]);
    assert_eq!(
        events(&all),
        ["compute.start", "network.down", "compute.dead"]
    );
}

/// MSG-NOT-11: log events become notifications: every record as `logrecord` at its level, or
/// only errors as `error_notification` from `error.publisher`; the errors-only handler refuses a
/// notifier with the log driver (it would loop).
#[test]
fn logging_handlers_turn_events_into_notifications() {
    use osier_messaging::notify::log_handler::{LogHandlerMode, NotificationLayer};
    use tracing_subscriber::layer::SubscriberExt;
    let t = Transport::new("memory://").unwrap();
    let (all, errs) = (
        Arc::new(Mutex::new(Vec::<Recorded>::new())),
        Arc::new(Mutex::new(Vec::<Recorded>::new())),
    );
    let h = bridge().tokio().clone();
    let all_layer = NotificationLayer::new(
        Notifier::new(&t, "svc").driver(NotifyDriver::Test(all.clone())),
        h.clone(),
        LogHandlerMode::AllRecords,
    )
    .unwrap();
    let err_layer = NotificationLayer::new(
        Notifier::new(&t, "svc").driver(NotifyDriver::Test(errs.clone())),
        h.clone(),
        LogHandlerMode::ErrorsOnly,
    )
    .unwrap();
    let subscriber = tracing_subscriber::registry()
        .with(all_layer)
        .with(err_layer);
    tracing::subscriber::with_default(subscriber, || {
        tracing::warn!(disk = "sda", "disk almost full");
        tracing::error!("cannot write");
    });
    block(until(|| {
        all.lock().unwrap().len() == 2 && errs.lock().unwrap().len() == 1
    }));
    let all = all.lock().unwrap().clone();
    let mut prios: Vec<String> = all
        .iter()
        .map(|r| r.message["priority"].as_str().unwrap().to_string())
        .collect();
    prios.sort();
    assert_eq!(prios, ["ERROR", "WARN"]);
    assert!(all.iter().all(|r| r.message["event_type"] == "logrecord"));
    let warn = all
        .iter()
        .find(|r| r.message["priority"] == "WARN")
        .unwrap();
    assert_eq!(warn.message["payload"]["msg"], "disk almost full");
    assert_eq!(warn.message["payload"]["extra"]["disk"], "sda");
    let errs = errs.lock().unwrap().clone();
    assert_eq!(errs[0].message["event_type"], "error_notification");
    assert_eq!(errs[0].message["publisher_id"], "error.publisher");
    assert!(NotificationLayer::new(
        Notifier::new(&t, "svc").driver(NotifyDriver::Log),
        h,
        LogHandlerMode::ErrorsOnly
    )
    .is_err());
}
