//! What a stage run measured, as one JSON line (a stage runs in a process of its own, so its
//! CPU, threads and memory are its own) and as the closing table.

use serde::{Deserialize, Serialize};

use crate::load::LoadReport;
use crate::stage::Stage;

/// One stage's figures.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StageReport {
    /// 0 to 3.
    pub stage: u8,
    /// `memory` or `rabbit`.
    pub transport: String,
    /// `sqlite` or `postgres`.
    pub db: String,
    /// Samples published, stored and checked.
    pub samples: u64,
    /// Stored samples per second.
    pub samples_per_s: f64,
    /// API queries answered while samples flowed.
    pub queries: u64,
    /// Their round trip, median, milliseconds.
    pub query_p50_ms: f64,
    /// 99th percentile.
    pub query_p99_ms: f64,
    /// CPU seconds (user + system) the process used for the run.
    pub cpu_s: f64,
    /// The most OS threads the process had.
    pub threads: u64,
    /// The process's peak resident memory, MiB.
    pub rss_mib: f64,
    /// Resource/counter pairs checked exactly.
    pub checked: usize,
    /// Notifications dropped as not samples.
    pub refused: u64,
}

impl StageReport {
    /// The figures of `load` and of this process.
    pub fn new(
        stage: Stage,
        transport: &str,
        db: &str,
        load: &LoadReport,
        cpu_s: f64,
        threads: u64,
        refused: u64,
    ) -> Self {
        let ms = |d: std::time::Duration| d.as_secs_f64() * 1e3;
        StageReport {
            stage: stage.number(),
            transport: transport.into(),
            db: db.into(),
            samples: load.samples,
            samples_per_s: load.samples_per_s(),
            queries: load.query_latencies.len() as u64,
            query_p50_ms: ms(load.query_quantile(0.5)),
            query_p99_ms: ms(load.query_quantile(0.99)),
            cpu_s,
            threads,
            rss_mib: process::peak_rss_kib() as f64 / 1024.0,
            checked: load.checked,
            refused,
        }
    }

    /// CPU milliseconds per thousand samples.
    pub fn cpu_ms_per_ksample(&self) -> f64 {
        self.cpu_s * 1e3 / (self.samples as f64 / 1e3).max(1e-9)
    }
}

/// The closing table, in Markdown (it reads as a table in a terminal too).
pub fn table(reports: &[StageReport]) -> String {
    let mut t = String::from(
        "| stage | samples/s | query p50 ms | query p99 ms | CPU s | CPU ms / 1k samples | OS threads | peak RSS MiB | checked |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|---|\n",
    );
    for r in reports {
        let name = Stage::from_number(r.stage)
            .map(|s| s.describe())
            .unwrap_or("?");
        t.push_str(&format!(
            "| {} {} | {:.0} | {:.2} | {:.2} | {:.2} | {:.1} | {} | {:.1} | {} samples, {} series |\n",
            r.stage,
            name,
            r.samples_per_s,
            r.query_p50_ms,
            r.query_p99_ms,
            r.cpu_s,
            r.cpu_ms_per_ksample(),
            r.threads,
            r.rss_mib,
            r.samples,
            r.checked
        ));
    }
    t
}

/// Figures of this process, from the kernel.
pub mod process {
    /// User + system CPU seconds so far.
    pub fn cpu_seconds() -> f64 {
        let mut u = std::mem::MaybeUninit::<libc::rusage>::zeroed();
        // SAFETY: `u` points to writable memory the size of a `rusage`, which getrusage fills
        // (zeroed first, so it is initialised whatever the call does).
        let rc = unsafe { libc::getrusage(libc::RUSAGE_SELF, u.as_mut_ptr()) };
        if rc != 0 {
            return 0.0;
        }
        // SAFETY: zero-initialised above and filled by a successful getrusage.
        let u = unsafe { u.assume_init() };
        let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
        tv(u.ru_utime) + tv(u.ru_stime)
    }

    fn status(field: &str) -> u64 {
        std::fs::read_to_string("/proc/self/status")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix(field))
                    .and_then(|v| v.split_whitespace().next()?.parse().ok())
            })
            .unwrap_or(0)
    }

    /// OS threads now.
    pub fn threads() -> u64 {
        status("Threads:")
    }

    /// Peak resident memory, KiB.
    pub fn peak_rss_kib() -> u64 {
        status("VmHWM:")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_has_threads_memory_and_cpu() {
        assert!(process::threads() >= 1);
        assert!(process::peak_rss_kib() > 0);
        let t0 = process::cpu_seconds();
        let mut x = 0_u64;
        for i in 0..5_000_000_u64 {
            x = x.wrapping_add(i * i);
        }
        std::hint::black_box(x);
        assert!(process::cpu_seconds() > t0);
    }
}
