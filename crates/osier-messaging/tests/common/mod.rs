//! Helpers shared by the broker tests (`amqp.rs`, `amqp_faults.rs`, `amqp_tls.rs`). Each test
//! binary uses a different subset.
#![allow(dead_code)]

use std::sync::OnceLock;

use osier_bridge::Bridge;
use osier_messaging::{
    Endpoint, EndpointError, MessagingError, RequestContext, RpcClient, RpcServer, Target,
    Transport,
};

/// The local broker, for raw lapin connections next to the driver under test.
pub const RAW_URI: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";

/// One bridge per test binary.
pub fn bridge() -> &'static Bridge {
    static B: OnceLock<Bridge> = OnceLock::new();
    B.get_or_init(|| Bridge::builder().build().unwrap())
}

/// Runs `f` on the bridge's tokio runtime.
pub fn block<F: std::future::Future>(f: F) -> F::Output {
    bridge().tokio().block_on(f)
}

/// `rabbitmqctl`, or the command in `OSIER_RABBITMQCTL` (e.g. `docker exec <id> rabbitmqctl`).
pub fn rabbitmqctl_cmd() -> std::process::Command {
    let spec = std::env::var("OSIER_RABBITMQCTL").unwrap_or_else(|_| "rabbitmqctl".into());
    let mut parts = spec.split_whitespace();
    let mut c = std::process::Command::new(parts.next().unwrap_or("rabbitmqctl"));
    c.args(parts);
    c
}

/// A plain lapin connection and channel to the local broker (keep the connection alive while
/// the channel is used).
pub async fn raw_channel() -> (lapin::Connection, lapin::Channel) {
    let conn = lapin::Connection::connect(RAW_URI, lapin::ConnectionProperties::default())
        .await
        .unwrap();
    let ch = conn.create_channel().await.unwrap();
    (conn, ch)
}

/// Deletes the queues and exchanges a test declared (oslo never deletes topic queues itself).
pub async fn clean_up(queues: &[String], exchanges: &[String]) {
    use lapin::options::{ExchangeDeleteOptions, QueueDeleteOptions};
    let (conn, ch) = raw_channel().await;
    for q in queues {
        if let Err(e) = ch
            .queue_delete(q.as_str().into(), QueueDeleteOptions::default())
            .await
        {
            eprintln!("queue_delete {q}: {e}");
        }
    }
    for e in exchanges {
        let _ = ch
            .exchange_delete(e.as_str().into(), ExchangeDeleteOptions::default())
            .await;
    }
    let _ = conn.close(200, "bye".into()).await;
}

/// An RPC server on `top`/`server` whose endpoint `e` has `echo`, returning its arguments.
pub fn echo_server(t: &Transport, top: &str, server: &str) -> RpcServer {
    RpcServer::builder(t, Target::topic(top).with_server(server))
        .bridge(bridge().clone())
        .endpoint(
            Endpoint::new("e").method_async("echo", |_c, a: serde_json::Value| async move {
                Ok::<_, EndpointError>(a)
            }),
        )
        .build()
        .unwrap()
}

/// The error of one cast on `t` with a single connection attempt (`retry(0)`; oslo's default,
/// retry forever, would wait for the broker).
pub async fn failed_cast(t: &Transport) -> MessagingError {
    RpcClient::new(t, Target::topic("x"))
        .retry(0)
        .cast(&RequestContext::new(), "m", serde_json::json!({}))
        .await
        .unwrap_err()
}
