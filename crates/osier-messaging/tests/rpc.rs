//! RPC over the in-memory transport: client, server, dispatcher, executors (MSG-RPC-*, MSG-SRV-*,
//! MSG-DISP-*, MSG-ERR-*, MSG-FAKE-*, TEST-MSG-03..08).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use osier_bridge::Bridge;
use osier_messaging::{
    Endpoint, EndpointError, Executor, MessagingError, RequestContext, RpcClient, RpcServer,
    Target, Transport, TransportOptions,
};
use serde::Deserialize;
use serde_json::json;

fn bridge() -> &'static Bridge {
    static B: OnceLock<Bridge> = OnceLock::new();
    B.get_or_init(|| Bridge::builder().build().unwrap())
}

fn transport() -> Transport {
    Transport::new("memory://").unwrap()
}

fn topic(name: &str) -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    format!("{name}-{}", N.fetch_add(1, Ordering::Relaxed))
}

fn block<F: std::future::Future>(f: F) -> F::Output {
    bridge().tokio().block_on(f)
}

#[derive(Deserialize)]
struct Value {
    value: i64,
}

fn echo_endpoint(name: &str) -> Endpoint {
    let n = name.to_string();
    Endpoint::new(name).method_async("echo", move |_c, a: Value| {
        let n = n.clone();
        async move { Ok::<_, EndpointError>(json!({"server": n, "value": a.value})) }
    })
}

async fn started(t: &Transport, target: Target, endpoints: Vec<Endpoint>) -> RpcServer {
    let mut b = RpcServer::builder(t, target).bridge(bridge().clone());
    for e in endpoints {
        b = b.endpoint(e);
    }
    let s = b.build().unwrap();
    s.start().await.unwrap();
    s
}

/// MSG-RPC-05 / MSG-RPC-04: a call returns the typed result; a cast is delivered and returns at once.
#[test]
fn call_returns_result_and_cast_is_delivered() {
    let t = transport();
    let top = topic("basic");
    let hits = Arc::new(AtomicUsize::new(0));
    let h = hits.clone();
    let ep = echo_endpoint("s1").method("record", move |_c, _a: serde_json::Value| {
        h.fetch_add(1, Ordering::SeqCst);
        Ok::<_, EndpointError>(())
    });
    block(async {
        let s = started(&t, Target::topic(&top).with_server("s1"), vec![ep]).await;
        let c = RpcClient::new(&t, Target::topic(&top));
        let r: serde_json::Value = c
            .call(&RequestContext::new(), "echo", json!({"value": 5}))
            .await
            .unwrap();
        assert_eq!(r["value"], 5);
        c.cast(&RequestContext::new(), "record", json!({}))
            .await
            .unwrap();
        let t0 = Instant::now();
        while hits.load(Ordering::SeqCst) == 0 && t0.elapsed() < Duration::from_secs(2) {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        assert_eq!(hits.load(Ordering::SeqCst), 1);
        s.stop().await.unwrap();
        s.wait().await.unwrap();
    });
}

/// The key test: one server with endpoints on all three executors at once, called from
/// an async client and from a green client (MSG-SRV-01/02).
#[test]
fn one_server_with_endpoints_on_three_executors() {
    let t = transport();
    let top = topic("executors");
    let on_tokio = Endpoint::new("async")
        .target(Target::default().with_namespace("a"))
        .method_async("where", |_c, _a: serde_json::Value| async {
            tokio::time::sleep(Duration::from_millis(1)).await; // async code
            Ok::<_, EndpointError>(json!({"green": osier_green::in_green_thread(), "tokio": tokio::runtime::Handle::try_current().is_ok()}))
        })
        .executor(Executor::Tokio);
    let on_green = Endpoint::new("green")
        .target(Target::default().with_namespace("g"))
        .method("where", |_c, _a: serde_json::Value| {
            osier_green::sleep(Duration::from_millis(1)); // green code
            Ok::<_, EndpointError>(json!({"green": osier_green::in_green_thread(), "tokio": false}))
        })
        .executor(Executor::Green);
    let on_threads = Endpoint::new("threads")
        .target(Target::default().with_namespace("t"))
        .method("where", |_c, _a: serde_json::Value| {
            std::thread::sleep(Duration::from_millis(1)); // blocking code
            Ok::<_, EndpointError>(json!({"green": osier_green::in_green_thread(), "tokio": false}))
        })
        .executor(Executor::Threads);
    let s = block(started(
        &t,
        Target::topic(&top).with_server("s"),
        vec![on_tokio, on_green, on_threads],
    ));
    let c = RpcClient::new(&t, Target::topic(&top))
        .timeout(Duration::from_secs(5))
        .bridge(bridge().clone());
    let ask = |c: &RpcClient, ns: &str| c.prepare().namespace(Some(ns)).build().unwrap();
    let (a, g, th) = block(async {
        let ctx = RequestContext::new();
        let a: serde_json::Value = ask(&c, "a").call(&ctx, "where", json!({})).await.unwrap();
        let g: serde_json::Value = ask(&c, "g").call(&ctx, "where", json!({})).await.unwrap();
        let th: serde_json::Value = ask(&c, "t").call(&ctx, "where", json!({})).await.unwrap();
        (a, g, th)
    });
    assert_eq!(a, json!({"green": false, "tokio": true}));
    assert_eq!(g, json!({"green": true, "tokio": false}));
    assert_eq!(th, json!({"green": false, "tokio": false}));

    // the same calls from a green client: only its green thread parks
    let c2 = c.clone();
    let from_green = bridge()
        .green()
        .block_on(move || {
            let ctx = RequestContext::new();
            let r: Vec<serde_json::Value> = ["a", "g", "t"]
                .iter()
                .map(|ns| {
                    c2.prepare()
                        .namespace(Some(ns))
                        .build()
                        .unwrap()
                        .call_green(&ctx, "where", json!({}))
                        .unwrap()
                })
                .collect();
            r
        })
        .unwrap();
    assert_eq!(from_green, vec![a, g, th]);
    block(async {
        s.stop().await.unwrap();
        s.wait().await.unwrap();
    });
}

/// MSG-FAKE-03 / TEST-MSG-08: a topic message reaches exactly one server (in turn), a directed
/// one only its server, and fanout every server; another exchange is isolated.
#[test]
fn routing_matrix() {
    let t = transport();
    let top = topic("routing");
    let seen: Arc<Mutex<Vec<String>>> = Arc::new(Mutex::new(Vec::new()));
    let ep = |name: &str| {
        let (n, seen) = (name.to_string(), seen.clone());
        Endpoint::new(name).method("note", move |_c, _a: serde_json::Value| {
            seen.lock().unwrap().push(n.clone());
            Ok::<_, EndpointError>(n.clone())
        })
    };
    block(async {
        let s1 = started(&t, Target::topic(&top).with_server("s1"), vec![ep("s1")]).await;
        let s2 = started(&t, Target::topic(&top).with_server("s2"), vec![ep("s2")]).await;
        let other = started(
            &t,
            Target::topic(&top).with_server("x").with_exchange("other"),
            vec![ep("x")],
        )
        .await;
        let ctx = RequestContext::new();
        let c = RpcClient::new(&t, Target::topic(&top)).timeout(Duration::from_secs(5));
        let mut who = Vec::new();
        for _ in 0..4 {
            let r: String = c.call(&ctx, "note", json!({})).await.unwrap();
            who.push(r);
        }
        who.sort();
        assert_eq!(
            who,
            ["s1", "s1", "s2", "s2"],
            "shared topic queue, taken in turn"
        );
        let r: String = c
            .prepare()
            .server(Some("s2"))
            .build()
            .unwrap()
            .call(&ctx, "note", json!({}))
            .await
            .unwrap();
        assert_eq!(r, "s2");
        seen.lock().unwrap().clear();
        c.prepare()
            .fanout(true)
            .build()
            .unwrap()
            .cast(&ctx, "note", json!({}))
            .await
            .unwrap();
        let t0 = Instant::now();
        while seen.lock().unwrap().len() < 2 && t0.elapsed() < Duration::from_secs(2) {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        let mut got = seen.lock().unwrap().clone();
        got.sort();
        assert_eq!(
            got,
            ["s1", "s2"],
            "fanout reached every server on the topic, not the other exchange"
        );
        for s in [s1, s2, other] {
            s.stop().await.unwrap();
            s.wait().await.unwrap();
        }
    });
}

/// MSG-RPC-05 / TEST-MSG-04: timeout precedence, 0 expires at once, a fanout call is refused,
/// a call without topic is refused.
#[test]
fn timeouts_and_invalid_targets() {
    let opts = TransportOptions {
        rpc_response_timeout: Duration::from_secs(21),
        ..TransportOptions::default()
    };
    let t = Transport::with_options("memory://", opts).unwrap();
    let c = RpcClient::new(&t, Target::topic("nobody"));
    assert_eq!(c.effective_timeout(), Duration::from_secs(21));
    let c = c.timeout(Duration::from_millis(21_100));
    assert_eq!(c.effective_timeout(), Duration::from_millis(21_100));
    let p = c.prepare().timeout(Some(Duration::ZERO)).build().unwrap();
    assert_eq!(p.effective_timeout(), Duration::ZERO);
    let ctx = RequestContext::new();
    block(async {
        let t0 = Instant::now();
        let r: Result<(), _> = p.call(&ctx, "x", json!({})).await;
        assert!(matches!(r, Err(MessagingError::Timeout(_))));
        assert!(
            t0.elapsed() < Duration::from_millis(500),
            "timeout 0 expires at once"
        );
        let fan = c.prepare().fanout(true).build().unwrap();
        let r: Result<(), _> = fan.call(&ctx, "x", json!({})).await;
        assert!(matches!(r, Err(MessagingError::InvalidTarget { .. })));
        let none = RpcClient::new(&t, Target::default());
        assert!(matches!(
            none.cast(&ctx, "x", json!({})).await,
            Err(MessagingError::InvalidTarget { .. })
        ));
    });
}

/// MSG-RPC-06 / TEST-MSG-05: the version-cap matrix, and can_send_version.
#[test]
fn version_cap_matrix() {
    let t = transport();
    let ctx = RequestContext::new();
    let base = RpcClient::new(&t, Target::topic(topic("cap")));
    block(async {
        let fails = [
            base.clone()
                .version_cap("1.0")
                .unwrap()
                .prepare()
                .version(Some("1.1"))
                .build()
                .unwrap(),
            base.clone()
                .version_cap("2.0")
                .unwrap()
                .prepare()
                .version(Some("1.0"))
                .build()
                .unwrap(),
            base.clone().version_cap("1.0").unwrap(),
        ];
        for c in fails {
            assert!(
                matches!(
                    c.cast(&ctx, "m", json!({})).await,
                    Err(MessagingError::VersionCap { .. })
                ),
                "{c:?}"
            );
        }
        let passes = [
            base.clone(),
            base.clone()
                .version_cap("1.0")
                .unwrap()
                .prepare()
                .version_cap(None)
                .build()
                .unwrap(),
            base.clone()
                .version_cap("1.1")
                .unwrap()
                .prepare()
                .version(Some("1.0"))
                .build()
                .unwrap(),
        ];
        for c in passes {
            assert!(c.cast(&ctx, "m", json!({})).await.is_ok(), "{c:?}");
        }
    });
    let capped = base.clone().version_cap("1.1").unwrap();
    assert!(capped.can_send_version(Some(Some("1.0"))).unwrap());
    assert!(!capped.can_send_version(Some(Some("1.2"))).unwrap());
    assert!(
        !capped.can_send_version(Some(None)).unwrap(),
        "explicit None: no version"
    );
    assert!(base.can_send_version(Some(None)).unwrap());
    for bad in ["5", "5.a", "5.5.a"] {
        assert!(base.prepare().version(Some(bad)).build().is_err(), "{bad}");
    }
}

/// MSG-ERR-04 / MSG-DISP-03: dispatcher errors reach the caller as their own variants,
/// endpoint failures as RemoteError with oslo's failure fields; a panic is a RemoteError whose
/// traceback names where it happened, and the server keeps serving.
#[test]
fn failures_come_back_as_remote_errors_and_panics_do_not_stop_the_server() {
    let t = transport();
    let top = topic("errors");
    let ep = Endpoint::new("e")
        .target(Target::default().with_version("1.3"))
        .method(
            "fail",
            |_c, _a: serde_json::Value| -> Result<(), EndpointError> {
                Err(EndpointError::new("ValueError", "bad value"))
            },
        )
        .method(
            "boom",
            |_c, _a: serde_json::Value| -> Result<(), EndpointError> {
                panic!("endpoint exploded")
            },
        )
        .method_async("ok", |_c, _a: serde_json::Value| async {
            Ok::<_, EndpointError>(1)
        });
    block(async {
        let s = started(&t, Target::topic(&top).with_server("s"), vec![ep]).await;
        let ctx = RequestContext::new();
        let c = RpcClient::new(&t, Target::topic(&top)).timeout(Duration::from_secs(5));
        let class_of = |r: Result<serde_json::Value, MessagingError>| match r {
            Err(MessagingError::Remote(f)) => (f.class, f.message, f.tb),
            other => panic!("expected a remote error, got {other:?}"),
        };
        let e = c
            .call::<serde_json::Value>(&ctx, "nosuch", json!({}))
            .await
            .unwrap_err();
        assert_eq!(
            e,
            MessagingError::NoSuchMethod {
                method: "nosuch".into()
            }
        );
        let e = c
            .prepare()
            .version(Some("1.4"))
            .build()
            .unwrap()
            .call::<serde_json::Value>(&ctx, "ok", json!({}))
            .await
            .unwrap_err();
        assert_eq!(
            e,
            MessagingError::UnsupportedVersion {
                version: "1.4".into(),
                method: "ok".into()
            }
        );
        let (class, message, _) = class_of(c.call(&ctx, "fail", json!({})).await);
        assert_eq!(
            (class.as_str(), message.as_str()),
            ("ValueError", "bad value")
        );
        let (class, message, tb) = class_of(c.call(&ctx, "boom", json!({})).await);
        assert_eq!(class, "Panic");
        assert!(message.contains("endpoint exploded"));
        assert!(
            tb.iter().any(|l| l.contains("tests/rpc.rs:")),
            "the traceback names the panic's location: {tb:?}"
        );
        let after: i64 = c.call(&ctx, "ok", json!({})).await.unwrap();
        assert_eq!(after, 1, "the server kept serving");
        s.stop().await.unwrap();
        s.wait().await.unwrap();
    });
}

/// MSG-ERR-01..03: an endpoint's failure carries its module, positional and keyword arguments
/// and traceback to the caller, as a Python exception's do.
#[test]
fn a_failure_carries_its_args_kwargs_and_traceback() {
    let t = transport();
    let top = topic("kwargs");
    let ep = Endpoint::new("e").method("get", |_c, _a: ()| -> Result<(), EndpointError> {
        Err(
            EndpointError::new("InstanceNotFound", "Instance i-1 could not be found.")
                .module("nova.exception")
                .kwarg("instance_id", json!("i-1"))
                .traceback(vec!["in get".into()]),
        )
    });
    block(async {
        let s = started(&t, Target::topic(&top).with_server("s"), vec![ep]).await;
        let c = RpcClient::new(&t, Target::topic(&top)).timeout(Duration::from_secs(5));
        match c
            .call::<serde_json::Value>(&RequestContext::new(), "get", json!({}))
            .await
        {
            Err(MessagingError::Remote(f)) => {
                assert_eq!(
                    (f.class.as_str(), f.module.as_str()),
                    ("InstanceNotFound", "nova.exception")
                );
                assert_eq!(f.args, vec![json!("Instance i-1 could not be found.")]);
                assert_eq!(f.kwargs.get("instance_id"), Some(&json!("i-1")));
                assert_eq!(f.tb, vec!["in get".to_string()]);
            }
            other => panic!("expected a remote error, got {other:?}"),
        }
        s.stop().await.unwrap();
        s.wait().await.unwrap();
    });
}

/// MSG-DISP-06: arguments are checked as Python's call `method(ctxt, **args)` checks them: an
/// unknown keyword and a missing required one are `TypeError`s with Python's words; a method
/// declared with `()` takes a call without arguments.
#[test]
fn arguments_are_checked_as_python_checks_keywords() {
    #[derive(serde::Deserialize)]
    struct Echo {
        value: serde_json::Value,
        #[serde(default)]
        _note: Option<String>,
    }
    let t = transport();
    let top = topic("kwargs-check");
    let ep = Endpoint::new("e")
        .method("echo", |_c, a: Echo| Ok::<_, EndpointError>(a.value))
        .method("ping", |_c, _a: ()| Ok::<_, EndpointError>("pong"))
        .method("any", |_c, a: serde_json::Value| Ok::<_, EndpointError>(a));
    block(async {
        let s = started(&t, Target::topic(&top).with_server("s"), vec![ep]).await;
        let c = RpcClient::new(&t, Target::topic(&top)).timeout(Duration::from_secs(5));
        let ctx = RequestContext::new();
        let type_error = |r: Result<serde_json::Value, MessagingError>| match r {
            Err(MessagingError::Remote(f)) if f.class == "TypeError" => f.message,
            other => panic!("expected a TypeError, got {other:?}"),
        };
        let v: serde_json::Value = c
            .call(&ctx, "echo", json!({"value": {"nested": {"any": 1}}}))
            .await
            .unwrap();
        assert_eq!(
            v,
            json!({"nested": {"any": 1}}),
            "a dict argument holds anything"
        );
        assert_eq!(
            type_error(c.call(&ctx, "echo", json!({"value": 1, "valu": 2})).await),
            "echo() got an unexpected keyword argument 'valu'"
        );
        assert_eq!(
            type_error(c.call(&ctx, "echo", json!({})).await),
            "echo() missing 1 required positional argument: 'value'"
        );
        let pong: String = c.call(&ctx, "ping", json!({})).await.unwrap();
        assert_eq!(pong, "pong");
        assert_eq!(
            type_error(c.call(&ctx, "ping", json!({"x": 1})).await),
            "ping() got an unexpected keyword argument 'x'"
        );
        let any: serde_json::Value = c.call(&ctx, "any", json!({})).await.unwrap();
        assert_eq!(any, json!({}), "a map type still gets the empty dict");
        s.stop().await.unwrap();
        s.wait().await.unwrap();
    });
}

/// MSG-RPC-08 / MSG-DISP-08: with a call monitor, heartbeats keep a long call alive past the
/// monitor timeout, while the overall timeout still caps it.
#[test]
fn call_monitor_heartbeats_keep_a_long_call_alive() {
    let t = transport();
    let top = topic("monitor");
    let ep = Endpoint::new("slow").method_async("slow", |_c, a: Value| async move {
        tokio::time::sleep(Duration::from_millis(a.value as u64)).await;
        Ok::<_, EndpointError>(a.value)
    });
    block(async {
        let s = started(&t, Target::topic(&top).with_server("s"), vec![ep]).await;
        let ctx = RequestContext::new();
        let c = RpcClient::new(&t, Target::topic(&top))
            .timeout(Duration::from_secs(6))
            .call_monitor_timeout(Duration::from_secs(2));
        let v: i64 = c.call(&ctx, "slow", json!({"value": 3500})).await.unwrap();
        assert_eq!(v, 3500, "3.5 s call with cm=2 s and timeout 6 s succeeds");
        let capped = c
            .prepare()
            .timeout(Some(Duration::from_secs(2)))
            .build()
            .unwrap();
        let t0 = Instant::now();
        let r: Result<i64, _> = capped.call(&ctx, "slow", json!({"value": 3000})).await;
        assert!(matches!(r, Err(MessagingError::Timeout(_))));
        let took = t0.elapsed();
        assert!(
            took >= Duration::from_secs(2) && took < Duration::from_millis(2900),
            "{took:?}"
        );
        s.stop().await.unwrap();
        s.wait().await.unwrap();
    });
}

/// MSG-SRV-03, MSG-TGT-02 / TEST-MSG-07: a target without server or topic fails at start; an unknown
/// executor name is ExecutorLoadFailure (including oslo's removed `blocking`).
#[test]
fn bad_targets_fail_at_start_and_unknown_executors_are_refused() {
    let t = transport();
    block(async {
        for target in [Target::topic("t"), Target::default().with_server("s")] {
            let s = RpcServer::builder(&t, target)
                .bridge(bridge().clone())
                .build()
                .unwrap();
            assert!(matches!(
                s.start().await,
                Err(MessagingError::InvalidTarget { .. })
            ));
        }
    });
    for bad in ["blocking", "nosuch"] {
        assert!(
            matches!(bad.parse::<Executor>(), Err(MessagingError::ExecutorLoadFailure(e)) if e == bad)
        );
    }
    assert_eq!("eventlet".parse::<Executor>().unwrap(), Executor::Green);
    assert_eq!("threading".parse::<Executor>().unwrap(), Executor::Threads);
}

/// Bad input: a malformed message is dropped and counted, never a crash; an oversized payload is
/// refused with a typed error at the client.
#[test]
fn malformed_messages_are_dropped_and_oversized_ones_refused() {
    let opts = TransportOptions {
        max_message_size: 1024,
        ..TransportOptions::default()
    };
    let t = Transport::with_options("memory://", opts).unwrap();
    let top = topic("bad");
    block(async {
        let s = started(
            &t,
            Target::topic(&top).with_server("s"),
            vec![echo_endpoint("s")],
        )
        .await;
        let c = RpcClient::new(&t, Target::topic(&top)).timeout(Duration::from_secs(2));
        let big = "x".repeat(4096);
        let r: Result<serde_json::Value, _> = c
            .call(
                &RequestContext::new(),
                "echo",
                json!({"value": 1, "pad": big}),
            )
            .await;
        assert!(matches!(r, Err(MessagingError::TooLarge { .. })));
        // a raw message with no method, sent straight through the driver
        let driver = osier_messaging::memory::MemoryDriver::new("openstack");
        use osier_messaging::driver::Driver;
        driver
            .cast(osier_messaging::driver::Outgoing {
                target: Target::topic(&top),
                ctxt: Default::default(),
                message: json!({"args": {}}).as_object().unwrap().clone(),
                timeout: None,
                args_json: None,
                call_monitor_timeout: None,
                retry: None,
            })
            .await
            .unwrap();
        let t0 = Instant::now();
        while s.dropped_messages() == 0 && t0.elapsed() < Duration::from_secs(2) {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        assert_eq!(s.dropped_messages(), 1);
        let ok: serde_json::Value = c
            .call(&RequestContext::new(), "echo", json!({"value": 2}))
            .await
            .unwrap();
        assert_eq!(ok["value"], 2, "still serving");
        s.stop().await.unwrap();
        s.wait().await.unwrap();
    });
}

/// MSG-SER-01/03: the request context reaches the endpoint intact.
#[test]
fn context_round_trips_to_the_endpoint() {
    let t = transport();
    let top = topic("ctx");
    let ep = Endpoint::new("c").method_async(
        "whoami",
        |ctx: RequestContext, _a: serde_json::Value| async move {
            Ok::<_, EndpointError>(json!({
                "request_id": ctx.request_id(),
                "user": ctx.user_id(),
                "extra": ctx.get("custom_key"),
            }))
        },
    );
    block(async {
        let s = started(&t, Target::topic(&top).with_server("s"), vec![ep]).await;
        let mut ctx = RequestContext::with_new_request_id();
        ctx.set("user_id", "alice");
        ctx.set("custom_key", json!({"nested": [1, 2]}));
        let c = RpcClient::new(&t, Target::topic(&top)).timeout(Duration::from_secs(2));
        let r: serde_json::Value = c.call(&ctx, "whoami", json!({})).await.unwrap();
        assert_eq!(r["request_id"], json!(ctx.request_id()));
        assert_eq!(r["user"], "alice");
        assert_eq!(r["extra"], json!({"nested": [1, 2]}));
        s.stop().await.unwrap();
        s.wait().await.unwrap();
    });
}

/// MSG-SRV-04: stop takes no new messages, but a request in flight is still answered and wait
/// returns only after it.
#[test]
fn stop_finishes_in_flight_requests() {
    let t = transport();
    let top = topic("graceful");
    let ep = Endpoint::new("slow").method_async("slow", |_c, _a: serde_json::Value| async {
        tokio::time::sleep(Duration::from_millis(200)).await;
        Ok::<_, EndpointError>("done")
    });
    block(async {
        let s = started(&t, Target::topic(&top).with_server("s"), vec![ep]).await;
        let c = RpcClient::new(&t, Target::topic(&top)).timeout(Duration::from_secs(5));
        let call = tokio::spawn(async move {
            c.call::<String>(&RequestContext::new(), "slow", json!({}))
                .await
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        s.stop().await.unwrap();
        let t0 = Instant::now();
        s.wait().await.unwrap();
        assert!(
            t0.elapsed() >= Duration::from_millis(100),
            "wait waited for the request in flight"
        );
        assert_eq!(call.await.unwrap().unwrap(), "done");
    });
}

fn lifecycle_server(t: &Transport) -> RpcServer {
    RpcServer::builder(t, Target::topic(topic("life")).with_server("s"))
        .bridge(bridge().clone())
        .endpoint(echo_endpoint("s"))
        .build()
        .unwrap()
}

/// MSG-SRV-05 / TEST-MSG-09: start, stop, wait make one cycle; stop and wait again do nothing;
/// a start after a full cycle begins a new one.
#[test]
fn lifecycle_cycle_and_restart() {
    let t = transport();
    let s = lifecycle_server(&t);
    block(async {
        s.start().await.unwrap();
        assert_eq!(s.cycle(), 1);
        s.start().await.unwrap(); // already started: a warning, nothing else
        assert_eq!(s.cycle(), 1);
        s.stop().await.unwrap();
        s.wait().await.unwrap();
        s.stop().await.unwrap(); // repeated: nothing
        s.wait().await.unwrap();
        assert_eq!(s.cycle(), 1);
        s.start().await.unwrap();
        assert_eq!(s.cycle(), 2, "a new cycle");
        s.stop().await.unwrap();
        s.wait().await.unwrap();
    });
}

/// MSG-SRV-05 / TEST-MSG-09: wait, stop and start issued out of order are put back in order;
/// two concurrent starts run once.
#[test]
fn lifecycle_out_of_order_calls_are_put_in_order() {
    let t = transport();
    let s = lifecycle_server(&t);
    block(async {
        let (s1, s2) = (s.clone(), s.clone());
        let waiter = tokio::spawn(async move { s1.wait().await });
        let stopper = tokio::spawn(async move { s2.stop().await });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(
            !waiter.is_finished() && !stopper.is_finished(),
            "both wait for start"
        );
        let (a, b) = (s.clone(), s.clone());
        let (r1, r2) = tokio::join!(a.start(), b.start());
        r1.unwrap();
        r2.unwrap();
        assert_eq!(s.cycle(), 1, "two concurrent starts ran once");
        tokio::time::timeout(Duration::from_secs(5), stopper)
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .unwrap()
            .unwrap()
            .unwrap();
    });
}

/// MSG-SRV-05 / TEST-MSG-09: a stop with no start times out with TaskTimeout when given a
/// timeout.
#[test]
fn lifecycle_step_timeout() {
    let t = transport();
    let s = lifecycle_server(&t);
    block(async {
        let opts = osier_messaging::StepOptions {
            log_after: None,
            timeout: Some(Duration::from_millis(30)),
        };
        assert!(matches!(
            s.stop_with(opts).await,
            Err(MessagingError::TaskTimeout(_))
        ));
        assert!(matches!(
            s.wait_with(opts).await,
            Err(MessagingError::TaskTimeout(_))
        ));
    });
}

/// MSG-SRV-02: the executor runs messages concurrently, with no ordering between them.
#[test]
fn requests_run_concurrently() {
    let t = transport();
    let top = topic("concurrent");
    let ep = Endpoint::new("slow").method_async("slow", |_c, _a: serde_json::Value| async {
        tokio::time::sleep(Duration::from_millis(200)).await;
        Ok::<_, EndpointError>(())
    });
    block(async {
        let s = started(&t, Target::topic(&top).with_server("s"), vec![ep]).await;
        let c = RpcClient::new(&t, Target::topic(&top)).timeout(Duration::from_secs(5));
        let t0 = Instant::now();
        let calls: Vec<_> = (0..5)
            .map(|_| {
                let c = c.clone();
                tokio::spawn(async move {
                    c.call::<()>(&RequestContext::new(), "slow", json!({}))
                        .await
                })
            })
            .collect();
        for h in calls {
            h.await.unwrap().unwrap();
        }
        assert!(
            t0.elapsed() < Duration::from_millis(900),
            "5 x 200 ms ran in parallel: {:?}",
            t0.elapsed()
        );
        s.stop().await.unwrap();
        s.wait().await.unwrap();
    });
}

/// MSG-SER-01/02/03, MSG-DISP-06 / TEST-MSG-06 (a `RequestContextSerializer` is such a
/// `Serializer` impl): the serializer is called on the client for each
/// argument and the context, then the result; on the server for the context, each argument, then
/// the result.
#[test]
fn serializer_calls_in_order() {
    use osier_messaging::Serializer;
    #[derive(Default)]
    struct Recording(Mutex<Vec<String>>);
    impl Serializer for Recording {
        fn serialize_entity(
            &self,
            _c: &RequestContext,
            v: serde_json::Value,
        ) -> Result<serde_json::Value, MessagingError> {
            self.0.lock().unwrap().push(format!("ser {v}"));
            Ok(v)
        }
        fn deserialize_entity(
            &self,
            _c: &RequestContext,
            v: serde_json::Value,
        ) -> Result<serde_json::Value, MessagingError> {
            self.0.lock().unwrap().push(format!("de {v}"));
            Ok(v)
        }
        fn serialize_context(
            &self,
            c: &RequestContext,
        ) -> serde_json::Map<String, serde_json::Value> {
            self.0.lock().unwrap().push("ser ctx".into());
            c.to_dict()
        }
        fn deserialize_context(
            &self,
            m: serde_json::Map<String, serde_json::Value>,
        ) -> RequestContext {
            self.0.lock().unwrap().push("de ctx".into());
            RequestContext::from_dict(m)
        }
    }
    let t = transport();
    let top = topic("serializer");
    let client_side = Arc::new(Recording::default());
    let server_side = Arc::new(Recording::default());
    let ep = Endpoint::new("e").method_async("add", |_c, a: serde_json::Value| async move {
        Ok::<_, EndpointError>(a["a"].as_i64().unwrap_or(0) + 1)
    });
    block(async {
        let s = RpcServer::builder(&t, Target::topic(&top).with_server("s"))
            .bridge(bridge().clone())
            .serializer(server_side.clone())
            .endpoint(ep)
            .build()
            .unwrap();
        s.start().await.unwrap();
        let c = RpcClient::new(&t, Target::topic(&top))
            .timeout(Duration::from_secs(5))
            .serializer(client_side.clone());
        let r: i64 = c
            .call(&RequestContext::new(), "add", json!({"a": 1}))
            .await
            .unwrap();
        assert_eq!(r, 2);
        s.stop().await.unwrap();
        s.wait().await.unwrap();
    });
    assert_eq!(*client_side.0.lock().unwrap(), ["ser 1", "ser ctx", "de 2"]);
    assert_eq!(*server_side.0.lock().unwrap(), ["de ctx", "de 1", "ser 2"]);
}

/// MSG-URL-06 / MSG-FAKE-01: cleanup wipes the in-memory exchanges: what was queued is gone.
#[test]
fn cleanup_wipes_exchanges() {
    let t = transport();
    let top = topic("cleanup");
    block(async {
        let c = RpcClient::new(&t, Target::topic(&top));
        c.cast(&RequestContext::new(), "echo", json!({"value": 1}))
            .await
            .unwrap();
        t.cleanup().await;
        let hits = Arc::new(AtomicUsize::new(0));
        let h = hits.clone();
        let ep = Endpoint::new("e").method("echo", move |_c, _a: serde_json::Value| {
            h.fetch_add(1, Ordering::SeqCst);
            Ok::<_, EndpointError>(())
        });
        let s = started(&t, Target::topic(&top).with_server("s"), vec![ep]).await;
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(hits.load(Ordering::SeqCst), 0, "the queued cast was wiped");
        s.stop().await.unwrap();
        s.wait().await.unwrap();
    });
}

/// MSG-RPC-03: the request carries method and args, plus namespace and version only when the
/// target sets them.
#[test]
fn request_message_shape() {
    use osier_messaging::driver::Driver;
    let t = transport();
    let top = topic("shape");
    let d = osier_messaging::memory::MemoryDriver::new("openstack");
    block(async {
        let mut l = d
            .listen(&Target::topic(&top).with_server("raw"), 16)
            .await
            .unwrap();
        let c = RpcClient::new(&t, Target::topic(&top));
        c.cast(&RequestContext::new(), "m", json!({"x": 1}))
            .await
            .unwrap();
        let plain = l.poll().await.unwrap().message;
        let keys: Vec<&String> = plain.keys().collect();
        assert_eq!(keys, ["args", "method"]);
        c.prepare()
            .namespace(Some("ns"))
            .version(Some("1.2"))
            .build()
            .unwrap()
            .cast(&RequestContext::new(), "m", json!({}))
            .await
            .unwrap();
        let full = l.poll().await.unwrap().message;
        assert_eq!(full.get("namespace"), Some(&json!("ns")));
        assert_eq!(full.get("version"), Some(&json!("1.2")));
        l.stop();
    });
}

/// A result that does not fit the caller's type is a serialization error that names the method
/// and keeps serde's error as its source.
#[test]
fn a_result_of_the_wrong_type_keeps_the_serde_error_as_its_source() {
    use std::error::Error as _;
    let t = transport();
    let top = topic("wrongtype");
    block(async {
        let s = started(
            &t,
            Target::topic(&top).with_server("s"),
            vec![echo_endpoint("s")],
        )
        .await;
        let c = RpcClient::new(&t, Target::topic(&top)).timeout(Duration::from_secs(2));
        let r: Result<u32, _> = c
            .call(&RequestContext::new(), "echo", json!({"value": 1}))
            .await;
        let e = r.unwrap_err();
        assert!(matches!(e, MessagingError::Serialization { .. }), "{e:?}");
        assert!(e.to_string().contains("echo"), "{e}");
        let cause = e
            .source()
            .and_then(|c| c.downcast_ref::<osier_messaging::Cause>())
            .expect("a source");
        assert!(
            cause.get().downcast_ref::<serde_json::Error>().is_some(),
            "{cause:?}"
        );
        s.stop().await.unwrap();
        s.wait().await.unwrap();
    });
}

/// MSG-RPC-01/07: a client is built from a transport and a target; retry (None, -1, 0, N) is
/// accepted and handed to the driver (the in-memory driver ignores it, as oslo's fake driver does,
/// MSG-FAKE-04).
#[test]
fn client_construction_and_retry_values() {
    let t = transport();
    let top = topic("retry");
    block(async {
        let s = started(
            &t,
            Target::topic(&top).with_server("s"),
            vec![echo_endpoint("s")],
        )
        .await;
        for retry in [None, Some(-1), Some(0), Some(3)] {
            let mut c = RpcClient::new(&t, Target::topic(&top)).timeout(Duration::from_secs(2));
            if let Some(r) = retry {
                c = c.retry(r);
            }
            let p = c.prepare().retry(retry).build().unwrap();
            let r: serde_json::Value = p
                .call(&RequestContext::new(), "echo", json!({"value": 1}))
                .await
                .unwrap();
            assert_eq!(r["value"], 1);
        }
        s.stop().await.unwrap();
        s.wait().await.unwrap();
    });
}

/// MSG-SER-04: messages must be JSON: arguments that do not serialize to an object of named
/// arguments are a typed error before anything is sent.
#[test]
fn arguments_must_be_a_json_object() {
    let t = transport();
    let c = RpcClient::new(&t, Target::topic(topic("json")));
    block(async {
        let r = c.cast(&RequestContext::new(), "m", json!([1, 2])).await;
        assert!(matches!(r, Err(MessagingError::Serialization { .. })));
        let mut bad = std::collections::HashMap::new();
        bad.insert(vec![1u8], 1); // a map with non-string keys is not JSON
        let r = c.cast(&RequestContext::new(), "m", bad).await;
        assert!(matches!(r, Err(MessagingError::Serialization { .. })));
        assert!(
            c.cast(&RequestContext::new(), "m", ()).await.is_ok(),
            "no arguments"
        );
    });
}

/// MSG-SRV-04: reset does nothing (oslo's reset is a no-op for RPC servers).
#[test]
fn reset_does_nothing() {
    let t = transport();
    let s = lifecycle_server(&t);
    block(async {
        s.start().await.unwrap();
        s.reset();
        assert_eq!(s.cycle(), 1);
        s.stop().await.unwrap();
        s.wait().await.unwrap();
    });
}

/// The in-memory transport gives a server only as many requests as it has slots
/// (`max_in_flight`): while the first server's two slots are blocked, the rest of a burst of
/// casts waits in the shared topic queue and a second server on the topic takes all of it.
#[test]
fn a_busy_server_leaves_the_backlog_to_other_servers_on_the_topic() {
    let t = transport();
    let top = topic("credit");
    let gate = Arc::new((Mutex::new(false), std::sync::Condvar::new()));
    let hits = Arc::new(Mutex::new(Vec::<&'static str>::new()));
    let mk = |name: &'static str, slots: usize, blocking: bool| {
        let (g, h) = (gate.clone(), hits.clone());
        RpcServer::builder(&t, Target::topic(&top).with_server(name))
            .bridge(bridge().clone())
            .executor(Executor::Threads)
            .max_in_flight(slots)
            .endpoint(
                Endpoint::new("e").method("work", move |_c, _a: serde_json::Value| {
                    h.lock().unwrap().push(name);
                    if blocking {
                        let (m, cv) = &*g;
                        let mut open = m.lock().unwrap();
                        while !*open {
                            open = cv.wait(open).unwrap();
                        }
                    }
                    Ok::<_, EndpointError>(())
                }),
            )
            .build()
            .unwrap()
    };
    let (slow, fast) = (mk("slow", 2, true), mk("fast", 8, false));
    block(async {
        slow.start().await.unwrap();
        let c = RpcClient::new(&t, Target::topic(&top));
        for _ in 0..20 {
            c.cast(&RequestContext::new(), "work", json!({}))
                .await
                .unwrap();
        }
        let t0 = Instant::now();
        while hits.lock().unwrap().len() < 2 && t0.elapsed() < Duration::from_secs(5) {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(
            hits.lock().unwrap().len(),
            2,
            "more requests started than slots"
        );
        fast.start().await.unwrap();
        let t0 = Instant::now();
        while hits.lock().unwrap().len() < 20 && t0.elapsed() < Duration::from_secs(5) {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let got = hits.lock().unwrap().clone();
        // The slow server's two requests, plus at most the two it holds unstarted in its
        // inbox (its credit), which wait for it: the fast one took every other.
        let fast_n = got.iter().filter(|n| **n == "fast").count();
        assert!(fast_n >= 16, "fast server took only {fast_n}: {got:?}");
        {
            let (m, cv) = &*gate;
            *m.lock().unwrap() = true;
            cv.notify_all();
        }
        for s in [&slow, &fast] {
            s.stop().await.unwrap();
            s.wait().await.unwrap();
        }
    });
}

/// `max_in_flight(0)` is refused when the server is built.
#[test]
fn zero_request_slots_are_refused() {
    let t = transport();
    let e = RpcServer::builder(&t, Target::topic("t").with_server("s"))
        .max_in_flight(0)
        .build()
        .unwrap_err();
    assert!(matches!(e, MessagingError::InvalidOption { .. }), "{e:?}");
}

/// `call_green` made on a tokio thread cannot park: the error is `MessagingError::Bridge`, and
/// its source chain reaches the bridge's own error.
#[test]
fn a_green_call_on_a_tokio_thread_is_a_bridge_error_with_its_source() {
    let t = transport();
    let c = RpcClient::new(&t, Target::topic(topic("green-on-tokio"))).bridge(bridge().clone());
    let e =
        block(async { c.call_green::<serde_json::Value>(&RequestContext::new(), "m", json!({})) })
            .unwrap_err();
    assert!(matches!(e, MessagingError::Bridge(_)), "{e:?}");
    let source = std::error::Error::source(&e).expect("a source");
    assert_eq!(
        source.to_string(),
        osier_bridge::BridgeError::OnTokioThread.to_string()
    );
}
