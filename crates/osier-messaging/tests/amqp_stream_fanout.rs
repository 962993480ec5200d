//! `rabbit_stream_fanout` on the real broker: a topic's fanout goes through one stream queue,
//! `<topic>_fanout`, that every server of the topic reads; a fanout cast reaches each server
//! once; a server whose connection is lost goes on, once reconnected, from where it stopped:
//! what was cast meanwhile reaches it, what it had handled does not come again; stopping a
//! server leaves the stream (others read it).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use osier_messaging::{
    Endpoint, EndpointError, RequestContext, RpcClient, RpcServer, Target, Transport,
};
use serde_json::json;

mod common;
use common::{block, bridge, clean_up, raw_channel, Proxy};

const STREAM: &str =
    "rabbit_stream_fanout=true&rabbit_transient_quorum_queue=true&rabbit_qos_prefetch_count=10";

/// A server `name` on `top` recording `(server, n)` for every `note` it handles.
fn server(t: &Transport, top: &str, name: &str, seen: Arc<Mutex<Vec<(String, i64)>>>) -> RpcServer {
    let n = name.to_string();
    RpcServer::builder(t, Target::topic(top).with_server(name))
        .bridge(bridge().clone())
        .endpoint(
            Endpoint::new("e").method("note", move |_c, a: serde_json::Value| {
                let i = a.get("n").and_then(|v| v.as_i64()).unwrap_or(-1);
                seen.lock().unwrap().push((n.clone(), i));
                Ok::<_, EndpointError>(())
            }),
        )
        .build()
        .unwrap()
}

async fn until(what: &str, cond: impl Fn() -> bool) {
    let t0 = Instant::now();
    while !cond() {
        assert!(t0.elapsed() < Duration::from_secs(20), "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[test]
fn fanout_goes_through_one_stream_that_every_server_reads_once() {
    let t = Transport::new(&common::broker().url_with(STREAM)).unwrap();
    let top = format!("osier-test-stream-{}", uuid::Uuid::new_v4().simple());
    let seen: Arc<Mutex<Vec<(String, i64)>>> = Arc::default();
    let count = |s: &str, n: i64| {
        seen.lock()
            .unwrap()
            .iter()
            .filter(|(w, i)| w == s && *i == n)
            .count()
    };
    block(async {
        // b reaches the broker through a proxy that the test cuts and restores.
        let proxy = Proxy::start().await;
        let tb = Transport::new(&proxy.url(&format!(
            "{STREAM}&kombu_reconnect_delay=0.2&rabbit_retry_interval=0.2&rabbit_interval_max=0.5"
        )))
        .unwrap();
        let (a, b) = (
            server(&t, &top, "a", seen.clone()),
            server(&tb, &top, "b", seen.clone()),
        );
        a.start().await.unwrap();
        b.start().await.unwrap();
        let fanout = RpcClient::new(&t, Target::topic(&top))
            .prepare()
            .fanout(true)
            .build()
            .unwrap();
        let ctx = RequestContext::new();
        fanout.cast(&ctx, "note", json!({"n": 1})).await.unwrap();
        until("both servers see cast 1", || {
            count("a", 1) == 1 && count("b", 1) == 1
        })
        .await;

        // One stream for the topic, no queue per server.
        let (_conn, ch) = raw_channel().await;
        let passive = lapin::options::QueueDeclareOptions {
            passive: true,
            ..Default::default()
        };
        let stream = format!("{top}_fanout");
        ch.queue_declare(stream.as_str().into(), passive, Default::default())
            .await
            .expect("the topic's stream exists");

        // b loses its connection; casts 2 and 3 go out meanwhile (apart, so that they sit in
        // chunks of their own: reading from the last chunk would miss cast 2); b comes back
        // and reads on from after cast 1.
        proxy.cut();
        fanout.cast(&ctx, "note", json!({"n": 2})).await.unwrap();
        until("a sees cast 2", || count("a", 2) == 1).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        fanout.cast(&ctx, "note", json!({"n": 3})).await.unwrap();
        until("a sees cast 3", || count("a", 3) == 1).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        proxy.restore();
        until("b sees casts 2 and 3 after reconnecting", || {
            count("b", 2) == 1 && count("b", 3) == 1
        })
        .await;
        fanout.cast(&ctx, "note", json!({"n": 4})).await.unwrap();
        until("both see cast 4", || {
            count("a", 4) == 1 && count("b", 4) == 1
        })
        .await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        for who in ["a", "b"] {
            for n in 1..=4 {
                assert_eq!(count(who, n), 1, "{who} handled cast {n} once: {seen:?}");
            }
        }
        for s in [a, b] {
            s.stop().await.unwrap();
            s.wait().await.unwrap();
        }
        // Stopping the servers left the stream.
        ch.queue_declare(stream.as_str().into(), passive, Default::default())
            .await
            .expect("the stream outlives its readers");
        clean_up(
            &[top.clone(), format!("{top}.a"), format!("{top}.b"), stream],
            &[],
        )
        .await;
    });
}
