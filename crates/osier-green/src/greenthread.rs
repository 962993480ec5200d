//! Green threads: `spawn`, `spawn_n`, `spawn_after`, `sleep` and the [`GreenThread`] handle
//! (eventlet's `eventlet.greenthread`, GREEN-02..10).
//!
//! ```
//! use osier_green::{spawn, sleep, GreenError};
//! use std::time::Duration;
//!
//! let gt = spawn(|| {
//!     sleep(Duration::from_millis(1)); // parks this green thread only
//!     "done"
//! });
//! assert_eq!(gt.wait(), Ok("done"));
//!
//! let killed = spawn(|| sleep(Duration::from_secs(60)));
//! killed.kill();
//! assert_eq!(killed.wait(), Err(GreenError::Killed));
//! ```

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::error::TimeoutFired;
use crate::error::{panic_message, GreenError, GreenletExit};
use crate::hub::{self, lock, HubShared, Injected};
use crate::runtime::{next_task_id, Runtime};
use crate::task::{Abort, Task};
use crate::waiter::{wait_until, WaitFuture, WaitList};

type LinkFn<T> = Box<dyn FnOnce(&GreenThread<T>) + Send>;

struct JoinInner<T> {
    result: Option<Result<T, GreenError>>,
    done: bool,
    waiters: WaitList,
    links: Vec<(u64, LinkFn<T>)>,
    next_link: u64,
}

impl<T> JoinInner<T> {
    /// Takes the value once the thread is done; an error stays for later callers.
    fn take(&mut self) -> Option<Result<T, GreenError>> {
        if !self.done {
            return None;
        }
        Some(match self.result.take() {
            Some(Ok(v)) => {
                self.result = Some(Err(GreenError::ResultTaken));
                Ok(v)
            }
            Some(Err(e)) => {
                self.result = Some(Err(e.clone()));
                Err(e)
            }
            None => Err(GreenError::ResultTaken),
        })
    }
}

struct JoinState<T> {
    inner: Mutex<JoinInner<T>>,
}

impl<T> JoinState<T> {
    fn new() -> Self {
        JoinState {
            inner: Mutex::new(JoinInner {
                result: None,
                done: false,
                waiters: WaitList::default(),
                links: Vec::new(),
                next_link: 0,
            }),
        }
    }

    /// Stores the outcome, wakes every waiter, and returns the links to run.
    fn complete(&self, r: Result<T, GreenError>) -> Vec<(u64, LinkFn<T>)> {
        let mut g = lock(&self.inner);
        if g.done {
            return Vec::new();
        }
        g.result = Some(r);
        g.done = true;
        g.waiters.notify_all();
        std::mem::take(&mut g.links)
    }
}

/// Identifies a callback registered with [`GreenThread::link`], for [`GreenThread::unlink`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct LinkId(u64);

/// A handle to a green thread (eventlet's `GreenThread`). Cloning gives another handle.
pub struct GreenThread<T> {
    task: Arc<Task>,
    join: Arc<JoinState<T>>,
}

impl<T> Clone for GreenThread<T> {
    fn clone(&self) -> Self {
        GreenThread {
            task: self.task.clone(),
            join: self.join.clone(),
        }
    }
}

impl<T> std::fmt::Debug for GreenThread<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GreenThread")
            .field("id", &self.task.id)
            .field("name", &self.task.name)
            .field("finished", &lock(&self.join.inner).done)
            .finish()
    }
}

fn run_links<T>(gt: &GreenThread<T>, links: Vec<(u64, LinkFn<T>)>) {
    for (_, f) in links {
        if let Err(p) = catch_unwind(AssertUnwindSafe(|| f(gt))) {
            tracing::error!(
                green_thread = gt.task.id,
                panic = %panic_message(&*p),
                "a link callback panicked"
            );
        }
    }
}

impl<T: Send + 'static> GreenThread<T> {
    /// The green thread's id, unique in the process.
    pub fn id(&self) -> u64 {
        self.task.id
    }

    /// The name given at spawn, if any.
    pub fn name(&self) -> Option<&str> {
        self.task.name.as_deref()
    }

    /// True once the green thread has ended (returned, panicked or been killed): `dead` in eventlet.
    pub fn is_finished(&self) -> bool {
        lock(&self.join.inner).done
    }

    /// True once the body has started running.
    pub fn is_started(&self) -> bool {
        self.task.is_started()
    }

    /// Waits for the result and returns a clone of it; may be called any number of times from
    /// any number of waiters (GREEN-07). Only the calling green thread parks. From a plain OS
    /// thread it blocks that thread.
    pub fn wait(&self) -> Result<T, GreenError>
    where
        T: Clone,
    {
        match self.wait_deadline(None) {
            Some(r) => r,
            None => Err(GreenError::RuntimeShutdown),
        }
    }

    /// Like [`wait`](GreenThread::wait), giving up after `timeout` with `None`.
    pub fn wait_timeout(&self, timeout: Duration) -> Option<Result<T, GreenError>>
    where
        T: Clone,
    {
        self.wait_deadline(Some(Instant::now() + timeout))
    }

    fn wait_deadline(&self, deadline: Option<Instant>) -> Option<Result<T, GreenError>>
    where
        T: Clone,
    {
        wait_until(
            &self.join.inner,
            |s| &mut s.waiters,
            deadline,
            |s| {
                if s.done {
                    Some(match &s.result {
                        Some(r) => r.clone(),
                        None => Err(GreenError::ResultTaken),
                    })
                } else {
                    None
                }
            },
        )
        .ok()
    }

    /// Waits for the result and takes it (no `Clone` needed). Later `wait`/`join` calls on other
    /// handles get [`GreenError::ResultTaken`] unless the thread failed.
    pub fn join(self) -> Result<T, GreenError> {
        wait_until(&self.join.inner, |s| &mut s.waiters, None, JoinInner::take)
            .unwrap_or(Err(GreenError::RuntimeShutdown))
    }

    /// Waits for the result from async code and takes it, like [`join`](GreenThread::join),
    /// without blocking the executor's thread (osier-bridge's `wrap_greenthread` is built on it).
    /// Dropping the future does not kill the green thread.
    pub async fn join_async(self) -> Result<T, GreenError> {
        WaitFuture::new(&self.join.inner, |s| &mut s.waiters, JoinInner::take).await
    }

    /// Kills the green thread (GREEN-08): it unwinds from wherever it is parked with
    /// [`GreenletExit`], and `wait` reports [`GreenError::Killed`]. A thread that has not started
    /// never runs its body, but its links still fire. Killing a finished thread does nothing.
    /// Killing the calling green thread itself unwinds it at once. The caller yields once, so on
    /// the same hub the target has handled the kill when `kill` returns. A thread busy in a CPU
    /// loop is killed at its next switch point (GREEN-01).
    pub fn kill(&self) {
        if self.is_finished() {
            return;
        }
        let me = hub::current_task();
        if let Some(me) = &me {
            if Arc::ptr_eq(me, &self.task) {
                std::panic::resume_unwind(Box::new(GreenletExit));
            }
        }
        self.task.request_kill();
        if !self.task.is_started() {
            // A `spawn_after` thread still waiting for its delay is started now, so that its
            // waiters and links hear of the kill at once.
            let queued_here = hub::with_hub(|h| {
                if Arc::ptr_eq(&h.shared, &self.task.hub) {
                    h.launch_now(self.task.clone());
                    true
                } else {
                    false
                }
            })
            .unwrap_or(false);
            if !queued_here {
                let _ = self.task.hub.inject(Injected::Launch(self.task.clone()));
            }
        }
        self.task.unpark();
        if let Some(me) = me {
            if Arc::ptr_eq(&me.hub, &self.task.hub) {
                drop(me);
                hub::yield_now();
            }
        }
    }

    /// Kills the thread only if it has not started yet (GREEN-09); otherwise does nothing and the
    /// result is still delivered. Returns whether it was cancelled.
    pub fn cancel(&self) -> bool {
        if self.task.is_started() || self.is_finished() {
            return false;
        }
        self.kill();
        true
    }

    /// Runs `f(&handle)` when the thread ends, however it ends (GREEN-10). Callbacks run in
    /// registration order, in the finishing green thread. If the thread has already ended, `f`
    /// runs now, inside this call. A callback may call `link` again; that callback runs once.
    pub fn link(&self, f: impl FnOnce(&GreenThread<T>) + Send + 'static) -> LinkId {
        let mut g = lock(&self.join.inner);
        g.next_link += 1;
        let id = LinkId(g.next_link);
        if g.done {
            drop(g);
            run_links(self, vec![(id.0, Box::new(f))]);
        } else {
            g.links.push((id.0, Box::new(f)));
        }
        id
    }

    /// Removes a callback registered with [`link`](GreenThread::link). Returns whether it was
    /// still registered.
    pub fn unlink(&self, id: LinkId) -> bool {
        let mut g = lock(&self.join.inner);
        let before = g.links.len();
        g.links.retain(|(i, _)| *i != id.0);
        g.links.len() != before
    }
}

/// Builds a green thread with a name, a stack size or a hub.
///
/// ```
/// let gt = osier_green::GreenBuilder::new()
///     .name("worker-1")
///     .stack_size(256 * 1024)
///     .spawn(|| osier_green::current().and_then(|c| c.name).unwrap_or_default());
/// assert_eq!(gt.wait().unwrap(), "worker-1");
/// ```
#[derive(Debug, Default, Clone)]
#[must_use]
pub struct GreenBuilder {
    name: Option<Arc<str>>,
    span: Option<tracing::Span>,
    stack_size: Option<usize>,
    hub: Option<usize>,
    pub(crate) pool_id: u64,
}

impl GreenBuilder {
    /// A builder with the runtime's defaults.
    pub fn new() -> Self {
        GreenBuilder::default()
    }

    /// Names the green thread (shown by the watchdog and in `tracing` fields).
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(Arc::from(name.into()));
        self
    }

    /// Stack size in bytes for this green thread (rounded up to a page, at least 16 KiB).
    /// Stacks of the runtime's default size are reused; others are mapped for each spawn.
    pub fn stack_size(mut self, bytes: usize) -> Self {
        self.stack_size = Some(bytes.clamp(16 * 1024, 1 << 30).div_ceil(4096) * 4096);
        self
    }

    /// Runs the green thread inside `span`: the hub enters it each time the thread is resumed and
    /// leaves it each time the thread switches away, so the span is never held across a switch
    /// and other green threads never see it as current. Spans created inside get it as parent.
    pub fn instrument(mut self, span: tracing::Span) -> Self {
        self.span = Some(span);
        self
    }

    /// Pins the green thread to hub `index` (modulo the number of hubs).
    pub fn hub(mut self, index: usize) -> Self {
        self.hub = Some(index);
        self
    }

    /// Spawns on the current runtime (the caller's, or the process-wide one).
    pub fn spawn<T, F>(self, f: F) -> GreenThread<T>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        self.spawn_here(f, None)
    }

    /// Spawns on `rt`.
    pub fn spawn_on<T, F>(self, rt: &Runtime, f: F) -> GreenThread<T>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        self.spawn_inner(rt, f, None)
    }

    /// Spawns a green thread that starts after `delay` (GREEN-04).
    pub fn spawn_after<T, F>(self, delay: Duration, f: F) -> GreenThread<T>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        self.spawn_here(f, Some(delay))
    }

    fn spawn_inner<T, F>(self, rt: &Runtime, f: F, delay: Option<Duration>) -> GreenThread<T>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        let hub = rt.shared.pick_hub(self.hub);
        let stack = rt.shared.config.stack_size;
        self.spawn_on_hub(hub, stack, f, delay)
    }

    /// Spawns on the caller's hub when called from a green thread (no runtime lookup), else on
    /// the process-wide runtime.
    fn spawn_here<T, F>(self, f: F, delay: Option<Duration>) -> GreenThread<T>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        if self.hub.is_none() {
            if let Some((hub, stack)) =
                hub::with_hub(|h| (h.shared.clone(), h.rt.config.stack_size))
            {
                return self.spawn_on_hub(hub, stack, f, delay);
            }
        }
        self.spawn_inner(&Runtime::current(), f, delay)
    }

    fn spawn_on_hub<T, F>(
        self,
        hub: Arc<HubShared>,
        default_stack: usize,
        f: F,
        delay: Option<Duration>,
    ) -> GreenThread<T>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        let join = Arc::new(JoinState::<T>::new());
        let j1 = join.clone();
        let entry = Box::new(move || {
            let killed = hub::with_hub(|h| h.current().map(|t| t.kill_requested()))
                .flatten()
                .unwrap_or(true);
            let result = if killed {
                Err(GreenError::Killed)
            } else {
                match catch_unwind(AssertUnwindSafe(f)) {
                    Ok(v) => Ok(v),
                    Err(p) => {
                        if p.is::<generator::Error>() {
                            // generator is tearing the stack down: finish, then let it unwind.
                            drop(j1.complete(Err(GreenError::RuntimeShutdown)));
                            std::panic::resume_unwind(p);
                        }
                        Err(classify_panic(&*p))
                    }
                }
            };
            let links = j1.complete(result);
            if !links.is_empty() {
                if let Some(task) = hub::current_task() {
                    run_links(&GreenThread { task, join: j1 }, links);
                }
            }
        });
        let task = Task::new(
            next_task_id(),
            self.name,
            hub.clone(),
            self.stack_size.unwrap_or(default_stack),
            self.pool_id,
            entry,
            Some(join.clone()),
        );
        task.set_span(self.span);
        if !admit(&hub, task.clone(), delay) {
            join.complete(Err(GreenError::RuntimeShutdown));
        }
        GreenThread { task, join }
    }

    /// Spawns with no handle and no result slot (eventlet's bare greenlet): one allocation less.
    pub(crate) fn spawn_detached<F>(self, f: F)
    where
        F: FnOnce() + Send + 'static,
    {
        let (hub, stack) = match hub::with_hub(|h| (h.shared.clone(), h.rt.config.stack_size)) {
            Some(x) if self.hub.is_none() => x,
            _ => {
                let rt = Runtime::current();
                (rt.shared.pick_hub(self.hub), rt.shared.config.stack_size)
            }
        };
        let entry = Box::new(move || {
            let killed = hub::with_hub(|h| h.current().map(|t| t.kill_requested()))
                .flatten()
                .unwrap_or(true);
            if !killed {
                if let Err(p) = catch_unwind(AssertUnwindSafe(f)) {
                    if p.is::<generator::Error>() {
                        std::panic::resume_unwind(p);
                    }
                    // The panic hook has reported it; a bare green thread's panic goes nowhere
                    // else (GREEN-03).
                }
            }
        });
        let task = Task::new(
            next_task_id(),
            self.name,
            hub.clone(),
            self.stack_size.unwrap_or(stack),
            self.pool_id,
            entry,
            None,
        );
        task.set_span(self.span);
        if !admit(&hub, task, None) {
            tracing::warn!("spawn_n after the runtime shut down: the green thread will not run");
        }
    }
}

/// Queues a new task on `hub` (directly when on its thread). False if the hub has exited.
fn admit(hub: &Arc<HubShared>, task: Arc<Task>, delay: Option<Duration>) -> bool {
    let at = delay.map(|d| Instant::now() + d);
    let admitted = hub::with_hub(|h| {
        if Arc::ptr_eq(&h.shared, hub) {
            h.admit(task.clone(), at);
            true
        } else {
            false
        }
    })
    .unwrap_or(false);
    admitted || hub.inject(Injected::Spawn(task, at)).is_ok()
}

impl<T: Send + 'static> Abort for JoinState<T> {
    fn abort(self: Arc<Self>, err: GreenError, task: Arc<Task>) {
        let links = self.complete(Err(err));
        if !links.is_empty() {
            let gt = GreenThread { task, join: self };
            let hub_index = gt.task.hub.index;
            // Boxed so this generic code does not instantiate itself without end.
            let job: Box<dyn FnOnce() + Send> = Box::new(move || run_links(&gt, links));
            let _ = GreenBuilder::new().hub(hub_index).spawn(job);
        }
    }
}

fn classify_panic(p: &(dyn std::any::Any + Send)) -> GreenError {
    if p.is::<GreenletExit>() {
        GreenError::Killed
    } else if p.is::<TimeoutFired>() {
        GreenError::TimedOut
    } else {
        GreenError::Panicked(panic_message(p))
    }
}

/// Spawns a green thread running `f` (GREEN-02). It does not run yet: it is queued on the hub,
/// and the caller keeps running until it next yields. Threads spawned back to back start in
/// spawn order. Called from a green thread, it spawns on that thread's hub; from a plain OS
/// thread, on the process-wide runtime.
pub fn spawn<T, F>(f: F) -> GreenThread<T>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    GreenBuilder::new().spawn(f)
}

/// Spawns a green thread whose result nobody waits for (GREEN-03). A panic in it is reported by
/// the panic hook and goes nowhere else.
pub fn spawn_n<F>(f: F)
where
    F: FnOnce() + Send + 'static,
{
    GreenBuilder::new().spawn_detached(f);
}

/// Spawns a green thread that starts after `delay`, even if the spawning thread has ended by
/// then (GREEN-04). [`GreenThread::cancel`] before it starts stops it from ever running.
pub fn spawn_after<T, F>(delay: Duration, f: F) -> GreenThread<T>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    GreenBuilder::new().spawn_after(delay, f)
}

/// Parks the calling green thread for at least `d` (GREEN-06). `sleep(Duration::ZERO)` is a pure
/// yield: every green thread that is already runnable gets one turn before the caller resumes.
///
/// Called from a plain OS thread it falls back to `std::thread::sleep` (documented fallback).
pub fn sleep(d: Duration) {
    if d.is_zero() {
        hub::yield_now();
        return;
    }
    let Some(task) = hub::current_task() else {
        std::thread::sleep(d);
        return;
    };
    let deadline = Instant::now() + d;
    loop {
        hub::park_green(&task, Some(deadline));
        if Instant::now() >= deadline {
            return;
        }
    }
}

/// Yields to every other runnable green thread: `sleep(Duration::ZERO)`.
pub fn yield_now() {
    hub::yield_now();
}

/// What the calling green thread knows about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Current {
    /// The green thread's id.
    pub id: u64,
    /// Its name, if it was given one.
    pub name: Option<String>,
    /// Index of the hub it runs on.
    pub hub: usize,
}

/// The calling green thread, or `None` on a plain OS thread.
pub fn current() -> Option<Current> {
    hub::current_task().map(|t| Current {
        id: t.id,
        name: t.name.as_deref().map(str::to_string),
        hub: t.hub.index,
    })
}

/// True when called from inside a green thread.
pub fn in_green_thread() -> bool {
    hub::in_green_thread()
}

/// The index of the hub whose OS thread this is, green thread or not: also `Some` in a task of
/// an event loop that drives the hub ([`Builder::drive_with`](crate::Builder::drive_with)).
/// Green threads spawned from there go to this hub, without waking another thread.
pub fn current_hub() -> Option<usize> {
    hub::with_hub(|h| h.shared.index)
}

/// The id of the pool that spawned the calling green thread (0 = none).
pub(crate) fn current_pool_id() -> u64 {
    hub::with_hub(|h| h.current().map(|t| t.pool_id))
        .flatten()
        .unwrap_or(0)
}

/// A finished handle holding `r`: used where eventlet runs a function inline and still returns
/// a GreenThread (a pool's re-entrant spawn, GREEN-12).
pub(crate) fn completed<T: Send + 'static>(r: Result<T, GreenError>) -> GreenThread<T> {
    let rt = Runtime::current();
    let hub = rt.shared.pick_hub(None);
    let task = Task::new(
        next_task_id(),
        None,
        hub,
        rt.shared.config.stack_size,
        0,
        Box::new(|| {}),
        None,
    );
    task.mark_started();
    let join = Arc::new(JoinState::new());
    join.complete(r);
    GreenThread { task, join }
}
