//! The two sides of `cargo xtask bench-flood` (a flood of casts at a slow RPC server):
//!
//! - `flood serve --topic T [--max-in-flight N]`: an osier RPC server on the local RabbitMQ
//!   whose one method blocks for 200 ms; prints `ready` once consuming, and stops when its
//!   standard input closes. Its memory is what xtask samples.
//! - `flood publish --topic T --count N`: publishes N casts to the topic with a plain AMQP
//!   client as fast as the broker confirms them, prints the rate, then the depth of the topic
//!   queue every 250 ms (JSON lines) until it is empty.
//! - `flood cleanup --topic T`: deletes the topic's queues.

#![allow(clippy::print_stdout)] // its output is the lines xtask reads

use std::io::BufRead;
use std::time::{Duration, Instant};

use lapin::options::{BasicPublishOptions, ConfirmSelectOptions, QueueDeclareOptions};
use lapin::types::FieldTable;
use lapin::BasicProperties;
use osier_messaging::{Endpoint, EndpointError, RpcServer, Target, Transport};

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
    if args.get(1).map(String::as_str) == Some("serve") {
        let max: usize = arg(&args, "--max-in-flight")
            .and_then(|n| n.parse().ok())
            .unwrap_or(osier_messaging::rpc::server::DEFAULT_MAX_IN_FLIGHT);
        let bridge = osier_bridge::Bridge::builder().build().expect("a bridge");
        bridge.tokio().block_on(serve(&bridge, &topic, max));
        return;
    }
    let rt = tokio::runtime::Runtime::new().expect("a tokio runtime");
    match args.get(1).map(String::as_str) {
        Some("publish") => {
            let count: u32 = arg(&args, "--count")
                .and_then(|n| n.parse().ok())
                .unwrap_or(20_000);
            rt.block_on(publish(&topic, count));
        }
        Some("cleanup") => rt.block_on(cleanup(&topic)),
        _ => {
            eprintln!("usage: flood serve --topic T [--max-in-flight N] | flood publish --topic T --count N");
            std::process::exit(2);
        }
    }
}

async fn serve(bridge: &osier_bridge::Bridge, topic: &str, max_in_flight: usize) {
    let t = Transport::new(URL).expect("the transport");
    let server = RpcServer::builder(&t, Target::topic(topic).with_server("flood"))
        .bridge(bridge.clone())
        .max_in_flight(max_in_flight)
        .endpoint(
            Endpoint::new("e").method("slow", |_c, _a: serde_json::Value| {
                std::thread::sleep(Duration::from_millis(200));
                Ok::<_, EndpointError>(())
            }),
        )
        .build()
        .expect("the server");
    server.start().await.expect("server start");
    println!("ready");
    // Until xtask closes our stdin.
    tokio::task::spawn_blocking(|| {
        let stdin = std::io::stdin();
        for _ in stdin.lock().lines() {}
    })
    .await
    .ok();
    let _ = server.stop().await;
}

/// Deletes the topic's queues (oslo never deletes topic queues itself).
async fn cleanup(topic: &str) {
    let Ok(conn) = lapin::Connection::connect(RAW, lapin::ConnectionProperties::default()).await
    else {
        return;
    };
    if let Ok(ch) = conn.create_channel().await {
        for q in [topic.to_string(), format!("{topic}.flood")] {
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

async fn publish(topic: &str, count: u32) {
    let conn = lapin::Connection::connect(RAW, lapin::ConnectionProperties::default())
        .await
        .expect("connect");
    let ch = conn.create_channel().await.expect("channel");
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .expect("confirm.select");
    let inner = serde_json::json!({"method": "slow", "args": {"pad": "x".repeat(512)}}).to_string();
    let body = serde_json::json!({"oslo.version": "2.0", "oslo.message": inner}).to_string();
    let t0 = Instant::now();
    let mut confirms = Vec::with_capacity(1024);
    for _ in 0..count {
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
