//! The hub: one OS thread that runs green threads one at a time, fires their timers and polls
//! their sockets (eventlet's hub, GREEN-01/GREEN-29).
//!
//! A hub owns:
//! - a FIFO run queue: `spawn` appends, `sleep(ZERO)` re-appends the caller, so every runnable
//!   green thread gets one turn before the caller resumes (GREEN-06);
//! - a timer heap on the monotonic clock (`Instant`): sleeps, timed waits, `Timeout`s and
//!   `spawn_after` all live here, so a timed wake-up is always resumed *on the hub thread*;
//! - a `mio::Poll` for green sockets, polled when the run queue is empty (with the time to the
//!   next timer as timeout) and every [`IO_EVERY`] turns when it is not;
//! - an inject queue through which other threads (other hubs, tpool workers, the tokio side of the
//!   bridge) hand it green threads to run; they wake the hub with a `mio::Waker` only when it sleeps.
//!
//! A green thread never leaves the hub it was spawned on. This is the invariant that makes the
//! single-hub default behave like eventlet: no two green threads of a hub ever run at once, and a
//! green thread's thread-locals are those of its hub thread for its whole life.

use std::cell::{Cell, RefCell};
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use mio::{Events, Poll, Token, Waker};
use slab::Slab;

use crate::doorbell::{Doorbell, Sleep};
use crate::error::GreenError;
use crate::runtime::RuntimeShared;
use crate::task::{Gen, Task};
use crate::waiter::Waiter;
use crate::watchdog::Culprit;

/// While the run queue is busy, the hub still polls sockets (without blocking) every this many
/// green-thread turns, so I/O is never starved by threads that only yield (tokio uses 61 too).
pub(crate) const IO_EVERY: u32 = 61;
const WAKER_TOKEN: Token = Token(usize::MAX);
/// Generators of the default stack size kept for reuse per hub.
const STACK_CACHE: usize = 1024;

/// Locks a mutex, ignoring poisoning: the data guarded in this crate is kept consistent by
/// short critical sections that do not call user code.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// What another thread asks a hub to do.
pub(crate) enum Injected {
    /// Register and start a new green thread (or arm its `spawn_after` timer).
    Spawn(Arc<Task>, Option<Instant>),
    /// Run a parked green thread that was woken from another thread.
    Run(Arc<Task>),
    /// Start a not-yet-launched (`spawn_after`) green thread now: it was killed.
    Launch(Arc<Task>),
}

/// An action in a hub's timer heap.
pub(crate) enum TimerAction {
    /// Wake a parked green thread (sleep and timed waits).
    Wake(Arc<Task>),
    /// A [`Timeout`](crate::Timeout) with this id fires in the task.
    Timeout(Arc<Task>, u64),
    /// A `spawn_after` delay ran out.
    Launch(Arc<Task>),
}

/// One registered socket: readiness sequence numbers and at most one waiter per direction.
#[derive(Debug, Default)]
pub(crate) struct IoSlot {
    pub(crate) read_seq: AtomicU64,
    pub(crate) write_seq: AtomicU64,
    pub(crate) reader: Mutex<Option<Waiter>>,
    pub(crate) writer: Mutex<Option<Waiter>>,
}

impl IoSlot {
    fn on_event(&self, readable: bool, writable: bool) {
        if readable {
            self.read_seq.fetch_add(1, Ordering::AcqRel);
            if let Some(w) = lock(&self.reader).take() {
                w.wake();
            }
        }
        if writable {
            self.write_seq.fetch_add(1, Ordering::AcqRel);
            if let Some(w) = lock(&self.writer).take() {
                w.wake();
            }
        }
    }
}

#[derive(Default)]
struct InjectQueue {
    items: Vec<Injected>,
    /// Set under the lock when the hub thread has taken its last look: nothing more is accepted.
    closed: bool,
}

/// What runs on a hub now, for the watchdog: a green thread (its id and name) or a task of the
/// loop driving the hub (id 0, its name if known).
pub(crate) type Running = (Culprit, u64, Option<Arc<str>>);

/// The part of a hub that other threads see.
pub(crate) struct HubShared {
    pub(crate) index: usize,
    inject: Mutex<InjectQueue>,
    /// How the hub sleeps, and how many items wait in `inject`.
    bell: Doorbell,
    thread: std::sync::OnceLock<std::thread::Thread>,
    waker: Waker,
    /// The waker of the event loop driving this hub, if one does (see [`HubLoop::turn`]).
    driver_waker: Mutex<Option<std::task::Waker>>,
    pub(crate) registry: mio::Registry,
    pub(crate) io: Mutex<Slab<Arc<IoSlot>>>,
    pub(crate) shutdown: AtomicBool,
    /// Green threads registered on this hub and not finished.
    pub(crate) live: AtomicUsize,
    /// Watchdog: odd while a green thread runs, even while the hub itself runs.
    pub(crate) seq: AtomicU64,
    /// Watchdog: what runs now, a green thread (its id and name) or a task of the loop driving
    /// the hub (its name); kept only when watched.
    pub(crate) running: Mutex<Option<Running>>,
    pub(crate) watched: bool,
    /// 0 = not started, 1 = running, 2 = exited.
    pub(crate) thread_state: AtomicU8,
}

impl std::fmt::Debug for HubShared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HubShared")
            .field("index", &self.index)
            .field("live", &self.live)
            .finish_non_exhaustive()
    }
}

impl HubShared {
    pub(crate) fn new(index: usize, poll: &Poll, watched: bool) -> io::Result<Arc<HubShared>> {
        Ok(Arc::new(HubShared {
            index,
            inject: Mutex::new(InjectQueue::default()),
            bell: Doorbell::new(),
            thread: std::sync::OnceLock::new(),
            waker: Waker::new(poll.registry(), WAKER_TOKEN)?,
            driver_waker: Mutex::new(None),
            registry: poll.registry().try_clone()?,
            io: Mutex::new(Slab::new()),
            shutdown: AtomicBool::new(false),
            live: AtomicUsize::new(0),
            seq: AtomicU64::new(0),
            running: Mutex::new(None),
            watched,
            thread_state: AtomicU8::new(0),
        }))
    }

    /// Hands `item` to the hub thread; gives it back if the hub has exited.
    pub(crate) fn inject(&self, item: Injected) -> Result<(), Injected> {
        let ring = {
            let mut q = lock(&self.inject);
            if q.closed {
                return Err(item);
            }
            q.items.push(item);
            // Counted under the lock, as the hub uncounts what it takes under it: the count
            // never runs below the queue.
            self.bell.add()
        };
        if let Some(how) = ring {
            self.wake_as(how);
        }
        Ok(())
    }

    pub(crate) fn wake(&self) {
        self.wake_as(self.bell.state());
    }

    fn wake_as(&self, how: Sleep) {
        match how {
            Sleep::InPark => {
                if let Some(t) = self.thread.get() {
                    t.unpark();
                }
                return;
            }
            Sleep::InDriver => return self.wake_driver(),
            Sleep::InPoll | Sleep::Awake => {}
        }
        if let Err(e) = self.waker.wake() {
            tracing::error!(hub = self.index, error = %e, "could not wake green hub");
        }
    }
}

impl HubShared {
    /// Wakes the event loop that drives this hub (a no-op for a hub that runs its own loop).
    fn wake_driver(&self) {
        if let Some(w) = lock(&self.driver_waker).as_ref() {
            w.wake_by_ref();
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Reason {
    None,
    Park,
    Again,
}

#[derive(Default)]
struct Timers {
    heap: BinaryHeap<Reverse<(Instant, u64)>>,
    actions: HashMap<u64, TimerAction>,
    next_key: u64,
}

/// The hub-thread-only part of a hub. It lives on the hub thread's stack for the whole run loop.
pub(crate) struct HubLocal {
    pub(crate) shared: Arc<HubShared>,
    pub(crate) rt: Arc<RuntimeShared>,
    runq: RefCell<VecDeque<Arc<Task>>>,
    timers: RefCell<Timers>,
    /// Points at the `Arc` of the running task, which lives in `run_task`'s frame while the
    /// task runs; null otherwise.
    current: Cell<*const Arc<Task>>,
    /// Local copy of `shared.seq` (only this thread writes it).
    seq: Cell<u64>,
    reason: Cell<Reason>,
    stacks: RefCell<Vec<Gen>>,
    tasks: RefCell<Slab<Arc<Task>>>,
    /// Driven by an event loop of its own ([`HubLoop::turn`]) rather than [`HubLoop::run`].
    driven: Cell<bool>,
    /// True inside [`HubLoop::turn`]: work queued then is seen before the turn ends.
    in_turn: Cell<bool>,
    /// The driver was told of work since the last turn began: telling it again would only cost.
    told: Cell<bool>,
}

thread_local! {
    static HUB: Cell<*const HubLocal> = const { Cell::new(std::ptr::null()) };
}

/// Runs `f` with the hub of the current OS thread, if this is a hub thread.
#[inline]
pub(crate) fn with_hub<R>(f: impl FnOnce(&HubLocal) -> R) -> Option<R> {
    let p = HUB.with(|h| h.get());
    if p.is_null() {
        None
    } else {
        // SAFETY: `HUB` is set to a `HubLocal` that lives on the hub thread's stack for the whole
        // run loop and is reset to null before it is dropped (see `run`). Only this thread reads
        // it, and green threads only execute inside that loop.
        Some(f(unsafe { &*p }))
    }
}

/// The green thread running on this OS thread right now, if any.
#[inline]
pub(crate) fn current_task() -> Option<Arc<Task>> {
    with_hub(|h| h.current().cloned()).flatten()
}

/// True when called from inside a green thread.
#[inline]
pub(crate) fn in_green_thread() -> bool {
    with_hub(|h| h.current().is_some()).unwrap_or(false)
}

/// Puts a woken task back on its hub's run queue, from any thread.
pub(crate) fn schedule(task: Arc<Task>) {
    let local = with_hub(|h| {
        if Arc::ptr_eq(&h.shared, &task.hub) {
            h.ready(task.clone());
            true
        } else {
            false
        }
    })
    .unwrap_or(false);
    if !local {
        let hub = task.hub.clone();
        // A hub that has exited has no parked tasks left to run: dropping the item is correct.
        let _ = hub.inject(Injected::Run(task));
    }
}

/// Gives every other runnable green thread one turn (`sleep(0)`, GREEN-06).
pub(crate) fn yield_now() {
    let in_green = with_hub(|h| match h.current() {
        Some(t) => {
            t.check_interrupts();
            h.reason.set(Reason::Again);
            true
        }
        None => false,
    })
    .unwrap_or(false);
    if !in_green {
        std::thread::yield_now();
        return;
    }
    generator::co_yield_with(());
    with_hub(|h| {
        if let Some(t) = h.current() {
            t.check_interrupts();
        }
    });
}

/// Parks the current green thread until it is unparked or `deadline` passes (spurious wake-ups
/// are possible: callers re-check their condition). A pending kill or Timeout unwinds from here.
pub(crate) fn park_green(task: &Arc<Task>, deadline: Option<Instant>) {
    task.check_interrupts();
    let key = deadline.and_then(|d| with_hub(|h| h.add_timer(d, TimerAction::Wake(task.clone()))));
    if task.park.begin_park() {
        with_hub(|h| h.reason.set(Reason::Park));
        generator::co_yield_with(());
    }
    if let Some(k) = key {
        with_hub(|h| h.cancel_timer(k));
    }
    task.check_interrupts();
}

impl HubLocal {
    #[inline]
    pub(crate) fn current(&self) -> Option<&Arc<Task>> {
        let p = self.current.get();
        // SAFETY: `current` is non-null only while `run_task` is inside `resume`, and then it
        // points at the `Arc` held in `run_task`'s own frame, which outlives the resume. Only
        // this thread reads it: from the running task's body, which runs inside that resume.
        unsafe { p.as_ref() }
    }

    #[inline]
    fn bump_seq(&self) {
        let v = self.seq.get() + 1;
        self.seq.set(v);
        self.shared.seq.store(v, Ordering::Release);
    }

    /// Marks whether the loop driving this hub runs work of its own now (its tasks, between the
    /// hub's turns): the watchdog's counter is odd while anything but the hub's own code runs,
    /// so a task that blocks the thread is seen as a green thread that does not yield is.
    /// `task` names the task, when it is known.
    pub(crate) fn set_driver_busy(&self, busy: bool, task: Option<Arc<str>>) {
        if !self.driven.get() || self.in_turn.get() {
            return;
        }
        let odd = self.seq.get() % 2 == 1;
        if busy && odd {
            // Still the loop's work, but it moved on (another task, a tick): progress.
            self.bump_seq();
            self.bump_seq();
        } else if busy != odd {
            self.bump_seq();
        }
        if self.shared.watched {
            *lock(&self.shared.running) = busy.then_some((Culprit::Task, 0, task));
        }
    }

    /// Queues a runnable task. Outside a turn of a driven hub (a task of the event loop driving
    /// it woke a green thread), the loop is told, so it runs the hub again.
    fn ready(&self, task: Arc<Task>) {
        self.runq.borrow_mut().push_back(task);
        self.notify_driver();
    }

    /// Tells the event loop driving this hub that it has work, when that loop is not running
    /// the hub right now (it would see the work before its turn ends).
    #[inline]
    fn notify_driver(&self) {
        if self.driven.get() && !self.in_turn.get() && !self.told.replace(true) {
            self.shared.wake_driver();
        }
    }

    pub(crate) fn add_timer(&self, at: Instant, action: TimerAction) -> u64 {
        let key = {
            let mut t = self.timers.borrow_mut();
            t.next_key += 1;
            let key = t.next_key;
            t.heap.push(Reverse((at, key)));
            t.actions.insert(key, action);
            key
        };
        // A timer armed outside a turn may be earlier than the one the loop sleeps until.
        self.notify_driver();
        key
    }

    pub(crate) fn cancel_timer(&self, key: u64) {
        self.timers.borrow_mut().actions.remove(&key);
    }

    /// Registers a new task on this hub and queues it (or arms its delay).
    pub(crate) fn admit(&self, task: Arc<Task>, at: Option<Instant>) {
        let key = self.tasks.borrow_mut().insert(task.clone());
        // SAFETY: we are on the task's hub thread, outside its body (it has not started).
        unsafe { task.local().slab_key = key };
        self.shared
            .live
            .store(self.tasks.borrow().len(), Ordering::Release);
        match at {
            None => {
                task.claim_launch();
                self.ready(task);
            }
            Some(at) => {
                self.add_timer(at, TimerAction::Launch(task));
            }
        }
    }

    /// Puts a not-yet-started task on the run queue now (a kill of a `spawn_after` thread).
    pub(crate) fn launch_now(&self, task: Arc<Task>) {
        if task.claim_launch() {
            self.ready(task);
        }
    }

    fn fire_timers(&self) {
        if self.timers.borrow().heap.is_empty() {
            return;
        }
        let now = Instant::now();
        loop {
            let action = {
                let mut t = self.timers.borrow_mut();
                match t.heap.peek() {
                    Some(Reverse((at, key))) if *at <= now => {
                        let key = *key;
                        t.heap.pop();
                        t.actions.remove(&key)
                    }
                    _ => break,
                }
            };
            match action {
                Some(TimerAction::Wake(task)) => task.unpark(),
                Some(TimerAction::Timeout(task, id)) if task.fire_timeout(id) => task.unpark(),
                Some(TimerAction::Timeout(..)) => {}
                Some(TimerAction::Launch(task)) => self.launch_now(task),
                None => {}
            }
        }
    }

    fn next_deadline(&self) -> Option<Instant> {
        let mut t = self.timers.borrow_mut();
        // drop cancelled entries from the top so they do not shorten the poll timeout
        while let Some(Reverse((at, key))) = t.heap.peek().copied() {
            if t.actions.contains_key(&key) {
                return Some(at);
            }
            t.heap.pop();
        }
        None
    }

    fn drain_inject(&self) {
        if !self.shared.bell.pending() {
            return;
        }
        self.drain_inject_closing(false);
    }

    fn drain_inject_closing(&self, close: bool) {
        let items = {
            let mut q = lock(&self.shared.inject);
            q.closed |= close;
            let items = std::mem::take(&mut q.items);
            self.shared.bell.take(items.len());
            items
        };
        for item in items {
            match item {
                Injected::Spawn(task, at) => {
                    if self.shared.shutdown.load(Ordering::Acquire) {
                        // SAFETY: on the owning hub thread, the task never started.
                        let abort = unsafe { task.local().on_abort.take() };
                        if let Some(f) = abort {
                            f.abort(GreenError::RuntimeShutdown, task.clone());
                        }
                        continue;
                    }
                    self.admit(task, at)
                }
                Injected::Run(task) => self.runq.borrow_mut().push_back(task),
                Injected::Launch(task) => self.launch_now(task),
            }
        }
    }

    fn run_task(&self, task: Arc<Task>) {
        // SAFETY: on the owning hub thread and outside the task's body (it is suspended or new).
        let tl = unsafe { task.local() };
        if tl.gen.is_none() {
            let Some(entry) = tl.entry.take() else {
                return; // finished already (queued twice by a kill and a timer)
            };
            let mut gen = if task.stack_size == self.rt.config.stack_size {
                self.stacks.borrow_mut().pop()
            } else {
                None
            };
            match gen.as_mut() {
                Some(g) => g.init_code(entry),
                None => {
                    let words = task.stack_size / std::mem::size_of::<usize>();
                    let mut g = generator::Gn::<()>::new_opt(words, entry);
                    // Coroutine mode: a panic or overflow stops at `resume` instead of unwinding
                    // into the hub. The pointer is only tested for null by generator.
                    g.set_local_data(std::ptr::NonNull::<u8>::dangling().as_ptr());
                    gen = Some(g);
                }
            }
            tl.gen = gen;
            task.mark_started();
        }
        let shared = &self.shared;
        if shared.watched {
            *lock(&shared.running) = Some((Culprit::GreenThread, task.id, task.name.clone()));
        }
        self.bump_seq();
        self.current.set(&task);
        self.reason.set(Reason::None);
        let Some(gen) = tl.gen.as_mut() else { return };
        let entered = tl.span.as_ref().map(tracing::Span::enter);
        gen.resume();
        drop(entered);
        self.current.set(std::ptr::null());
        self.bump_seq();
        if shared.watched {
            *lock(&shared.running) = None;
        }
        let reason = self.reason.get();
        if reason == Reason::None || gen.is_done() {
            // Finished, or switched away without saying why: generator's guard-page handler does
            // that on a stack overflow, leaving the error in the panic slot.
            let overflowed = gen.get_panic_data().is_some_and(|p| {
                matches!(
                    p.downcast_ref::<generator::Error>(),
                    Some(generator::Error::StackErr)
                )
            });
            self.finish(&task, overflowed);
            return;
        }
        match reason {
            Reason::Park => {
                if !task.park.commit_park() {
                    self.runq.borrow_mut().push_back(task);
                }
            }
            _ => self.runq.borrow_mut().push_back(task),
        }
    }

    fn finish(&self, task: &Arc<Task>, overflowed: bool) {
        // SAFETY: on the owning hub thread, the body is finished or dead.
        let tl = unsafe { task.local() };
        if let Some(mut gen) = tl.gen.take() {
            if overflowed {
                let payload = gen.get_panic_data();
                tracing::error!(
                    green_thread = task.id,
                    name = task.name.as_deref().unwrap_or(""),
                    stack_size = task.stack_size,
                    overflow = payload.is_some(),
                    "green thread overflowed its stack; its frames are not unwound and its stack is leaked"
                );
                // Dropping it would resume the broken stack; leak it on purpose.
                let _ = gen.into_raw();
                if let Some(f) = tl.on_abort.take() {
                    f.abort(
                        GreenError::StackOverflow {
                            stack_size: task.stack_size,
                        },
                        task.clone(),
                    );
                }
            } else if task.stack_size == self.rt.config.stack_size
                && self.stacks.borrow().len() < STACK_CACHE
            {
                self.stacks.borrow_mut().push(gen);
            }
        }
        tl.on_abort = None;
        let key = tl.slab_key;
        if key != usize::MAX && self.tasks.borrow().contains(key) {
            self.tasks.borrow_mut().remove(key);
            self.shared
                .live
                .store(self.tasks.borrow().len(), Ordering::Release);
        }
    }

    /// Polls the hub's sockets and wakes their waiters; returns how many events came (a full
    /// `events` means more may be waiting).
    fn poll_io(&self, poll: &mut Poll, events: &mut Events, timeout: Option<Duration>) -> usize {
        if let Err(e) = poll.poll(events, timeout) {
            if e.kind() != io::ErrorKind::Interrupted {
                tracing::error!(hub = self.shared.index, error = %e, "green hub poll failed");
            }
            return 0;
        }
        if events.is_empty() {
            return 0;
        }
        let io = lock(&self.shared.io);
        for ev in events.iter() {
            if ev.token() == WAKER_TOKEN {
                continue;
            }
            if let Some(slot) = io.get(ev.token().0) {
                let closed = ev.is_error() || ev.is_read_closed() || ev.is_write_closed();
                slot.on_event(ev.is_readable() || closed, ev.is_writable() || closed);
            }
        }
        events.iter().count()
    }

    fn kill_all(&self) {
        let tasks: Vec<Arc<Task>> = self.tasks.borrow().iter().map(|(_, t)| t.clone()).collect();
        for t in tasks {
            t.request_kill();
            if t.claim_launch() {
                self.runq.borrow_mut().push_back(t);
            } else {
                t.unpark();
            }
        }
    }
}

/// What a [`HubLoop::turn`] ended with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Step {
    /// Green threads are still runnable: the budget ran out first.
    More,
    /// Nothing to run until a timer at `deadline`, a socket event or a wake-up. The hub counts
    /// as asleep: wake-ups from other threads go to the driver's waker (or the hub's own
    /// parking, for a hub that runs its own loop). `io` says whether it has sockets.
    Idle { deadline: Option<Instant>, io: bool },
    /// The runtime shut down and no green thread is left: the hub is finished.
    Exited,
}

/// Events taken from the poller at once.
const EVENTS: usize = 256;

/// A hub's loop state on its thread: the hub-local part, its poller, and where the loop is.
/// [`HubLoop::run`] is the hub's own loop; an event loop of another kind (tokio's, through a
/// [`HubDriver`](crate::HubDriver)) calls [`HubLoop::turn`] instead and parks on its own.
pub(crate) struct HubLoop {
    /// Boxed: the `HUB` thread-local points at it for the loop's whole life.
    local: Box<HubLocal>,
    poll: Poll,
    events: Events,
    turns: u32,
    killed: bool,
    exited: bool,
}

impl HubLoop {
    /// Makes the calling thread `shared`'s hub thread.
    pub(crate) fn new(
        shared: Arc<HubShared>,
        rt: Arc<RuntimeShared>,
        poll: Poll,
        driven: bool,
    ) -> HubLoop {
        let local = Box::new(HubLocal {
            shared: shared.clone(),
            rt,
            runq: RefCell::new(VecDeque::with_capacity(1024)),
            timers: RefCell::new(Timers::default()),
            current: Cell::new(std::ptr::null()),
            seq: Cell::new(0),
            reason: Cell::new(Reason::None),
            stacks: RefCell::new(Vec::new()),
            tasks: RefCell::new(Slab::new()),
            driven: Cell::new(driven),
            in_turn: Cell::new(false),
            told: Cell::new(false),
        });
        HUB.with(|h| h.set(&*local));
        let _ = shared.thread.set(std::thread::current());
        shared.thread_state.store(1, Ordering::Release);
        HubLoop {
            local,
            poll,
            events: Events::with_capacity(EVENTS),
            turns: 0,
            killed: false,
            exited: false,
        }
    }

    pub(crate) fn shared(&self) -> &Arc<HubShared> {
        &self.local.shared
    }

    pub(crate) fn poll_fd(&self) -> std::os::fd::RawFd {
        use std::os::fd::AsRawFd;
        self.poll.as_raw_fd()
    }

    /// Registers the waker of the event loop driving this hub: it is woken when work arrives
    /// from another thread while the hub is idle, and when this thread queues work outside a
    /// turn.
    pub(crate) fn set_driver_waker(&self, waker: &std::task::Waker) {
        let mut w = lock(&self.local.shared.driver_waker);
        match &*w {
            Some(old) if old.will_wake(waker) => {}
            _ => *w = Some(waker.clone()),
        }
    }

    /// Runs green threads (firing due timers and taking what other threads handed over) until
    /// none is runnable or `budget` of them ran. `io_ready`: the poller has events to take.
    pub(crate) fn turn(&mut self, budget: u32, io_ready: bool) -> Step {
        if self.exited {
            return Step::Exited;
        }
        let local = &*self.local;
        let shared = &local.shared;
        shared.bell.wake_up();
        if local.seq.get() % 2 == 1 {
            // The loop's tasks ran since the last turn: the hub's own code runs now.
            local.bump_seq();
        }
        local.in_turn.set(true);
        local.told.set(false);
        if io_ready {
            // Everything the poller holds: an event loop watching its descriptor is told of new
            // events only (edge-triggered), not of those left behind.
            while local.poll_io(&mut self.poll, &mut self.events, Some(Duration::ZERO)) >= EVENTS {}
        }
        let mut ran = 0;
        let step = loop {
            local.fire_timers();
            local.drain_inject();
            let next = local.runq.borrow_mut().pop_front();
            if let Some(task) = next {
                local.run_task(task);
                self.turns += 1;
                if self.turns >= IO_EVERY {
                    self.turns = 0;
                    local.poll_io(&mut self.poll, &mut self.events, Some(Duration::ZERO));
                }
                ran += 1;
                if ran >= budget {
                    break Step::More;
                }
                continue;
            }
            if shared.shutdown.load(Ordering::Acquire) {
                if local.tasks.borrow().is_empty() {
                    self.exited = true;
                    break Step::Exited;
                }
                if !self.killed {
                    self.killed = true;
                    local.kill_all();
                    continue;
                }
            }
            let deadline = local.next_deadline();
            // Sockets can only be registered by this hub's own green threads, which cannot run
            // while it sleeps: with none registered, a futex park is enough and is cheaper to wake.
            let io = !lock(&shared.io).is_empty();
            let how = if local.driven.get() {
                Sleep::InDriver
            } else if io {
                Sleep::InPoll
            } else {
                Sleep::InPark
            };
            // Whatever was handed over before this is seen here; whatever comes after it wakes
            // the hub (see `Doorbell`).
            if !shared.bell.try_sleep(how) {
                continue;
            }
            if shared.shutdown.load(Ordering::Acquire) && !self.killed {
                shared.bell.wake_up();
                continue;
            }
            break Step::Idle { deadline, io };
        };
        local.in_turn.set(false);
        if local.driven.get() {
            // Until the loop sleeps (`driver_busy(false)`), what runs on this thread is its work.
            local.set_driver_busy(true, None);
        }
        step
    }

    /// The hub's own loop: turns, and sleeps in its poller (or a futex park when it has no
    /// sockets) until the next timer or a wake-up. Returns once the hub is finished.
    pub(crate) fn run(&mut self) {
        loop {
            match self.turn(u32::MAX, false) {
                Step::Exited => return,
                Step::More => {}
                Step::Idle { deadline, io } => {
                    let timeout = deadline.map(|d| d.saturating_duration_since(Instant::now()));
                    if io {
                        self.local
                            .poll_io(&mut self.poll, &mut self.events, timeout);
                    } else {
                        match timeout {
                            Some(t) => std::thread::park_timeout(t),
                            None => std::thread::park(),
                        }
                    }
                    self.local.shared.bell.wake_up();
                    self.turns = 0;
                }
            }
        }
    }
}

impl Drop for HubLoop {
    /// A driven hub whose event loop stopped before the hub finished carries on with its own
    /// loop, so its green threads are neither lost nor left waiting; then the hub fails
    /// whatever arrived after its last turn, refuses anything later, and detaches.
    fn drop(&mut self) {
        if !self.exited && !std::thread::panicking() {
            if self.local.driven.get() {
                tracing::warn!(
                    hub = self.local.shared.index,
                    "the event loop driving this green hub stopped first; the hub runs on by itself"
                );
            }
            self.local.driven.set(false);
            *lock(&self.local.shared.driver_waker) = None;
            self.run();
        }
        self.local.drain_inject_closing(true);
        HUB.with(|h| h.set(std::ptr::null()));
        self.local.shared.thread_state.store(2, Ordering::Release);
    }
}

/// The hub thread's main loop. Returns when the runtime shuts down and no green thread is left.
pub(crate) fn run(shared: Arc<HubShared>, rt: Arc<RuntimeShared>, poll: Poll) {
    HubLoop::new(shared, rt, poll, false).run();
}
