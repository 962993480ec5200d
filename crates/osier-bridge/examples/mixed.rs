//! One process, two models: the example of `docs/migration.md`, chapter 1.
//!
//! ```text
//! cargo run -p osier-bridge --example mixed
//! ```
//!
//! - `inventory` is still a green component: green threads, a green `Queue`, blocking-style code.
//! - `pricing` has moved to async: an `async fn` on tokio (its "I/O" is a tokio timer).
//! - The green inventory calls async pricing with `yield_future` (only its green thread parks).
//! - An async front end calls the green inventory with `spawn_green(...).await`, and reads the
//!   inventory's green queue with `get_async` (its tokio worker is never blocked).
#![allow(clippy::print_stdout)] // a demo reports to its user on stdout

use std::time::{Duration, Instant};

use osier_bridge::Bridge;
use osier_green::Queue;

/// The component that moved to async.
async fn price_of(item: &str) -> u32 {
    tokio::time::sleep(Duration::from_millis(5)).await; // stands for a database or HTTP call
    item.len() as u32 * 100
}

/// The component that is still green: blocking-style code, run in a green thread.
fn quote(bridge: &Bridge, items: &[&str]) -> Result<u32, osier_bridge::BridgeError> {
    let mut total = 0;
    for item in items {
        // green -> async: park this green thread until the future is done
        total += bridge.yield_future(price_of(item))?;
    }
    Ok(total)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let bridge = Bridge::builder().green_hubs(1).tokio_workers(2).build()?;
    let audit: Queue<String> = Queue::unbounded();

    let b = bridge.clone();
    let a = audit.clone();
    let t0 = Instant::now();
    let report = bridge.tokio().block_on(async move {
        // async -> green: ten concurrent quotes, each computed by a green thread
        let mut quotes = Vec::new();
        for n in 1..=10usize {
            let (b2, a2) = (b.clone(), a.clone());
            quotes.push(b.spawn_green(move || {
                let items: Vec<&str> = ["apple", "pear", "fig"]
                    .into_iter()
                    .cycle()
                    .take(n)
                    .collect();
                let total = quote(&b2, &items);
                a2.put(format!("quote for {n} items: {total:?}")); // green queue, green side
                total
            }));
        }
        let mut totals = Vec::new();
        for q in quotes {
            totals.push(q.await);
        }
        // the async side drains the green queue without blocking its worker
        let mut lines = Vec::new();
        for _ in 0..totals.len() {
            lines.push(a.get_async().await);
        }
        (totals, lines)
    });
    let (totals, lines) = report;
    for line in &lines {
        println!("{line}");
    }
    let ok = totals.iter().filter(|t| matches!(t, Ok(Ok(_)))).count();
    println!(
        "{ok}/{} quotes computed by green threads calling async pricing, in {:.1} ms",
        totals.len(),
        t0.elapsed().as_secs_f64() * 1e3
    );
    bridge.shutdown_timeout(Duration::from_secs(2))?;
    if ok == totals.len() {
        Ok(())
    } else {
        Err(format!("some quotes failed: {totals:?}").into())
    }
}
