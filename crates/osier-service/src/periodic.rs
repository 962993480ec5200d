//! Periodic tasks (`oslo_service.periodic_task`, SVC-PER-*).
//!
//! | oslo.service | osier-service |
//! |---|---|
//! | `@periodic_task(spacing=10, run_immediately=True)` on a method | [`PeriodicTask::new`]`("name", f).spacing(10).run_immediately()` |
//! | `@periodic_task(external_process_ok=True, enabled=False)` | `.external_process_ok()` / `.enabled(false)` |
//! | `class Manager(PeriodicTasks)` (the metaclass collects the tasks) | [`PeriodicTasks::new`]`()` + [`PeriodicTasks::add`] |
//! | `add_periodic_task(fn)` | [`PeriodicTasks::add`] (same rules) |
//! | `run_periodic_tasks(context, raise_on_error)` → idle seconds | [`PeriodicTasks::run`]`(ctx, raise_on_error).await` → idle `Duration` |
//! | `run_periodic_tasks_in_parallel(...)` | [`PeriodicTasks::run_parallel`] |
//! | a DynamicLoopingCall driving it (SVC-PER-04) | [`PeriodicTasks::into_timer`] on a [`TaskGroup`](crate::TaskGroup) |
//!
//! The rules are oslo's: spacing 0 means the default of 60 s; a negative spacing or
//! `enabled(false)` leaves the task out (logged); the last-run time is set when the task is
//! added (oslo: when the class is defined) unless `run_immediately` is set, in which case the
//! task runs on the first pass. A due task's last run moves to the nearest past boundary
//! (last run plus a whole number of spacings) plus a jitter of up to 5 % of the spacing,
//! truncated to whole seconds, so spacings under 20 s get none. The idle time returned is the
//! minimum of 60 s, every task's spacing, and the time until each task not yet due is due.
//!
//! Time is `tokio::time`, so tests run on a paused clock.
//!
//! The parallel variant runs the due tasks concurrently on the runtime and collects their
//! results in the order they finish. oslo's runs them in a process pool started with `spawn`,
//! in the threading backend only, with everything pickled (SVC-PER-05); neither the process
//! pool nor the backend restriction applies to async tasks, which do not hold a thread.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use tokio::time::Instant;

use crate::service::BoxError;

/// The default spacing, and the longest idle time (oslo's `DEFAULT_INTERVAL`).
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(60);

type TaskFn<C> = Arc<dyn Fn(C) -> BoxFuture<'static, Result<(), BoxError>> + Send + Sync>;

/// One periodic task, built like oslo's decorator arguments.
#[must_use]
pub struct PeriodicTask<C> {
    name: String,
    spacing: i64,
    run_immediately: bool,
    external_process_ok: bool,
    enabled: bool,
    f: TaskFn<C>,
}

impl<C> std::fmt::Debug for PeriodicTask<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PeriodicTask")
            .field("name", &self.name)
            .field("spacing", &self.spacing)
            .field("run_immediately", &self.run_immediately)
            .field("external_process_ok", &self.external_process_ok)
            .field("enabled", &self.enabled)
            .finish()
    }
}

impl<C: Send + 'static> PeriodicTask<C> {
    /// A task named `name` (oslo: `name=` or the function's name) that runs `f(context)`, every
    /// 60 s by default.
    pub fn new<F, Fut>(name: impl Into<String>, f: F) -> Self
    where
        F: Fn(C) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), BoxError>> + Send + 'static,
    {
        PeriodicTask {
            name: name.into(),
            spacing: 0,
            run_immediately: false,
            external_process_ok: false,
            enabled: true,
            f: Arc::new(move |c| Box::pin(f(c))),
        }
    }
}

impl<C> PeriodicTask<C> {
    /// Seconds between runs: 0 means [`DEFAULT_INTERVAL`], a negative value disables the task.
    pub fn spacing(mut self, secs: i64) -> Self {
        self.spacing = secs;
        self
    }

    /// Run on the first pass instead of one spacing after being added.
    pub fn run_immediately(mut self) -> Self {
        self.run_immediately = true;
        self
    }

    /// Skip this task when the set is built with `run_external(false)`.
    pub fn external_process_ok(mut self) -> Self {
        self.external_process_ok = true;
        self
    }

    /// `false` leaves the task out.
    pub fn enabled(mut self, on: bool) -> Self {
        self.enabled = on;
        self
    }
}

struct Entry<C> {
    name: String,
    spacing: Duration,
    external_process_ok: bool,
    last_run: Option<Instant>,
    f: TaskFn<C>,
}

/// A periodic task failed and `raise_on_error` was set.
#[derive(Debug, thiserror::Error)]
#[error("periodic task {name} failed: {source}")]
pub struct PeriodicError {
    /// The task's name.
    pub name: String,
    /// What it returned.
    #[source]
    pub source: BoxError,
}

/// A set of periodic tasks and their last-run times (oslo's `PeriodicTasks`).
pub struct PeriodicTasks<C> {
    tasks: Vec<Entry<C>>,
    run_external: bool,
}

impl<C> std::fmt::Debug for PeriodicTasks<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PeriodicTasks")
            .field(
                "tasks",
                &self.tasks.iter().map(|t| &t.name).collect::<Vec<_>>(),
            )
            .field("run_external", &self.run_external)
            .finish()
    }
}

impl<C> Default for PeriodicTasks<C> {
    fn default() -> Self {
        PeriodicTasks {
            tasks: Vec::new(),
            run_external: true,
        }
    }
}

impl<C: Clone + Send + 'static> PeriodicTasks<C> {
    /// No tasks; external tasks run (oslo's `run_external_periodic_tasks = True`).
    pub fn new() -> Self {
        PeriodicTasks::default()
    }

    /// oslo's `run_external_periodic_tasks`: `false` skips tasks marked `external_process_ok`.
    pub fn run_external(mut self, on: bool) -> Self {
        self.run_external = on;
        self
    }

    /// Adds a task (SVC-PER-01/02). Returns false, with a log line, when it is left out
    /// (negative spacing, or disabled).
    pub fn add(&mut self, task: PeriodicTask<C>) -> bool {
        if task.spacing < 0 {
            tracing::info!(task = %task.name, "Skipping periodic task because its interval is negative");
            return false;
        }
        if !task.enabled {
            tracing::info!(task = %task.name, "Skipping periodic task because it is disabled");
            return false;
        }
        let spacing = if task.spacing == 0 {
            DEFAULT_INTERVAL
        } else {
            Duration::from_secs(task.spacing.unsigned_abs())
        };
        self.tasks.push(Entry {
            name: task.name,
            spacing,
            external_process_ok: task.external_process_ok,
            last_run: (!task.run_immediately).then(Instant::now),
            f: task.f,
        });
        true
    }

    /// The tasks' names, in order.
    pub fn names(&self) -> Vec<&str> {
        self.tasks.iter().map(|t| t.name.as_str()).collect()
    }

    /// Picks the due tasks (moving their last run to the nearest boundary) and works out the
    /// idle time (SVC-PER-03).
    fn due(&mut self) -> (Vec<(String, TaskFn<C>)>, Duration) {
        let mut idle = DEFAULT_INTERVAL;
        let mut due = Vec::new();
        for t in &mut self.tasks {
            if t.external_process_ok && !self.run_external {
                continue;
            }
            idle = idle.min(t.spacing);
            let now = Instant::now();
            if let Some(last) = t.last_run {
                let next = last + t.spacing;
                if next > now {
                    idle = idle.min(next - now);
                    continue;
                }
            }
            t.last_run = Some(nearest_boundary(t.last_run, t.spacing, now));
            due.push((t.name.clone(), t.f.clone()));
        }
        (due, idle)
    }

    /// Runs the due tasks one after the other, in the order added, and returns how long to idle
    /// (oslo's `run_periodic_tasks`, SVC-PER-03). A failure is logged, or returned at once when
    /// `raise_on_error` is set. Yields to the runtime after each task.
    pub async fn run(&mut self, ctx: C, raise_on_error: bool) -> Result<Duration, PeriodicError> {
        let (due, idle) = self.due();
        for (name, f) in due {
            tracing::debug!(task = %name, "Running periodic task");
            if let Err(source) = f(ctx.clone()).await {
                if raise_on_error {
                    return Err(PeriodicError { name, source });
                }
                tracing::error!(task = %name, error = %source, "Error during periodic task");
            }
            tokio::task::yield_now().await;
        }
        Ok(idle)
    }

    /// Runs the due tasks concurrently (SVC-PER-05) and returns the idle time and each task's
    /// outcome in the order they finished. With `raise_on_error`, the first failure is returned
    /// once every task has finished.
    pub async fn run_parallel(
        &mut self,
        ctx: C,
        raise_on_error: bool,
    ) -> Result<(Duration, Vec<(String, Result<(), String>)>), PeriodicError> {
        use futures::stream::{FuturesUnordered, StreamExt};
        let (due, idle) = self.due();
        let mut running: FuturesUnordered<_> = due
            .into_iter()
            .map(|(name, f)| {
                let fut = f(ctx.clone());
                async move { (name, fut.await) }
            })
            .collect();
        let mut outcomes = Vec::new();
        let mut first_error = None;
        while let Some((name, r)) = running.next().await {
            match r {
                Ok(()) => outcomes.push((name, Ok(()))),
                Err(source) => {
                    tracing::error!(task = %name, error = %source, "Error during periodic task");
                    outcomes.push((name.clone(), Err(source.to_string())));
                    if first_error.is_none() {
                        first_error = Some(PeriodicError { name, source });
                    }
                }
            }
        }
        match first_error {
            Some(e) if raise_on_error => Err(e),
            _ => Ok((idle, outcomes)),
        }
    }
}

impl<C: Clone + Send + Sync + 'static> PeriodicTasks<C> {
    /// Drives the set from a dynamic timer in `group`, sleeping the idle time each pass, capped
    /// at `periodic_interval_max` (SVC-PER-04; nova's `periodic_tasks` timer). `parallel` runs
    /// each pass's due tasks concurrently.
    pub fn into_timer(
        self,
        group: &crate::TaskGroup,
        ctx: C,
        periodic_interval_max: Duration,
        parallel: bool,
    ) -> crate::task_group::Timer {
        let tasks = Arc::new(tokio::sync::Mutex::new(self));
        let call = crate::looping::LoopingCall::dynamic()
            .periodic_interval_max(periodic_interval_max)
            .keep_going_on_error();
        group.add_timer(call, move || {
            let tasks = tasks.clone();
            let ctx = ctx.clone();
            async move {
                let mut tasks = tasks.lock().await;
                let idle = if parallel {
                    tasks.run_parallel(ctx, false).await.map(|(idle, _)| idle)
                } else {
                    tasks.run(ctx, false).await
                }?;
                Ok::<_, PeriodicError>(crate::looping::Step::Sleep(Some(idle)))
            }
        })
    }
}

/// oslo's `_nearest_boundary`: the last boundary at or before `now`, plus up to 5 % jitter in
/// whole seconds.
fn nearest_boundary(last_run: Option<Instant>, spacing: Duration, now: Instant) -> Instant {
    let Some(last) = last_run else {
        return now;
    };
    let delta = now.saturating_duration_since(last);
    let offset_ns = delta.as_nanos() % spacing.as_nanos().max(1);
    let offset = Duration::from_nanos(u64::try_from(offset_ns).unwrap_or(u64::MAX));
    let jitter = (spacing.as_secs_f64() * (fastrand::f64() / 20.0)).trunc();
    now - offset + Duration::from_secs_f64(jitter)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn nearest_boundary_is_a_whole_number_of_spacings_after_the_last_run() {
        // SVC-PER-03: last run 10, spacing 7, now 40 -> 38 (plus jitter 0 for spacing < 20).
        let t0 = Instant::now();
        let b = nearest_boundary(
            Some(t0 + Duration::from_secs(10)),
            Duration::from_secs(7),
            t0 + Duration::from_secs(40),
        );
        assert_eq!(b - t0, Duration::from_secs(38));
    }

    #[tokio::test(start_paused = true)]
    async fn nearest_boundary_adds_at_most_five_percent_jitter_in_whole_seconds() {
        let t0 = Instant::now();
        for _ in 0..200 {
            let b = nearest_boundary(
                Some(t0),
                Duration::from_secs(200),
                t0 + Duration::from_secs(400),
            );
            let j = b - (t0 + Duration::from_secs(400));
            assert!(j <= Duration::from_secs(10), "{j:?}");
            assert_eq!(j.subsec_nanos(), 0, "whole seconds");
        }
    }
}
