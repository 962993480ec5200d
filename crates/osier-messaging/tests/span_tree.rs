//! The span tree of one call as a tracing backend sees it: async code spawns a green thread,
//! which calls through RabbitMQ a server whose method runs on the green executor. The client's
//! spans nest (async -> green -> `rpc.call`), the server's `rpc.server` continues the same
//! trace (its `parent_span_id` is the `rpc.call`'s `span_id`), a span opened inside the green
//! method nests under `rpc.server`, and the request ids are on both RPC spans.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use osier_messaging::{
    Endpoint, EndpointError, Executor, RequestContext, RpcClient, RpcServer, Target, Transport,
};
use serde_json::{json, Value};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing_subscriber::layer::Context;
use tracing_subscriber::prelude::*;
use tracing_subscriber::registry::LookupSpan;

mod common;
use common::{block, bridge, broker};

/// A span as recorded: a serial of our own (the registry reuses ids), its name, its parent's
/// serial, its fields.
#[derive(Debug, Clone)]
struct Rec {
    serial: u64,
    name: &'static str,
    parent: Option<u64>,
    fields: HashMap<String, String>,
}

static SPANS: Mutex<Vec<Rec>> = Mutex::new(Vec::new());
static SERIAL: AtomicU64 = AtomicU64::new(1);

struct Serial(u64);

struct Fields<'a>(&'a mut HashMap<String, String>);
impl Visit for Fields<'_> {
    fn record_str(&mut self, f: &Field, v: &str) {
        self.0.insert(f.name().into(), v.into());
    }
    fn record_debug(&mut self, f: &Field, v: &dyn std::fmt::Debug) {
        self.0.insert(f.name().into(), format!("{v:?}"));
    }
}

struct Collect;
impl<S: tracing::Subscriber + for<'a> LookupSpan<'a>> tracing_subscriber::Layer<S> for Collect {
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let serial = SERIAL.fetch_add(1, Ordering::Relaxed);
        let parent_id = if let Some(p) = attrs.parent() {
            Some(p.clone())
        } else if attrs.is_contextual() {
            ctx.current_span().id().cloned()
        } else {
            None
        };
        let parent = parent_id.and_then(|p| {
            ctx.span(&p)
                .and_then(|s| s.extensions().get::<Serial>().map(|s| s.0))
        });
        if let Some(span) = ctx.span(id) {
            span.extensions_mut().insert(Serial(serial));
        }
        let mut fields = HashMap::new();
        attrs.record(&mut Fields(&mut fields));
        SPANS.lock().unwrap().push(Rec {
            serial,
            name: attrs.metadata().name(),
            parent,
            fields,
        });
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        let Some(serial) = ctx
            .span(id)
            .and_then(|s| s.extensions().get::<Serial>().map(|s| s.0))
        else {
            return;
        };
        let mut spans = SPANS.lock().unwrap();
        if let Some(r) = spans.iter_mut().find(|r| r.serial == serial) {
            values.record(&mut Fields(&mut r.fields));
        }
    }
}

#[test]
fn one_trace_from_async_through_green_and_rabbitmq_to_a_green_method() {
    tracing::subscriber::set_global_default(
        tracing_subscriber::registry()
            .with(Collect)
            .with(tracing_subscriber::filter::LevelFilter::INFO),
    )
    .unwrap();
    let t = Transport::new(&broker().url()).unwrap();
    let top = format!("osier-span-tree-{}", uuid::Uuid::new_v4().simple());
    let server = RpcServer::builder(&t, Target::topic(&top).with_server("s"))
        .bridge(bridge().clone())
        .endpoint(Endpoint::new("e").executor(Executor::Green).method(
            "work",
            |_c: RequestContext, _a: Value| {
                tracing::info_span!("inside_the_green_method").in_scope(|| {
                    osier_green::sleep(Duration::from_millis(1));
                });
                Ok::<_, EndpointError>(1)
            },
        ))
        .build()
        .unwrap();
    let client = RpcClient::new(&t, Target::topic(&top))
        .timeout(Duration::from_secs(10))
        .bridge(bridge().clone());
    block(async {
        server.start().await.unwrap();
        let caller = tracing::info_span!("async_caller");
        let c = client.clone();
        let v: i64 = tracing::Instrument::instrument(
            async move {
                bridge()
                    .spawn_green(move || {
                        tracing::info_span!("green_caller").in_scope(|| {
                            let mut ctx = RequestContext::new();
                            ctx.set("request_id", "req-tree-1");
                            ctx.set("global_request_id", "req-tree-global");
                            c.call_green::<i64>(&ctx, "work", json!({})).unwrap()
                        })
                    })
                    .await
                    .unwrap()
            },
            caller,
        )
        .await;
        assert_eq!(v, 1);
        server.stop().await.unwrap();
        server.wait().await.unwrap();
        common::clean_up(&[top.clone(), format!("{top}.s")], &[]).await;
    });

    let spans = SPANS.lock().unwrap().clone();
    let find = |name: &str| {
        spans
            .iter()
            .find(|s| s.name == name)
            .unwrap_or_else(|| panic!("no {name} span in {spans:#?}"))
    };
    let caller = find("async_caller");
    let green = find("green_caller");
    assert_eq!(green.parent, Some(caller.serial), "async -> green");
    let call = find("rpc.call");
    assert_eq!(call.parent, Some(green.serial), "green -> rpc.call");
    let server_span = find("rpc.server");
    let method = find("inside_the_green_method");
    assert_eq!(
        method.parent,
        Some(server_span.serial),
        "the green method's span nests under rpc.server"
    );
    let f = |r: &Rec, k: &str| r.fields.get(k).cloned().unwrap_or_default();
    assert_eq!(f(call, "trace_id").len(), 32, "{call:?}");
    assert_eq!(f(call, "msg_id").len(), 32, "recorded once sent: {call:?}");
    assert_eq!(f(server_span, "trace_id"), f(call, "trace_id"), "one trace");
    assert_eq!(
        f(server_span, "parent_span_id"),
        f(call, "span_id"),
        "rpc.server continues rpc.call"
    );
    for r in [call, server_span] {
        assert_eq!(f(r, "request_id"), "req-tree-1", "{r:?}");
        assert_eq!(f(r, "global_request_id"), "req-tree-global", "{r:?}");
        assert_eq!(f(r, "method"), "work", "{r:?}");
    }
    assert_eq!(f(server_span, "executor"), "green");
    assert_eq!(f(server_span, "outcome"), "ok");
}
