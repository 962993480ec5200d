//! The metering RPC API (`get_samples`, `statistics`, `count_samples` on topic
//! [`TOPIC`]), in the three shapes the stages need: green methods on the blocking store
//! (stages 0 and 1), green methods on the async store through `yield_future` (stage 2), and
//! async methods (stage 3). Same arguments, same answers.

use std::sync::Arc;

use osier_messaging::{Endpoint, EndpointError, Executor};
use serde::Deserialize;

use crate::store::{AsyncStore, BlockingStore, StoreError};

/// The RPC topic the API listens on.
pub const TOPIC: &str = "metering";
/// The endpoint's namespace.
pub const NAMESPACE: &str = "metering";

/// `get_samples(resource_id, counter_name, limit=100)`.
#[derive(Debug, Deserialize)]
pub struct SamplesQuery {
    /// The resource.
    pub resource_id: String,
    /// The counter.
    pub counter_name: String,
    /// How many at most (capped at `store::MAX_SAMPLES_PER_QUERY`).
    #[serde(default = "default_limit")]
    pub limit: i64,
}

fn default_limit() -> i64 {
    100
}

/// `statistics(resource_id, counter_name)`.
#[derive(Debug, Deserialize)]
pub struct StatisticsQuery {
    /// The resource.
    pub resource_id: String,
    /// The counter.
    pub counter_name: String,
}

/// `count_samples(project_id)`.
#[derive(Debug, Deserialize)]
pub struct CountQuery {
    /// The project.
    pub project_id: String,
}

fn failed(e: StoreError) -> EndpointError {
    EndpointError::new("StorageError", e.to_string())
}

fn endpoint() -> Endpoint {
    Endpoint::new("metering").target(osier_messaging::Target::default().with_namespace(NAMESPACE))
}

/// Stages 0 and 1: green methods, the blocking driver in `tpool` (eventlet's
/// `tpool.execute`), so only the calling green thread waits for the database.
pub fn green_on_blocking(store: Arc<BlockingStore>) -> Endpoint {
    let (s1, s2, s3) = (store.clone(), store.clone(), store);
    endpoint()
        .method("get_samples", move |_ctx, q: SamplesQuery| {
            let s = s1.clone();
            osier_green::tpool::execute(move || s.samples(&q.resource_id, &q.counter_name, q.limit))
                .map_err(failed)
        })
        .method("statistics", move |_ctx, q: StatisticsQuery| {
            let s = s2.clone();
            osier_green::tpool::execute(move || s.statistics(&q.resource_id, &q.counter_name))
                .map_err(failed)
        })
        .method("count_samples", move |_ctx, q: CountQuery| {
            let s = s3.clone();
            osier_green::tpool::execute(move || s.count(&q.project_id)).map_err(failed)
        })
        .executor(Executor::Green)
}

/// Stage 2: still green methods, now on the async store: each awaits the async driver through
/// `yield_future` (aioeventlet's), parking only its green thread.
pub fn green_on_async(store: AsyncStore) -> Endpoint {
    let (s1, s2, s3) = (store.clone(), store.clone(), store);
    let bridged = |e: osier_bridge::BridgeError| EndpointError::new("StorageError", e.to_string());
    endpoint()
        .method("get_samples", move |_ctx, q: SamplesQuery| {
            osier_bridge::yield_future(s1.samples(q.resource_id, q.counter_name, q.limit))
                .map_err(bridged)?
                .map_err(failed)
        })
        .method("statistics", move |_ctx, q: StatisticsQuery| {
            osier_bridge::yield_future(s2.statistics(q.resource_id, q.counter_name))
                .map_err(bridged)?
                .map_err(failed)
        })
        .method("count_samples", move |_ctx, q: CountQuery| {
            osier_bridge::yield_future(s3.count(q.project_id))
                .map_err(bridged)?
                .map_err(failed)
        })
        .executor(Executor::Green)
}

/// Stage 3: async methods on the async store.
pub fn async_on_async(store: AsyncStore) -> Endpoint {
    let (s1, s2, s3) = (store.clone(), store.clone(), store);
    endpoint()
        .method_async("get_samples", move |_ctx, q: SamplesQuery| {
            let s = s1.clone();
            async move {
                s.samples(q.resource_id, q.counter_name, q.limit)
                    .await
                    .map_err(failed)
            }
        })
        .method_async("statistics", move |_ctx, q: StatisticsQuery| {
            let s = s2.clone();
            async move {
                s.statistics(q.resource_id, q.counter_name)
                    .await
                    .map_err(failed)
            }
        })
        .method_async("count_samples", move |_ctx, q: CountQuery| {
            let s = s3.clone();
            async move { s.count(q.project_id).await.map_err(failed) }
        })
        .executor(Executor::Tokio)
}
