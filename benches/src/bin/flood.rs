//! The two sides of `cargo xtask bench-flood` (a flood of casts at a slow RPC server, or of
//! notifications at a slow listener):
//!
//! - `flood serve --kind rpc|notify --topic T [--max-in-flight N] [--sleep-ms N]`: an osier RPC
//!   server (one method) or notification listener (one `info` endpoint) on the local RabbitMQ
//!   whose handler blocks for `--sleep-ms` (default 10); prints `ready` once consuming, and stops
//!   when its standard input closes, printing what it handled as one JSON line: how many, how
//!   many distinct (by the message's number `i`), and the most handlers seen running at once.
//!   Its memory is what xtask samples.
//! - `flood publish --kind rpc|notify --topic T --count N [--first I]`: publishes N casts to the topic
//!   queue, or N `info` notifications to the topic's notification queue, numbered from I, with a
//!   plain AMQP client as fast as the broker confirms them, prints the rate, then the depth of
//!   the queue every 250 ms (JSON lines) until it is empty.
//! - `flood cleanup --topic T`: deletes the topic's queues.

#![allow(clippy::print_stdout)] // its output is the lines xtask reads

use std::collections::HashSet;
use std::io::BufRead;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use lapin::options::{BasicPublishOptions, ConfirmSelectOptions, QueueDeclareOptions};
use lapin::types::FieldTable;
use lapin::BasicProperties;
use osier_messaging::{
    Endpoint, EndpointError, NotificationEndpoint, NotificationListener, NotificationResult,
    Priority, RpcServer, Target, Transport,
};

const URL: &str = "rabbit://guest:guest@127.0.0.1:5672/";
const RAW: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";

fn arg(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .cloned()
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let topic = arg(&args, "--topic").unwrap_or_else(|| "osier-flood".into());
    let notify = arg(&args, "--kind").as_deref() == Some("notify");
    if args.get(1).map(String::as_str) == Some("serve") {
        let max: usize = arg(&args, "--max-in-flight")
            .and_then(|n| n.parse().ok())
            .unwrap_or(osier_messaging::rpc::server::DEFAULT_MAX_IN_FLIGHT);
        let sleep = Duration::from_millis(
            arg(&args, "--sleep-ms")
                .and_then(|n| n.parse().ok())
                .unwrap_or(10),
        );
        let bridge = osier_bridge::Bridge::builder().build().expect("a bridge");
        bridge
            .tokio()
            .block_on(serve(&bridge, &topic, max, sleep, notify));
        return;
    }
    let rt = tokio::runtime::Runtime::new().expect("a tokio runtime");
    match args.get(1).map(String::as_str) {
        Some("publish") => {
            let count: u32 = arg(&args, "--count")
                .and_then(|n| n.parse().ok())
                .unwrap_or(20_000);
            let first: u32 = arg(&args, "--first")
                .and_then(|n| n.parse().ok())
                .unwrap_or(0);
            rt.block_on(publish(&topic, first..first + count, notify));
        }
        Some("cleanup") => rt.block_on(cleanup(&topic)),
        _ => {
            eprintln!("usage: flood serve --kind rpc|notify --topic T [--max-in-flight N] [--sleep-ms N] | flood publish --kind rpc|notify --topic T --count N | flood cleanup --topic T");
            std::process::exit(2);
        }
    }
}

/// What the handlers saw: how many ran, which numbers, and how many at once at most.
#[derive(Default)]
struct Seen {
    handled: AtomicUsize,
    distinct: Mutex<HashSet<u64>>,
    now: AtomicUsize,
    max: AtomicUsize,
}

impl Seen {
    /// One handler: counted while it blocks its thread for `sleep`.
    fn handle(&self, i: Option<u64>, sleep: Duration) {
        let now = self.now.fetch_add(1, Ordering::SeqCst) + 1;
        self.max.fetch_max(now, Ordering::SeqCst);
        std::thread::sleep(sleep);
        if let (Some(i), Ok(mut d)) = (i, self.distinct.lock()) {
            d.insert(i);
        }
        self.handled.fetch_add(1, Ordering::SeqCst);
        self.now.fetch_sub(1, Ordering::SeqCst);
    }
}

async fn serve(
    bridge: &osier_bridge::Bridge,
    topic: &str,
    max_in_flight: usize,
    sleep: Duration,
    notify: bool,
) {
    let t = Transport::new(URL).expect("the transport");
    let seen = Arc::new(Seen::default());
    let s2 = seen.clone();
    let mut server = None;
    let mut listener = None;
    if notify {
        let ep = NotificationEndpoint::new("e").on(Priority::Info, move |n| {
            s2.handle(n.payload["i"].as_u64(), sleep);
            NotificationResult::Handled
        });
        let l = NotificationListener::new(&t, vec![Target::topic(topic)], vec![ep])
            .bridge(bridge.clone())
            .max_in_flight(max_in_flight);
        l.start().await.expect("listener start");
        listener = Some(l);
    } else {
        let s = RpcServer::builder(&t, Target::topic(topic).with_server("flood"))
            .bridge(bridge.clone())
            .max_in_flight(max_in_flight)
            .endpoint(
                Endpoint::new("e").method("slow", move |_c, a: serde_json::Value| {
                    s2.handle(a["i"].as_u64(), sleep);
                    Ok::<_, EndpointError>(())
                }),
            )
            .build()
            .expect("the server");
        s.start().await.expect("server start");
        server = Some(s);
    }
    println!("ready");
    // Until xtask closes our stdin.
    tokio::task::spawn_blocking(|| {
        let stdin = std::io::stdin();
        for _ in stdin.lock().lines() {}
    })
    .await
    .ok();
    if let Some(s) = server {
        let _ = s.stop().await;
        let _ = s.wait().await;
    }
    if let Some(l) = listener {
        l.stop().await;
    }
    let distinct = seen.distinct.lock().map(|d| d.len()).unwrap_or(0);
    println!(
        r#"{{"handled":{},"distinct":{distinct},"max_in_flight_seen":{}}}"#,
        seen.handled.load(Ordering::SeqCst),
        seen.max.load(Ordering::SeqCst)
    );
}

/// Deletes the topic's queues (oslo never deletes topic queues itself).
async fn cleanup(topic: &str) {
    let Ok(conn) = lapin::Connection::connect(RAW, lapin::ConnectionProperties::default()).await
    else {
        return;
    };
    if let Ok(ch) = conn.create_channel().await {
        for q in [
            topic.to_string(),
            format!("{topic}.flood"),
            format!("{topic}.info"),
        ] {
            let _ = ch
                .queue_delete(
                    q.as_str().into(),
                    lapin::options::QueueDeleteOptions::default(),
                )
                .await;
        }
    }
    let _ = conn.close(200, "done".into()).await;
}

/// The body of message `i`: a cast of `slow`, or an `info` notification, with 512 bytes of
/// padding.
fn body(i: u32, notify: bool) -> String {
    let pad = "x".repeat(512);
    let inner = if notify {
        serde_json::json!({
            "message_id": format!("flood-{i}"),
            "publisher_id": "flood",
            "event_type": "flood.sample",
            "priority": "INFO",
            "payload": {"i": i, "pad": pad},
            "timestamp": "2026-12-02 00:00:00.000000",
        })
    } else {
        serde_json::json!({"method": "slow", "args": {"i": i, "pad": pad}})
    };
    serde_json::json!({"oslo.version": "2.0", "oslo.message": inner.to_string()}).to_string()
}

async fn publish(topic: &str, numbers: std::ops::Range<u32>, notify: bool) {
    let count = numbers.len() as u32;
    let queue = if notify {
        format!("{topic}.info")
    } else {
        topic.to_string()
    };
    let topic = queue.as_str();
    let conn = lapin::Connection::connect(RAW, lapin::ConnectionProperties::default())
        .await
        .expect("connect");
    let ch = conn.create_channel().await.expect("channel");
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .expect("confirm.select");
    let t0 = Instant::now();
    let mut confirms = Vec::with_capacity(1024);
    for i in numbers {
        let body = body(i, notify);
        let c = ch
            .basic_publish(
                "".into(),
                topic.into(),
                BasicPublishOptions::default(),
                body.as_bytes(),
                BasicProperties::default().with_content_type("application/json".into()),
            )
            .await
            .expect("publish");
        confirms.push(c);
        if confirms.len() == 1024 {
            for c in confirms.drain(..) {
                c.await.expect("confirm");
            }
        }
    }
    for c in confirms.drain(..) {
        c.await.expect("confirm");
    }
    let secs = t0.elapsed().as_secs_f64();
    println!(
        r#"{{"published":{count},"seconds":{secs:.3},"per_s":{:.0}}}"#,
        f64::from(count) / secs
    );
    let passive = QueueDeclareOptions {
        passive: true,
        ..QueueDeclareOptions::default()
    };
    loop {
        let depth = ch
            .queue_declare(topic.into(), passive, FieldTable::default())
            .await
            .expect("queue depth")
            .message_count();
        println!(
            r#"{{"t":{:.3},"depth":{depth}}}"#,
            t0.elapsed().as_secs_f64()
        );
        if depth == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let _ = conn.close(200, "done".into()).await;
}
