//! One RPC server whose endpoints run on three executors (tokio, green, native threads), called
//! from an async client and from a green client, over the in-memory transport, or over
//! RabbitMQ with `--url`.
//!
//! ```text
//! cargo run -p osier-messaging --example three_executors
//! cargo run -p osier-messaging --example three_executors -- --url rabbit://guest:guest@127.0.0.1:5672/
//! ```
//!
//! This is the shape of a service in the middle of its migration: the `inventory` endpoint has
//! moved to async, `billing` is still green, and `reports` calls a blocking library on a thread
//! pool. Callers do not know or care which is which.
#![allow(clippy::print_stdout)] // a demo reports to its user on stdout

use std::time::{Duration, Instant};

use osier_messaging::{
    Endpoint, EndpointError, Executor, RequestContext, RpcClient, RpcServer, Target, Transport,
};
use serde::Deserialize;
use serde_json::{json, Value};

#[derive(Deserialize)]
struct Item {
    sku: String,
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let mut url = "memory://".to_string();
    while let Some(a) = args.next() {
        match a.as_str() {
            "--url" => url = args.next().ok_or("--url needs a transport URL")?,
            other => return Err(format!("unknown argument {other} (--url URL)").into()),
        }
    }
    let bridge = osier_bridge::Bridge::builder().build()?;
    let transport = Transport::new(&url)?;
    println!("transport: {}", transport.url()); // the password is redacted

    let inventory = Endpoint::new("inventory")
        .target(
            Target::default()
                .with_namespace("inventory")
                .with_version("1.1"),
        )
        .method_async("stock", |_ctx, item: Item| async move {
            tokio::time::sleep(Duration::from_millis(2)).await; // async I/O
            Ok::<_, EndpointError>(json!({"sku": item.sku, "stock": 7, "ran_on": "tokio"}))
        })
        .executor(Executor::Tokio);
    let billing = Endpoint::new("billing")
        .target(Target::default().with_namespace("billing"))
        .method("price", |_ctx, item: Item| {
            osier_green::sleep(Duration::from_millis(2)); // green code, parks only its green thread
            if item.sku.is_empty() {
                return Err(EndpointError::new("ValueError", "empty sku"));
            }
            Ok(json!({"sku": item.sku, "price": 42, "ran_on": "green"}))
        })
        .executor(Executor::Green);
    let reports = Endpoint::new("reports")
        .target(Target::default().with_namespace("reports"))
        .method("render", |_ctx, _args: Value| {
            std::thread::sleep(Duration::from_millis(2)); // a blocking library call
            Ok::<_, EndpointError>(json!({"pages": 3, "ran_on": "threads"}))
        })
        .executor(Executor::Threads);

    let server = RpcServer::builder(&transport, Target::topic("shop").with_server("shop-1"))
        .bridge(bridge.clone())
        .endpoint(inventory)
        .endpoint(billing)
        .endpoint(reports)
        .build()?;
    bridge.tokio().block_on(server.start())?;

    let client = RpcClient::new(&transport, Target::topic("shop"))
        .timeout(Duration::from_secs(5))
        .bridge(bridge.clone());
    let ns = |n: &str| client.prepare().namespace(Some(n)).build();
    let (inv, bill, rep) = (ns("inventory")?, ns("billing")?, ns("reports")?);

    // An async client.
    let t0 = Instant::now();
    let (a, b, c) = bridge.tokio().block_on(async {
        let ctx = RequestContext::with_new_request_id();
        let args = json!({"sku": "A-1"});
        tokio::join!(
            inv.call::<Value>(&ctx, "stock", args.clone()),
            bill.call::<Value>(&ctx, "price", args.clone()),
            rep.call::<Value>(&ctx, "render", json!({})),
        )
    });
    println!(
        "async client: {} | {} | {} ({:.1} ms)",
        a?,
        b?,
        c?,
        t0.elapsed().as_secs_f64() * 1e3
    );

    // A green client: blocking-style calls that park only its green thread.
    let g = bridge.green().block_on(
        move || -> Result<String, osier_messaging::MessagingError> {
            let ctx = RequestContext::with_new_request_id();
            let a: Value = inv.call_green(&ctx, "stock", json!({"sku": "B-2"}))?;
            let b: Value = bill.call_green(&ctx, "price", json!({"sku": "B-2"}))?;
            let err = bill.call_green::<Value>(&ctx, "price", json!({"sku": ""}));
            Ok(format!(
                "{a} | {b} | empty sku -> {}",
                err.err().map(|e| e.to_string()).unwrap_or_default()
            ))
        },
    )??;
    println!("green client: {g}");

    bridge.tokio().block_on(async {
        server.stop().await?;
        server.wait().await?;
        transport.flush().await
    })?;
    bridge.shutdown_timeout(Duration::from_secs(2))?;
    Ok(())
}
