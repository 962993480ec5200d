//! The load generator: plays the rest of the fleet. It publishes samples as
//! `compute.instance.exists` notifications (as nova-compute would), queries the API while they
//! flow (as a dashboard would), and at the end checks every answer against what it sent: every
//! resource's statistics and samples, exactly. It keeps at most two batches ahead of what is
//! stored, so the backlog waits in the broker and the figures are the service's pace.
//!
//! Each run uses a project and resources of its own, so runs (and stages) can share a
//! database, and a check only ever looks at its own samples.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use osier_messaging::{
    MessagingError, Notifier, NotifyDriver, Priority, RequestContext, RpcClient, Target, Transport,
};
use serde_json::json;

use crate::sample::Sample;
use crate::store::{Statistics, StoredSample, MAX_SAMPLES_PER_QUERY};
use crate::{api, listener};

/// The counters every resource reports.
pub const COUNTERS: [&str; 2] = ["cpu_time", "memory.usage"];

/// How hard and how long to push.
#[derive(Debug, Clone)]
pub struct LoadConfig {
    /// How long to publish samples.
    pub duration: Duration,
    /// How many instances report (each with every counter of [`COUNTERS`]).
    pub resources: usize,
    /// Samples published at once before checking how far storage has got.
    pub batch: usize,
    /// Concurrent API clients querying while samples flow.
    pub queriers: usize,
    /// How long storage and aggregation may take to catch up at the end.
    pub settle_timeout: Duration,
}

impl Default for LoadConfig {
    fn default() -> Self {
        LoadConfig {
            duration: Duration::from_secs(3),
            resources: 20,
            batch: 200,
            queriers: 2,
            settle_timeout: Duration::from_secs(60),
        }
    }
}

/// Where a run is, for a progress bar.
#[derive(Debug, Clone, Copy)]
pub struct Progress {
    /// Seconds of publishing done (at most the configured duration).
    pub elapsed: Duration,
    /// Samples published.
    pub sent: u64,
    /// Samples stored.
    pub stored: u64,
}

/// What a run measured and checked.
#[derive(Debug, Clone, Default)]
pub struct LoadReport {
    /// Samples published and found stored.
    pub samples: u64,
    /// From the first publish until every sample was stored.
    pub ingest: Duration,
    /// API queries answered while samples flowed, with their round trips.
    pub query_latencies: Vec<Duration>,
    /// Resource/counter pairs whose statistics and samples were checked exactly.
    pub checked: usize,
}

impl LoadReport {
    /// Stored samples per second.
    pub fn samples_per_s(&self) -> f64 {
        self.samples as f64 / self.ingest.as_secs_f64().max(1e-9)
    }

    /// The `q` quantile (0..=1) of the query round trips.
    pub fn query_quantile(&self, q: f64) -> Duration {
        let mut v = self.query_latencies.clone();
        v.sort();
        if v.is_empty() {
            return Duration::ZERO;
        }
        let i = ((v.len() - 1) as f64 * q).round() as usize;
        v[i.min(v.len() - 1)]
    }
}

/// Why a run failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LoadError {
    /// An API call failed.
    #[error("the metering API failed: {0}")]
    Api(#[from] MessagingError),
    /// Storage did not catch up within the settle timeout.
    #[error("{stored} of {sent} samples stored after {waited:?}")]
    Stalled {
        /// Published.
        sent: u64,
        /// Stored.
        stored: u64,
        /// How long the run waited.
        waited: Duration,
    },
    /// An answer differs from what was sent.
    #[error("wrong answer: {0}")]
    Mismatch(String),
}

/// ISO 8601 time of sample `seq`: one millisecond apart from 2026-12-02T00:00:00, so they sort
/// as text in the order they were sent.
fn timestamp(seq: u64) -> String {
    let ms = seq % (24 * 3600 * 1000);
    let (h, rest) = (ms / 3_600_000, ms % 3_600_000);
    let (m, rest) = (rest / 60_000, rest % 60_000);
    let (s, milli) = (rest / 1000, rest % 1000);
    format!("2026-12-02T{h:02}:{m:02}:{s:02}.{:06}", milli * 1000)
}

/// Sample `seq` of a run: resource and counter in turn, a volume that varies.
fn sample(project: &str, resources: usize, seq: u64) -> Sample {
    let pairs = (resources * COUNTERS.len()) as u64;
    let pair = (seq % pairs) as usize;
    Sample {
        message_id: uuid::Uuid::new_v4().to_string(),
        project_id: project.to_string(),
        resource_id: format!("{project}-vm-{}", pair / COUNTERS.len()),
        counter_name: COUNTERS[pair % COUNTERS.len()].to_string(),
        volume: ((seq * 7919) % 1000) as i64 + 1,
        timestamp: timestamp(seq),
    }
}

type Expected = BTreeMap<(String, String), Vec<StoredSample>>;

/// Runs the fleet's side against the metering service on `transport`; `progress` is called
/// several times a second.
pub async fn run(
    transport: &Transport,
    cfg: &LoadConfig,
    progress: impl Fn(Progress),
) -> Result<LoadReport, LoadError> {
    let project = format!("demo-{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
    let notifier = Notifier::new(transport, "compute.demo-host")
        .driver(NotifyDriver::MessagingV2)
        .topics(&[listener::TOPIC]);
    let client = RpcClient::new(
        transport,
        Target::topic(api::TOPIC).with_namespace(api::NAMESPACE),
    )
    .timeout(Duration::from_secs(30));
    let ctx = RequestContext::with_new_request_id();
    let count = || async {
        client
            .call::<i64>(&ctx, "count_samples", json!({"project_id": project}))
            .await
            .map(|n| n.max(0) as u64)
    };

    let stop = Arc::new(AtomicBool::new(false));
    let mut queriers = Vec::new();
    for q in 0..cfg.queriers {
        let (client, stop) = (client.clone(), stop.clone());
        let resource = format!("{project}-vm-{}", q % cfg.resources.max(1));
        queriers.push(tokio::spawn(async move {
            let ctx = RequestContext::with_new_request_id();
            let mut mine = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let t0 = Instant::now();
                let args = json!({"resource_id": resource, "counter_name": COUNTERS[0]});
                client.call::<Statistics>(&ctx, "statistics", args).await?;
                mine.push(t0.elapsed());
                let t0 = Instant::now();
                let args =
                    json!({"resource_id": resource, "counter_name": COUNTERS[0], "limit": 10});
                client
                    .call::<Vec<StoredSample>>(&ctx, "get_samples", args)
                    .await?;
                mine.push(t0.elapsed());
            }
            Ok::<_, MessagingError>(mine)
        }));
    }

    let mut expected = Expected::new();
    let start = Instant::now();
    let (mut sent, mut stored) = (0_u64, 0_u64);
    let window = 2 * cfg.batch as u64;
    while start.elapsed() < cfg.duration {
        let batch: Vec<Sample> = (sent..sent + cfg.batch as u64)
            .map(|seq| sample(&project, cfg.resources, seq))
            .collect();
        futures::future::join_all(batch.iter().map(|s| {
            notifier.notify(
                &ctx,
                Priority::Info,
                "compute.instance.exists",
                s.to_payload(),
            )
        }))
        .await;
        for s in batch {
            expected
                .entry((s.resource_id, s.counter_name))
                .or_default()
                .push(StoredSample {
                    message_id: s.message_id,
                    volume: s.volume,
                    timestamp: s.timestamp,
                });
        }
        sent += cfg.batch as u64;
        // At most two batches ahead of storage: the rest of the backlog is the broker's.
        loop {
            stored = count().await?;
            progress(Progress {
                elapsed: start.elapsed().min(cfg.duration),
                sent,
                stored,
            });
            if sent.saturating_sub(stored) <= window {
                break;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
    stop.store(true, Ordering::Relaxed);

    let deadline = Instant::now() + cfg.settle_timeout;
    while stored < sent {
        if Instant::now() > deadline {
            return Err(LoadError::Stalled {
                sent,
                stored,
                waited: cfg.settle_timeout,
            });
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
        stored = count().await?;
    }
    let ingest = start.elapsed();
    progress(Progress {
        elapsed: cfg.duration,
        sent,
        stored,
    });
    let mut query_latencies = Vec::new();
    for q in queriers {
        match q.await {
            Ok(r) => query_latencies.extend(r?),
            Err(e) => return Err(LoadError::Mismatch(format!("a querier failed: {e}"))),
        }
    }
    let checked = check(&client, &ctx, &expected, deadline).await?;
    Ok(LoadReport {
        samples: sent,
        ingest,
        query_latencies,
        checked,
    })
}

/// Every pair's statistics (once the periodic task has folded them all) and first samples,
/// against what was sent.
async fn check(
    client: &RpcClient,
    ctx: &RequestContext,
    expected: &Expected,
    deadline: Instant,
) -> Result<usize, LoadError> {
    for ((resource, counter), want) in expected {
        let want_stats = Statistics {
            count: want.len() as i64,
            sum: want.iter().map(|s| s.volume).sum(),
            min: want.iter().map(|s| s.volume).min(),
            max: want.iter().map(|s| s.volume).max(),
        };
        let args = json!({"resource_id": resource, "counter_name": counter});
        loop {
            let got: Statistics = client.call(ctx, "statistics", args.clone()).await?;
            if got == want_stats {
                break;
            }
            if got.count > want_stats.count || Instant::now() > deadline {
                return Err(LoadError::Mismatch(format!(
                    "statistics of {resource}/{counter}: {got:?}, sent {want_stats:?}"
                )));
            }
            // Not folded yet: the periodic task runs every few hundred milliseconds.
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let args = json!({"resource_id": resource, "counter_name": counter, "limit": MAX_SAMPLES_PER_QUERY});
        let got: Vec<StoredSample> = client.call(ctx, "get_samples", args).await?;
        let first = &want[..want.len().min(MAX_SAMPLES_PER_QUERY as usize)];
        if got != first {
            return Err(LoadError::Mismatch(format!(
                "get_samples of {resource}/{counter}: {} samples, {} expected, first difference at {:?}",
                got.len(),
                first.len(),
                got.iter().zip(first).position(|(a, b)| a != b)
            )));
        }
    }
    Ok(expected.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_sort_in_sending_order() {
        let t: Vec<String> = [0, 1, 999, 1000, 59_999, 3_600_000]
            .iter()
            .map(|s| timestamp(*s))
            .collect();
        assert!(t.windows(2).all(|w| w[0] < w[1]), "{t:?}");
        assert_eq!(t[0], "2026-12-02T00:00:00.000000");
        assert_eq!(t[5], "2026-12-02T01:00:00.000000");
    }

    #[test]
    fn samples_cycle_through_resources_and_counters() {
        let s: Vec<Sample> = (0..4).map(|i| sample("p", 2, i)).collect();
        assert_eq!(s[0].resource_id, "p-vm-0");
        assert_eq!(s[1].counter_name, COUNTERS[1]);
        assert_eq!(s[2].resource_id, "p-vm-1");
        assert!(s
            .iter()
            .all(|s| Sample::from_payload(&s.to_payload()).is_ok()));
    }

    #[test]
    fn quantiles_come_from_the_sorted_latencies() {
        let r = LoadReport {
            query_latencies: (1..=100).rev().map(Duration::from_millis).collect(),
            ..Default::default()
        };
        assert_eq!(r.query_quantile(0.5), Duration::from_millis(51));
        assert_eq!(r.query_quantile(0.99), Duration::from_millis(99));
    }
}
