//! With the `otel` feature and an OpenTelemetry layer, spans are exported with OpenTelemetry's
//! ids and one trace crosses services: the `rpc.server` span of the service called continues
//! the caller's `rpc.call`, through the `traceparent` in the request context.

use std::time::Duration;

use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider};
use osier_messaging::{
    Endpoint, EndpointError, RequestContext, RpcClient, RpcServer, Target, Transport,
};
use serde_json::{json, Value};
use tracing_subscriber::prelude::*;

#[test]
fn two_services_export_one_trace() {
    let exporter = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(exporter.clone())
        .build();
    let (layer, guard) =
        osier_service::otel::with_provider(provider, osier_service::otel::Destination::Stdout);
    tracing::subscriber::set_global_default(
        tracing_subscriber::registry()
            .with(layer)
            .with(tracing_subscriber::filter::LevelFilter::INFO),
    )
    .unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let t = Transport::new("memory://").unwrap();
        let b = RpcServer::builder(&t, Target::topic("otel-b").with_server("b"))
            .endpoint(
                Endpoint::new("b").method_async("leaf", |_c, _a: Value| async move {
                    Ok::<_, EndpointError>(1)
                }),
            )
            .build()
            .unwrap();
        let to_b = RpcClient::new(&t, Target::topic("otel-b")).timeout(Duration::from_secs(5));
        let a = RpcServer::builder(&t, Target::topic("otel-a").with_server("a"))
            .endpoint(Endpoint::new("a").method_async(
                "middle",
                move |ctx: RequestContext, _a: Value| {
                    let c = to_b.clone();
                    // Spawned: the span in force is gone; the context carries the trace.
                    async move {
                        tokio::spawn(async move { c.call::<i64>(&ctx, "leaf", json!({})).await })
                            .await
                            .unwrap()
                            .map_err(|e| EndpointError::new("RemoteError", e.to_string()))
                    }
                },
            ))
            .build()
            .unwrap();
        b.start().await.unwrap();
        a.start().await.unwrap();
        let c = RpcClient::new(&t, Target::topic("otel-a")).timeout(Duration::from_secs(5));
        let v: i64 = c
            .call(&RequestContext::new(), "middle", json!({}))
            .await
            .unwrap();
        assert_eq!(v, 1);
        for s in [&a, &b] {
            s.stop().await.unwrap();
            s.wait().await.unwrap();
        }
    });
    let spans = exporter.get_finished_spans().unwrap();
    drop(guard);
    let named = |name: &str, method: &str| {
        spans
            .iter()
            .find(|s| {
                s.name == name
                    && s.attributes
                        .iter()
                        .any(|kv| kv.key.as_str() == "method" && kv.value.as_str() == method)
            })
            .unwrap_or_else(|| panic!("no {name} {method} in {spans:#?}"))
    };
    let call_a = named("rpc.call", "middle");
    let server_a = named("rpc.server", "middle");
    let call_b = named("rpc.call", "leaf");
    let server_b = named("rpc.server", "leaf");
    let trace = call_a.span_context.trace_id();
    for s in [server_a, call_b, server_b] {
        assert_eq!(s.span_context.trace_id(), trace, "one trace: {s:?}");
    }
    assert_eq!(server_a.parent_span_id, call_a.span_context.span_id());
    assert_eq!(call_b.parent_span_id, server_a.span_context.span_id());
    assert_eq!(server_b.parent_span_id, call_b.span_context.span_id());
}
