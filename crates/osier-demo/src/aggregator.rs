//! The periodic task: every interval, fold new samples into the per-resource aggregates that
//! `statistics` answers from (Ceilometer's periodic pollsters and aggregation). Stages 0 to 2
//! run it as a green thread that sleeps greenly between rounds (an eventlet
//! `FixedIntervalLoopingCall`); stage 3 as an async [`LoopingCall`]. Both fold once more when
//! stopped, so a graceful stop leaves nothing unfolded.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use osier_messaging::LogBudget;
use osier_service::looping::{LoopHandle, LoopingCall, Step};

use crate::locked;
use crate::store::{AsyncStore, StoreError};

static FAILED_LOG: LogBudget = LogBudget::new(1);

fn report(r: Result<(), StoreError>) {
    if let Err(e) = r {
        if let Some(suppressed) = FAILED_LOG.allow() {
            tracing::error!(error = %e, suppressed, "aggregation failed; the samples are folded at the next round");
        }
    }
}

/// One round of folding, as the green stages run it (blocking in `tpool`, or the async store
/// through `yield_future`).
pub type Round = Arc<dyn Fn() -> Result<(), StoreError> + Send + Sync>;

/// The aggregator as a green thread (stages 0 to 2).
pub struct GreenAggregator {
    every: Duration,
    round: Round,
    stop: Mutex<Option<osier_green::Event<(), ()>>>,
    thread: Mutex<Option<osier_green::GreenThread<()>>>,
}

impl std::fmt::Debug for GreenAggregator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GreenAggregator")
            .field("every", &self.every)
            .finish_non_exhaustive()
    }
}

impl GreenAggregator {
    /// Runs `round` every `every` once started.
    pub fn new(every: Duration, round: Round) -> Self {
        GreenAggregator {
            every,
            round,
            stop: Mutex::new(None),
            thread: Mutex::new(None),
        }
    }

    /// Spawns the green thread (call from a green thread).
    pub fn start(&self) {
        let stop = osier_green::Event::new();
        let (s2, every, round) = (stop.clone(), self.every, self.round.clone());
        let gt = osier_green::Runtime::current().spawn(move || {
            while s2.wait_timeout(every).is_none() {
                report(round());
            }
            report(round());
        });
        *locked(&self.stop) = Some(stop);
        *locked(&self.thread) = Some(gt);
    }

    /// Wakes the thread to fold one last time and end.
    pub fn stop(&self) {
        if let Some(stop) = locked(&self.stop).take() {
            let _ = stop.send(());
        }
    }

    /// Waits for the thread to end (parks only the calling green thread).
    pub fn wait(&self) {
        let thread = locked(&self.thread).take();
        if let Some(gt) = thread {
            if let Err(e) = gt.wait() {
                tracing::error!(error = %e, "the aggregator's green thread failed");
            }
        }
    }
}

/// The aggregator as an async looping call (stage 3).
#[derive(Debug)]
pub struct AsyncAggregator {
    every: Duration,
    store: AsyncStore,
    handle: Mutex<Option<LoopHandle<(), StoreError>>>,
}

impl AsyncAggregator {
    /// Folds `store`'s new samples every `every` once started.
    pub fn new(every: Duration, store: AsyncStore) -> Self {
        AsyncAggregator {
            every,
            store,
            handle: Mutex::new(None),
        }
    }

    /// Starts the loop (call on the tokio runtime).
    pub fn start(&self) {
        let store = self.store.clone();
        let h = LoopingCall::fixed_interval(self.every)
            .initial_delay(self.every)
            .keep_going_on_error()
            .start(move || {
                let store = store.clone();
                async move { store.aggregate().await.map(|_| Step::Continue) }
            });
        *locked(&self.handle) = Some(h);
    }

    /// Stops the loop at once (its sleep is woken).
    pub fn stop(&self) {
        if let Some(h) = &*locked(&self.handle) {
            h.stop();
        }
    }

    /// Waits for the loop to end, then folds one last time.
    pub async fn wait(&self) {
        let h = locked(&self.handle).take();
        if let Some(h) = h {
            if let Err(e) = h.wait().await {
                tracing::error!(error = %e, "the aggregator's loop failed");
            }
            report(self.store.aggregate().await);
        }
    }
}
