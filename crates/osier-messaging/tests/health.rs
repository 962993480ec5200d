//! Health beyond "the process runs": an RPC server's and a listener's subscription, the
//! self-ping of `rpc_ping_enabled` (MSG-DISP-07), and the calls-in-flight warning
//! (MSG-AMQP-09). The RabbitMQ cases use the broker at 127.0.0.1:5672 and a plain AMQP client.

use std::time::Duration;

use osier_messaging::{
    Endpoint, EndpointError, NotificationEndpoint, NotificationListener, NotificationResult,
    PingOutcome, Priority, RequestContext, RpcClient, RpcServer, Target, Transport,
    TransportOptions, PING_METHOD,
};
use serde_json::json;

mod common;
use common::{block, bridge, broker, echo_server, log_capture, raw_channel, until};

fn pinging(url: &str) -> Transport {
    let opts = TransportOptions {
        rpc_ping_enabled: true,
        ..TransportOptions::default()
    };
    Transport::with_options(url, opts).unwrap()
}

#[test]
fn a_server_is_healthy_only_between_start_and_stop() {
    block(async {
        let t = Transport::new("memory://").unwrap();
        let server = echo_server(&t, "health-mem", "s");
        let h = server.health();
        assert!(!h.running && !h.is_healthy());
        server.start().await.unwrap();
        assert!(server.health().is_healthy());
        assert_eq!(server.health().ping, None, "pings are off by default");
        server.stop().await.unwrap();
        server.wait().await.unwrap();
        assert_eq!(server.health().problem().as_deref(), Some("not running"));
    });
}

#[test]
fn with_rpc_ping_enabled_a_server_pings_itself_through_the_transport() {
    block(async {
        let t = pinging("memory://");
        let server = echo_server(&t, "health-ping", "s");
        server.start().await.unwrap();
        until("the first ping", Duration::from_secs(5), || {
            server.health().ping.is_some()
        })
        .await;
        assert!(
            matches!(server.health().ping, Some(PingOutcome::Answered(_))),
            "{:?}",
            server.health()
        );
        assert!(server.health().is_healthy());
        server.stop().await.unwrap();
        server.wait().await.unwrap();
    });
}

#[test]
fn a_ping_that_fails_makes_the_server_unhealthy() {
    block(async {
        let t = pinging("memory://");
        // An endpoint's own method of the ping's name wins over the built-in (MSG-DISP-07):
        // here it fails, as a server that cannot answer would.
        let server = RpcServer::builder(&t, Target::topic("health-ping-fails").with_server("s"))
            .bridge(bridge().clone())
            .endpoint(Endpoint::new("e").method(
                PING_METHOD,
                |_c, _a: serde_json::Value| -> Result<String, EndpointError> {
                    Err(EndpointError::new("RuntimeError", "cannot answer"))
                },
            ))
            .build()
            .unwrap();
        server.start().await.unwrap();
        until("the first ping", Duration::from_secs(5), || {
            server.health().ping.is_some()
        })
        .await;
        let h = server.health();
        assert!(!h.is_healthy(), "{h:?}");
        assert!(h.problem().unwrap().contains("ping"), "{h:?}");
        server.stop().await.unwrap();
        server.wait().await.unwrap();
    });
}

#[test]
fn a_ping_interval_under_a_second_is_refused() {
    let t = Transport::new("memory://").unwrap();
    let r = RpcServer::builder(&t, Target::topic("x").with_server("s"))
        .ping_interval(Duration::from_millis(10))
        .build();
    assert!(matches!(
        r,
        Err(osier_messaging::MessagingError::InvalidOption { .. })
    ));
}

/// Its queue deleted by an operator, the server is not consuming until it has declared the
/// queue again and resumed (about `kombu_reconnect_delay` later); then it is healthy again.
#[test]
fn a_rabbitmq_server_whose_queue_is_deleted_is_unhealthy_until_it_consumes_again() {
    let t = Transport::new(&broker().url()).unwrap();
    let top = format!("osier-health-{}", uuid::Uuid::new_v4().simple());
    let server = echo_server(&t, &top, "s");
    block(async {
        server.start().await.unwrap();
        assert!(server.health().is_healthy());
        let (conn, ch) = raw_channel().await;
        ch.queue_delete(
            top.as_str().into(),
            lapin::options::QueueDeleteOptions::default(),
        )
        .await
        .unwrap();
        until("the server notices", Duration::from_secs(5), || {
            !server.health().consuming
        })
        .await;
        assert!(server.health().problem().unwrap().contains("not consuming"));
        until("the server consumes again", Duration::from_secs(10), || {
            server.health().is_healthy()
        })
        .await;
        let client = RpcClient::new(&t, Target::topic(&top)).timeout(Duration::from_secs(5));
        let v: serde_json::Value = client
            .call(&RequestContext::new(), "echo", json!({"x": 1}))
            .await
            .unwrap();
        assert_eq!(v, json!({"x": 1}));
        server.stop().await.unwrap();
        server.wait().await.unwrap();
        let _ = conn.close(200, "bye".into()).await;
        common::clean_up(&[top.clone(), format!("{top}.s")], &[]).await;
    });
}

#[test]
fn a_listener_reports_its_subscription() {
    let t = Transport::new(&broker().url()).unwrap();
    let top = format!("osier-health-n-{}", uuid::Uuid::new_v4().simple());
    let ep = NotificationEndpoint::new("e").on(Priority::Info, |_n| NotificationResult::Handled);
    let listener =
        NotificationListener::new(&t, vec![Target::topic(&top)], vec![ep]).bridge(bridge().clone());
    block(async {
        assert!(!listener.health().running);
        listener.start().await.unwrap();
        assert!(listener.health().is_healthy());
        listener.stop().await;
        assert!(!listener.health().is_healthy());
        common::clean_up(&[format!("{top}.info")], &[]).await;
    });
}

/// oslo warns when more calls wait for a reply than a threshold (10, doubling each time it
/// is passed): a caller that never ends its calls shows in the log.
#[test]
fn more_than_ten_calls_in_flight_log_a_warning_once_per_doubling() {
    log_capture::capture("warn");
    let t = Transport::new(&broker().url()).unwrap();
    // Nobody consumes this topic: every call waits for its timeout.
    let top = format!("osier-inflight-{}", uuid::Uuid::new_v4().simple());
    let client = RpcClient::new(&t, Target::topic(&top)).timeout(Duration::from_millis(1500));
    block(async {
        let calls = (0..12).map(|i| {
            let c = client.clone();
            async move {
                c.call::<serde_json::Value>(&RequestContext::new(), "wait", json!({ "i": i }))
                    .await
            }
        });
        let results = futures::future::join_all(calls).await;
        assert!(results.iter().all(Result::is_err));
    });
    let text = log_capture::text();
    let warnings: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("more calls await a reply than the warning threshold"))
        .collect();
    assert_eq!(warnings.len(), 1, "{text}");
    assert!(warnings[0].contains("threshold=10"), "{}", warnings[0]);
    assert!(warnings[0].contains("next_threshold=20"), "{}", warnings[0]);
}
