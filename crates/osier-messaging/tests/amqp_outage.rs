//! A broker that goes away, seen from the clients: a host that accepts connections and never
//! answers (a frozen node), and a broker cut off behind a TCP proxy (an outage for the clients
//! behind it only, so these tests disturb nobody else on the broker). MSG-AMQP-05.

use std::time::{Duration, Instant};

use osier_messaging::{
    MessagingError, Notifier, NotifyDriver, RequestContext, RpcClient, Target, Transport,
};
use serde_json::json;

mod common;
use common::{block, broker, clean_up, echo_server, Proxy};

fn topic(name: &str) -> String {
    format!("osier-outage-{name}-{}", uuid::Uuid::new_v4().simple())
}

/// A host whose first in the URL accepts the TCP connection and never answers: the connect
/// attempt to it ends at `connect_timeout` and the next host is tried, so `start()` returns.
#[test]
fn a_frozen_first_host_fails_over_within_the_connect_timeout() {
    // The kernel completes the handshake into the backlog; nobody ever reads.
    let frozen = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let frozen_port = frozen.local_addr().unwrap().port();
    let b = broker();
    let url = format!(
        "rabbit://{u}:{p}@127.0.0.1:{frozen_port},{u}:{p}@{addr}/?kombu_failover_strategy=round-robin&connect_timeout=1",
        u = b.user,
        p = b.pass,
        addr = b.addr()
    );
    let t = Transport::new(&url).unwrap();
    let top = topic("frozen");
    let s = echo_server(&t, &top, "s");
    block(async {
        let t0 = Instant::now();
        tokio::time::timeout(Duration::from_secs(10), s.start())
            .await
            .expect("start() returns despite the frozen first host")
            .unwrap();
        assert!(t0.elapsed() < Duration::from_secs(5), "{:?}", t0.elapsed());
        let c = RpcClient::new(&t, Target::topic(&top)).timeout(Duration::from_secs(10));
        let v: serde_json::Value = c
            .call(&RequestContext::new(), "echo", json!({"x": 1}))
            .await
            .unwrap();
        assert_eq!(v, json!({"x": 1}));
        s.stop().await.unwrap();
        s.wait().await.unwrap();
        clean_up(&[top.clone(), format!("{top}.s")], &[]).await;
    });
    drop(frozen);
}

/// `stop()` then `wait()` while the broker is down: the listener, reconnecting, ends at once,
/// so `wait()` returns instead of blocking until the broker is back.
#[test]
fn wait_returns_while_the_broker_is_down() {
    block(async {
        let proxy = Proxy::start().await;
        let t = Transport::new(&proxy.url("")).unwrap();
        let top = topic("wait");
        let s = echo_server(&t, &top, "s");
        s.start().await.unwrap();
        proxy.cut();
        tokio::time::sleep(Duration::from_millis(300)).await;
        s.stop().await.unwrap();
        tokio::time::timeout(Duration::from_secs(5), s.wait())
            .await
            .expect("wait() returns while the broker is down")
            .unwrap();
        clean_up(&[top.clone(), format!("{top}.s")], &[]).await;
    });
}

/// A call made while no connection to the broker exists fails with the broker's error once
/// its time is up, not with a timeout that reads like a slow server.
#[test]
fn a_call_while_the_broker_is_down_fails_with_the_broker_error() {
    block(async {
        let proxy = Proxy::start().await;
        let top = topic("down");
        let ts = Transport::new(&common::broker().url()).unwrap();
        let s = echo_server(&ts, &top, "s");
        s.start().await.unwrap();
        let t = Transport::new(&proxy.url("")).unwrap();
        let c = RpcClient::new(&t, Target::topic(&top)).timeout(Duration::from_secs(2));
        let _: serde_json::Value = c
            .call(&RequestContext::new(), "echo", json!({}))
            .await
            .unwrap();
        proxy.cut();
        tokio::time::sleep(Duration::from_millis(300)).await;
        let t0 = Instant::now();
        let e = c
            .call::<serde_json::Value>(&RequestContext::new(), "echo", json!({}))
            .await
            .unwrap_err();
        assert!(
            matches!(e, MessagingError::Broker(_)),
            "a broker error, not a timeout: {e:?}"
        );
        assert!(t0.elapsed() < Duration::from_secs(3), "{:?}", t0.elapsed());
        s.stop().await.unwrap();
        s.wait().await.unwrap();
        clean_up(&[top.clone(), format!("{top}.s")], &[]).await;
    });
}

/// `notify()` never blocks its caller past `notify_max_wait` while the broker is down.
#[test]
fn notify_returns_within_notify_max_wait_while_the_broker_is_down() {
    block(async {
        let proxy = Proxy::start().await;
        let top = topic("notify");
        let t = Transport::new(&proxy.url("notify_max_wait=1")).unwrap();
        let n = Notifier::new(&t, "osier.test")
            .driver(NotifyDriver::MessagingV2)
            .topics(&[&top]);
        n.info(&RequestContext::new(), "before", json!({})).await;
        proxy.cut();
        tokio::time::sleep(Duration::from_millis(300)).await;
        let t0 = Instant::now();
        n.info(&RequestContext::new(), "during", json!({})).await;
        assert!(
            t0.elapsed() < Duration::from_secs(2),
            "notify() took {:?}",
            t0.elapsed()
        );
        clean_up(&[format!("{top}.info")], &[]).await;
    });
}
