//! `use_queue_manager`: reply and fanout queue names that stay the same when a service restarts,
//! as oslo's queue manager makes them, so the broker keeps the queues instead of deleting and
//! creating thousands of them on every restart.
//!
//! A name is `<hostname>:<processname>:<n>`. `n` counts the names one *generation* of the
//! service has taken (the master and its forked workers share it), in a counter file shared by
//! every process of that host and process name: `/dev/shm/<hostname>_<processname>_qmanager`,
//! holding `<process group>:<n>:<start time>`, exactly as oslo.messaging 18.x keeps it. A
//! generation is the process group and its leader's start time (from `/proc`, so a recycled
//! pid in a container is not taken for the same service): when either differs from the file's,
//! the service restarted and the count starts again at 1, so the restarted service takes the
//! same names again. Two transports of one process take two numbers.
//!
//! The file is read and written under a POSIX record lock (`fcntl`), the kind Python's
//! `lockutils` takes: on `$OSLO_LOCK_PATH/oslo_read_shm_<hostname>_<processname>` when that
//! variable names oslo's `lock_path` (then osier and Python processes of one name share the
//! numbering safely), on the counter file itself otherwise.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use crate::amqp::options::RabbitOptions;

/// Where oslo keeps the counters.
const SHM: &str = "/dev/shm";

/// The next queue manager name for `opts` (`hostname` and `processname` default to the
/// machine's host name and the program's file name).
pub(crate) fn next_name(opts: &RabbitOptions) -> std::io::Result<String> {
    let host = opts.hostname.clone().unwrap_or_else(machine_hostname);
    let process = opts
        .processname
        .clone()
        .unwrap_or_else(crate::amqp::connection::program_name);
    let lock = std::env::var_os("OSLO_LOCK_PATH")
        .map(|dir| Path::new(&dir).join(format!("oslo_read_shm_{host}_{process}")));
    let n = next_count(
        Path::new(SHM),
        lock.as_deref(),
        &host,
        &process,
        identity()?,
    )?;
    Ok(format!("{host}:{process}:{n}"))
}

fn machine_hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "localhost".into())
}

/// This service generation: the process group, and the start time (clock ticks since boot)
/// of its leader (of this process when the group is 0, as in some container runtimes). A group
/// whose leader has exited (a launcher that started the service in the background and went)
/// counts with start time 0, so that its processes still share one count (oslo fails there).
fn identity() -> std::io::Result<(i64, u64)> {
    // SAFETY: getpgrp takes no arguments, cannot fail and touches no memory of ours.
    let pg = i64::from(unsafe { libc::getpgrp() });
    let of = if pg == 0 {
        i64::from(std::process::id())
    } else {
        pg
    };
    generation(pg, std::fs::read_to_string(format!("/proc/{of}/stat")))
}

/// The generation of group `pg` from its leader's `/proc/<pid>/stat`, as read.
fn generation(pg: i64, leader_stat: std::io::Result<String>) -> std::io::Result<(i64, u64)> {
    match leader_stat {
        Ok(stat) => Ok((pg, start_time(&stat)?)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok((pg, 0)),
        Err(e) => Err(e),
    }
}

/// Field 22 of `/proc/<pid>/stat` (the fields after the command name, which may hold spaces,
/// start at field 3).
fn start_time(stat: &str) -> std::io::Result<u64> {
    let bad = || std::io::Error::other("unexpected /proc/<pid>/stat format");
    let after = stat.rsplit_once(')').ok_or_else(bad)?.1;
    after
        .split_whitespace()
        .nth(19)
        .and_then(|t| t.parse().ok())
        .ok_or_else(bad)
}

/// Takes the next number from the counter file in `dir` for `identity`, under the lock (and,
/// as POSIX record locks belong to the whole process, under a mutex between its threads).
fn next_count(
    dir: &Path,
    lock: Option<&Path>,
    host: &str,
    process: &str,
    (pg, start): (i64, u64),
) -> std::io::Result<u64> {
    static THREADS: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one = crate::lock::lock(&THREADS);
    let path: PathBuf = dir.join(format!("{host}_{process}_qmanager"));
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)?;
    let lock_file = match lock {
        Some(l) => Some(
            OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(false)
                .open(l)?,
        ),
        None => None,
    };
    let _held = Locked::new(lock_file.as_ref().unwrap_or(&file))?;
    let mut io = &file;
    let mut text = String::new();
    io.read_to_string(&mut text)?;
    let mut parts = text.trim().split(':');
    let saved = match (parts.next(), parts.next(), parts.next()) {
        (Some(p), Some(n), Some(t)) => p
            .parse::<i64>()
            .ok()
            .zip(n.parse::<u64>().ok())
            .zip(t.parse::<u64>().ok()),
        _ => None,
    };
    let n = match saved {
        Some(((p, n), t)) if p == pg && t == start => n + 1,
        // No file, a file of another generation, or one we cannot read: start over.
        _ => 1,
    };
    file.set_len(0)?;
    io.rewind()?;
    io.write_all(format!("{pg}:{n}:{start}").as_bytes())?;
    Ok(n)
}

/// A POSIX write lock on a whole file (`fcntl(F_SETLKW)`, what Python's `fcntl.lockf` takes),
/// released on drop.
struct Locked<'a>(&'a File);

impl<'a> Locked<'a> {
    fn new(f: &'a File) -> std::io::Result<Self> {
        set_lock(f, libc::F_WRLCK)?;
        Ok(Locked(f))
    }
}

impl Drop for Locked<'_> {
    fn drop(&mut self) {
        let _ = set_lock(self.0, libc::F_UNLCK);
    }
}

fn set_lock(f: &File, kind: libc::c_int) -> std::io::Result<()> {
    // SAFETY: flock is plain data; all-zero is a valid value (whole file from offset 0).
    let mut fl: libc::flock = unsafe { std::mem::zeroed() };
    fl.l_type = kind as libc::c_short;
    fl.l_whence = libc::SEEK_SET as libc::c_short;
    loop {
        // SAFETY: the descriptor is open for the life of `f`, and `fl` is a valid flock the
        // call only reads.
        let r = unsafe { libc::fcntl(f.as_raw_fd(), libc::F_SETLKW, &fl) };
        if r == 0 {
            return Ok(());
        }
        let e = std::io::Error::last_os_error();
        if e.kind() != std::io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir() -> PathBuf {
        let d = std::env::temp_dir().join(format!("osier-qm-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    /// Within one generation the numbers go on; a new generation (a restart: another process
    /// group or start time) starts again at 1, so it takes the same names again.
    #[test]
    fn numbers_count_per_generation() {
        let d = dir();
        let take = |id| next_count(&d, None, "node1", "nova-api", id).unwrap();
        assert_eq!((take((7, 111)), take((7, 111)), take((7, 111))), (1, 2, 3));
        assert_eq!(take((9, 222)), 1, "another process group");
        assert_eq!(
            take((9, 999)),
            1,
            "the same group id, restarted (another start time)"
        );
        assert_eq!(
            std::fs::read_to_string(d.join("node1_nova-api_qmanager")).unwrap(),
            "9:1:999",
            "oslo's file format"
        );
        let _ = std::fs::remove_dir_all(d);
    }

    /// Threads (as processes would) taking numbers at once each get their own, under the lock
    /// file Python's lockutils uses when a lock path is set.
    #[test]
    fn concurrent_takers_get_distinct_numbers() {
        let d = dir();
        let lock = d.join("oslo_read_shm_h_p");
        let mut all: Vec<u64> = std::thread::scope(|s| {
            let hs: Vec<_> = (0..8)
                .map(|_| {
                    s.spawn(|| {
                        (0..10)
                            .map(|_| next_count(&d, Some(&lock), "h", "p", (1, 1)).unwrap())
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            hs.into_iter().flat_map(|h| h.join().unwrap()).collect()
        });
        all.sort();
        assert_eq!(all, (1..=80).collect::<Vec<_>>());
        let _ = std::fs::remove_dir_all(d);
    }

    /// A group whose leader has exited still has one generation for all its processes.
    #[test]
    fn a_group_without_its_leader_counts_as_one_generation() {
        let gone = || Err(std::io::Error::from(std::io::ErrorKind::NotFound));
        assert_eq!(generation(42, gone()).unwrap(), (42, 0));
        assert_eq!(
            generation(42, gone()).unwrap(),
            generation(42, gone()).unwrap()
        );
        let denied = Err(std::io::Error::from(std::io::ErrorKind::PermissionDenied));
        assert!(
            generation(42, denied).is_err(),
            "other errors are not guessed around"
        );
    }

    /// The start time is read after the command name, which may hold spaces and parentheses.
    #[test]
    fn start_time_is_field_22() {
        let stat = "42 (my (odd) prog) S 1 42 42 0 -1 4194560 1 0 0 0 0 0 0 0 20 0 1 0 98765 1 2";
        assert_eq!(start_time(stat).unwrap(), 98765);
        assert!(identity().is_ok(), "this process's identity can be read");
    }
}
