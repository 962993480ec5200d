//! What an operator follows a request by: a server span per request carrying oslo.context's
//! `request_id` and `global_request_id`, so every log line inside a method has them whatever
//! its executor (the way oslo.log prints `[req-...]`); green threads named after the method they
//! run; and a timeout that names the method, the message id and the reply queue.

use std::time::Duration;

use osier_messaging::{
    Endpoint, EndpointError, Executor, MessagingError, RequestContext, RpcClient, RpcServer,
    Target, Transport,
};
use serde_json::{json, Value};

mod common;
use common::{block, bridge};

fn server(t: &Transport, topic: &str) -> RpcServer {
    let log = |executor: &'static str| {
        move |_c: RequestContext, _a: Value| {
            tracing::info!("inside the {executor} method");
            Ok::<_, EndpointError>(osier_green::current().and_then(|g| g.name))
        }
    };
    RpcServer::builder(t, Target::topic(topic).with_server("s"))
        .bridge(bridge().clone())
        .endpoint(
            Endpoint::new("tokio")
                .executor(Executor::Tokio)
                .method_async("on_tokio", |_c, _a: Value| async move {
                    tracing::info!("inside the tokio method");
                    Ok::<_, EndpointError>(None::<String>)
                }),
        )
        .endpoint(
            Endpoint::new("green")
                .executor(Executor::Green)
                .method("on_green", log("green")),
        )
        .endpoint(
            Endpoint::new("threads")
                .executor(Executor::Threads)
                .method("on_threads", log("threads")),
        )
        .endpoint(
            Endpoint::new("slow").method_async("slow", |_c, _a: Value| async move {
                tokio::time::sleep(Duration::from_secs(2)).await;
                Ok::<_, EndpointError>(())
            }),
        )
        .build()
        .unwrap()
}

/// A method's log line carries its request's ids and method on every executor; a green
/// thread is named after its method.
#[test]
fn log_lines_in_a_method_carry_the_request_ids_on_every_executor() {
    common::log_capture::capture("info");
    let t = Transport::new("memory://").unwrap();
    block(async {
        let s = server(&t, "spans");
        s.start().await.unwrap();
        let c = RpcClient::new(&t, Target::topic("spans")).timeout(Duration::from_secs(10));
        for (method, executor) in [
            ("on_tokio", "tokio"),
            ("on_green", "green"),
            ("on_threads", "threads"),
        ] {
            let mut ctx = RequestContext::new();
            ctx.set("request_id", format!("req-{executor}-1"));
            ctx.set("global_request_id", format!("req-global-{executor}"));
            let name: Option<String> = c.call(&ctx, method, json!({})).await.unwrap();
            if executor == "green" {
                assert_eq!(name.as_deref(), Some("on_green"), "the green thread's name");
            }
            let text = common::log_capture::text();
            let line = text
                .lines()
                .find(|l| l.contains(&format!("inside the {executor} method")))
                .unwrap_or_else(|| panic!("no line from the {executor} method:\n{text}"));
            for field in [
                format!("request_id=req-{executor}-1"),
                format!("global_request_id=req-global-{executor}"),
                format!("method={method}"),
                "rpc.server".to_string(),
            ] {
                assert!(line.contains(&field), "{executor}: {field} missing: {line}");
            }
        }
        s.stop().await.unwrap();
        s.wait().await.unwrap();
    });
}

/// A call that times out says which method it was and, on RabbitMQ, its message id and reply
/// queue.
#[test]
fn a_timeout_names_the_method_the_msg_id_and_the_reply_queue() {
    let t = Transport::new(&common::broker().url()).unwrap();
    let topic = format!("osier-test-timeout-{}", uuid::Uuid::new_v4().simple());
    block(async {
        let s = server(&t, &topic);
        s.start().await.unwrap();
        let c = RpcClient::new(&t, Target::topic(&topic)).timeout(Duration::from_millis(500));
        match c
            .call::<Value>(&RequestContext::new(), "slow", json!({}))
            .await
        {
            Err(MessagingError::Timeout(m)) => {
                assert!(m.contains(&format!("on topic {topic}")), "{m}");
                assert!(m.contains("for slow"), "{m}");
                assert!(
                    m.contains("msg_id ") && m.contains("reply queue reply_"),
                    "{m}"
                );
            }
            other => panic!("expected a timeout, got {other:?}"),
        }
        s.stop().await.unwrap();
        s.wait().await.unwrap();
        common::clean_up(&[topic.clone(), format!("{topic}.s")], &[]).await;
    });
}
