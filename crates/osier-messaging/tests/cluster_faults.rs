//! Faults of a RabbitMQ cluster (MSG-AMQP-05): three nodes of our own on 127.0.0.1:5673-5675,
//! started by `xtask/scripts/rabbit-cluster.sh`. In every scenario 16 callers and a numbered
//! notification stream run through a server and a listener while a fault hits the node every
//! client is connected to (the URL lists it first and `kombu_failover_strategy=round-robin`
//! starts there): killed with SIGKILL, its connections closed by an operator, frozen with
//! SIGSTOP past the heartbeat timeout, or the whole cluster stopped for 20 s. Each scenario runs
//! with classic queues and with quorum queues, and checks:
//!
//! - a call succeeds within 5 s of a node being able to take over (a frozen node: within twice
//!   the heartbeat timeout plus 5 s; a stopped cluster: once a majority of its nodes is back,
//!   and with quorum queues once the call queue has a leader again, which a plain AMQP client
//!   finds by publishing to it);
//! - no call outlives its timeout (each ends in a result or a typed error);
//! - every notification `notify()` accepted reaches the listener, once;
//! - the server and the listener recover on their own.
//!
//! They need the cluster and disturb it, so they run only when asked: `OSIER_CLUSTER_FAULTS=1`,
//! which `cargo xtask chaos` sets after starting the cluster (`cargo xtask ci` runs it). With
//! `OSIER_CHAOS_REPORT=<file>` each scenario appends its figures to the file as a JSON line.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use osier_messaging::{
    MessagingError, NotificationEndpoint, NotificationListener, NotificationResult, Notifier,
    NotifyDriver, Priority, RequestContext, RpcClient, Target, Transport, TransportOptions,
};
use serde_json::json;

mod common;
use common::{bridge, echo_server};

/// The heartbeat the scenarios ask for (seconds): a frozen node is noticed within about twice
/// this.
const HEARTBEAT: u64 = 4;
const CALL_TIMEOUT: Duration = Duration::from_secs(10);
const CALLERS: usize = 16;
/// How long calls and notifications run after the node is available again.
const AFTER: Duration = Duration::from_secs(6);

fn allowed() -> bool {
    let ok = std::env::var("OSIER_CLUSTER_FAULTS").is_ok_and(|v| v == "1");
    if !ok {
        eprintln!(
            "not run: needs the test cluster and disturbs it; `cargo xtask chaos` starts it and sets OSIER_CLUSTER_FAULTS=1"
        );
    }
    ok
}

fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    static M: Mutex<()> = Mutex::new(());
    M.lock().unwrap_or_else(|e| e.into_inner())
}

/// The script that starts, disturbs and removes the test cluster.
const SCRIPT: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../xtask/scripts/rabbit-cluster.sh"
);

/// Runs the cluster script.
fn cluster(args: &[&str]) {
    let out = std::process::Command::new("bash")
        .arg(SCRIPT)
        .args(args)
        .output()
        .expect("bash runs the cluster script");
    assert!(
        out.status.success(),
        "rabbit-cluster.sh {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A healthy cluster for every scenario: the one the scenario before left, when each node runs
/// and sees the other two with no partition (every scenario deletes what it declared), a new
/// one otherwise (a partition healed after a freeze can leave nodes that do not rejoin).
struct FreshCluster;
impl FreshCluster {
    fn new() -> Self {
        let healthy = std::process::Command::new("bash")
            .arg(SCRIPT)
            .arg("healthy")
            .output()
            .is_ok_and(|o| o.status.success());
        if !healthy {
            cluster(&["clean"]);
            cluster(&["start"]);
        }
        FreshCluster
    }
}
impl Drop for FreshCluster {
    fn drop(&mut self) {
        // A frozen node would hold `clean` up.
        for n in ["1", "2", "3"] {
            let _ = std::process::Command::new("bash")
                .arg(SCRIPT)
                .args(["thaw", n])
                .output();
        }
    }
}

fn url(query: &str) -> String {
    let hosts = (5673..=5675)
        .map(|p| format!("guest:guest@127.0.0.1:{p}"))
        .collect::<Vec<_>>()
        .join(",");
    format!(
        "rabbit://{hosts}/?kombu_failover_strategy=round-robin&heartbeat_timeout_threshold={HEARTBEAT}&rabbit_interval_max=2&{query}"
    )
}

/// osier's warnings go to the test's output, so a failed scenario shows what happened
/// (`RUST_LOG` chooses otherwise, e.g. `osier_messaging=info` for the reconnections too).
fn log_warnings() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let filter = tracing_subscriber::EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,lapin=off"));
        let _ = tracing_subscriber::fmt()
            .with_test_writer()
            .with_env_filter(filter)
            .try_init();
    });
}

/// One call: when it started and ended, and whether it got its answer.
struct Call {
    start: Instant,
    end: Instant,
    ok: bool,
    error: Option<String>,
}

/// What a scenario measured.
#[derive(Debug, serde::Serialize)]
struct Figures {
    scenario: String,
    /// From the moment a node could take over to the end of the first call that succeeded
    /// after it.
    recovery_s: f64,
    /// Quorum queues after a whole-cluster outage: how long after a majority of nodes was back
    /// the call queue had a leader again (the broker's election; a node can take over then).
    leader_elected_s: Option<f64>,
    longest_call_s: f64,
    calls_ok: usize,
    calls_failed: usize,
    /// Kinds of the failed calls' errors.
    errors: Vec<String>,
    notifications_accepted: usize,
    notifications_lost: usize,
    notifications_duplicated: usize,
    /// The first few lost notifications' numbers, and the last number accepted.
    lost_numbers: Vec<i64>,
    last_accepted: i64,
}

/// The fault: what it does, and when (from its start) a node can take over.
enum Fault {
    Kill,
    CloseConnections,
    Freeze(Duration),
    StopCluster(Duration),
}

impl Fault {
    /// Runs the fault; returns when a node was able to take over.
    fn run(&self) -> Instant {
        match self {
            Fault::Kill => {
                cluster(&["kill", "1"]);
                Instant::now()
            }
            Fault::CloseConnections => {
                cluster(&["close-conns", "1"]);
                Instant::now()
            }
            Fault::Freeze(d) => {
                let t0 = Instant::now();
                cluster(&["freeze", "1"]);
                std::thread::sleep(*d);
                cluster(&["thaw", "1"]);
                // The survivors take over once the clients notice the frozen node: the
                // heartbeat budget is counted from the freeze.
                t0 + Duration::from_secs(2 * HEARTBEAT)
            }
            Fault::StopCluster(d) => {
                for n in ["3", "2", "1"] {
                    cluster(&["stop-node", n]);
                }
                std::thread::sleep(*d);
                // The last node stopped starts first; the others rejoin it. The cluster can
                // serve once a majority is up (quorum queues need two of three nodes).
                cluster(&["restart", "1"]);
                std::thread::scope(|s| {
                    let third = s.spawn(|| cluster(&["restart", "3"]));
                    cluster(&["restart", "2"]);
                    let majority = Instant::now();
                    let _ = third.join();
                    majority
                })
            }
        }
    }

    /// Puts the cluster back as it was (a killed node restarted).
    fn repair(&self) {
        if let Fault::Kill = self {
            cluster(&["restart", "1"]);
        }
    }
}

fn run_scenario(name: &str, query: &str, fault: Fault) -> Figures {
    log_warnings();
    let _cluster = FreshCluster::new();
    let tag = uuid::Uuid::new_v4().simple().to_string();
    let top = format!("osier-chaos-{name}-{tag}");
    let url = url(query);
    // An exchange of the scenario's own: classic and quorum runs declare it differently.
    let opts = TransportOptions {
        control_exchange: format!("osier-chaos-{tag}"),
        ..TransportOptions::default()
    };
    let transport = || Transport::with_options(&url, opts.clone()).unwrap();
    let ts = transport();
    let tn = transport();
    let server = echo_server(&ts, &top, "s");
    let counts: Arc<Mutex<HashMap<i64, u32>>> = Arc::default();
    let c2 = counts.clone();
    let ep = NotificationEndpoint::new("e").on(Priority::Info, move |n| {
        if let Some(i) = n.payload.get("n").and_then(|v| v.as_i64()) {
            *c2.lock().unwrap().entry(i).or_default() += 1;
        }
        NotificationResult::Handled
    });
    let listener = NotificationListener::new(&ts, vec![Target::topic(&top)], vec![ep])
        .bridge(bridge().clone());
    let notifier = Notifier::new(&tn, "osier.chaos")
        .driver(NotifyDriver::MessagingV2)
        .topics(&[&top]);
    bridge().tokio().block_on(async {
        server.start().await.unwrap();
        listener.start().await.unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let calls: Arc<Mutex<Vec<Call>>> = Arc::default();
        let mut tasks = Vec::new();
        for c in 0..CALLERS {
            // Each caller on its own transport, as separate client processes would be.
            let client = RpcClient::new(&transport(), Target::topic(&top)).timeout(CALL_TIMEOUT);
            let (stop, calls) = (stop.clone(), calls.clone());
            tasks.push(tokio::spawn(async move {
                let mut k = 0;
                while !stop.load(Ordering::Relaxed) {
                    let start = Instant::now();
                    let r = client
                        .call::<serde_json::Value>(
                            &RequestContext::new(),
                            "echo",
                            json!({"c": c, "k": k}),
                        )
                        .await;
                    let end = Instant::now();
                    let (ok, error) = match r {
                        Ok(v) => (v == json!({"c": c, "k": k}), None),
                        Err(e) => (false, Some(kind(&e))),
                    };
                    calls.lock().unwrap().push(Call {
                        start,
                        end,
                        ok,
                        error,
                    });
                    k += 1;
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }));
        }
        let accepted: Arc<Mutex<Vec<i64>>> = Arc::default();
        let notifying = {
            let (stop, accepted, notifier) = (stop.clone(), accepted.clone(), notifier.clone());
            tokio::spawn(async move {
                let mut n = 0i64;
                while !stop.load(Ordering::Relaxed) {
                    // This task is the notifier's only sender: a failure counted during the
                    // call is this notification's.
                    let failed = notifier.stats().failed.load(Ordering::Relaxed);
                    notifier
                        .info(&RequestContext::new(), "chaos", json!({"n": n}))
                        .await;
                    if notifier.stats().failed.load(Ordering::Relaxed) == failed {
                        accepted.lock().unwrap().push(n);
                    }
                    n += 1;
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            })
        };
        tokio::time::sleep(Duration::from_secs(2)).await;
        // The fault runs on a blocking thread; the callers and the notifier go on meanwhile.
        tracing::info!(scenario = name, "the fault starts");
        let available = tokio::task::spawn_blocking(move || {
            let at = fault.run();
            tracing::info!("a node can take over");
            (at, fault)
        })
        .await
        .unwrap();
        let (majority, fault) = available;
        // A quorum queue serves again only once the broker has elected its leader: that, not
        // the majority alone, is when a node can take over.
        let leader = match fault {
            Fault::StopCluster(_) if query.contains("rabbit_quorum_queue=true") => {
                Some(queue_takes_messages(&top).await)
            }
            _ => None,
        };
        let available = leader.map_or(majority, |at| at.max(majority));
        let leader_elected_s =
            leader.map(|at| at.saturating_duration_since(majority).as_secs_f64());
        let waited = Instant::now();
        tokio::time::sleep(AFTER).await;
        // Until calls work again, or a minute: a scenario that never recovers fails below.
        while !calls
            .lock()
            .unwrap()
            .iter()
            .any(|c| c.ok && c.start >= waited)
            && waited.elapsed() < Duration::from_secs(60)
        {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        stop.store(true, Ordering::Relaxed);
        for t in tasks {
            t.await.unwrap();
        }
        notifying.await.unwrap();
        tokio::task::spawn_blocking(move || fault.repair())
            .await
            .unwrap();
        // Every accepted notification reaches the listener (it may still be catching up).
        let accepted = accepted.lock().unwrap().clone();
        let drain = Instant::now();
        while accepted
            .iter()
            .any(|n| !counts.lock().unwrap().contains_key(n))
            && drain.elapsed() < Duration::from_secs(30)
        {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let counts = counts.lock().unwrap().clone();
        let calls = std::mem::take(&mut *calls.lock().unwrap());
        // The first call to succeed once a node could take over (calls that never stopped
        // working give about 0).
        let first_ok = calls
            .iter()
            .filter(|c| c.ok && c.end >= available)
            .map(|c| c.end)
            .min()
            .expect("a call succeeded after the fault");
        let recovery_s = (first_ok - available).as_secs_f64();
        let mut errors: Vec<String> = calls.iter().filter_map(|c| c.error.clone()).collect();
        errors.sort();
        errors.dedup();
        let figures = Figures {
            scenario: name.to_string(),
            recovery_s,
            leader_elected_s,
            longest_call_s: calls
                .iter()
                .map(|c| (c.end - c.start).as_secs_f64())
                .fold(0.0, f64::max),
            calls_ok: calls.iter().filter(|c| c.ok).count(),
            calls_failed: calls.iter().filter(|c| !c.ok).count(),
            errors,
            notifications_accepted: accepted.len(),
            notifications_lost: accepted.iter().filter(|n| !counts.contains_key(n)).count(),
            lost_numbers: accepted
                .iter()
                .filter(|n| !counts.contains_key(n))
                .take(10)
                .copied()
                .collect(),
            last_accepted: accepted.last().copied().unwrap_or(-1),
            notifications_duplicated: counts.values().filter(|c| **c > 1).count(),
        };
        eprintln!("{figures:?}");
        if let Ok(path) = std::env::var("OSIER_CHAOS_REPORT") {
            use std::io::Write;
            if let Ok(mut f) = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
            {
                let _ = writeln!(f, "{}", serde_json::to_string(&figures).unwrap());
            }
        }
        let _ = server.stop().await;
        let _ = server.wait().await;
        listener.stop().await;
        let queues = [top.clone(), format!("{top}.s"), format!("{top}.info")];
        remove_from_cluster(&queues, &opts.control_exchange).await;
        figures
    })
}

/// When `queue` takes messages again (a quorum queue once the broker has elected its leader,
/// after the cluster restarted): a plain AMQP client publishes a cast to it with confirms, on
/// a fresh channel each time (a channel refused once stays refused), until the broker
/// confirms one. Returns when that publish was sent: no later than the queue could take it.
/// The server runs the cast (an `echo`) like any other.
async fn queue_takes_messages(queue: &str) -> Instant {
    use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
    let t0 = Instant::now();
    let body =
        common::raw::envelope(&json!({"method": "echo", "args": {}, "version": "1.0"}).to_string());
    let mut conn: Option<lapin::Connection> = None;
    let mut port = 5673;
    while t0.elapsed() < Duration::from_secs(60) {
        if conn.as_ref().is_none_or(|c| !c.status().connected()) {
            let uri = format!("amqp://guest:guest@127.0.0.1:{port}/%2f");
            port = if port == 5675 { 5673 } else { port + 1 };
            let connect = lapin::Connection::connect(&uri, lapin::ConnectionProperties::default());
            conn = tokio::time::timeout(Duration::from_secs(2), connect)
                .await
                .ok()
                .and_then(Result::ok);
        }
        if let Some(c) = &conn {
            let sent = Instant::now();
            let attempt = async {
                let ch = c.create_channel().await.ok()?;
                ch.confirm_select(ConfirmSelectOptions::default())
                    .await
                    .ok()?;
                let confirm = ch
                    .basic_publish(
                        "".into(),
                        queue.into(),
                        BasicPublishOptions {
                            mandatory: true,
                            ..BasicPublishOptions::default()
                        },
                        &body,
                        lapin::BasicProperties::default()
                            .with_content_type("application/json".into()),
                    )
                    .await
                    .ok()?
                    .await
                    .ok()?;
                let _ = ch.close(200, "probe".into()).await;
                Some(matches!(confirm, lapin::Confirmation::Ack(None)))
            };
            if let Ok(Some(true)) = tokio::time::timeout(Duration::from_secs(1), attempt).await {
                if let Some(c) = conn.take() {
                    let _ =
                        tokio::time::timeout(Duration::from_secs(2), c.close(200, "bye".into()))
                            .await;
                }
                tracing::info!(queue, "the call queue takes messages again");
                return sent;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{queue} took no message within 60 s of the cluster's restart");
}

/// Deletes a scenario's queues and exchange, through the first node that answers, so that the
/// next scenario can use the cluster as it is.
async fn remove_from_cluster(queues: &[String], exchange: &str) {
    use lapin::options::{ExchangeDeleteOptions, QueueDeleteOptions};
    for port in 5673..=5675 {
        let uri = format!("amqp://guest:guest@127.0.0.1:{port}/%2f");
        let connect = lapin::Connection::connect(&uri, lapin::ConnectionProperties::default());
        let Ok(Ok(conn)) = tokio::time::timeout(Duration::from_secs(5), connect).await else {
            continue;
        };
        // A channel per delete: one that fails (already gone) closes its channel.
        for q in queues {
            if let Ok(ch) = conn.create_channel().await {
                let _ = ch
                    .queue_delete(q.as_str().into(), QueueDeleteOptions::default())
                    .await;
            }
        }
        if let Ok(ch) = conn.create_channel().await {
            let _ = ch
                .exchange_delete(exchange.into(), ExchangeDeleteOptions::default())
                .await;
        }
        let _ = tokio::time::timeout(Duration::from_secs(5), conn.close(200, "bye".into())).await;
        return;
    }
}

/// The error's kind, for the report.
fn kind(e: &MessagingError) -> String {
    match e {
        MessagingError::Timeout(_) => "Timeout".into(),
        MessagingError::Broker(b) => {
            format!("Broker({})", b.to_string().split(':').next().unwrap_or(""))
        }
        MessagingError::Remote(f) => format!("Remote({})", f.class),
        other => other.to_string(),
    }
}

fn check(f: &Figures, budget: Duration) {
    assert!(
        f.recovery_s <= budget.as_secs_f64(),
        "{}: the first call after the fault succeeded {:.2} s after a node could take over (budget {budget:?})",
        f.scenario,
        f.recovery_s
    );
    assert!(
        f.longest_call_s <= CALL_TIMEOUT.as_secs_f64() + 1.0,
        "{}: a call took {:.2} s, past its {CALL_TIMEOUT:?} timeout",
        f.scenario,
        f.longest_call_s
    );
    assert_eq!(
        f.notifications_lost, 0,
        "{}: notifications accepted and lost",
        f.scenario
    );
    assert_eq!(
        f.notifications_duplicated, 0,
        "{}: notifications delivered twice to the endpoint",
        f.scenario
    );
}

const QUICK: Duration = Duration::from_secs(5);

/// One test per scenario: its name, its figures' name, the URL options and the fault; each
/// checks [`QUICK`] recovery, no call past its timeout, nothing lost or delivered twice.
macro_rules! scenario {
    ($(#[doc = $doc:literal])* $test:ident, $name:literal, $query:literal, $fault:expr) => {
        $(#[doc = $doc])*
        #[test]
        fn $test() {
            let _one = one_at_a_time();
            if !allowed() {
                return;
            }
            check(&run_scenario($name, $query, $fault), QUICK);
        }
    };
}

scenario!(
    /// Classic queues, the node every client is on killed with SIGKILL.
    classic_queues_survive_a_killed_node,
    "classic-kill",
    "",
    Fault::Kill
);
scenario!(
    /// Quorum queues, the node every client is on (and every queue leader) killed with
    /// SIGKILL: the broker nacks publishes until a new leader is elected; nothing accepted is
    /// lost.
    quorum_queues_survive_a_killed_node,
    "quorum-kill",
    "rabbit_quorum_queue=true",
    Fault::Kill
);
scenario!(
    /// Classic queues, every client connection on the node closed by an operator.
    classic_queues_survive_closed_connections,
    "classic-close",
    "",
    Fault::CloseConnections
);
scenario!(
    /// Quorum queues, every client connection on the node closed by an operator.
    quorum_queues_survive_closed_connections,
    "quorum-close",
    "rabbit_quorum_queue=true",
    Fault::CloseConnections
);
scenario!(
    /// Classic queues, the node frozen (SIGSTOP: sockets open, nothing answers) past the
    /// heartbeat timeout, then thawed.
    classic_queues_survive_a_frozen_node,
    "classic-freeze",
    "",
    Fault::Freeze(Duration::from_secs(3 * HEARTBEAT))
);
scenario!(
    /// Quorum queues, the node frozen past the heartbeat timeout, then thawed.
    quorum_queues_survive_a_frozen_node,
    "quorum-freeze",
    "rabbit_quorum_queue=true",
    Fault::Freeze(Duration::from_secs(3 * HEARTBEAT))
);
scenario!(
    /// Durable classic queues, the whole cluster stopped for 20 s, then started.
    durable_classic_queues_survive_a_cluster_outage,
    "classic-outage",
    "amqp_durable_queues=true",
    Fault::StopCluster(Duration::from_secs(20))
);
scenario!(
    /// Quorum queues, the whole cluster stopped for 20 s, then started.
    quorum_queues_survive_a_cluster_outage,
    "quorum-outage",
    "rabbit_quorum_queue=true",
    Fault::StopCluster(Duration::from_secs(20))
);

/// A notification the broker refuses (a negative confirm: here a queue policy that rejects
/// every publish, as a quorum queue without a leader does) is kept and sent again until the
/// queue takes it; it then arrives once, and `flush` reports nothing lost.
#[test]
fn a_refused_notification_is_sent_again_until_the_queue_takes_it() {
    let _one = one_at_a_time();
    if !allowed() {
        return;
    }
    let _cluster = FreshCluster::new();
    let top = format!("osier-nack-{}", uuid::Uuid::new_v4().simple());
    cluster(&[
        "ctl",
        "1",
        "set_policy",
        "osier-nack",
        "^osier-nack-",
        r#"{"max-length":0,"overflow":"reject-publish"}"#,
        "--apply-to",
        "queues",
    ]);
    let t = Transport::new(&url("")).unwrap();
    let counts: Arc<Mutex<HashMap<i64, u32>>> = Arc::default();
    let c2 = counts.clone();
    let ep = NotificationEndpoint::new("e").on(Priority::Info, move |n| {
        if let Some(i) = n.payload.get("n").and_then(|v| v.as_i64()) {
            *c2.lock().unwrap().entry(i).or_default() += 1;
        }
        NotificationResult::Handled
    });
    let listener =
        NotificationListener::new(&t, vec![Target::topic(&top)], vec![ep]).bridge(bridge().clone());
    let notifier = Notifier::new(&t, "osier.chaos")
        .driver(NotifyDriver::MessagingV2)
        .topics(&[&top]);
    bridge().tokio().block_on(async {
        listener.start().await.unwrap();
        notifier
            .info(&RequestContext::new(), "refused", json!({"n": 1}))
            .await;
        // Refused for a while: the publisher keeps it.
        tokio::time::sleep(Duration::from_secs(3)).await;
        assert!(
            counts.lock().unwrap().is_empty(),
            "the queue refuses everything"
        );
        tokio::task::spawn_blocking(|| cluster(&["ctl", "1", "clear_policy", "osier-nack"]))
            .await
            .unwrap();
        let t0 = Instant::now();
        while counts.lock().unwrap().is_empty() && t0.elapsed() < Duration::from_secs(15) {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        tokio::time::timeout(Duration::from_secs(10), t.flush())
            .await
            .expect("flush returns")
            .expect("nothing lost");
        assert_eq!(
            counts.lock().unwrap().get(&1),
            Some(&1),
            "the refused notification arrives once, once the queue takes it"
        );
        listener.stop().await;
    });
}
