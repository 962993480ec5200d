//! Spans to OpenTelemetry: two services, `api` calling `compute`, exported as one trace to an
//! OTLP collector when `OTEL_EXPORTER_OTLP_ENDPOINT` is set, to stdout otherwise.
//!
//! ```text
//! cargo run -p osier-service --features otel --example otel
//! OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:4318 cargo run -p osier-service --features otel --example otel -- --url rabbit://guest:guest@127.0.0.1:5672/
//! ```

use std::time::Duration;

use osier_messaging::{
    Endpoint, EndpointError, RequestContext, RpcClient, RpcServer, Target, Transport,
};
use serde_json::{json, Value};
use tracing_subscriber::prelude::*;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (otel, guard) = osier_service::otel::layer("osier-otel-example")?;
    tracing_subscriber::registry()
        .with(otel)
        .with(tracing_subscriber::filter::LevelFilter::INFO)
        .init();
    let url = std::env::args()
        .skip_while(|a| a != "--url")
        .nth(1)
        .unwrap_or_else(|| "memory://".into());
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async {
        let t = Transport::new(&url)?;
        // `compute` answers; `api` calls it with the context it received (one trace).
        let compute = RpcServer::builder(&t, Target::topic("otel-compute").with_server("c1"))
            .endpoint(Endpoint::new("compute").method_async(
                "resize",
                |_ctx, a: Value| async move {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    Ok::<_, EndpointError>(json!({"resized": a["size"]}))
                },
            ))
            .build()?;
        let to_compute = RpcClient::new(&t, Target::topic("otel-compute"));
        let api = RpcServer::builder(&t, Target::topic("otel-api").with_server("a1"))
            .endpoint(Endpoint::new("api").method_async(
                "resize_instance",
                move |ctx: RequestContext, a: Value| {
                    let c = to_compute.clone();
                    async move {
                        c.call::<Value>(&ctx, "resize", a)
                            .await
                            .map_err(|e| EndpointError::new("RemoteError", e.to_string()))
                    }
                },
            ))
            .build()?;
        compute.start().await?;
        api.start().await?;
        let client = RpcClient::new(&t, Target::topic("otel-api")).timeout(Duration::from_secs(10));
        let mut ctx = RequestContext::new();
        ctx.set("request_id", "req-otel-example");
        let answer: Value = client
            .call(&ctx, "resize_instance", json!({"size": 4}))
            .await?;
        tracing::info!(%answer, "answered");
        for s in [&api, &compute] {
            s.stop().await?;
            s.wait().await?;
        }
        Ok::<_, Box<dyn std::error::Error>>(())
    })?;
    eprintln!("spans exported to {:?}", guard.destination());
    drop(guard);
    Ok(())
}
