//! The blocking detector with tokio on the hub's thread (GREEN-30): a task of the hub's runtime
//! that blocks the thread stalls the hub's green threads too, so it is reported (by name when
//! it has one); a runtime that is merely busy with short tasks, or idle, is not. One test, as
//! the reports are read from the process's one log.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use osier_bridge::Bridge;
use tracing_subscriber::fmt::MakeWriter;

#[derive(Clone, Default)]
struct Log(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Log {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Log {
    type Writer = Log;
    fn make_writer(&'a self) -> Log {
        self.clone()
    }
}

impl Log {
    /// What was logged since the last call.
    fn take(&self) -> String {
        String::from_utf8(std::mem::take(&mut *self.0.lock().unwrap())).unwrap()
    }
}

#[test]
fn blocking_tasks_on_the_hub_are_reported_and_busy_or_idle_runtimes_are_not() {
    let log = Log::default();
    tracing_subscriber::fmt()
        .with_writer(log.clone())
        .with_ansi(false)
        .with_max_level(tracing::Level::WARN)
        .init();
    let b = Bridge::builder()
        .green_hubs(1)
        .tokio_workers(1)
        .watchdog(Duration::from_millis(60))
        .tokio_on_hubs()
        .build()
        .unwrap();
    let run = |f: tokio::task::JoinHandle<()>| b.tokio().block_on(f).unwrap();

    // Idle for several thresholds: nothing to report.
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(log.take(), "", "an idle hub runtime was reported");

    // Busy with short tasks for several thresholds: the runtime keeps turning.
    let tasks: Vec<_> = (0..4)
        .map(|_| {
            b.spawn_on_hub(async {
                let t0 = Instant::now();
                while t0.elapsed() < Duration::from_millis(300) {
                    let s = Instant::now();
                    while s.elapsed() < Duration::from_micros(200) {
                        std::hint::spin_loop();
                    }
                    tokio::task::yield_now().await;
                }
            })
        })
        .collect();
    for t in tasks {
        run(t);
    }
    assert_eq!(
        log.take(),
        "",
        "a busy but turning hub runtime was reported"
    );

    // A named task that blocks the thread: reported by name, as a task.
    run(b.spawn_on_hub_named("slow-import", async {
        std::thread::sleep(Duration::from_millis(300));
    }));
    std::thread::sleep(Duration::from_millis(50));
    let out = log.take();
    assert!(
        out.contains("a task on the hub's thread is blocking the hub")
            && out.contains("task=\"slow-import\""),
        "{out}"
    );

    // An unnamed one: reported as a task all the same.
    run(b.spawn_on_hub(async {
        std::thread::sleep(Duration::from_millis(300));
    }));
    std::thread::sleep(Duration::from_millis(50));
    let out = log.take();
    assert!(
        out.contains("a task on the hub's thread is blocking the hub"),
        "{out}"
    );

    // A green thread that blocks is still named as one.
    let blocked = osier_green::GreenBuilder::new()
        .name("sleepy-green")
        .spawn_on(b.green(), || std::thread::sleep(Duration::from_millis(300)));
    blocked.wait().unwrap();
    std::thread::sleep(Duration::from_millis(50));
    let out = log.take();
    assert!(
        out.contains("green thread is blocking its hub") && out.contains("name=\"sleepy-green\""),
        "{out}"
    );
    b.shutdown_timeout(Duration::from_secs(5)).unwrap();
}
