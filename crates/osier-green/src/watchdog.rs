//! Blocking detection (GREEN-30, done without signals).
//!
//! eventlet arms SIGALRM around each hub turn and raises inside a green thread that runs too
//! long. Here a watchdog OS thread samples each hub's switch counter: a hub whose counter has
//! not moved for longer than the threshold while a green thread is running is being blocked by
//! that green thread (a `std::thread::sleep`, a std `Mutex`, a blocking syscall, a CPU loop).
//! It is reported once per stall through `tracing` (target `osier_green::watchdog`, WARN) with
//! the green thread's id and name, and to an optional callback. A hub driven by an event loop
//! of its own ([`Builder::drive_with`](crate::Builder::drive_with)) counts that loop's own work
//! too (its tasks, between the hub's turns; not its sleep), so a task that blocks the hub's
//! thread is reported as well ([`Culprit::Task`]), by name when it has one. Nothing is raised in the green
//! thread: it cannot be interrupted safely, and the point is to find it.
//!
//! ```
//! use std::sync::{Arc, Mutex};
//! use std::time::Duration;
//!
//! let seen = Arc::new(Mutex::new(Vec::new()));
//! let s2 = seen.clone();
//! let rt = osier_green::Runtime::builder()
//!     .watchdog_with(Duration::from_millis(20), move |r| s2.lock().unwrap().push(r.name.clone()))
//!     .build()
//!     .unwrap();
//! rt.block_on(|| {
//!     osier_green::GreenBuilder::new().name("sleepy").spawn(|| {
//!         std::thread::sleep(Duration::from_millis(150)); // blocks the hub: reported
//!     }).wait().unwrap();
//! }).unwrap();
//! assert_eq!(seen.lock().unwrap()[0].as_deref(), Some("sleepy"));
//! # rt.shutdown_timeout(Duration::from_secs(1)).unwrap();
//! ```

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::hub::{lock, HubShared};

/// What held a hub when the watchdog saw it stalled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Culprit {
    /// A green thread that does not yield.
    GreenThread,
    /// A task of the event loop that drives the hub (osier-bridge's tokio runtime on the hub):
    /// on the hub's thread, a task that blocks stalls the hub's green threads too.
    Task,
}

/// One stall seen by the watchdog.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct BlockedReport {
    /// Index of the blocked hub.
    pub hub: usize,
    /// A green thread, or a task of the loop driving the hub.
    pub culprit: Culprit,
    /// Id of the green thread that is not yielding (0 for a task).
    pub green_thread: u64,
    /// Its name, if it has one (a task's: given to `osier_bridge::Bridge::spawn_on_hub_named`).
    pub name: Option<String>,
    /// How long the hub had been blocked when this was reported.
    pub blocked_for: Duration,
}

pub(crate) type Callback = Arc<dyn Fn(&BlockedReport) + Send + Sync>;

pub(crate) struct WatchdogConfig {
    pub(crate) threshold: Duration,
    pub(crate) callback: Option<Callback>,
}

impl std::fmt::Debug for WatchdogConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WatchdogConfig")
            .field("threshold", &self.threshold)
            .finish()
    }
}

pub(crate) struct Handle {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<()>,
}

impl Handle {
    pub(crate) fn stop(self) {
        self.stop.store(true, Ordering::Release);
        self.thread.thread().unpark();
        let _ = self.thread.join();
    }
}

struct Sample {
    seq: u64,
    since: Instant,
    reported: bool,
}

pub(crate) fn start(hubs: Vec<Arc<HubShared>>, cfg: WatchdogConfig) -> std::io::Result<Handle> {
    let stop = Arc::new(AtomicBool::new(false));
    let st = stop.clone();
    let tick = (cfg.threshold / 4).max(Duration::from_millis(1));
    let thread = std::thread::Builder::new()
        .name("osier-watchdog".into())
        .spawn(move || {
            let mut samples: Vec<Sample> = hubs
                .iter()
                .map(|h| Sample {
                    seq: h.seq.load(Ordering::Acquire),
                    since: Instant::now(),
                    reported: false,
                })
                .collect();
            while !st.load(Ordering::Acquire) {
                std::thread::park_timeout(tick);
                let now = Instant::now();
                for (h, s) in hubs.iter().zip(samples.iter_mut()) {
                    let seq = h.seq.load(Ordering::Acquire);
                    if seq != s.seq {
                        *s = Sample {
                            seq,
                            since: now,
                            reported: false,
                        };
                        continue;
                    }
                    let running = seq % 2 == 1;
                    let blocked_for = now - s.since;
                    if running && !s.reported && blocked_for >= cfg.threshold {
                        s.reported = true;
                        let Some((culprit, id, name)) = lock(&h.running).clone() else {
                            continue;
                        };
                        let report = BlockedReport {
                            hub: h.index,
                            culprit,
                            green_thread: id,
                            name: name.as_deref().map(str::to_string),
                            blocked_for,
                        };
                        match culprit {
                            Culprit::Task => tracing::warn!(
                                target: "osier_green::watchdog",
                                hub = report.hub,
                                task = report.name.as_deref().unwrap_or(""),
                                blocked_ms = blocked_for.as_millis() as u64,
                                "a task on the hub's thread is blocking the hub and its green threads"
                            ),
                            _ => tracing::warn!(
                                target: "osier_green::watchdog",
                                hub = report.hub,
                                green_thread = report.green_thread,
                                name = report.name.as_deref().unwrap_or(""),
                                blocked_ms = blocked_for.as_millis() as u64,
                                "green thread is blocking its hub without yielding"
                            ),
                        }
                        if let Some(cb) = &cfg.callback {
                            cb(&report);
                        }
                    }
                }
            }
        })?;
    Ok(Handle { stop, thread })
}
