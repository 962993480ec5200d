//! Criterion benches of in-memory RPC per executor beside a tokio mpsc baseline. The
//! table is `cargo xtask bench-messaging`.

use criterion::{criterion_group, criterion_main, Criterion};
use osier_benches::messaging as m;
use osier_messaging::Executor;

fn rpc(c: &mut Criterion) {
    let mut g = c.benchmark_group("rpc_in_memory");
    for (name, e) in [
        ("tokio", Executor::Tokio),
        ("green", Executor::Green),
        ("threads", Executor::Threads),
    ] {
        g.bench_function(format!("call_1_caller_{name}"), |x| {
            x.iter_custom(|n| m::calls(e, n, 1))
        });
        g.bench_function(format!("call_16_callers_{name}"), |x| {
            x.iter_custom(|n| m::calls(e, n, 16))
        });
        g.bench_function(format!("cast_{name}"), |x| {
            x.iter_custom(|n| m::casts(e, n))
        });
    }
    g.bench_function("baseline_mpsc_1_caller", |x| {
        x.iter_custom(|n| m::mpsc_baseline(n, 1))
    });
    g.bench_function("baseline_mpsc_16_callers", |x| {
        x.iter_custom(|n| m::mpsc_baseline(n, 16))
    });
    g.finish();
}

criterion_group!(benches, rpc);
criterion_main!(benches);
