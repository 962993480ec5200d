//! Messaging workloads: in-memory RPC calls and casts, and notifications, per executor, beside a
//! plain tokio mpsc request/reply baseline. Shared by `benches/messaging.rs` and
//! `src/bin/messaging_table.rs`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use osier_messaging::{
    Endpoint, EndpointError, Executor, NotificationEndpoint, NotificationListener,
    NotificationResult, Notifier, NotifyDriver, Priority, RequestContext, RpcClient, RpcServer,
    Target, Transport,
};
use serde_json::json;

use crate::bridge::{bridge, bridge_on_hub};
use osier_bridge::Bridge;

struct Setup {
    client: RpcClient,
    casts: Arc<AtomicU64>,
    _server: RpcServer,
}

fn topic_for(e: Executor) -> &'static str {
    match e {
        Executor::Tokio => "bench-tokio",
        Executor::Green => "bench-green",
        Executor::Threads => "bench-threads",
    }
}

fn setup(e: Executor) -> &'static Setup {
    static SETUPS: OnceLock<[Setup; 3]> = OnceLock::new();
    pick(SETUPS.get_or_init(|| setups(bridge(), "")), e)
}

/// The same servers on the bridge with tokio on the hub (`tokio_on_hubs`): each server, and
/// the handlers of its tokio executor, run on the hub's runtime.
fn setup_on_hub(e: Executor) -> &'static Setup {
    static SETUPS: OnceLock<[Setup; 3]> = OnceLock::new();
    pick(SETUPS.get_or_init(|| setups(bridge_on_hub(), "-on-hub")), e)
}

fn pick(all: &[Setup; 3], e: Executor) -> &Setup {
    match e {
        Executor::Tokio => &all[0],
        Executor::Green => &all[1],
        Executor::Threads => &all[2],
    }
}

/// A server per executor, on topics of their own (`suffix`): in-memory transports share one
/// broker per process.
fn setups(bridge: &Bridge, suffix: &str) -> [Setup; 3] {
    {
        let t = Transport::new("memory://").expect("transport");
        [Executor::Tokio, Executor::Green, Executor::Threads].map(|ex| {
            let casts = Arc::new(AtomicU64::new(0));
            let c2 = casts.clone();
            let ep = match ex {
                Executor::Tokio => Endpoint::new("e")
                    .method_async("echo", |_c, a: serde_json::Value| async move {
                        Ok::<_, EndpointError>(a)
                    })
                    .method_async("count", move |_c, _a: serde_json::Value| {
                        let c = c2.clone();
                        async move {
                            c.fetch_add(1, Ordering::Relaxed);
                            Ok::<_, EndpointError>(())
                        }
                    }),
                _ => Endpoint::new("e")
                    .method("echo", |_c, a: serde_json::Value| Ok::<_, EndpointError>(a))
                    .method("count", move |_c, _a: serde_json::Value| {
                        c2.fetch_add(1, Ordering::Relaxed);
                        Ok::<_, EndpointError>(())
                    }),
            };
            let topic = format!("{}{suffix}", topic_for(ex));
            let server = RpcServer::builder(&t, Target::topic(&topic).with_server("s"))
                .bridge(bridge.clone())
                .executor(ex)
                .endpoint(ep)
                .build()
                .expect("server");
            bridge.tokio().block_on(server.start()).expect("start");
            Setup {
                client: RpcClient::new(&t, Target::topic(&topic)).timeout(Duration::from_secs(30)),
                casts,
                _server: server,
            }
        })
    }
}

/// `iters` calls from `concurrency` async callers; returns the wall time.
pub fn calls(e: Executor, iters: u64, concurrency: u64) -> Duration {
    calls_with(bridge(), setup(e), iters, concurrency)
}

/// [`calls`] with tokio on the hub: the callers, the server and its handlers share the hub's
/// thread (the green executor's handlers too).
pub fn calls_on_hub(e: Executor, iters: u64, concurrency: u64) -> Duration {
    calls_with(bridge_on_hub(), setup_on_hub(e), iters, concurrency)
}

fn calls_with(bridge: &Bridge, s: &Setup, iters: u64, concurrency: u64) -> Duration {
    let client = s.client.clone();
    let b = bridge.clone();
    bridge.tokio().block_on(async move {
        let t0 = Instant::now();
        let per = iters.div_ceil(concurrency);
        let mut hs = Vec::new();
        for _ in 0..concurrency {
            let c = client.clone();
            hs.push(b.spawn_on_hub(async move {
                let ctx = RequestContext::new();
                for i in 0..per {
                    let _: Result<serde_json::Value, _> =
                        c.call(&ctx, "echo", json!({"v": i})).await;
                }
            }));
        }
        for h in hs {
            let _ = h.await;
        }
        t0.elapsed()
    })
}

/// `iters` casts, timed until the server has handled all of them.
pub fn casts(e: Executor, iters: u64) -> Duration {
    let s = setup(e);
    let client = s.client.clone();
    let counter = s.casts.clone();
    bridge().tokio().block_on(async move {
        let start = counter.load(Ordering::Relaxed);
        let t0 = Instant::now();
        let ctx = RequestContext::new();
        for i in 0..iters {
            let _ = client.cast(&ctx, "count", json!({"v": i})).await;
        }
        while counter.load(Ordering::Relaxed) - start < iters {
            tokio::task::yield_now().await;
        }
        t0.elapsed()
    })
}

/// A notification endpoint counting what it handles on `ex`: `async` on tokio, blocking-style
/// in green threads and on native threads (how a service writes each).
pub fn counting_endpoint(ex: Executor, handled: Arc<AtomicU64>) -> NotificationEndpoint {
    let ep = NotificationEndpoint::new("e").executor(ex);
    match ex {
        Executor::Tokio => ep.on_async(Priority::Info, move |_n| {
            handled.fetch_add(1, Ordering::AcqRel);
            std::future::ready(NotificationResult::Handled)
        }),
        Executor::Green | Executor::Threads => ep.on(Priority::Info, move |_n| {
            handled.fetch_add(1, Ordering::AcqRel);
            NotificationResult::Handled
        }),
    }
}

struct Listening {
    notifier: Notifier,
    handled: Arc<AtomicU64>,
    _listener: NotificationListener,
}

/// A listener per executor: an `async` endpoint on tokio, blocking-style ones in green threads
/// and on native threads.
fn listening(e: Executor) -> &'static Listening {
    static ALL: OnceLock<[Listening; 3]> = OnceLock::new();
    let all = ALL.get_or_init(|| {
        let t = Transport::new("memory://").expect("transport");
        [Executor::Tokio, Executor::Green, Executor::Threads].map(|ex| {
            let handled = Arc::new(AtomicU64::new(0));
            let ep = counting_endpoint(ex, handled.clone());
            let topic = format!("{}-notify", topic_for(ex));
            let listener = NotificationListener::new(&t, vec![Target::topic(&topic)], vec![ep])
                .bridge(bridge().clone());
            bridge().tokio().block_on(listener.start()).expect("start");
            Listening {
                notifier: Notifier::new(&t, "bench")
                    .driver(NotifyDriver::MessagingV2)
                    .topics(&[&topic]),
                handled,
                _listener: listener,
            }
        })
    });
    match e {
        Executor::Tokio => &all[0],
        Executor::Green => &all[1],
        Executor::Threads => &all[2],
    }
}

/// `iters` notifications from one sender, timed until the listener has handled all of them.
pub fn notifications(e: Executor, iters: u64) -> Duration {
    let l = listening(e);
    let (notifier, counter) = (l.notifier.clone(), l.handled.clone());
    bridge().tokio().block_on(async move {
        let start = counter.load(Ordering::Relaxed);
        let t0 = Instant::now();
        let ctx = RequestContext::new();
        for i in 0..iters {
            notifier.info(&ctx, "bench.event", json!({"v": i})).await;
        }
        while counter.load(Ordering::Relaxed) - start < iters {
            tokio::task::yield_now().await;
        }
        t0.elapsed()
    })
}

/// Baseline: the same request/reply shape over plain tokio channels (an mpsc of requests, a
/// oneshot per reply, a server task spawning a task per request).
pub fn mpsc_baseline(iters: u64, concurrency: u64) -> Duration {
    bridge().tokio().block_on(async move {
        type Req = (
            serde_json::Value,
            tokio::sync::oneshot::Sender<serde_json::Value>,
        );
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Req>();
        tokio::spawn(async move {
            while let Some((v, reply)) = rx.recv().await {
                tokio::spawn(async move {
                    let _ = reply.send(v);
                });
            }
        });
        let t0 = Instant::now();
        let per = iters.div_ceil(concurrency);
        let mut hs = Vec::new();
        for _ in 0..concurrency {
            let tx = tx.clone();
            hs.push(tokio::spawn(async move {
                for i in 0..per {
                    let (rtx, rrx) = tokio::sync::oneshot::channel();
                    let _ = tx.send((json!({"v": i}), rtx));
                    let _ = rrx.await;
                }
            }));
        }
        for h in hs {
            let _ = h.await;
        }
        t0.elapsed()
    })
}
