//! Blocking detection (GREEN-30, TEST-GREEN-14).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use osier_green::{sleep, BlockedReport, GreenBuilder, Runtime};

fn runtime_with_reports() -> (Runtime, Arc<Mutex<Vec<BlockedReport>>>) {
    let reports = Arc::new(Mutex::new(Vec::new()));
    let r = reports.clone();
    let rt = Runtime::builder()
        .watchdog_with(Duration::from_millis(50), move |rep| {
            r.lock().unwrap().push(rep.clone())
        })
        .build()
        .unwrap();
    (rt, reports)
}

/// The watchdog thread logs through the global `tracing` dispatcher: capture it once per binary.
fn captured_logs() -> Arc<Mutex<Vec<u8>>> {
    static LOGS: std::sync::OnceLock<Arc<Mutex<Vec<u8>>>> = std::sync::OnceLock::new();
    LOGS.get_or_init(|| {
        let logs = Arc::new(Mutex::new(Vec::new()));
        let l2 = logs.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || Writer(l2.clone()))
            .with_ansi(false)
            .finish();
        tracing::subscriber::set_global_default(subscriber).unwrap();
        logs
    })
    .clone()
}

/// TEST-GREEN-14: a green thread blocking its hub in std::thread::sleep is reported, by name,
/// once, and through tracing.
#[test]
fn blocking_sleep_is_reported_with_name() {
    let logs = captured_logs();
    let (rt, reports) = runtime_with_reports();
    let gt = GreenBuilder::new()
        .name("blocker")
        .spawn_on(&rt, || std::thread::sleep(Duration::from_millis(300)));
    gt.wait().unwrap();
    rt.shutdown_timeout(Duration::from_secs(2)).unwrap();
    let reports = reports.lock().unwrap();
    assert_eq!(reports.len(), 1, "reported once per stall: {reports:?}");
    assert_eq!(reports[0].name.as_deref(), Some("blocker"));
    assert_eq!(reports[0].green_thread, gt.id());
    assert!(reports[0].blocked_for >= Duration::from_millis(50));
    let text = String::from_utf8(logs.lock().unwrap().clone()).unwrap();
    assert!(
        text.contains("green thread is blocking its hub") && text.contains("blocker"),
        "tracing output: {text}"
    );
}

/// TEST-GREEN-14: green threads that yield normally are not reported, however long they run.
#[test]
fn yielding_threads_are_not_reported() {
    let (rt, reports) = runtime_with_reports();
    let gts: Vec<_> = (0..10)
        .map(|_| {
            rt.spawn(|| {
                for _ in 0..30 {
                    sleep(Duration::from_millis(5));
                }
            })
        })
        .collect();
    for g in gts {
        g.wait().unwrap();
    }
    rt.shutdown_timeout(Duration::from_secs(2)).unwrap();
    assert!(reports.lock().unwrap().is_empty());
}

#[derive(Clone)]
struct Writer(Arc<Mutex<Vec<u8>>>);
impl std::io::Write for Writer {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
