//! systemd notify through the environment, in a real child process (SVC-SYSD-01): the test
//! binary runs itself again with `NOTIFY_SOCKET` set, as systemd would start a service.

use std::os::unix::net::UnixDatagram;
use std::process::Command;
use std::time::Duration;

use osier_service::systemd::{notify, notify_once, wait_ready, Readiness, State};

/// The child side: runs only when the parent test starts it.
#[test]
fn child_notifies_once() {
    if std::env::var("OSIER_NOTIFY_CHILD").is_err() {
        return;
    }
    assert!(notify_once(State::Ready), "READY=1 sent");
    assert!(!notify(State::Stopping), "forgotten after notify_once");
}

/// READY=1 arrives once; after `notify_once` the process stays silent.
#[test]
fn a_child_sends_ready_once_through_notify_socket() {
    let path = std::env::temp_dir().join(format!("osier-sd-{}", std::process::id()));
    let _ = std::fs::remove_file(&path);
    let sock = UnixDatagram::bind(&path).unwrap();
    let status = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "child_notifies_once", "--test-threads=1"])
        .env("OSIER_NOTIFY_CHILD", "1")
        .env("NOTIFY_SOCKET", &path)
        .stdout(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(status.success(), "the child's assertions failed");
    assert_eq!(
        wait_ready(&sock, Duration::from_secs(5)).unwrap(),
        Readiness::Ready
    );
    assert_eq!(
        wait_ready(&sock, Duration::from_millis(100)).unwrap(),
        Readiness::Timeout
    );
    let _ = std::fs::remove_file(&path);
}

/// Without NOTIFY_SOCKET nothing is sent and nothing fails.
#[test]
fn without_notify_socket_nothing_is_sent() {
    if std::env::var("NOTIFY_SOCKET").is_ok() {
        return; // running under systemd: not this test's business
    }
    assert!(!notify(State::Ready));
}
