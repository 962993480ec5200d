//! What osier records through the `metrics` facade, read back from a debugging recorder:
//! notifications per priority, requeues, RPC counters per method with oslo.metrics' labels.
//! One test: the recorder is process-wide and a snapshot drains it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use metrics_util::debugging::{DebugValue, DebuggingRecorder};
use osier_messaging::metrics as m;
use osier_messaging::{
    NotificationEndpoint, NotificationListener, NotificationResult, Priority, RequestContext,
    RpcClient, Target, Transport,
};
use serde_json::json;

mod common;
use common::{block, bridge, echo_server, notifier, until};

/// `(name, labels sorted as "k=v")` -> value.
type Seen = HashMap<(String, Vec<String>), DebugValue>;

fn value<'a>(seen: &'a Seen, name: &str, labels: &[&str]) -> Option<&'a DebugValue> {
    seen.iter()
        .find(|((n, l), _)| {
            n == name && labels.iter().all(|want| l.iter().any(|have| have == want))
        })
        .map(|(_, v)| v)
}

#[test]
fn notifications_requeues_and_rpc_calls_are_counted_with_oslo_labels() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    recorder.install().unwrap();

    block(async {
        let t = Transport::new("memory://").unwrap();
        // Notifications: two INFO, one ERROR; the first INFO is requeued once.
        let requeued_once = Arc::new(AtomicBool::new(false));
        let handled = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let (r2, h2) = (requeued_once.clone(), handled.clone());
        let ep = NotificationEndpoint::new("e")
            .on(Priority::Info, move |_n| {
                if !r2.swap(true, Ordering::SeqCst) {
                    return NotificationResult::Requeue;
                }
                h2.fetch_add(1, Ordering::SeqCst);
                NotificationResult::Handled
            })
            .on(Priority::Error, {
                let h3 = handled.clone();
                move |_n| {
                    h3.fetch_add(1, Ordering::SeqCst);
                    NotificationResult::Handled
                }
            });
        let listener = NotificationListener::new(&t, vec![Target::topic("metered-n")], vec![ep])
            .bridge(bridge().clone())
            .allow_requeue(true);
        listener.start().await.unwrap();
        let n = notifier(&t, "metered-n");
        let ctx = RequestContext::new();
        n.info(&ctx, "a", json!({})).await;
        n.info(&ctx, "b", json!({})).await;
        n.error(&ctx, "c", json!({})).await;
        until("three handled", Duration::from_secs(5), || {
            handled.load(Ordering::SeqCst) == 3
        })
        .await;
        listener.stop().await;

        // RPC: two calls of echo.
        let server = echo_server(&t, "metered-rpc", "s");
        server.start().await.unwrap();
        let client =
            RpcClient::new(&t, Target::topic("metered-rpc")).timeout(Duration::from_secs(5));
        for i in 0..2 {
            let _: serde_json::Value = client.call(&ctx, "echo", json!({ "i": i })).await.unwrap();
        }
        server.stop().await.unwrap();
        server.wait().await.unwrap();
    });

    let seen: Seen = snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .map(|(ck, _, _, v)| {
            let key = ck.key();
            let mut labels: Vec<String> = key
                .labels()
                .map(|l| format!("{}={}", l.key(), l.value()))
                .collect();
            labels.sort();
            ((key.name().to_string(), labels), v)
        })
        .collect();
    assert_eq!(
        value(&seen, m::NOTIFICATIONS_SENT_TOTAL, &["priority=info"]),
        Some(&DebugValue::Counter(2))
    );
    assert_eq!(
        value(&seen, m::NOTIFICATIONS_SENT_TOTAL, &["priority=error"]),
        Some(&DebugValue::Counter(1))
    );
    assert_eq!(
        value(&seen, m::NOTIFICATIONS_RECEIVED_TOTAL, &["priority=info"]),
        Some(&DebugValue::Counter(3)),
        "the requeued one arrives twice"
    );
    assert_eq!(
        value(&seen, m::MESSAGES_REQUEUED_TOTAL, &["kind=notification"]),
        Some(&DebugValue::Counter(1))
    );
    let client_labels = [
        "method=echo",
        "call_type=call",
        "topic=metered-rpc",
        "exchange=None",
        "namespace=None",
        "version=None",
        "server=None",
        "fanout=False",
        "timeout=None",
        "process=",
    ];
    assert_eq!(
        value(&seen, m::RPC_CLIENT_INVOCATION_START_TOTAL, &client_labels),
        Some(&DebugValue::Counter(2))
    );
    assert_eq!(
        value(&seen, m::RPC_CLIENT_INVOCATION_END_TOTAL, &client_labels),
        Some(&DebugValue::Counter(2))
    );
    match value(&seen, m::RPC_CLIENT_PROCESSING_SECONDS, &client_labels) {
        Some(DebugValue::Histogram(v)) => assert_eq!(v.len(), 2),
        other => panic!("client histogram: {other:?}"),
    }
    assert_eq!(
        value(
            &seen,
            m::RPC_CLIENT_IN_FLIGHT,
            &["method=echo", "call_type=call"]
        ),
        Some(&DebugValue::Gauge(0.0.into())),
        "nothing left in flight"
    );
    assert_eq!(
        value(
            &seen,
            m::RPC_SERVER_INVOCATION_END_TOTAL,
            &["method=echo", "endpoint=e", "topic=metered-rpc", "server=s"]
        ),
        Some(&DebugValue::Counter(2))
    );
}
