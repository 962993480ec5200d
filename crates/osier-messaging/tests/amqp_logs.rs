//! What an operator reads while the broker is unreachable: one WARN per connect round naming
//! every host tried, why each failed and when the next round is, in words rather than debug
//! structures. (This binary installs a global log subscriber, so it holds only log tests.)

use std::sync::{Arc, Mutex};

use osier_messaging::{RequestContext, RpcClient, Target, Transport};
use tracing_subscriber::layer::SubscriberExt;

mod common;
use common::block;

/// One log event: level, target, and its fields as `name=value` text.
#[derive(Debug, Clone)]
struct Line {
    level: tracing::Level,
    target: String,
    text: String,
}

#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<Line>>>);

impl Capture {
    /// Serializes the tests; the lines logged from now on are the caller's.
    fn mark(&self) -> (std::sync::MutexGuard<'static, ()>, usize) {
        static ONE: Mutex<()> = Mutex::new(());
        let guard = ONE.lock().unwrap_or_else(|e| e.into_inner());
        (guard, self.0.lock().unwrap().len())
    }

    fn since(&self, start: usize) -> Vec<Line> {
        self.0.lock().unwrap()[start..].to_vec()
    }
}

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Capture {
    fn on_event(&self, e: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        struct V(String);
        impl tracing::field::Visit for V {
            fn record_debug(&mut self, f: &tracing::field::Field, v: &dyn std::fmt::Debug) {
                self.0.push_str(&format!("{}={:?} ", f.name(), v));
            }
            fn record_str(&mut self, f: &tracing::field::Field, v: &str) {
                self.0.push_str(&format!("{}={} ", f.name(), v));
            }
        }
        let mut v = V(String::new());
        e.record(&mut v);
        self.0.lock().unwrap().push(Line {
            level: *e.metadata().level(),
            target: e.metadata().target().to_string(),
            text: v.0,
        });
    }
}

/// The binary's one subscriber, shared by its tests. They run one at a time (hold the guard)
/// and read the lines logged after [`Capture::mark`].
fn capture() -> Capture {
    static C: std::sync::OnceLock<Capture> = std::sync::OnceLock::new();
    C.get_or_init(|| {
        let c = Capture::default();
        tracing::subscriber::set_global_default(tracing_subscriber::registry().with(c.clone()))
            .expect("the only subscriber of this test binary");
        c
    })
    .clone()
}

/// An option set to a value osier cannot honour is one WARN naming it, and so is a URL query
/// parameter the driver does not know (a typo would otherwise go unseen).
#[test]
fn options_not_honoured_and_unknown_parameters_are_warned_naming_them() {
    let logs = capture();
    let (_one, start) = logs.mark();
    let typo = format!("rabit_typo_{}", uuid::Uuid::new_v4().simple());
    let _t = Transport::new(&format!(
        "rabbit://guest:guest@127.0.0.1:1/?heartbeat_rate=5&{typo}=1"
    ))
    .unwrap();
    let lines = logs.since(start);
    let warned = |what: &str| {
        lines
            .iter()
            .filter(|l| l.level == tracing::Level::WARN && l.text.contains(what))
            .count()
    };
    assert_eq!(warned(&typo), 1, "{lines:?}");
    assert_eq!(warned("heartbeat_rate=5"), 1, "{lines:?}");
}

/// Two dead hosts, a cast with `retry(2)`: three connect rounds. Each round that is followed by
/// another is one WARN naming both hosts and the wait before the next; no round logs a line per
/// host, and no osier line shows a debug structure.
#[test]
fn a_failed_connect_round_is_one_warning_naming_each_host_and_the_next_delay() {
    let logs = capture();
    let (_one, start) = logs.mark();
    let t = Transport::new(
        "rabbit://guest:guest@127.0.0.1:1,guest:guest@127.0.0.1:2/?kombu_reconnect_delay=0&rabbit_retry_interval=0.1&rabbit_retry_backoff=0&rabbit_interval_max=0.1",
    )
    .unwrap();
    block(async {
        let e = RpcClient::new(&t, Target::topic("osier-logs"))
            .retry(2)
            .cast(&RequestContext::new(), "m", serde_json::json!({}))
            .await
            .unwrap_err();
        assert!(e.to_string().contains("127.0.0.1:1"), "{e}");
    });
    let lines = logs.since(start);
    let ours: Vec<&Line> = lines
        .iter()
        .filter(|l| l.target.starts_with("osier_messaging") && l.level <= tracing::Level::WARN)
        .collect();
    let rounds: Vec<&&Line> = ours
        .iter()
        .filter(|l| l.text.contains("publisher cannot reach the broker"))
        .collect();
    assert_eq!(
        rounds.len(),
        2,
        "one WARN per round followed by another: {ours:#?}"
    );
    for l in &rounds {
        assert!(
            l.text.contains("127.0.0.1:1") && l.text.contains("127.0.0.1:2"),
            "{l:?}"
        );
        assert!(l.text.contains("retry_in_s=0.1"), "{l:?}");
    }
    assert_eq!(ours.len(), rounds.len(), "nothing else at WARN: {ours:#?}");
    for l in &ours {
        assert!(
            !l.text.contains("Error {") && !l.text.contains("kind:"),
            "a debug structure in an operator's line: {l:?}"
        );
    }
}
