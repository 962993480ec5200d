//! Faults on the real broker (MSG-AMQP-05): every connection is closed by the broker
//! (`rabbitmqctl close_all_connections`), and the broker application is stopped and started
//! (`rabbitmqctl stop_app` / `start_app`), while calls and notifications stream. Clients,
//! servers and listeners must come back on their own within 5 s, every call must end in a result
//! or a typed error within its timeout (only calls in flight during the fault may time out), and
//! no notification handed to the transport may be lost.
//!
//! These tests disturb every connection on the broker, so they run one at a time, in their own
//! test binary (cargo runs test binaries one after another), and only when asked:
//! `OSIER_BROKER_FAULTS=1` (`cargo xtask ci` sets it). A contributor's `cargo test` never
//! restarts the broker they work against.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use osier_messaging::{
    MessagingError, NotificationEndpoint, NotificationListener, NotificationResult, Notifier,
    NotifyDriver, Priority, RequestContext, RpcClient, RpcServer, Target, Transport,
    TransportOptions,
};
use serde_json::json;

mod common;
use common::{bridge, clean_up, echo_server, rabbitmqctl_cmd};

const CALL_TIMEOUT: Duration = Duration::from_secs(8);

fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    static M: Mutex<()> = Mutex::new(());
    M.lock().unwrap_or_else(|e| e.into_inner())
}

fn rabbitmqctl(args: &[&str]) {
    let out = rabbitmqctl_cmd()
        .args(args)
        .output()
        .expect("rabbitmqctl is installed with the broker");
    assert!(
        out.status.success(),
        "rabbitmqctl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Starts the broker application again even if the test fails half-way.
struct AppGuard;
impl Drop for AppGuard {
    fn drop(&mut self) {
        let _ = rabbitmqctl_cmd().arg("start_app").output();
    }
}

/// These tests close every connection on the broker and stop its application: they run only
/// when asked (`OSIER_BROKER_FAULTS=1`, set by `cargo xtask ci`), and say so when they do not.
fn faults_allowed() -> bool {
    let allowed = common::broker_faults_allowed();
    if !allowed {
        eprintln!(
            "not run: this test disturbs every connection on the broker; set OSIER_BROKER_FAULTS=1 to run it"
        );
    }
    allowed
}

fn unique(name: &str) -> String {
    format!("osier-fault-{name}-{}", uuid::Uuid::new_v4().simple())
}

/// A server echoing `{"i": n}`, a listener recording payload `i`s, a client and a notifier, each
/// on its own transport (as separate processes would be).
struct Rig {
    server: RpcServer,
    listener: NotificationListener,
    client: RpcClient,
    notifier: Notifier,
    seen: Arc<Mutex<BTreeSet<i64>>>,
    cleanup: (Vec<String>, Vec<String>),
}

fn rig(url: &str, exchange: &str) -> Rig {
    let opts = || TransportOptions {
        control_exchange: exchange.to_string(),
        ..TransportOptions::default()
    };
    let top = unique("topic");
    let ts = Transport::with_options(url, opts()).unwrap();
    let tc = Transport::with_options(url, opts()).unwrap();
    let server = echo_server(&ts, &top, "s");
    let seen = Arc::new(Mutex::new(BTreeSet::new()));
    let s2 = seen.clone();
    let ep = NotificationEndpoint::new("e").on(Priority::Info, move |n| {
        if let Some(i) = n.payload.get("i").and_then(|v| v.as_i64()) {
            s2.lock().unwrap().insert(i);
        }
        NotificationResult::Handled
    });
    let listener = NotificationListener::new(&ts, vec![Target::topic(&top)], vec![ep])
        .bridge(bridge().clone());
    let client = RpcClient::new(&tc, Target::topic(&top)).timeout(CALL_TIMEOUT);
    let notifier = Notifier::new(&tc, "osier.faults")
        .driver(NotifyDriver::MessagingV2)
        .topics(&[&top]);
    Rig {
        server,
        listener,
        client,
        notifier,
        seen,
        cleanup: (
            vec![top.clone(), format!("{top}.s"), format!("{top}.info")],
            vec![exchange.to_string()],
        ),
    }
}

/// Streams `n` calls and notifications, one every 20 ms; after the 20th, `fault` starts on its
/// own thread while the stream goes on. Returns how long the first call made after the fault
/// ended took to get its answer. A call in flight during the fault may time out (its request or
/// reply can go with the connection: call requests carry no confirm, see docs/architecture.md).
async fn stream_through(r: &Rig, n: i64, fault: impl FnOnce() + Send + 'static) -> Duration {
    let mut fault = Some(fault);
    let done_at: Arc<Mutex<Option<Instant>>> = Arc::new(Mutex::new(None));
    let mut fault_thread = None;
    let mut recovered: Option<Duration> = None;
    let mut timeouts = 0;
    for i in 0..n {
        if i == 20 {
            let (f, d) = (fault.take().unwrap(), done_at.clone());
            fault_thread = Some(std::thread::spawn(move || {
                f();
                *d.lock().unwrap() = Some(Instant::now());
            }));
        }
        let t0 = Instant::now();
        let fault_over_before = *done_at.lock().unwrap();
        match r
            .client
            .call::<serde_json::Value>(&RequestContext::new(), "echo", json!({"i": i}))
            .await
        {
            Ok(v) => {
                assert_eq!(v, json!({"i": i}));
                // Recovered: how long the first call made after the fault ended took. (Not the
                // time since the fault ended: a call in flight during the fault may have held
                // the stream until its own timeout, long after the transport was back.)
                if let (Some(_), None) = (fault_over_before, recovered) {
                    recovered = Some(t0.elapsed());
                }
            }
            // A call in flight when the fault hit may lose its request or its reply with the
            // connection or the queue, and a call made while no connection can be had fails
            // with the broker's error once its retry budget is spent (a broker slow to come
            // back); either way it must end in a typed error within its timeout.
            Err(MessagingError::Timeout(_) | MessagingError::Broker(_))
                if fault_thread.is_some()
                    && fault_over_before.is_none_or(|f| t0 < f + Duration::from_secs(5)) =>
            {
                assert!(t0.elapsed() < CALL_TIMEOUT + Duration::from_secs(1));
                timeouts += 1;
            }
            Err(e) => panic!("call {i} failed after {:?}: {e}", t0.elapsed()),
        }
        r.notifier
            .info(&RequestContext::new(), "osier.fault", json!({"i": i}))
            .await;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    while fault_thread.as_ref().is_some_and(|t| !t.is_finished()) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    if let Some(t) = fault_thread {
        t.join().expect("the fault ran");
    }
    let recovered = match recovered {
        Some(d) => d,
        None => {
            // The fault outlasted the stream (rabbitmqctl can take seconds on a loaded
            // machine), or ended after the last call had started: one call now that it is over.
            let t0 = Instant::now();
            let _: serde_json::Value = r
                .client
                .call(&RequestContext::new(), "echo", json!({"i": -1}))
                .await
                .unwrap_or_else(|e| {
                    panic!("call after the fault failed after {:?}: {e}", t0.elapsed())
                });
            t0.elapsed()
        }
    };
    eprintln!("{timeouts} call(s) made during the fault ended in a typed error (timeout, broker)");
    // Every notification the broker confirmed reaches the listener.
    let t0 = Instant::now();
    while r.seen.lock().unwrap().len() < n as usize && t0.elapsed() < Duration::from_secs(20) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let seen = r.seen.lock().unwrap().clone();
    let missing: Vec<i64> = (0..n).filter(|i| !seen.contains(i)).collect();
    eprintln!("{} notifications received", seen.len());
    assert!(missing.is_empty(), "notifications lost: {missing:?}");
    recovered
}

async fn shut(r: Rig) {
    r.server.stop().await.unwrap();
    r.server.wait().await.unwrap();
    r.listener.stop().await;
    clean_up(&r.cleanup.0, &r.cleanup.1).await;
}

/// MSG-AMQP-05: the broker closes every connection mid-stream; publisher, reply queue, RPC
/// server and notification listener all reconnect and resume, nothing is lost.
#[test]
fn calls_and_notifications_survive_close_all_connections() {
    let _one = one_at_a_time();
    if !faults_allowed() {
        return;
    }
    // Reconnect attempts at most 2 s apart (oslo's default lets them grow to 30 s).
    let r = rig(
        &common::broker().url_with("rabbit_interval_max=2"),
        &unique("exchange"),
    );
    bridge().tokio().block_on(async {
        r.server.start().await.unwrap();
        r.listener.start().await.unwrap();
        let back = stream_through(&r, 60, || {
            rabbitmqctl(&["close_all_connections", "osier fault test"])
        })
        .await;
        eprintln!("first call after close_all_connections: {back:?}");
        assert!(
            back < Duration::from_secs(5),
            "first call after the fault took {back:?}"
        );
        shut(r).await;
    });
}

/// MSG-AMQP-05, MSG-AMQP-03: the broker application stops (every queue that is not durable goes
/// with it) and starts again. With `amqp_durable_queues=true` (set in the URL query) the
/// notification queue and its confirmed messages survive; the reply and fanout queues are
/// declared again on reconnect.
#[test]
fn calls_and_notifications_survive_a_broker_restart() {
    if !faults_allowed() {
        return;
    }
    let _one = one_at_a_time();
    let r = rig(
        &common::broker().url_with("amqp_durable_queues=true&rabbit_interval_max=2"),
        &unique("exchange"),
    );
    bridge().tokio().block_on(async {
        r.server.start().await.unwrap();
        r.listener.start().await.unwrap();
        let back = stream_through(&r, 50, || {
            let _guard = AppGuard;
            rabbitmqctl(&["stop_app"]);
            std::thread::sleep(Duration::from_secs(1));
            rabbitmqctl(&["start_app"]);
        })
        .await;
        eprintln!("first call after the broker restart: {back:?}");
        assert!(
            back < Duration::from_secs(5),
            "first call after the restart took {back:?}"
        );
        shut(r).await;
    });
}

/// MSG-AMQP-05: a publisher whose connection the broker closes while it has nothing to send
/// notices then, not on its next send: with a 3 s `kombu_reconnect_delay`, a call made 4 s
/// after the close goes out at once instead of waiting the delay first.
#[test]
fn a_publisher_idle_when_its_connection_closed_sends_at_once_later() {
    let _one = one_at_a_time();
    if !faults_allowed() {
        return;
    }
    let top = unique("idle");
    let ex = unique("exchange");
    let opts = || TransportOptions {
        control_exchange: ex.clone(),
        ..TransportOptions::default()
    };
    let ts = Transport::with_options(&common::broker().url_with("rabbit_interval_max=2"), opts())
        .unwrap();
    let tc = Transport::with_options(
        &common::broker().url_with("kombu_reconnect_delay=3&rabbit_interval_max=2"),
        opts(),
    )
    .unwrap();
    let server = echo_server(&ts, &top, "s");
    let client = RpcClient::new(&tc, Target::topic(&top)).timeout(CALL_TIMEOUT);
    bridge().tokio().block_on(async {
        server.start().await.unwrap();
        let call = |i: i64| {
            let client = client.clone();
            async move {
                client
                    .call::<serde_json::Value>(&RequestContext::new(), "echo", json!({"i": i}))
                    .await
            }
        };
        call(0).await.unwrap();
        rabbitmqctl(&["close_all_connections", "osier idle publisher test"]);
        // The server and the client's reply queue are back within this; the publisher's
        // pause, counted from the close, is over.
        tokio::time::sleep(Duration::from_secs(4)).await;
        let t0 = Instant::now();
        assert_eq!(call(1).await.unwrap(), json!({"i": 1}));
        let took = t0.elapsed();
        assert!(
            took < Duration::from_secs(2),
            "the first call after an idle close took {took:?} (the 3 s delay again?)"
        );
        server.stop().await.unwrap();
        server.wait().await.unwrap();
        clean_up(
            &[top.clone(), format!("{top}.s")],
            std::slice::from_ref(&ex),
        )
        .await;
    });
}
