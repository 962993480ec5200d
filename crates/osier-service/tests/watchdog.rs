//! The service launcher's systemd watchdog, in a real child process started as systemd starts
//! a unit with `WatchdogSec=`: `NOTIFY_SOCKET` and `WATCHDOG_USEC` set. `WATCHDOG=1` arrives
//! at half the interval while every service is healthy, and stops while one is not.

use std::os::unix::net::UnixDatagram;
use std::process::Command;
use std::time::{Duration, Instant};

use osier_service::{launch, BoxError, LauncherOptions, Service};

/// Healthy for its first second, then not for a second, then healthy again; stops on its
/// own after three seconds.
struct Wobbly {
    t0: std::sync::Mutex<Option<Instant>>,
}

impl Wobbly {
    fn since_start(&self) -> Duration {
        self.t0
            .lock()
            .unwrap()
            .map_or(Duration::ZERO, |t| t.elapsed())
    }
}

#[async_trait::async_trait]
impl Service for Wobbly {
    async fn start(&self) -> Result<(), BoxError> {
        *self.t0.lock().unwrap() = Some(Instant::now());
        Ok(())
    }
    async fn stop(&self, _graceful: bool) -> Result<(), BoxError> {
        Ok(())
    }
    async fn wait(&self) -> Result<(), BoxError> {
        tokio::time::sleep(Duration::from_secs(3)).await;
        Ok(())
    }
    fn health(&self) -> Result<(), String> {
        let t = self.since_start();
        if t >= Duration::from_secs(1) && t < Duration::from_secs(2) {
            Err("deaf for a while".into())
        } else {
            Ok(())
        }
    }
}

/// The child side: runs only when the parent test starts it.
#[test]
fn child_runs_a_wobbly_service() {
    if std::env::var("OSIER_WATCHDOG_CHILD").is_err() {
        return;
    }
    let launcher = launch(
        LauncherOptions::new(),
        |_ctx| {
            Ok::<_, BoxError>(Wobbly {
                t0: std::sync::Mutex::new(None),
            })
        },
        None,
    )
    .unwrap();
    assert_eq!(launcher.wait(), 0);
}

/// WATCHDOG=1 every ~100 ms while healthy, none for the second the service is not, then again.
#[test]
fn the_watchdog_is_pinged_only_while_every_service_is_healthy() {
    let path = std::env::temp_dir().join(format!("osier-wd-{}", std::process::id()));
    let _ = std::fs::remove_file(&path);
    let sock = UnixDatagram::bind(&path).unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "child_runs_a_wobbly_service", "--test-threads=1"])
        .env("OSIER_WATCHDOG_CHILD", "1")
        .env("NOTIFY_SOCKET", &path)
        .env("WATCHDOG_USEC", "200000")
        .env_remove("WATCHDOG_PID")
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut ready: Option<Instant> = None;
    let mut pings: Vec<Duration> = Vec::new();
    let t0 = Instant::now();
    let mut buf = [0u8; 256];
    while t0.elapsed() < Duration::from_secs(10) {
        match sock.recv(&mut buf) {
            Ok(n) => {
                let msg = String::from_utf8_lossy(&buf[..n]).to_string();
                match msg.trim() {
                    "READY=1" => ready = Some(Instant::now()),
                    "WATCHDOG=1" => {
                        let at = ready.expect("READY=1 comes before any WATCHDOG=1");
                        pings.push(at.elapsed());
                    }
                    "STOPPING=1" => break,
                    _ => {}
                }
            }
            Err(_) => {
                if child.try_wait().unwrap().is_some() {
                    break;
                }
            }
        }
    }
    let status = child.wait().unwrap();
    let _ = std::fs::remove_file(&path);
    assert!(status.success(), "the child's assertions failed");
    let before = pings.iter().filter(|p| p.as_secs_f64() < 0.9).count();
    let during = pings
        .iter()
        .filter(|p| (1.2..1.9).contains(&p.as_secs_f64()))
        .count();
    let after = pings.iter().filter(|p| p.as_secs_f64() > 2.3).count();
    assert!(before >= 4, "pings while healthy: {pings:?}");
    assert_eq!(during, 0, "no ping while a service is unhealthy: {pings:?}");
    assert!(after >= 2, "pings once healthy again: {pings:?}");
}
