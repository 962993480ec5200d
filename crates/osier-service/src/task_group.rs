//! A group of green threads, async tasks and timers that stop together (oslo's `ThreadGroup`,
//! SVC-TG-*), with cooperative cancellation.
//!
//! | oslo.service | osier-service |
//! |---|---|
//! | `tg = ThreadGroup(thread_pool_size=10)` | [`TaskGroup::new`]`(bridge, 10)` |
//! | `tg.add_thread(fn, *args)` (green) | [`TaskGroup::add_green`]`(\|cancel\| ...)` |
//! | a thread in the threading backend | [`TaskGroup::add_task`]`(\|cancel\| async move { ... })` |
//! | `tg.add_timer_args(interval, cb, initial_delay=d)` | [`TaskGroup::add_timer`]`(LoopingCall::fixed_interval(i).initial_delay(d), f)` |
//! | `tg.add_dynamic_timer_args(cb, periodic_interval_max=m)` | [`TaskGroup::add_timer`]`(LoopingCall::dynamic().periodic_interval_max(m), f)` |
//! | `tg.timer_done(t)`; `tg.stop_timers()` | [`TaskGroup::timer_done`]; [`TaskGroup::stop_timers`] |
//! | `tg.stop(graceful)`; `tg.wait()` | [`TaskGroup::stop`]`(graceful).await`; [`TaskGroup::wait`]`.await` |
//! | `tg.cancel(timeout=t)` | [`TaskGroup::cancel`]`(t).await` |
//!
//! Every member gets a [`CancelToken`]. `stop(graceful = false)` sets it, stops the timers
//! without waiting, and then kills every member except the caller: an async task is aborted at
//! its next `.await`, a green thread is killed at its next switch (GREEN-08). `cancel(t)` is the
//! cooperative form: it sets the token and gives the members `t` to return by themselves before
//! killing the rest. `stop(graceful = true)` stops the timers, waits for them, then waits for the
//! members. Either way, both lists are empty afterwards (SVC-TG-04).
//!
//! Differences from oslo, on purpose: a full group refuses a new member with
//! [`TaskGroupError::Full`] (the threading backend's behaviour, SVC-TG-02) instead of blocking
//! the caller as eventlet's does (SVC-TG-01); the group cannot be used to block the launcher
//! by accident. `wait()` with running timers waits for them, as oslo's does (it blocks forever
//! if they were never stopped, SVC-TG-05).

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::{BoxFuture, FutureExt, Shared};
use tokio::sync::{watch, Notify};

use crate::lock::lock;
use crate::looping::{LoopingCall, Step, Stopper};

/// Told to members when the group is stopping; check it, or await it, to stop cooperatively.
#[derive(Debug, Clone)]
pub struct CancelToken(watch::Receiver<bool>);

impl CancelToken {
    /// Whether the group asked its members to stop.
    pub fn is_cancelled(&self) -> bool {
        *self.0.borrow()
    }

    /// Resolves once the group asks its members to stop. From a green thread, await it with
    /// `osier_bridge::yield_future`.
    pub async fn cancelled(&self) {
        let mut rx = self.0.clone();
        let _ = rx.wait_for(|c| *c).await;
    }
}

/// Task group errors.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TaskGroupError {
    /// The group already has its maximum number of members (SVC-TG-02).
    #[error("the task group is full ({0} members)")]
    Full(usize),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Key {
    Task(tokio::task::Id),
    Green(u64),
}

impl Key {
    /// The member the caller is, if it is one of ours.
    fn current() -> Vec<Key> {
        let mut keys = Vec::new();
        if let Some(id) = tokio::task::try_id() {
            keys.push(Key::Task(id));
        }
        if let Some(c) = osier_green::current() {
            keys.push(Key::Green(c.id));
        }
        keys
    }
}

enum Member {
    Task(tokio::task::AbortHandle),
    Green(osier_green::GreenThread<()>),
}

/// A timer in a group; see [`TaskGroup::add_timer`].
#[derive(Debug, Clone)]
pub struct Timer {
    id: u64,
    stopper: Stopper,
}

impl Timer {
    /// Stops the timer. It stays in the group's list until [`TaskGroup::timer_done`] or
    /// [`TaskGroup::stop_timers`] (SVC-TG-03).
    pub fn stop(&self) {
        self.stopper.stop();
    }
}

struct TimerEntry {
    id: u64,
    stopper: Stopper,
    done: Shared<BoxFuture<'static, ()>>,
}

struct Inner {
    bridge: osier_bridge::Bridge,
    max: usize,
    cancel: watch::Sender<bool>,
    members: Mutex<HashMap<Key, Member>>,
    timers: Mutex<Vec<TimerEntry>>,
    changed: Notify,
    next_timer: Mutex<u64>,
}

impl Inner {
    fn remove(&self, key: Key) {
        lock(&self.members).remove(&key);
        self.changed.notify_waiters();
    }
}

/// Removes an async member from the group when its task ends, aborted or not.
struct Leave(Arc<Inner>, tokio::task::Id);

impl Drop for Leave {
    fn drop(&mut self) {
        self.0.remove(Key::Task(self.1));
    }
}

/// Green threads, async tasks and timers that stop together. Cloning gives another handle.
#[derive(Clone)]
pub struct TaskGroup {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for TaskGroup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TaskGroup")
            .field("members", &self.len())
            .field("timers", &self.timers_len())
            .field("max", &self.inner.max)
            .finish()
    }
}

impl TaskGroup {
    /// A group of at most `max` members (timers do not count), running green threads on
    /// `bridge`'s green runtime and tasks on its tokio runtime.
    pub fn new(bridge: osier_bridge::Bridge, max: usize) -> Self {
        TaskGroup {
            inner: Arc::new(Inner {
                bridge,
                max,
                cancel: watch::channel(false).0,
                members: Mutex::new(HashMap::new()),
                timers: Mutex::new(Vec::new()),
                changed: Notify::new(),
                next_timer: Mutex::new(0),
            }),
        }
    }

    fn token(&self) -> CancelToken {
        CancelToken(self.inner.cancel.subscribe())
    }

    /// Number of live members (finished ones drop out on their own, SVC-TG-01).
    pub fn len(&self) -> usize {
        lock(&self.inner.members).len()
    }

    /// True when no member is alive.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Number of timers in the list, stopped or not.
    pub fn timers_len(&self) -> usize {
        lock(&self.inner.timers).len()
    }

    /// Adds an async task. A panic in it is logged, not spread.
    pub fn add_task<F, Fut>(&self, f: F) -> Result<(), TaskGroupError>
    where
        F: FnOnce(CancelToken) -> Fut,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let fut = f(self.token());
        let inner = self.inner.clone();
        let mut members = lock(&self.inner.members);
        if members.len() >= self.inner.max {
            return Err(TaskGroupError::Full(self.inner.max));
        }
        // The task removes itself through `Leave`, which needs this lock: the entry is in the
        // map before the task can end.
        let handle = self.inner.bridge.tokio().spawn(async move {
            let _leave = Leave(inner, tokio::task::id());
            if let Err(p) = std::panic::AssertUnwindSafe(fut).catch_unwind().await {
                tracing::error!(panic = %osier_green::panic_message(&*p), "task group member panicked");
            }
        });
        members.insert(Key::Task(handle.id()), Member::Task(handle.abort_handle()));
        Ok(())
    }

    /// Adds a green thread. A panic in it is logged, not spread.
    pub fn add_green<F>(&self, f: F) -> Result<(), TaskGroupError>
    where
        F: FnOnce(CancelToken) + Send + 'static,
    {
        let token = self.token();
        let gt = {
            let mut members = lock(&self.inner.members);
            if members.len() >= self.inner.max {
                return Err(TaskGroupError::Full(self.inner.max));
            }
            let gt = self.inner.bridge.green().spawn(move || f(token));
            members.insert(Key::Green(gt.id()), Member::Green(gt.clone()));
            gt
        };
        let inner = self.inner.clone();
        gt.link(move |gt| {
            if let Err(osier_green::GreenError::Panicked(p)) = gt.wait() {
                tracing::error!(panic = %p, "task group member panicked");
            }
            inner.remove(Key::Green(gt.id()));
        });
        Ok(())
    }

    /// Starts a looping call as one of the group's timers (SVC-TG-03): `call` says how it loops
    /// (fixed interval, dynamic, initial delay, keep going on error); `f` is the function. Its end
    /// is logged if it failed. It stays in the timer list until [`timer_done`](Self::timer_done)
    /// or [`stop_timers`](Self::stop_timers), even once stopped.
    pub fn add_timer<F, Fut, E>(&self, call: LoopingCall, f: F) -> Timer
    where
        F: FnMut() -> Fut + Send + 'static,
        Fut: Future<Output = Result<Step<()>, E>> + Send,
        E: std::fmt::Display + Send + 'static,
    {
        let _rt = self.inner.bridge.tokio().enter();
        let handle = call.start(f);
        let stopper = handle.stopper();
        let done: BoxFuture<'static, ()> = Box::pin(async move {
            if let Err(e) = handle.wait().await {
                tracing::error!(error = %e, "task group timer ended with an error");
            }
        });
        let done = done.shared();
        // Poll the end on the runtime, so it is logged even if nobody waits.
        self.inner.bridge.tokio().spawn(done.clone());
        let id = {
            let mut n = lock(&self.inner.next_timer);
            *n += 1;
            *n
        };
        lock(&self.inner.timers).push(TimerEntry {
            id,
            stopper: stopper.clone(),
            done,
        });
        Timer { id, stopper }
    }

    /// Removes a timer from the list (it is not stopped by this).
    pub fn timer_done(&self, timer: &Timer) {
        lock(&self.inner.timers).retain(|t| t.id != timer.id);
    }

    /// Stops every timer and empties the list, without waiting for them (SVC-TG-05).
    pub fn stop_timers(&self) {
        for t in std::mem::take(&mut *lock(&self.inner.timers)) {
            t.stopper.stop();
        }
    }

    /// Waits for the timers, then for every member except the caller (SVC-TG-05).
    pub async fn wait(&self) {
        let timers: Vec<_> = lock(&self.inner.timers)
            .iter()
            .map(|t| t.done.clone())
            .collect();
        futures::future::join_all(timers).await;
        let me = Key::current();
        loop {
            let changed = self.inner.changed.notified();
            if lock(&self.inner.members).keys().all(|k| me.contains(k)) {
                return;
            }
            changed.await;
        }
    }

    /// Stops the group (SVC-TG-04). `graceful`: stop the timers and wait for them, then wait for
    /// the members. Not graceful: set the cancel token, stop the timers, and kill every member
    /// except the caller at once. Afterwards both lists are empty (but the caller's own entry).
    pub async fn stop(&self, graceful: bool) {
        if graceful {
            let timers: Vec<_> = std::mem::take(&mut *lock(&self.inner.timers));
            for t in &timers {
                t.stopper.stop();
            }
            futures::future::join_all(timers.into_iter().map(|t| t.done)).await;
            self.wait().await;
        } else {
            self.inner.cancel.send_replace(true);
            self.stop_timers();
            self.kill_members();
        }
    }

    /// Cooperative cancellation (oslo's `cancel(timeout=...)`, SVC-TG-06): sets every member's
    /// [`CancelToken`], stops the timers, gives the members `timeout` to return, then kills the
    /// rest.
    pub async fn cancel(&self, timeout: Duration) {
        self.inner.cancel.send_replace(true);
        self.stop_timers();
        if tokio::time::timeout(timeout, self.wait()).await.is_err() {
            tracing::warn!(
                ?timeout,
                "task group members ignored cancellation: killing them"
            );
            self.kill_members();
        }
    }

    fn kill_members(&self) {
        let me = Key::current();
        let doomed: Vec<(Key, Member)> = {
            let mut members = lock(&self.inner.members);
            let keys: Vec<Key> = members
                .keys()
                .filter(|k| !me.contains(k))
                .copied()
                .collect();
            keys.into_iter()
                .filter_map(|k| members.remove(&k).map(|m| (k, m)))
                .collect()
        };
        for (_, m) in doomed {
            match m {
                Member::Task(h) => h.abort(),
                Member::Green(gt) => gt.kill(),
            }
        }
        self.inner.changed.notify_waiters();
    }
}
