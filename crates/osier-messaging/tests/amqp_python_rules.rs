//! What Python's oslo.messaging accepts and refuses on the wire, checked on the real broker with
//! a raw peer (plain lapin) that speaks as a Python peer would, or as Python would not:
//!
//! - a request whose `content_type` is missing or not `application/json` is rejected unread, with
//!   no reply (the caller times out), counted, and the server goes on serving (MSG-AMQP-07);
//! - a reply without `application/json` is dropped the same way on the client's side;
//! - a reply in two parts (the result, then an empty final message, as older oslo servers send
//!   it) gives the caller the result (MSG-AMQP-09);
//! - the endpoint's context holds the caller's `_timeout` as `client_timeout`, null when none
//!   was sent (MSG-AMQP-01).

use std::time::{Duration, Instant};

use futures::StreamExt;
use lapin::options::{ExchangeDeclareOptions, QueueBindOptions};
use lapin::types::FieldTable;
use osier_messaging::{
    Endpoint, EndpointError, MessagingError, RequestContext, RpcClient, RpcServer, Target,
    Transport,
};
use serde_json::{json, Value};

mod common;
use common::raw::{consume_own_queue, envelope, inner, publish_with_content_type};
use common::{block, bridge, clean_up, echo_server, raw_channel};

fn url() -> String {
    common::broker().url()
}

fn topic(name: &str) -> String {
    format!("osier-test-{name}-{}", uuid::Uuid::new_v4().simple())
}

/// The messages of one reply, each with its `content_type`.
type Parts = Vec<(Value, Option<&'static str>)>;

/// A server on `top` that the raw peer plays: it takes requests from the topic queue (bound
/// to the control exchange as osier's client expects) and answers each with `replies`.
async fn raw_server(top: &str, replies: Parts) -> (lapin::Connection, tokio::task::JoinHandle<()>) {
    let (conn, ch) = raw_channel().await;
    ch.exchange_declare(
        "openstack".into(),
        lapin::ExchangeKind::Topic,
        ExchangeDeclareOptions::default(),
        FieldTable::default(),
    )
    .await
    .unwrap();
    let mut requests = consume_own_queue(&ch, top).await;
    ch.queue_bind(
        top.into(),
        "openstack".into(),
        top.into(),
        QueueBindOptions::default(),
        FieldTable::default(),
    )
    .await
    .unwrap();
    let task = tokio::spawn(async move {
        while let Some(Ok(d)) = requests.next().await {
            let req = inner(&d.data);
            let (msg_id, reply_q) = (
                req["_msg_id"].as_str().unwrap().to_string(),
                req["_reply_q"].as_str().unwrap().to_string(),
            );
            for (mut part, content_type) in replies.clone() {
                part["_msg_id"] = json!(msg_id);
                publish_with_content_type(
                    &ch,
                    &reply_q,
                    &envelope(&part.to_string()),
                    content_type,
                )
                .await;
            }
        }
    });
    (conn, task)
}

fn call_body(reply_q: &str) -> Value {
    json!({
        "method": "echo",
        "args": {"x": 1},
        "_msg_id": uuid::Uuid::new_v4().simple().to_string(),
        "_reply_q": reply_q,
        "_unique_id": uuid::Uuid::new_v4().simple().to_string(),
    })
}

/// A call without `application/json` gets no reply (Python rejects it unread); it is counted
/// as dropped, and the server still answers the next call.
#[test]
fn a_request_without_json_content_type_is_rejected_without_a_reply() {
    let t = Transport::new(&url()).unwrap();
    let top = topic("content-type");
    block(async {
        let s = echo_server(&t, &top, "s1");
        s.start().await.unwrap();
        let (_conn, ch) = raw_channel().await;
        let reply_q = format!("reply_raw_{}", uuid::Uuid::new_v4().simple());
        let mut replies = consume_own_queue(&ch, &reply_q).await;
        for ct in [
            None,
            Some("text/plain"),
            Some("application/json; charset=utf-8"),
        ] {
            publish_with_content_type(&ch, &top, &envelope(&call_body(&reply_q).to_string()), ct)
                .await;
        }
        let t0 = Instant::now();
        while s.dropped_messages() < 3 {
            assert!(t0.elapsed() < Duration::from_secs(10), "3 requests counted");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let got = tokio::time::timeout(Duration::from_secs(1), replies.next()).await;
        assert!(got.is_err(), "no reply to a refused request: {got:?}");
        // Rejected without requeue: nothing comes back to the server, which still serves.
        let c = RpcClient::new(&t, Target::topic(&top)).timeout(Duration::from_secs(10));
        let v: Value = c
            .call(&RequestContext::new(), "echo", json!({"x": 2}))
            .await
            .unwrap();
        assert_eq!(v, json!({"x": 2}));
        assert_eq!(s.dropped_messages(), 3);
        s.stop().await.unwrap();
        s.wait().await.unwrap();
        clean_up(&[top.clone(), format!("{top}.s1")], &[]).await;
    });
}

/// A reply that is not `application/json` is dropped: the caller times out, as a Python
/// caller does.
#[test]
fn a_reply_without_json_content_type_is_dropped() {
    let t = Transport::new(&url()).unwrap();
    let top = topic("reply-content-type");
    block(async {
        let part = json!({"result": 1, "failure": null, "ending": true});
        let (_conn, server) = raw_server(&top, vec![(part, Some("text/plain"))]).await;
        let c = RpcClient::new(&t, Target::topic(&top)).timeout(Duration::from_secs(2));
        let r = c
            .call::<Value>(&RequestContext::new(), "echo", json!({}))
            .await;
        assert!(matches!(r, Err(MessagingError::Timeout(_))), "{r:?}");
        server.abort();
    });
}

/// A reply sent in two parts, the result first and then an empty final message, returns the
/// result; a failure in the first part is raised.
#[test]
fn a_reply_in_two_parts_returns_the_result_of_the_first() {
    let t = Transport::new(&url()).unwrap();
    let top = topic("two-parts");
    block(async {
        let json = Some("application/json");
        let end = json!({"result": null, "failure": null, "ending": true});
        let parts = vec![
            (json!({"result": 2, "failure": null, "ending": false}), json),
            (end.clone(), json),
        ];
        let (_conn, server) = raw_server(&top, parts).await;
        let c = RpcClient::new(&t, Target::topic(&top)).timeout(Duration::from_secs(10));
        let v: i64 = c
            .call(&RequestContext::new(), "echo", json!({}))
            .await
            .unwrap();
        assert_eq!(v, 2);
        server.abort();

        let top = topic("two-parts-failure");
        let failure = json!({"class": "ValueError", "module": "builtins",
            "message": "early", "tb": [], "args": ["early"], "kwargs": {}});
        let first = json!({"result": null, "failure": failure.to_string(), "ending": false});
        let (_conn, server) = raw_server(&top, vec![(first, json), (end, json)]).await;
        let c = RpcClient::new(&t, Target::topic(&top)).timeout(Duration::from_secs(10));
        match c
            .call::<Value>(&RequestContext::new(), "echo", json!({}))
            .await
        {
            Err(MessagingError::Remote(f)) => assert_eq!(
                (f.class.as_str(), f.message.as_str()),
                ("ValueError", "early")
            ),
            other => panic!("expected the first part's failure, got {other:?}"),
        }
        server.abort();
    });
}

/// The endpoint's context holds `client_timeout`: the caller's call-monitor timeout, or null.
#[test]
fn the_endpoint_context_holds_client_timeout() {
    let t = Transport::new(&url()).unwrap();
    let top = topic("client-timeout");
    block(async {
        let s = RpcServer::builder(&t, Target::topic(&top).with_server("s1"))
            .bridge(bridge().clone())
            .endpoint(Endpoint::new("e").method_async(
                "ctx",
                |c: RequestContext, _a: ()| async move {
                    let t = c.get("client_timeout").cloned();
                    Ok::<_, EndpointError>(t.unwrap_or_else(|| json!("absent")))
                },
            ))
            .build()
            .unwrap();
        s.start().await.unwrap();
        let c = RpcClient::new(&t, Target::topic(&top)).timeout(Duration::from_secs(10));
        let ctx = RequestContext::new();
        let none: Value = c.call(&ctx, "ctx", json!({})).await.unwrap();
        assert_eq!(none, Value::Null, "present and null without a call monitor");
        let monitored = c
            .prepare()
            .call_monitor_timeout(Some(Duration::from_secs(5)))
            .build()
            .unwrap();
        let five: Value = monitored.call(&ctx, "ctx", json!({})).await.unwrap();
        assert_eq!(five.as_f64(), Some(5.0));
        s.stop().await.unwrap();
        s.wait().await.unwrap();
        clean_up(&[top.clone(), format!("{top}.s1")], &[]).await;
    });
}
