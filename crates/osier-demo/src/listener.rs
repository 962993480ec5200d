//! The notification side: samples arrive as `compute.instance.*` notifications at INFO on
//! topic [`TOPIC`], and each is stored once (a redelivered one is a duplicate `message_id`).
//! A payload that is not a sample is dropped with a rate-limited warning and counted; a
//! database that fails puts the notification back for redelivery, so no sample is lost while
//! it is down.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use osier_messaging::{
    Executor, LogBudget, Notification, NotificationEndpoint, NotificationFilter,
    NotificationListener, NotificationResult, Priority, Target, Transport,
};

use crate::sample::{Sample, EVENT_TYPES};
use crate::store::{AsyncStore, BlockingStore, StoreError};

/// The notification topic. Not oslo's default `notifications`, so that the demo neither eats
/// a real deployment's notifications nor leaves its own piling up in a queue nobody reads
/// (publishers declare `<topic>.info`; the listener, with no pool, consumes that same queue).
pub const TOPIC: &str = "metering-notifications";

/// How many times one notification goes back to the broker before it is dropped.
pub const MAX_REQUEUES: u32 = 20;

static REFUSED_LOG: LogBudget = LogBudget::new(1);
static STORE_LOG: LogBudget = LogBudget::new(1);

/// What the listener has dropped, for the report and for tests.
#[derive(Debug, Default)]
pub struct Refused(AtomicU64);

impl Refused {
    /// Notifications dropped because they were not samples.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

fn take(n: &Notification, refused: &Refused) -> Option<Sample> {
    match Sample::from_payload(&n.payload) {
        Ok(s) => Some(s),
        Err(e) => {
            refused.0.fetch_add(1, Ordering::Relaxed);
            if let Some(suppressed) = REFUSED_LOG.allow() {
                tracing::warn!(
                    event_type = %osier_messaging::Untrusted(&n.event_type),
                    publisher_id = %osier_messaging::Untrusted(&n.publisher_id),
                    error = %e,
                    suppressed,
                    "dropped a notification that is not a sample"
                );
            }
            None
        }
    }
}

fn stored(r: Result<bool, StoreError>) -> NotificationResult {
    match r {
        Ok(_) => NotificationResult::Handled,
        Err(e) => {
            if let Some(suppressed) = STORE_LOG.allow() {
                tracing::error!(error = %e, suppressed, "cannot store a sample; the notification goes back to the broker");
            }
            NotificationResult::Requeue
        }
    }
}

fn endpoint() -> NotificationEndpoint {
    let filter = NotificationFilter::new()
        .event_type(EVENT_TYPES)
        .expect("EVENT_TYPES is a valid pattern (a unit test builds it)");
    NotificationEndpoint::new("samples").filter(filter)
}

/// Stage 0: a green endpoint; the blocking insert runs in `tpool`.
pub fn green_on_blocking(store: Arc<BlockingStore>, refused: Arc<Refused>) -> NotificationEndpoint {
    endpoint()
        .on(Priority::Info, move |n| {
            let Some(s) = take(n, &refused) else {
                return NotificationResult::Handled;
            };
            let store = store.clone();
            stored(osier_green::tpool::execute(move || store.insert(&s)))
        })
        .executor(Executor::Green)
}

/// Stage 1: an async endpoint; the blocking insert runs on tokio's blocking pool
/// (asyncio's `run_in_executor`).
pub fn async_on_blocking(
    store: Arc<BlockingStore>,
    bridge: osier_bridge::Bridge,
    refused: Arc<Refused>,
) -> NotificationEndpoint {
    endpoint()
        .on_async(Priority::Info, move |n| {
            let sample = take(&n, &refused);
            let (store, bridge) = (store.clone(), bridge.clone());
            async move {
                let Some(s) = sample else {
                    return NotificationResult::Handled;
                };
                match bridge.run_blocking(move || store.insert(&s)).await {
                    Ok(r) => stored(r),
                    Err(e) => stored(Err(StoreError::Interrupted(e.to_string()))),
                }
            }
        })
        .executor(Executor::Tokio)
}

/// Stages 2 and 3: an async endpoint on the async driver.
pub fn async_on_async(store: AsyncStore, refused: Arc<Refused>) -> NotificationEndpoint {
    endpoint()
        .on_async(Priority::Info, move |n| {
            let sample = take(&n, &refused);
            let store = store.clone();
            async move {
                match sample {
                    Some(s) => stored(store.insert(s).await),
                    None => NotificationResult::Handled,
                }
            }
        })
        .executor(Executor::Tokio)
}

/// The listener on [`TOPIC`], requeueing on storage errors.
pub fn listener(
    transport: &Transport,
    endpoint: NotificationEndpoint,
    bridge: osier_bridge::Bridge,
) -> NotificationListener {
    NotificationListener::new(transport, vec![Target::topic(TOPIC)], vec![endpoint])
        .allow_requeue(true)
        .max_requeues(Some(MAX_REQUEUES))
        .bridge(bridge)
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_event_type_filter_builds() {
        let _ = super::endpoint();
    }
}
