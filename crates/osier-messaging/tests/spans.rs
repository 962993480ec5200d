//! What an operator follows a request by: a server span per request carrying oslo.context's
//! `request_id` and `global_request_id`, so every log line inside a method has them whatever
//! its executor (the way oslo.log prints `[req-...]`); one trace across services (the W3C
//! `traceparent` in the context); green threads named after the method they run; and a timeout
//! that names the method, the message id and the reply queue.

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
                format!("request_id=\"req-{executor}-1\""),
                format!("global_request_id=\"req-global-{executor}\""),
                format!("method=\"{method}\""),
                "rpc.server".to_string(),
            ] {
                assert!(line.contains(&field), "{executor}: {field} missing: {line}");
            }
        }
        s.stop().await.unwrap();
        s.wait().await.unwrap();
    });
}

/// Request ids arrive from the network: one carrying a newline and an ANSI escape reaches the
/// method's log line escaped (the `rpc.server` span records it escaped and cut, and
/// tracing-subscriber's formatter quotes it), so it cannot forge a line or recolour the
/// terminal, whatever formatter the subscriber uses.
#[test]
fn a_crafted_request_id_cannot_forge_a_log_line() {
    common::log_capture::capture("info");
    let t = Transport::new("memory://").unwrap();
    block(async {
        let s = RpcServer::builder(&t, Target::topic("spans-crafted").with_server("s"))
            .bridge(bridge().clone())
            .endpoint(Endpoint::new("crafted").method_async(
                "on_crafted",
                |_c, _a: Value| async move {
                    tracing::info!("inside the crafted method");
                    Ok::<_, EndpointError>(())
                },
            ))
            .build()
            .unwrap();
        s.start().await.unwrap();
        let c = RpcClient::new(&t, Target::topic("spans-crafted")).timeout(Duration::from_secs(10));
        let mut ctx = RequestContext::new();
        ctx.set("request_id", "req-x\nERROR forged line \u{1b}[31m");
        ctx.set("global_request_id", "g\r\nforged-too");
        c.call::<()>(&ctx, "on_crafted", json!({})).await.unwrap();
        let text = common::log_capture::text();
        let line = text
            .lines()
            .find(|l| l.contains("inside the crafted method"))
            .unwrap_or_else(|| panic!("no line from the method:\n{text}"));
        assert!(
            line.contains(r#"request_id="req-x\\nERROR forged line \\u{1b}[31m""#),
            "{line}"
        );
        assert!(
            line.contains(r#"global_request_id="g\\r\\nforged-too""#),
            "{line}"
        );
        assert!(
            !text.lines().any(|l| l.starts_with("ERROR forged")),
            "{text}"
        );
        assert!(!text.lines().any(|l| l.starts_with("forged-too")), "{text}");
        assert!(!text.contains('\u{1b}'), "{text}");
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

/// The `trace_id` in a line of `text` that contains `marker`.
fn trace_id_of(text: &str, marker: &str) -> String {
    let line = text
        .lines()
        .find(|l| l.contains(marker))
        .unwrap_or_else(|| panic!("no line with {marker}:\n{text}"));
    line.split("trace_id=")
        .nth(1)
        .and_then(|rest| rest.split([' ', '}']).next())
        .unwrap_or_else(|| panic!("no trace_id in: {line}"))
        .trim_matches('"')
        .to_string()
}

/// Two services, one trace: service A's method calls service B with the context it received,
/// and B's method logs under the same `trace_id` as A's (the W3C `traceparent` travels in the
/// context); a call made with a fresh context starts another trace.
#[test]
fn a_call_made_from_a_handler_continues_its_trace() {
    common::log_capture::capture("info");
    let t = Transport::new("memory://").unwrap();
    block(async {
        let b = RpcServer::builder(&t, Target::topic("trace-b").with_server("b"))
            .bridge(bridge().clone())
            .endpoint(
                Endpoint::new("b").method_async("leaf", |_c, _a: Value| async move {
                    tracing::info!("inside service B");
                    Ok::<_, EndpointError>(1)
                }),
            )
            .build()
            .unwrap();
        let to_b = RpcClient::new(&t, Target::topic("trace-b"))
            .timeout(Duration::from_secs(10))
            .bridge(bridge().clone());
        let a = RpcServer::builder(&t, Target::topic("trace-a").with_server("a"))
            .bridge(bridge().clone())
            .endpoint(Endpoint::new("a").executor(Executor::Green).method(
                "relay",
                move |ctx: RequestContext, _a: Value| {
                    tracing::info!("inside service A");
                    to_b.call_green::<i64>(&ctx, "leaf", json!({}))
                        .map_err(|e| EndpointError::new("RelayError", e.to_string()))
                },
            ))
            .build()
            .unwrap();
        b.start().await.unwrap();
        a.start().await.unwrap();
        let c = RpcClient::new(&t, Target::topic("trace-a")).timeout(Duration::from_secs(10));
        let v: i64 = c
            .call(&RequestContext::new(), "relay", json!({}))
            .await
            .unwrap();
        assert_eq!(v, 1);
        let text = common::log_capture::text();
        let (in_a, in_b) = (
            trace_id_of(&text, "inside service A"),
            trace_id_of(&text, "inside service B"),
        );
        assert_eq!(in_a.len(), 32, "a trace id: {in_a}");
        assert_eq!(in_a, in_b, "one trace across the two services");
        let _: i64 = c
            .call(&RequestContext::new(), "relay", json!({}))
            .await
            .unwrap();
        let text = common::log_capture::text();
        let later = text
            .lines()
            .rfind(|l| l.contains("inside service A"))
            .and_then(|l| l.split("trace_id=").nth(1))
            .and_then(|r| r.split([' ', '}']).next())
            .unwrap_or_default()
            .to_string();
        assert_ne!(later, in_a, "a fresh context starts a new trace");
        for s in [&a, &b] {
            s.stop().await.unwrap();
            s.wait().await.unwrap();
        }
    });
}

/// A request whose `rpc.call` span is off (no subscriber takes it) makes no trace of its own:
/// it carries the `traceparent` of the context it was made with, unchanged, or none; with the
/// span on, it carries a child of that trace.
#[test]
fn a_request_whose_span_is_off_passes_the_trace_it_was_given_unchanged() {
    let t = Transport::new("memory://").unwrap();
    block(async {
        let s = RpcServer::builder(&t, Target::topic("trace-off").with_server("s"))
            .bridge(bridge().clone())
            .endpoint(Endpoint::new("e").method_async(
                "traceparent",
                |c: RequestContext, _a: Value| async move {
                    Ok::<_, EndpointError>(c.get("traceparent").cloned())
                },
            ))
            .build()
            .unwrap();
        s.start().await.unwrap();
        let c = RpcClient::new(&t, Target::topic("trace-off")).timeout(Duration::from_secs(10));
        let upstream = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
        let mut given = RequestContext::new();
        given.set("traceparent", upstream);

        let off = tracing::subscriber::set_default(tracing::subscriber::NoSubscriber::default());
        let sent: Option<Value> = c
            .call(&RequestContext::new(), "traceparent", json!({}))
            .await
            .unwrap();
        assert_eq!(sent, None, "a fresh context, span off: no traceparent");
        let sent: Option<Value> = c.call(&given, "traceparent", json!({})).await.unwrap();
        assert_eq!(sent, Some(json!(upstream)), "span off: passed on unchanged");
        drop(off);

        let _on = tracing::subscriber::set_default(tracing_subscriber::registry());
        let sent: Option<Value> = c.call(&given, "traceparent", json!({})).await.unwrap();
        let sent = sent.and_then(|v| v.as_str().map(str::to_string)).unwrap();
        let parts: Vec<&str> = sent.split('-').collect();
        assert_eq!(parts.len(), 4, "{sent}");
        assert_eq!(
            parts[1], "0af7651916cd43dd8448eb211c80319c",
            "the same trace"
        );
        assert_ne!(parts[2], "b7ad6b7169203331", "a span of its own");
    });
}
