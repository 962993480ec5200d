//! The record behind every green thread, shared between its hub and its handles.

use std::cell::UnsafeCell;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use crate::error::TimeoutFired;
use crate::error::{GreenError, GreenletExit};
use crate::hub::{self, HubShared};
use crate::park::ParkState;

/// A stackful generator: the green thread's stack and registers.
pub(crate) type Gen = generator::Generator<'static, (), ()>;

/// One green thread. Handles hold it through an `Arc`; its hub owns the `local` part.
pub(crate) struct Task {
    pub(crate) id: u64,
    pub(crate) name: Option<Arc<str>>,
    pub(crate) hub: Arc<HubShared>,
    pub(crate) park: ParkState,
    /// Stack size in bytes.
    pub(crate) stack_size: usize,
    /// The pool that spawned this thread (0 = none); see GREEN-12's re-entrant spawn.
    pub(crate) pool_id: u64,
    kill: AtomicBool,
    /// Set when a wait list picked this thread (see `waiter.rs`).
    pub(crate) chosen: AtomicBool,
    /// Set by the hub right before the body first runs.
    started: AtomicBool,
    /// Set by whoever first puts the task on a run queue (spawn, a spawn_after timer, or a kill).
    launched: AtomicBool,
    /// Id of a [`Timeout`](crate::Timeout) that fired and is waiting to be raised (0 = none).
    fired_timeout: AtomicU64,
    local: UnsafeCell<TaskLocal>,
}

/// Completes a green thread's handle with an error, from hub context, when its body can never
/// do it itself (stack overflow, runtime shut down before it started).
pub(crate) trait Abort: Send + Sync {
    fn abort(self: Arc<Self>, err: GreenError, task: Arc<Task>);
}

pub(crate) type AbortFn = Arc<dyn Abort>;

/// Fields only the owning hub thread touches.
#[derive(Default)]
pub(crate) struct TaskLocal {
    pub(crate) gen: Option<Gen>,
    pub(crate) entry: Option<Box<dyn FnOnce() + Send>>,
    /// Completes the handle with an error when the body can never complete it itself
    /// (stack overflow, runtime shutdown before start).
    pub(crate) on_abort: Option<AbortFn>,
    pub(crate) slab_key: usize,
    /// Entered by the hub around every resume (see `GreenBuilder::instrument`).
    pub(crate) span: Option<tracing::Span>,
}

// SAFETY: every field but `local` is Sync on its own. `local` is read and written only by the hub
// thread that owns the task (the task never migrates: `hub` is fixed at creation), and only from
// hub code that is not running inside the task's own body, so there is never concurrent access.
unsafe impl Sync for Task {}

impl std::fmt::Debug for Task {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Task")
            .field("id", &self.id)
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl Task {
    pub(crate) fn new(
        id: u64,
        name: Option<Arc<str>>,
        hub: Arc<HubShared>,
        stack_size: usize,
        pool_id: u64,
        entry: Box<dyn FnOnce() + Send>,
        on_abort: Option<AbortFn>,
    ) -> Arc<Task> {
        Arc::new(Task {
            id,
            name,
            hub,
            park: ParkState::new(),
            stack_size,
            pool_id,
            kill: AtomicBool::new(false),
            chosen: AtomicBool::new(false),
            started: AtomicBool::new(false),
            launched: AtomicBool::new(false),
            fired_timeout: AtomicU64::new(0),
            local: UnsafeCell::new(TaskLocal {
                gen: None,
                entry: Some(entry),
                on_abort,
                slab_key: usize::MAX,
                span: None,
            }),
        })
    }

    /// # Safety
    /// Only the hub thread that owns this task may call this, never from inside the task's body,
    /// and the returned reference must not outlive the current hub operation.
    #[allow(clippy::mut_from_ref)]
    pub(crate) unsafe fn local(&self) -> &mut TaskLocal {
        // SAFETY: guaranteed by the caller (see the `Sync` impl).
        unsafe { &mut *self.local.get() }
    }

    /// Attaches a span before the task is admitted to its hub.
    pub(crate) fn set_span(&self, span: Option<tracing::Span>) {
        if span.is_some() {
            // SAFETY: called by the spawner before the task is handed to any hub, so nothing
            // else can reach `local` yet.
            unsafe { self.local().span = span };
        }
    }

    pub(crate) fn is_started(&self) -> bool {
        self.started.load(Ordering::Acquire)
    }

    pub(crate) fn mark_started(&self) {
        self.started.store(true, Ordering::Release);
    }

    /// Claims the right to put the task on its run queue for the first time.
    pub(crate) fn claim_launch(&self) -> bool {
        !self.launched.swap(true, Ordering::AcqRel)
    }

    pub(crate) fn kill_requested(&self) -> bool {
        self.kill.load(Ordering::Acquire)
    }

    pub(crate) fn request_kill(&self) {
        self.kill.store(true, Ordering::Release);
    }

    /// Records that Timeout `id` fired; the first one to fire wins (GREEN-23).
    pub(crate) fn fire_timeout(&self, id: u64) -> bool {
        self.fired_timeout
            .compare_exchange(0, id, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }

    /// Forgets a fired-but-not-raised Timeout `id` (it was cancelled before the thread parked).
    pub(crate) fn clear_timeout(&self, id: u64) {
        let _ = self
            .fired_timeout
            .compare_exchange(id, 0, Ordering::AcqRel, Ordering::Acquire);
    }

    /// Raises a pending kill or Timeout in the current (this) green thread by unwinding its stack.
    /// Does nothing while the thread is already unwinding (a second panic would abort).
    #[inline]
    pub(crate) fn check_interrupts(&self) {
        if !self.kill_requested() && self.fired_timeout.load(Ordering::Acquire) == 0 {
            return;
        }
        if std::thread::panicking() {
            return;
        }
        if self.kill_requested() {
            std::panic::resume_unwind(Box::new(GreenletExit));
        }
        let t = self.fired_timeout.swap(0, Ordering::AcqRel);
        if t != 0 {
            std::panic::resume_unwind(Box::new(TimeoutFired { id: t }));
        }
    }

    /// Wakes the task if it is parked; a no-op (but remembered) if it is running.
    pub(crate) fn unpark(self: &Arc<Self>) {
        if self.park.unpark() {
            hub::schedule(self.clone());
        }
    }
}

/// A green thread is its own `Waker`: waking it unparks it. Building the waker costs one
/// reference-count increment, no allocation.
impl std::task::Wake for Task {
    fn wake(self: Arc<Self>) {
        if self.park.unpark() {
            hub::schedule(self);
        }
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.unpark();
    }
}
