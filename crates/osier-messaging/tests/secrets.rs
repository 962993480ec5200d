//! No secret in any output: a context and a payload carry secrets two levels deep (and at the
//! top) through every path (call, cast, a failure with secret keyword arguments, a timeout,
//! notifications through the messaging and log drivers, a request the broker returns), on the
//! in-memory transport and on RabbitMQ, with the whole crate and lapin traced at TRACE level
//! through [`osier_messaging::secrets::lapin_secret_filter`]; every result, error and received
//! notification is also written with `{:?}`. None of the secrets appears in what was written.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use osier_messaging::{
    Endpoint, EndpointError, NotificationEndpoint, NotificationListener, NotificationResult,
    Notifier, NotifyDriver, Priority, RequestContext, RpcClient, RpcServer, Target, Transport,
};
use serde_json::{json, Value};

mod common;
use common::{block, bridge};

const TOP_SECRET: &str = "top-level-secret-4e1b";
const CTX_SECRET: &str = "nested-context-secret-9f3a";
const PAYLOAD_SECRET: &str = "nested-payload-secret-7c21";
const KWARG_SECRET: &str = "failure-kwarg-secret-2d88";
const ALL: [&str; 4] = [TOP_SECRET, CTX_SECRET, PAYLOAD_SECRET, KWARG_SECRET];

/// Everything written: the log of the whole process at TRACE, and the tests' own `{:?}`s.
fn output() -> &'static Mutex<Vec<u8>> {
    common::log_capture::capture("trace")
}

fn show(what: &str, v: &dyn std::fmt::Debug) {
    let line = format!("{what}: {v:?}\n");
    output().lock().unwrap().extend_from_slice(line.as_bytes());
}

fn secret_context() -> RequestContext {
    let mut ctx = RequestContext::with_new_request_id();
    ctx.set("auth_token", TOP_SECRET);
    ctx.set("user_id", "alice");
    ctx.set(
        "auth",
        json!({"identity": {"password": CTX_SECRET, "methods": ["password"]}}),
    );
    ctx
}

fn secret_payload() -> Value {
    json!({"server": {"adminPass": PAYLOAD_SECRET, "name": "vm1"}, "n": 1})
}

fn server(t: &Transport, topic: &str) -> RpcServer {
    RpcServer::builder(t, Target::topic(topic).with_server("s"))
        .bridge(bridge().clone())
        .endpoint(
            Endpoint::new("e")
                .method_async("take", |_c, _a: Value| async move {
                    Ok::<_, EndpointError>("ok")
                })
                .method_async("fail", |_c, _a: Value| async move {
                    Err::<(), _>(
                        EndpointError::new("Unauthorized", "the request was refused")
                            .kwarg("password", json!(KWARG_SECRET)),
                    )
                })
                .method_async("slow", |_c, _a: Value| async move {
                    tokio::time::sleep(Duration::from_secs(3)).await;
                    Ok::<_, EndpointError>(())
                }),
        )
        .build()
        .unwrap()
}

/// Every path once over transport `t`.
async fn every_path(t: &Transport, topic: &str) {
    let ctx = secret_context();
    let s = server(t, topic);
    s.start().await.unwrap();
    let c = RpcClient::new(t, Target::topic(topic)).timeout(Duration::from_secs(10));
    let r = c.call::<Value>(&ctx, "take", secret_payload()).await;
    show("call", &r);
    show("cast", &c.cast(&ctx, "take", secret_payload()).await);
    let r = c.call::<Value>(&ctx, "fail", secret_payload()).await;
    assert!(r.is_err(), "the failure came back");
    show("failure", &r);
    let quick = c
        .prepare()
        .timeout(Some(Duration::from_millis(300)))
        .build()
        .unwrap();
    show(
        "timeout",
        &quick.call::<Value>(&ctx, "slow", secret_payload()).await,
    );
    // A request nobody can take: the broker returns it (RabbitMQ), or no server (memory).
    let nobody = RpcClient::new(t, Target::topic(format!("{topic}-nobody")))
        .timeout(Duration::from_millis(500));
    show(
        "returned",
        &nobody.call::<Value>(&ctx, "take", secret_payload()).await,
    );

    let got: Arc<Mutex<Vec<String>>> = Arc::default();
    let g = got.clone();
    let ep = NotificationEndpoint::new("e").on(Priority::Info, move |n| {
        g.lock().unwrap().push(format!("{n:?}"));
        NotificationResult::Handled
    });
    let l =
        NotificationListener::new(t, vec![Target::topic(topic)], vec![ep]).bridge(bridge().clone());
    l.start().await.unwrap();
    let n = Notifier::new(t, "compute.host1")
        .driver(NotifyDriver::MessagingV2)
        .driver(NotifyDriver::Log)
        .topics(&[topic]);
    n.info(&ctx, "compute.instance.create.end", secret_payload())
        .await;
    let t0 = std::time::Instant::now();
    while got.lock().unwrap().is_empty() && t0.elapsed() < Duration::from_secs(10) {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    show("notification", &got.lock().unwrap());
    show("context", &ctx);
    l.stop().await;
    s.stop().await.unwrap();
    s.wait().await.unwrap();
}

fn assert_no_secret(label: &str) {
    let text = common::log_capture::text();
    assert!(
        text.contains("compute.instance.create.end") && text.contains("Unauthorized"),
        "{label}: the output was captured"
    );
    for s in ALL {
        // As text, and as the decimal bytes a `Vec<u8>`'s `Debug` shows (lapin logs bodies
        // and frames that way).
        let bytes = s
            .bytes()
            .map(|b| b.to_string())
            .collect::<Vec<_>>()
            .join(", ");
        for shown in [s.to_string(), bytes] {
            if let Some(at) = text.find(&shown) {
                let from = text[..at].rfind('\n').map_or(0, |i| i + 1);
                let line = text[from..].lines().next().unwrap_or("");
                panic!(
                    "{label}: {s} appears in the output: {}",
                    &line[..line.len().min(300)]
                );
            }
        }
    }
}

#[test]
fn no_secret_reaches_any_output_in_memory() {
    output();
    let t = Transport::new("memory://").unwrap();
    block(every_path(&t, "secrets-memory"));
    assert_no_secret("memory");
}

#[test]
fn no_secret_reaches_any_output_on_rabbitmq() {
    output();
    let t = Transport::new(&common::broker().url()).unwrap();
    let topic = format!("osier-test-secrets-{}", uuid::Uuid::new_v4().simple());
    block(async {
        every_path(&t, &topic).await;
        common::clean_up(
            &[topic.clone(), format!("{topic}.s"), format!("{topic}.info")],
            &[],
        )
        .await;
    });
    assert_no_secret("rabbitmq");
}
