//! RabbitMQ workloads: osier's `rabbit://` driver and a raw `lapin` loop with the same
//! delivery guarantee, on the local broker. `src/bin/amqp_table.rs` runs them for
//! `cargo xtask bench-amqp`, beside Python oslo.messaging (`xtask/py/oslo_bench.py`).
//!
//! The guarantee both sides give (docs/architecture.md, "delivery"): every channel in confirm
//! mode; requests and casts return once written and their confirms are collected in the
//! background; replies are `mandatory` and the server waits for their confirm; consumers ack
//! RPC requests on arrival and casts/notifications after handling them.
//!
//! Each workload runs for a fixed time after a short warm-up; casts and notifications are timed
//! end to end (until the receiver has handled every one sent). With `OSIER_BENCH_MESSAGES=N`
//! each sends exactly N messages instead, without warm-up: two runs with different N differ by
//! that many messages' work, start-up and tear-down cancelling out (`cargo xtask
//! bench-instructions` counts instructions per message that way).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::stream::FuturesUnordered;
use futures::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, ConfirmSelectOptions,
    QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties};
use osier_messaging::amqp::wire;
use osier_messaging::{
    Endpoint, EndpointError, Executor, NotificationListener, Notifier, NotifyDriver,
    RequestContext, RpcClient, RpcServer, Target, Transport,
};
use serde_json::json;

use crate::bridge::bridge;

/// The broker.
pub const URL: &str = "rabbit://guest:guest@127.0.0.1:5672/";

/// The option set a kolla-ansible 2025.2 deployment runs after its migration: quorum queues,
/// transient quorum queues, stream fanout (with the prefetch it needs), the queue manager and
/// durable queues.
pub const KOLLA_QUERY: &str = "rabbit_quorum_queue=true&rabbit_transient_quorum_queue=true\
    &rabbit_stream_fanout=true&rabbit_qos_prefetch_count=64&use_queue_manager=true\
    &amqp_durable_queues=true";

/// Which options osier's side runs with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OptionSet {
    /// oslo's defaults.
    Defaults,
    /// [`KOLLA_QUERY`], on a control exchange of its own (durable: it cannot share the
    /// defaults' transient one).
    Kolla,
}

impl OptionSet {
    fn transport(self) -> Transport {
        match self {
            OptionSet::Defaults => Transport::new(URL),
            OptionSet::Kolla => Transport::with_options(
                &format!("{URL}?{KOLLA_QUERY}"),
                osier_messaging::TransportOptions {
                    control_exchange: "osier_bench_kolla".into(),
                    ..Default::default()
                },
            ),
        }
        .expect("transport")
    }
}
const AMQP: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";

/// One measurement.
#[derive(Debug, Clone, Copy, Default)]
pub struct Stats {
    /// Operations per second.
    pub per_s: f64,
    /// Median latency (calls only), ms.
    pub p50_ms: Option<f64>,
    /// 99th percentile latency (calls only), ms.
    pub p99_ms: Option<f64>,
    /// Messages done: calls answered, casts or notifications handled by the receiver.
    pub done: u64,
}

fn unique(what: &str) -> String {
    format!("osier-bench-{what}-{}", uuid::Uuid::new_v4().simple())
}

fn percentiles(mut lat: Vec<Duration>) -> (Option<f64>, Option<f64>) {
    if lat.is_empty() {
        return (None, None);
    }
    lat.sort();
    let at = |q: f64| lat[((lat.len() as f64 - 1.0) * q) as usize].as_secs_f64() * 1e3;
    (Some(at(0.5)), Some(at(0.99)))
}

async fn delete_queues(queues: &[String]) {
    let Ok(conn) = Connection::connect(AMQP, ConnectionProperties::default()).await else {
        return;
    };
    if let Ok(ch) = conn.create_channel().await {
        for q in queues {
            let _ = ch
                .queue_delete(q.as_str().into(), QueueDeleteOptions::default())
                .await;
        }
    }
    // lapin's close has been seen to wait for ever once in a few hundred runs: the queues
    // are gone by now, so do not let it hold the bench.
    let _ = tokio::time::timeout(Duration::from_secs(5), conn.close(200, "bye".into())).await;
}

/// `OSIER_BENCH_MESSAGES`: how many messages each workload sends, when set.
pub fn message_budget() -> Option<u64> {
    std::env::var("OSIER_BENCH_MESSAGES")
        .ok()
        .and_then(|v| v.parse().ok())
}

/// Whether a sender or caller loop goes on: until `end`, or with a [`message_budget`] until
/// that many messages have been taken, by all loops together.
struct Quota {
    budget: Option<u64>,
    taken: AtomicU64,
    end: Instant,
}

impl Quota {
    fn new(end: Instant) -> Arc<Quota> {
        Arc::new(Quota {
            budget: message_budget(),
            taken: AtomicU64::new(0),
            end,
        })
    }

    fn more(&self) -> bool {
        match self.budget {
            Some(n) => self.taken.fetch_add(1, Ordering::Relaxed) < n,
            None => Instant::now() < self.end,
        }
    }
}

/// Runs `callers` loops of `op` for `warmup + dur`, timing each op after the warm-up; with a
/// [`message_budget`], `op` runs that many times in all, every run timed.
async fn closed_loop<F, Fut>(callers: usize, warmup: Duration, dur: Duration, op: F) -> Stats
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let op = Arc::new(op);
    let counted = message_budget().is_some();
    let t_start = Instant::now();
    let start = if counted { t_start } else { t_start + warmup };
    let quota = Quota::new(start + dur);
    let mut tasks = Vec::new();
    for _ in 0..callers {
        let (op, quota) = (op.clone(), quota.clone());
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            loop {
                let t0 = Instant::now();
                if !quota.more() {
                    break;
                }
                op().await;
                if t0 >= start {
                    lat.push(t0.elapsed());
                }
            }
            lat
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap_or_default());
    }
    let n = all.len();
    let (p50, p99) = percentiles(all);
    let took = if counted { t_start.elapsed() } else { dur };
    Stats {
        per_s: n as f64 / took.as_secs_f64(),
        p50_ms: p50,
        p99_ms: p99,
        done: n as u64,
    }
}

/// Sends with `senders` loops for `dur` (with a [`message_budget`], that many messages in
/// all) and waits until `handled` reaches what was sent; the rate is end to end.
async fn open_loop<F, Fut>(senders: usize, dur: Duration, handled: Arc<AtomicU64>, send: F) -> Stats
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let send = Arc::new(send);
    let base = handled.load(Ordering::Acquire);
    let t0 = Instant::now();
    let quota = Quota::new(t0 + dur);
    let sent = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for _ in 0..senders {
        let (send, sent, quota) = (send.clone(), sent.clone(), quota.clone());
        tasks.push(tokio::spawn(async move {
            while quota.more() {
                send().await;
                sent.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    let n = sent.load(Ordering::Acquire);
    let give_up = Instant::now() + Duration::from_secs(60);
    while handled.load(Ordering::Acquire) - base < n && Instant::now() < give_up {
        tokio::time::sleep(Duration::from_micros(200)).await;
    }
    let done = handled.load(Ordering::Acquire) - base;
    Stats {
        per_s: done as f64 / t0.elapsed().as_secs_f64(),
        p50_ms: None,
        p99_ms: None,
        done,
    }
}

// ------------------------------------------------------------------------------------- osier

/// How long a bench call waits for its reply (osier's side), and the `expiration` the raw loop
/// routed as oslo routes gives its requests.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// osier RPC calls: `callers` concurrent callers of `echo(value={"x": 1})`.
pub async fn osier_calls(callers: usize, set: OptionSet, warmup: Duration, dur: Duration) -> Stats {
    let top = unique("call");
    let (ts, tc) = (set.transport(), set.transport());
    let server = RpcServer::builder(&ts, Target::topic(&top).with_server("s"))
        .bridge(bridge().clone())
        .endpoint(
            Endpoint::new("e").method_async("echo", |_c, a: serde_json::Value| async move {
                Ok::<_, EndpointError>(a)
            }),
        )
        .build()
        .expect("server");
    server.start().await.expect("start");
    let client = RpcClient::new(&tc, Target::topic(&top)).timeout(CALL_TIMEOUT);
    let ctx = RequestContext::new();
    let s = closed_loop(callers, warmup, dur, move || {
        let (client, ctx) = (client.clone(), ctx.clone());
        async move {
            let _: serde_json::Value = client
                .call(&ctx, "echo", json!({"value": {"x": 1}}))
                .await
                .expect("call");
        }
    })
    .await;
    let _ = server.stop().await;
    let _ = server.wait().await;
    delete_queues(&[top.clone(), format!("{top}.s")]).await;
    s
}

/// osier casts, end to end: `senders` concurrent casters of `note(value={"x": 1})`.
pub async fn osier_casts(senders: usize, set: OptionSet, warmup: Duration, dur: Duration) -> Stats {
    let top = unique("cast");
    let (ts, tc) = (set.transport(), set.transport());
    let handled = Arc::new(AtomicU64::new(0));
    let h = handled.clone();
    let server = RpcServer::builder(&ts, Target::topic(&top).with_server("s"))
        .bridge(bridge().clone())
        .endpoint(
            Endpoint::new("e").method_async("note", move |_c, _a: serde_json::Value| {
                let h = h.clone();
                async move {
                    h.fetch_add(1, Ordering::AcqRel);
                    Ok::<_, EndpointError>(())
                }
            }),
        )
        .build()
        .expect("server");
    server.start().await.expect("start");
    let client = RpcClient::new(&tc, Target::topic(&top));
    let ctx = RequestContext::new();
    let send = move || {
        let (client, ctx) = (client.clone(), ctx.clone());
        async move {
            client
                .cast(&ctx, "note", json!({"value": {"x": 1}}))
                .await
                .expect("cast");
        }
    };
    let send = Arc::new(send);
    let s2 = send.clone();
    if message_budget().is_none() {
        let _ = open_loop(senders, warmup, handled.clone(), move || s2()).await;
    }
    let s = open_loop(senders, dur, handled, move || send()).await;
    let _ = tc.flush().await;
    let _ = server.stop().await;
    let _ = server.wait().await;
    delete_queues(&[top.clone(), format!("{top}.s")]).await;
    s
}

/// osier notifications, end to end: `senders` concurrent notifiers, one listener.
pub async fn osier_notifications(
    senders: usize,
    set: OptionSet,
    executor: Executor,
    warmup: Duration,
    dur: Duration,
) -> Stats {
    let top = unique("notify");
    let (ts, tc) = (set.transport(), set.transport());
    let handled = Arc::new(AtomicU64::new(0));
    let ep = crate::messaging::counting_endpoint(executor, handled.clone());
    let listener = NotificationListener::new(&ts, vec![Target::topic(&top)], vec![ep])
        .bridge(bridge().clone());
    listener.start().await.expect("listener");
    let notifier = Notifier::new(&tc, "osier.bench")
        .driver(NotifyDriver::MessagingV2)
        .topics(&[&top]);
    let ctx = RequestContext::new();
    let send = Arc::new(move || {
        let (n, ctx) = (notifier.clone(), ctx.clone());
        async move { n.info(&ctx, "bench.event", json!({"x": 1})).await }
    });
    let s2 = send.clone();
    if message_budget().is_none() {
        let _ = open_loop(senders, warmup, handled.clone(), move || s2()).await;
    }
    let s = open_loop(senders, dur, handled, move || send()).await;
    let _ = tc.flush().await;
    listener.stop().await;
    delete_queues(&[format!("{top}.info")]).await;
    s
}

// ------------------------------------------------------------------------------------- raw lapin

const BODY: &[u8] = &[b'x'; 280];

/// What the raw loop asks of the broker besides the delivery guarantee.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RawWire {
    /// The least work: requests and casts on the default exchange, straight to their queue,
    /// with `content_type` and `delivery_mode` only.
    Plain,
    /// What oslo's protocol makes the broker do, with the raw loop's own work in the process:
    /// requests and casts routed by a topic exchange (as oslo's control exchange routes them),
    /// every message with oslo's properties (`content_encoding`, `priority`, an empty
    /// `headers` table) and a request with its `expiration` (osier's bench call's timeout).
    /// Replies go to the default exchange, as oslo's do.
    OsloRouting,
}

/// The topic exchange of [`RawWire::OsloRouting`], declared as osier declares the control
/// exchange under oslo's defaults (not durable, not auto-deleted).
const RAW_TOPIC_EXCHANGE: &str = "osier_bench_raw_topic";

impl RawWire {
    /// The exchange requests and casts go to.
    fn exchange(self) -> &'static str {
        match self {
            RawWire::Plain => "",
            RawWire::OsloRouting => RAW_TOPIC_EXCHANGE,
        }
    }

    /// Routes `queue` as the topic exchange would route oslo's messages to it (its name as the
    /// binding key), when the broker routes at all.
    async fn route(self, ch: &Channel, queue: &str) {
        if self == RawWire::Plain {
            return;
        }
        ch.exchange_declare(
            RAW_TOPIC_EXCHANGE.into(),
            lapin::ExchangeKind::Topic,
            lapin::options::ExchangeDeclareOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect("exchange.declare");
        ch.queue_bind(
            queue.into(),
            RAW_TOPIC_EXCHANGE.into(),
            queue.into(),
            lapin::options::QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect("queue.bind");
    }

    /// The properties of a message; `request`: an RPC request (which carries its expiration).
    fn props(self, request: bool) -> BasicProperties {
        let p = BasicProperties::default()
            .with_content_type(wire::CONTENT_TYPE.into())
            .with_delivery_mode(2);
        match self {
            RawWire::Plain => p,
            RawWire::OsloRouting => {
                let p = p
                    .with_content_encoding(wire::CONTENT_ENCODING.into())
                    .with_priority(0)
                    .with_headers(FieldTable::default());
                if request {
                    p.with_expiration(wire::expiration_ms(CALL_TIMEOUT).into())
                } else {
                    p
                }
            }
        }
    }
}

async fn conn() -> Connection {
    Connection::connect(AMQP, ConnectionProperties::default())
        .await
        .expect("connect")
}

async fn confirm_channel(c: &Connection) -> Channel {
    let ch = c.create_channel().await.expect("channel");
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .expect("confirm.select");
    ch
}

async fn queue(ch: &Channel, name: &str) {
    ch.queue_declare(
        name.into(),
        QueueDeclareOptions::default(),
        FieldTable::default(),
    )
    .await
    .expect("queue.declare");
}

type AckFut = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>;

/// An ack that the consumer loop does not wait for (the fastest way to ack measured).
fn ack(ch: &Channel, tag: u64) -> AckFut {
    let ch = ch.clone();
    Box::pin(async move {
        let _ = ch.basic_ack(tag, BasicAckOptions::default()).await;
    })
}

/// Publishes a request or cast and returns once written; the confirm is awaited in the
/// background.
async fn publish_written(wire: RawWire, ch: &Channel, key: &str, body: &[u8], request: bool) {
    let confirm = ch
        .basic_publish(
            wire.exchange().into(),
            key.into(),
            BasicPublishOptions::default(),
            body,
            wire.props(request),
        )
        .await
        .expect("publish");
    tokio::spawn(async move {
        let _ = confirm.await;
    });
}

/// Raw request/reply with the guarantee osier's call gives: 4 connections (client publish, client
/// replies, server consume, server publish), requests on a confirm channel with the caller
/// waiting only for the write (osier's publisher keeps a request until its confirm, to send it
/// again after a lost connection), replies mandatory with their confirm awaited by the server,
/// acks without waiting.
pub async fn raw_calls(wire: RawWire, callers: usize, warmup: Duration, dur: Duration) -> Stats {
    let (rq, replyq) = (unique("raw-req"), unique("raw-reply"));
    let shared = std::env::var("RAW_SHARED").is_ok();
    let (c_pub, s_con) = (conn().await, conn().await);
    let (c_rep, s_pub) = if shared {
        (None, None)
    } else {
        (Some(conn().await), Some(conn().await))
    };
    // Requests confirmed, the caller not waiting for it, as osier sends them.
    let ch_cpub = confirm_channel(&c_pub).await;
    let ch_crep = c_rep
        .as_ref()
        .unwrap_or(&c_pub)
        .create_channel()
        .await
        .expect("channel");
    let ch_scon = s_con.create_channel().await.expect("channel");
    let ch_spub = confirm_channel(s_pub.as_ref().unwrap_or(&s_con)).await;
    queue(&ch_scon, &rq).await;
    wire.route(&ch_scon, &rq).await;
    queue(&ch_crep, &replyq).await;
    // server
    let mut consumer = ch_scon
        .basic_consume(
            rq.as_str().into(),
            "".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect("consume");
    let (sp, rq2) = (ch_spub.clone(), replyq.clone());
    let sc = ch_scon.clone();
    let server = tokio::spawn(async move {
        let mut acks = FuturesUnordered::new();
        loop {
            let d = tokio::select! {
                d = consumer.next() => match d { Some(Ok(d)) => d, _ => break },
                Some(_) = acks.next(), if !acks.is_empty() => continue,
            };
            acks.push(ack(&sc, d.delivery_tag));
            let (sp, key) = (sp.clone(), rq2.clone());
            tokio::spawn(async move {
                let mut reply = d.data;
                reply.truncate(210);
                if let Ok(c) = sp
                    .basic_publish(
                        "".into(),
                        key.as_str().into(),
                        BasicPublishOptions {
                            mandatory: true,
                            immediate: false,
                        },
                        &reply,
                        wire.props(false),
                    )
                    .await
                {
                    let _ = c.await;
                }
            });
        }
    });
    // client: replies matched by correlation (the first 8 bytes carry a call number)
    let waiters: Arc<
        std::sync::Mutex<std::collections::HashMap<u64, tokio::sync::oneshot::Sender<()>>>,
    > = Arc::default();
    let mut replies = ch_crep
        .basic_consume(
            replyq.as_str().into(),
            "".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect("consume");
    let w2 = waiters.clone();
    let cr = ch_crep.clone();
    let reader = tokio::spawn(async move {
        let mut acks = FuturesUnordered::new();
        loop {
            let d = tokio::select! {
                d = replies.next() => match d { Some(Ok(d)) => d, _ => break },
                Some(_) = acks.next(), if !acks.is_empty() => continue,
            };
            acks.push(ack(&cr, d.delivery_tag));
            let mut id = [0u8; 8];
            id.copy_from_slice(&d.data[..8]);
            let tx = w2
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&u64::from_le_bytes(id));
            if let Some(tx) = tx {
                let _ = tx.send(());
            }
        }
    });
    let next = Arc::new(AtomicU64::new(0));
    let rq_del = rq.clone();
    let s = closed_loop(callers, warmup, dur, move || {
        let (ch, rq, waiters, next) = (ch_cpub.clone(), rq.clone(), waiters.clone(), next.clone());
        async move {
            let id = next.fetch_add(1, Ordering::Relaxed);
            let (tx, rx) = tokio::sync::oneshot::channel();
            waiters
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(id, tx);
            let mut body = BODY.to_vec();
            body[..8].copy_from_slice(&id.to_le_bytes());
            publish_written(wire, &ch, &rq, &body, true).await;
            let _ = rx.await;
        }
    })
    .await;
    server.abort();
    reader.abort();
    delete_queues(&[rq_del, replyq]).await;
    for c in [Some(c_pub), c_rep, Some(s_con), s_pub]
        .into_iter()
        .flatten()
    {
        let _ = c.close(200, "bye".into()).await;
    }
    s
}

/// Raw publish/consume with the guarantee osier's casts and notifications give: publishes
/// return once written, confirms collected in the background, the consumer acks each message
/// after handling it. End to end.
pub async fn raw_casts(wire: RawWire, senders: usize, warmup: Duration, dur: Duration) -> Stats {
    let q = unique("raw-cast");
    let (p, c) = (conn().await, conn().await);
    let ch_p = confirm_channel(&p).await;
    let ch_c = c.create_channel().await.expect("channel");
    queue(&ch_c, &q).await;
    wire.route(&ch_c, &q).await;
    let handled = Arc::new(AtomicU64::new(0));
    let mut consumer = ch_c
        .basic_consume(
            q.as_str().into(),
            "".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect("consume");
    let h = handled.clone();
    let cc = ch_c.clone();
    let reader = tokio::spawn(async move {
        let mut acks = FuturesUnordered::new();
        loop {
            let d = tokio::select! {
                d = consumer.next() => match d { Some(Ok(d)) => d, _ => break },
                Some(_) = acks.next(), if !acks.is_empty() => continue,
            };
            h.fetch_add(1, Ordering::AcqRel);
            acks.push(ack(&cc, d.delivery_tag));
        }
    });
    let q_del = q.clone();
    let send = Arc::new(move || {
        let (ch, q) = (ch_p.clone(), q.clone());
        async move { publish_written(wire, &ch, &q, BODY, false).await }
    });
    let s2 = send.clone();
    if message_budget().is_none() {
        let _ = open_loop(senders, warmup, handled.clone(), move || s2()).await;
    }
    let s = open_loop(senders, dur, handled, move || send()).await;
    reader.abort();
    delete_queues(&[q_del]).await;
    for conn in [p, c] {
        let _ = conn.close(200, "bye".into()).await;
    }
    s
}
