//! The Rust side of `cargo xtask interop`: serves, or calls, the same endpoints as
//! `xtask/py/oslo_peer.py` does with real Python oslo.messaging, over RabbitMQ.
//!
//! ```text
//! interop_peer server --url rabbit://guest:guest@127.0.0.1:5672/ --topic T   # until stdin closes
//! interop_peer client --url rabbit://guest:guest@127.0.0.1:5672/ --topic T   # PASS/FAIL lines
//! interop_peer cleanup --url rabbit://guest:guest@127.0.0.1:5672/ --topic T  # delete T's queues
//! ```
//!
//! Cases (each runs in both directions): call, cast, fanout, directed call, namespaces and
//! versions, NoSuchMethod, UnsupportedVersion, a builtin and a custom exception, timeout,
//! call-monitor heartbeats, context round trip, a failure's keyword arguments, keyword
//! arguments checked as Python checks them, a method without arguments, `client_timeout` in the
//! endpoint's context, notifications at every priority, listener pools, requeue. One way only:
//! a reply in two parts (the Python peer's legacy responder answers the Rust client) and a
//! request that is not `application/json` (the Python client publishes it raw with kombu).
#![allow(clippy::print_stdout)] // the report is the program's output

use std::collections::HashSet;
use std::io::Read;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use osier_messaging::config::OsloConfig;
use osier_messaging::{
    Endpoint, EndpointError, MessagingError, Notification, NotificationEndpoint,
    NotificationListener, NotificationResult, Notifier, NotifyDriver, Priority, RequestContext,
    RpcClient, RpcServer, Target, Transport, TransportOptions,
};
use serde::Deserialize;
use serde_json::{json, Value};

struct Args {
    mode: String,
    /// The broker URL, or
    url: Option<String>,
    /// an oslo.config file giving it with the transport's options (`--config-file`).
    config: Option<String>,
    topic: String,
}

impl Args {
    /// The broker URL, from `--url` or the config file's `transport_url`.
    fn url(&self) -> Result<String, MessagingError> {
        match (&self.url, &self.config) {
            (Some(u), _) => Ok(u.clone()),
            (None, Some(f)) => Ok(OsloConfig::from_file(f)?.transport_url()?.to_string()),
            (None, None) => Err(MessagingError::InvalidOption {
                option: "--url".into(),
                reason: "give --url or --config-file".into(),
            }),
        }
    }
}

fn args() -> Result<Args, String> {
    let mut it = std::env::args().skip(1);
    let mode = it
        .next()
        .ok_or("usage: interop_peer server|client|cleanup (--url U | --config-file F) --topic T")?;
    let (mut url, mut config, mut topic) = (None, None, None);
    while let Some(a) = it.next() {
        match a.as_str() {
            "--url" => url = it.next(),
            "--config-file" => config = it.next(),
            "--topic" => topic = it.next(),
            other => return Err(format!("unknown argument {other}")),
        }
    }
    if url.is_none() && config.is_none() {
        return Err("--url or --config-file is required".into());
    }
    Ok(Args {
        mode,
        url,
        config,
        topic: topic.ok_or("--topic is required")?,
    })
}

/// The transport: from the config file as a Python service builds it from the same file, or
/// from the URL with the interop's control exchange.
fn transport(a: &Args) -> Result<Transport, MessagingError> {
    if let (None, Some(f)) = (&a.url, &a.config) {
        return OsloConfig::from_file(f)?.transport();
    }
    Transport::with_options(
        &a.url()?,
        TransportOptions {
            control_exchange: "osier_interop".into(),
            ..TransportOptions::default()
        },
    )
}

// ------------------------------------------------------------------------------------ server

#[derive(Default)]
struct Recorder {
    notes: Mutex<Vec<(String, Value)>>,
    notifications: Mutex<Vec<Value>>,
    requeued: Mutex<HashSet<(String, String)>>,
}

#[derive(Deserialize)]
struct ValueArg {
    value: Value,
}

#[derive(Deserialize)]
struct Seconds {
    seconds: f64,
}

#[derive(Deserialize)]
struct NoArgs {}

fn main_endpoint(server: &str, rec: Arc<Recorder>) -> Endpoint {
    let (s1, s2, s3) = (server.to_string(), server.to_string(), server.to_string());
    let (r1, r2, r3) = (rec.clone(), rec.clone(), rec);
    Endpoint::new("main")
        .target(Target::default().with_version("1.3"))
        .method("echo", |_c, a: ValueArg| Ok::<_, EndpointError>(a.value))
        .method("whoami", move |_c, _a: NoArgs| {
            Ok::<_, EndpointError>(s1.clone())
        })
        .method("ctx_echo", |c: RequestContext, _a: NoArgs| {
            Ok::<_, EndpointError>(Value::Object(c.to_dict()))
        })
        .method("fail", |_c, _a: NoArgs| {
            Err::<(), _>(EndpointError::new("ValueError", "boom"))
        })
        .method("custom", |_c, _a: NoArgs| {
            Err::<(), _>(
                EndpointError::new("InteropError", "custom failure").module("osier.interop"),
            )
        })
        .method("not_found", |_c, _a: ()| {
            // A Python caller allowing module `oslo_peer` re-creates its InstanceNotFound.
            Err::<(), _>(
                EndpointError::new("InstanceNotFound", "Instance i-1 could not be found.")
                    .module("oslo_peer")
                    .kwarg("instance_id", json!("i-1")),
            )
        })
        .method("ping", |_c, _a: ()| Ok::<_, EndpointError>("pong"))
        .method_async("sleep", |_c, a: Seconds| async move {
            tokio::time::sleep(Duration::from_secs_f64(a.seconds)).await;
            Ok::<_, EndpointError>(a.seconds)
        })
        .method("note", move |_c, a: ValueArg| {
            r1.notes
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push((s2.clone(), a.value));
            Ok::<_, EndpointError>(())
        })
        .method("notes", move |_c, _a: NoArgs| {
            let notes = r2.notes.lock().unwrap_or_else(|e| e.into_inner());
            let mine: Vec<Value> = notes
                .iter()
                .filter(|(s, _)| *s == s3)
                .map(|(_, v)| v.clone())
                .collect();
            Ok::<_, EndpointError>(mine)
        })
        .method("notifications", move |_c, _a: NoArgs| {
            let n = r3.notifications.lock().unwrap_or_else(|e| e.into_inner());
            Ok::<_, EndpointError>(n.clone())
        })
}

fn listening(who: &str, rec: Arc<Recorder>) -> NotificationEndpoint {
    let mut ep = NotificationEndpoint::new(who);
    for p in Priority::ALL {
        let (who, rec) = (who.to_string(), rec.clone());
        ep = ep.on(p, move |n: &Notification| {
            if let Some(key) = n.payload.get("requeue_once").and_then(Value::as_str) {
                let first = rec
                    .requeued
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert((who.clone(), key.to_string()));
                if first {
                    return NotificationResult::Requeue;
                }
            }
            let user = n
                .ctxt
                .user_id()
                .or_else(|| n.ctxt.get("user").and_then(Value::as_str));
            rec.notifications
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(json!({
                    "listener": who,
                    "priority": n.priority.as_str(),
                    "publisher_id": n.publisher_id,
                    "event_type": n.event_type,
                    "payload": n.payload,
                    "ctxt_user": user,
                }));
            NotificationResult::Handled
        });
    }
    ep
}

async fn serve(a: &Args, bridge: &osier_bridge::Bridge) -> Result<(), Box<dyn std::error::Error>> {
    let rec = Arc::new(Recorder::default());
    let t = transport(a)?;
    let mut servers = Vec::new();
    for name in ["s1", "s2"] {
        let v2 = Endpoint::new("v2")
            .target(Target::default().with_namespace("ns2").with_version("2.1"))
            .method("v2echo", |_c, a: ValueArg| {
                let v = a
                    .value
                    .as_i64()
                    .ok_or_else(|| EndpointError::new("TypeError", "not an int"))?;
                Ok::<_, EndpointError>(v * 2)
            });
        let s = RpcServer::builder(&t, Target::topic(&a.topic).with_server(name))
            .bridge(bridge.clone())
            .endpoint(main_endpoint(name, rec.clone()))
            .endpoint(v2)
            .build()?;
        s.start().await?;
        servers.push(s);
    }
    let ntarget = vec![Target::topic(format!("{}_notif", a.topic))];
    let mut listeners = Vec::new();
    let pool_name = format!("{}_pool", a.topic);
    let pa = Some(pool_name.as_str());
    for (who, pool) in [("main", None), ("pool-a", pa), ("pool-b", pa)] {
        let mut l =
            NotificationListener::new(&t, ntarget.clone(), vec![listening(who, rec.clone())])
                .allow_requeue(true)
                .bridge(bridge.clone());
        if let Some(p) = pool {
            l = l.pool(p);
        }
        l.start().await?;
        listeners.push(l);
    }
    println!("READY");
    tokio::task::spawn_blocking(|| {
        let mut sink = Vec::new();
        let _ = std::io::stdin().read_to_end(&mut sink);
    })
    .await?;
    for s in &servers {
        s.stop().await?;
        s.wait().await?;
    }
    for l in &listeners {
        l.stop().await;
    }
    Ok(())
}

/// Deletes the queues both peers declared for `topic` (oslo never deletes topic queues).
async fn cleanup(a: &Args) -> Result<(), Box<dyn std::error::Error>> {
    use lapin::options::QueueDeleteOptions;
    let url: osier_messaging::TransportUrl = a.url()?.parse()?;
    let h = url.hosts().first().ok_or("the URL names no host")?;
    let uri = format!(
        "amqp://{}:{}@{}:{}/%2f",
        h.username.as_deref().unwrap_or("guest"),
        h.password.as_deref().unwrap_or("guest"),
        h.hostname,
        h.port.unwrap_or(5672)
    );
    let conn = lapin::Connection::connect(&uri, lapin::ConnectionProperties::default()).await?;
    let ch = conn.create_channel().await?;
    let t = &a.topic;
    let mut queues = vec![
        t.clone(),
        format!("{t}.s1"),
        format!("{t}.s2"),
        format!("{t}_pool"),
    ];
    queues.extend(
        Priority::ALL
            .iter()
            .map(|p| format!("{t}_notif.{}", p.as_str())),
    );
    for q in queues {
        ch.queue_delete(q.as_str().into(), QueueDeleteOptions::default())
            .await?;
    }
    conn.close(200, "bye".into()).await?;
    Ok(())
}

// ------------------------------------------------------------------------------------ client

struct Report {
    passed: usize,
    failed: usize,
}

impl Report {
    fn record(&mut self, name: &str, r: Result<(), String>) {
        match r {
            Ok(()) => {
                self.passed += 1;
                println!("PASS {name}");
            }
            Err(e) => {
                self.failed += 1;
                println!("FAIL {name}: {e}");
            }
        }
    }
}

fn check(cond: bool, what: impl Into<String>) -> Result<(), String> {
    if cond {
        Ok(())
    } else {
        Err(what.into())
    }
}

async fn until<F, Fut>(mut f: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let t0 = Instant::now();
    loop {
        if f().await {
            return true;
        }
        if t0.elapsed() > Duration::from_secs(10) {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn remote(e: MessagingError) -> Result<osier_messaging::Failure, String> {
    match e {
        MessagingError::Remote(f) => Ok(*f),
        other => Err(format!("expected a remote error, got {other}")),
    }
}

async fn run_client(a: &Args) -> Result<Report, Box<dyn std::error::Error>> {
    let t = transport(a)?;
    let c = RpcClient::new(&t, Target::topic(&a.topic)).timeout(Duration::from_secs(10));
    let mut ctxt = RequestContext::with_new_request_id();
    ctxt.set("user_id", "u-rs");
    ctxt.set("project_id", "p-rs");
    let ctxt = &ctxt;
    let mut rep = Report {
        passed: 0,
        failed: 0,
    };
    let to_s = |e: MessagingError| e.to_string();
    let server = |s: &str| c.prepare().server(Some(s)).build();

    let r = async {
        let v = json!({"x": 1, "s": "\u{fc}\u{2603}", "l": [1, 2.5, null, true]});
        let got: Value = c
            .call(ctxt, "echo", json!({"value": v}))
            .await
            .map_err(to_s)?;
        check(got == v, format!("echo differs: {got}"))
    };
    rep.record("call_echo", r.await);

    let notes_of = |s: &'static str| {
        let c = server(s);
        async move {
            let c = c.map_err(to_s)?;
            c.call::<Vec<Value>>(ctxt, "notes", json!({}))
                .await
                .map_err(to_s)
        }
    };
    let r = async {
        let k = uuid::Uuid::new_v4().to_string();
        c.cast(ctxt, "note", json!({"value": k}))
            .await
            .map_err(to_s)?;
        let seen = until(|| {
            let k = k.clone();
            async move {
                for s in ["s1", "s2"] {
                    if notes_of(s).await.unwrap_or_default().contains(&json!(k)) {
                        return true;
                    }
                }
                false
            }
        })
        .await;
        check(seen, "cast not seen")
    };
    rep.record("cast", r.await);

    let r = async {
        let k = uuid::Uuid::new_v4().to_string();
        let f = c.prepare().fanout(true).build().map_err(to_s)?;
        f.cast(ctxt, "note", json!({"value": k}))
            .await
            .map_err(to_s)?;
        for s in ["s1", "s2"] {
            let k = json!(k);
            let seen = until(|| {
                let k = k.clone();
                async move { notes_of(s).await.unwrap_or_default().contains(&k) }
            })
            .await;
            check(seen, format!("fanout missed {s}"))?;
        }
        Ok(())
    };
    rep.record("fanout_cast", r.await);

    let r = async {
        let who: String = server("s2")
            .map_err(to_s)?
            .call(ctxt, "whoami", json!({}))
            .await
            .map_err(to_s)?;
        check(who == "s2", format!("wrong server {who}"))
    };
    rep.record("directed_call", r.await);

    let r = async {
        let v2 = c
            .prepare()
            .namespace(Some("ns2"))
            .version(Some("2.1"))
            .build()
            .map_err(to_s)?;
        let v: i64 = v2
            .call(ctxt, "v2echo", json!({"value": 21}))
            .await
            .map_err(to_s)?;
        check(v == 42, format!("ns2: {v}"))?;
        let v12 = c.prepare().version(Some("1.2")).build().map_err(to_s)?;
        let v: i64 = v12
            .call(ctxt, "echo", json!({"value": 1}))
            .await
            .map_err(to_s)?;
        check(v == 1, "compatible minor")
    };
    rep.record("namespace_and_version", r.await);

    let r = async {
        match c.call::<Value>(ctxt, "nosuch", json!({})).await {
            Err(MessagingError::NoSuchMethod { method }) => check(method == "nosuch", method),
            other => Err(format!("expected NoSuchMethod, got {other:?}")),
        }
    };
    rep.record("no_such_method", r.await);

    let r = async {
        let v3 = c.prepare().version(Some("3.0")).build().map_err(to_s)?;
        match v3.call::<Value>(ctxt, "echo", json!({"value": 1})).await {
            Err(MessagingError::UnsupportedVersion { version, method }) => check(
                version == "3.0" && method == "echo",
                format!("{version} {method}"),
            ),
            other => Err(format!("expected UnsupportedVersion, got {other:?}")),
        }
    };
    rep.record("unsupported_version", r.await);

    let r = async {
        let e = c.call::<Value>(ctxt, "fail", json!({})).await;
        let f = remote(e.err().ok_or("no error")?)?;
        check(
            f.class == "ValueError" && f.module == "builtins",
            format!("{}.{}", f.module, f.class),
        )?;
        check(f.message.contains("boom"), f.message)
    };
    rep.record("builtin_exception", r.await);

    let r = async {
        let e = c.call::<Value>(ctxt, "custom", json!({})).await;
        let f = remote(e.err().ok_or("no error")?)?;
        check(f.class == "InteropError", f.class.clone())?;
        check(f.message.contains("custom failure"), f.message)
    };
    rep.record("custom_exception_as_remote_error", r.await);

    let r = async {
        let t0 = Instant::now();
        let short = c
            .prepare()
            .timeout(Some(Duration::from_secs(1)))
            .build()
            .map_err(to_s)?;
        match short
            .call::<Value>(ctxt, "sleep", json!({"seconds": 3}))
            .await
        {
            Err(MessagingError::Timeout(_)) => {
                check(t0.elapsed() < Duration::from_millis(2500), "late timeout")
            }
            other => Err(format!("expected a timeout, got {other:?}")),
        }
    };
    rep.record("timeout", r.await);

    let r = async {
        // A 4 s monitor: the server heartbeats every 2 s, which leaves 2 s for a heartbeat to
        // reach a quorum reply queue on a loaded machine (1 s was too little once).
        let m = c
            .prepare()
            .timeout(Some(Duration::from_secs(20)))
            .call_monitor_timeout(Some(Duration::from_secs(4)))
            .build()
            .map_err(to_s)?;
        let v: f64 = m
            .call(ctxt, "sleep", json!({"seconds": 6}))
            .await
            .map_err(to_s)?;
        check(v == 6.0, format!("{v}"))
    };
    rep.record("call_monitor_heartbeats", r.await);

    let r = async {
        let mut cx = ctxt.clone();
        cx.set("custom_key", "custom-\u{e9}");
        let got: Value = c.call(&cx, "ctx_echo", json!({})).await.map_err(to_s)?;
        for k in ["user_id", "project_id", "request_id", "custom_key"] {
            check(got.get(k) == cx.get(k), format!("{k}: {:?}", got.get(k)))?;
        }
        Ok(())
    };
    rep.record("context_round_trip", r.await);

    let r = async {
        let e = c.call::<Value>(ctxt, "not_found", json!({})).await;
        let f = remote(e.err().ok_or("no error")?)?;
        check(f.class == "InstanceNotFound", f.class.clone())?;
        check(
            f.kwargs.get("instance_id") == Some(&json!("i-1")),
            format!("kwargs {:?}", f.kwargs),
        )?;
        check(!f.tb.is_empty(), "no traceback")
    };
    rep.record("failure_kwargs", r.await);

    let r = async {
        let type_error = |e: Option<MessagingError>, words: &str| -> Result<(), String> {
            let f = remote(e.ok_or("no error")?)?;
            check(
                f.class == "TypeError" && f.message.contains(words),
                format!("{}: {}", f.class, f.message),
            )
        };
        let e = c
            .call::<Value>(ctxt, "echo", json!({"value": 1, "valu": 2}))
            .await;
        type_error(e.err(), "got an unexpected keyword argument 'valu'")?;
        let e = c.call::<Value>(ctxt, "echo", json!({})).await;
        type_error(e.err(), "missing 1 required positional argument: 'value'")
    };
    rep.record("keyword_arguments_checked", r.await);

    let r = async {
        let v: String = c.call(ctxt, "ping", json!({})).await.map_err(to_s)?;
        check(v == "pong", v)
    };
    rep.record("method_without_arguments", r.await);

    let r = async {
        let got: Value = c.call(ctxt, "ctx_echo", json!({})).await.map_err(to_s)?;
        let t = got.get("client_timeout").cloned();
        check(t == Some(Value::Null), format!("without a monitor: {t:?}"))?;
        let m = c
            .prepare()
            .call_monitor_timeout(Some(Duration::from_secs(5)))
            .build()
            .map_err(to_s)?;
        let got: Value = m.call(ctxt, "ctx_echo", json!({})).await.map_err(to_s)?;
        let t = got.get("client_timeout").and_then(Value::as_f64);
        check(t == Some(5.0), format!("with a 5 s monitor: {t:?}"))
    };
    rep.record("client_timeout_in_context", r.await);

    let r = async {
        // The Python peer's legacy responder answers in two parts, as older oslo servers did.
        let legacy = RpcClient::new(&t, Target::topic(format!("{}_legacy", a.topic)))
            .timeout(Duration::from_secs(10));
        let v: i64 = legacy
            .call(ctxt, "echo", json!({"value": 7}))
            .await
            .map_err(to_s)?;
        check(v == 7, format!("{v}"))
    };
    rep.record("two_part_reply", r.await);

    let ntopic = format!("{}_notif", a.topic);
    let notifier = Notifier::new(&t, "rs.peer")
        .driver(NotifyDriver::MessagingV2)
        .topics(&[&ntopic]);
    let received = |run: String| {
        let c = &c;
        async move {
            let all: Vec<Value> = c
                .call(ctxt, "notifications", json!({}))
                .await
                .unwrap_or_default();
            all.into_iter()
                .filter(|x| x["payload"]["run"] == json!(run))
                .collect::<Vec<Value>>()
        }
    };

    let r = async {
        let run = uuid::Uuid::new_v4().to_string();
        for p in Priority::ALL {
            notifier
                .notify(
                    ctxt,
                    p,
                    &format!("interop.{}", p.as_str()),
                    json!({"run": run, "p": p.as_str()}),
                )
                .await;
        }
        let main_of = |xs: Vec<Value>| -> Vec<Value> {
            xs.into_iter().filter(|x| x["listener"] == "main").collect()
        };
        until(|| {
            let run = run.clone();
            async move { main_of(received(run).await).len() >= 7 }
        })
        .await;
        let mine = main_of(received(run.clone()).await);
        let mut prios: Vec<String> = mine
            .iter()
            .map(|x| x["priority"].as_str().unwrap_or("").to_string())
            .collect();
        prios.sort();
        let mut want: Vec<String> = Priority::ALL
            .iter()
            .map(|p| p.as_str().to_string())
            .collect();
        want.sort();
        check(prios == want, format!("priorities {prios:?}"))?;
        for x in &mine {
            check(
                x["publisher_id"] == "rs.peer",
                format!("{}", x["publisher_id"]),
            )?;
            check(
                x["event_type"]
                    == json!(format!("interop.{}", x["priority"].as_str().unwrap_or(""))),
                format!("{}", x["event_type"]),
            )?;
            check(
                x["ctxt_user"] == "u-rs",
                format!("ctxt user {}", x["ctxt_user"]),
            )?;
        }
        Ok(())
    };
    rep.record("notifications_every_priority", r.await);

    let r = async {
        let run = uuid::Uuid::new_v4().to_string();
        for i in 0..10 {
            notifier
                .info(ctxt, "interop.pool", json!({"run": run, "i": i}))
                .await;
        }
        until(|| {
            let run = run.clone();
            async move { received(run).await.len() >= 20 }
        })
        .await;
        let xs = received(run).await;
        let ids = |pred: &dyn Fn(&Value) -> bool| {
            let mut v: Vec<i64> = xs
                .iter()
                .filter(|x| pred(x))
                .filter_map(|x| x["payload"]["i"].as_i64())
                .collect();
            v.sort();
            v
        };
        let main = ids(&|x| x["listener"] == "main");
        let pool = ids(&|x| x["listener"] == "pool-a" || x["listener"] == "pool-b");
        let all: Vec<i64> = (0..10).collect();
        check(main == all, format!("default group: {main:?}"))?;
        check(pool == all, format!("pool, each once: {pool:?}"))
    };
    rep.record("notification_pools", r.await);

    let r = async {
        let key = uuid::Uuid::new_v4().to_string();
        notifier
            .info(ctxt, "interop.requeue", json!({"requeue_once": key}))
            .await;
        let handled = || {
            let key = key.clone();
            let c = &c;
            async move {
                let all: Vec<Value> = c
                    .call(ctxt, "notifications", json!({}))
                    .await
                    .unwrap_or_default();
                all.into_iter()
                    .filter(|x| {
                        x["listener"] == "main" && x["payload"]["requeue_once"] == json!(key)
                    })
                    .count()
            }
        };
        check(
            until(|| async { handled().await >= 1 }).await,
            "requeued notification never handled",
        )?;
        tokio::time::sleep(Duration::from_millis(300)).await;
        let n = handled().await;
        check(n == 1, format!("handled {n} times"))
    };
    rep.record("notification_requeue", r.await);

    Ok(rep)
}

fn main() {
    let a = match args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(2);
        }
    };
    let bridge = match osier_bridge::Bridge::builder().build() {
        Ok(b) => b,
        Err(e) => {
            eprintln!("bridge: {e}");
            std::process::exit(2);
        }
    };
    let rt = bridge.tokio().clone();
    let code = match a.mode.as_str() {
        "server" => match rt.block_on(serve(&a, &bridge)) {
            Ok(()) => 0,
            Err(e) => {
                eprintln!("server: {e}");
                1
            }
        },
        "cleanup" => match rt.block_on(cleanup(&a)) {
            Ok(()) => 0,
            Err(e) => {
                eprintln!("cleanup: {e}");
                1
            }
        },
        "client" => match rt.block_on(run_client(&a)) {
            Ok(rep) => {
                println!("{} passed, {} failed", rep.passed, rep.failed);
                i32::from(rep.failed > 0)
            }
            Err(e) => {
                eprintln!("client: {e}");
                1
            }
        },
        other => {
            eprintln!("unknown mode {other}: server or client");
            2
        }
    };
    std::process::exit(code);
}
