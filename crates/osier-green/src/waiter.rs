//! Waiting, for green threads and plain OS threads alike.
//!
//! Every blocking primitive (Event, Semaphore, Queue, GreenThread::wait, pools) is a `Mutex` around
//! its state plus a [`WaitList`]. A caller that must wait puts itself on the list, drops the lock
//! and parks: a green thread parks on its hub (only it stops; the hub runs others), a plain OS
//! thread parks the OS thread, and an async task registers its `Waker` and returns `Pending` (see
//! [`WaitFuture`]). Whoever changes the state pops waiters and wakes them; a woken caller re-checks
//! the state under the lock, like a condition variable.
//!
//! This module also holds the public parking API ([`Unparker`], [`park`], [`park_timeout`]), the
//! building block osier-bridge uses to turn a green thread into a `std::task::Waker`.
//!
//! A waiter that leaves early (its deadline passed, it was killed, its Timeout fired) after it had
//! already been picked by `notify_one` passes the notification on to the next waiter, so a wake-up
//! meant for "some waiter" is never lost with it (TEST-GREEN-10: "a getter that dies does not
//! swallow an item meant for another waiter").

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Wake, Waker};
use std::thread::Thread;
use std::time::{Duration, Instant};

use crate::hub::{self, lock};
use crate::task::Task;

/// Something that can be woken: a green thread, an OS thread, or an async task.
#[derive(Clone, Debug)]
pub(crate) enum Waiter {
    Green(Arc<Task>),
    Os(Arc<OsParker>),
    Async(Arc<AsyncWaiter>),
}

/// An async task waiting on a primitive: its latest `Waker`.
#[derive(Debug)]
pub(crate) struct AsyncWaiter {
    waker: Mutex<Waker>,
    chosen: AtomicBool,
}

/// Parks a plain OS thread.
#[derive(Debug)]
pub(crate) struct OsParker {
    thread: Thread,
    notified: AtomicBool,
    /// Set when a [`WaitList`] picked this thread (see [`Waiter::chosen`]).
    chosen: AtomicBool,
}

thread_local! {
    static OS_PARKER: Arc<OsParker> = Arc::new(OsParker {
        thread: std::thread::current(),
        notified: AtomicBool::new(false),
        chosen: AtomicBool::new(false),
    });
}

impl Waiter {
    /// The waiter for the calling thread (its green thread if it is in one).
    pub(crate) fn current() -> Waiter {
        match hub::current_task() {
            Some(t) => Waiter::Green(t),
            None => Waiter::Os(OS_PARKER.with(|p| p.clone())),
        }
    }

    /// The flag a [`WaitList`] sets when it picks this waiter. A waiter is on at most one list at
    /// a time (it waits for one thing), so one flag per waiter suffices; it is read and written
    /// only under the lock of the list the waiter is on.
    fn chosen(&self) -> &AtomicBool {
        match self {
            Waiter::Green(t) => &t.chosen,
            Waiter::Os(p) => &p.chosen,
            Waiter::Async(a) => &a.chosen,
        }
    }

    fn same(&self, other: &Waiter) -> bool {
        match (self, other) {
            (Waiter::Green(a), Waiter::Green(b)) => Arc::ptr_eq(a, b),
            (Waiter::Os(a), Waiter::Os(b)) => Arc::ptr_eq(a, b),
            (Waiter::Async(a), Waiter::Async(b)) => Arc::ptr_eq(a, b),
            _ => false,
        }
    }

    /// Like [`wake`](Waiter::wake), consuming the handle (saves a reference-count round trip).
    pub(crate) fn wake_owned(self) {
        match self {
            Waiter::Green(t) => {
                if t.park.unpark() {
                    hub::schedule(t);
                }
            }
            os => os.wake(),
        }
    }

    pub(crate) fn wake(&self) {
        match self {
            Waiter::Green(t) => t.unpark(),
            Waiter::Os(p) => {
                p.notified.store(true, Ordering::Release);
                p.thread.unpark();
            }
            Waiter::Async(a) => lock(&a.waker).wake_by_ref(),
        }
    }

    /// Parks the calling thread, which must be the one this waiter was made for, until woken or
    /// `deadline` passes. Spurious returns are possible. In a green thread a pending kill or
    /// Timeout unwinds from here.
    pub(crate) fn park(&self, deadline: Option<Instant>) {
        match self {
            Waiter::Green(t) => hub::park_green(t, deadline),
            // An async waiter never parks: WaitFuture returns Pending instead.
            Waiter::Async(_) => {}
            Waiter::Os(p) => loop {
                if p.notified.swap(false, Ordering::AcqRel) {
                    return;
                }
                match deadline {
                    None => std::thread::park(),
                    Some(d) => {
                        let now = Instant::now();
                        if now >= d {
                            return;
                        }
                        std::thread::park_timeout(d - now);
                    }
                }
            },
        }
    }
}

/// A FIFO of waiters, kept inside the state mutex of a primitive.
#[derive(Debug, Default)]
pub(crate) struct WaitList {
    entries: VecDeque<Waiter>,
}

impl WaitList {
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    fn push(&mut self, w: Waiter) {
        w.chosen().store(false, Ordering::Relaxed);
        self.entries.push_back(w);
    }

    /// Removes `w` if it is still queued. Returns false if it was already picked by a notify.
    fn remove(&mut self, w: &Waiter) -> bool {
        if let Some(i) = self.entries.iter().position(|x| x.same(w)) {
            self.entries.remove(i);
            true
        } else {
            false
        }
    }

    /// Wakes the longest-waiting caller. Returns false if there was none.
    pub(crate) fn notify_one(&mut self) -> bool {
        match self.entries.pop_front() {
            Some(w) => {
                w.chosen().store(true, Ordering::Relaxed);
                w.wake_owned();
                true
            }
            None => false,
        }
    }

    /// Wakes every waiting caller.
    pub(crate) fn notify_all(&mut self) {
        while self.notify_one() {}
    }
}

/// Removes a waiter from its list when it leaves by unwinding (kill, Timeout), passing on a
/// notification it had already been given.
struct LeaveGuard<'a, S> {
    mutex: &'a Mutex<S>,
    list: fn(&mut S) -> &mut WaitList,
    waiter: Option<&'a Waiter>,
}

impl<S> Drop for LeaveGuard<'_, S> {
    fn drop(&mut self) {
        if let Some(w) = self.waiter.take() {
            let mut g = lock(self.mutex);
            let list = (self.list)(&mut g);
            if !list.remove(w) && w.chosen().load(Ordering::Relaxed) {
                list.notify_one();
            }
        }
    }
}

/// Waits until `attempt` succeeds under the lock, or `deadline` passes.
///
/// `attempt` is called with the state locked; it returns `Some` when the caller may proceed.
/// `list` picks the wait list inside the state. On timeout, `attempt` has been tried one last
/// time and `Err(guard)` is returned with the lock held, so the caller can undo its bookkeeping.
pub(crate) fn wait_until<'a, S, R>(
    mutex: &'a Mutex<S>,
    list: fn(&mut S) -> &mut WaitList,
    deadline: Option<Instant>,
    mut attempt: impl FnMut(&mut S) -> Option<R>,
) -> Result<R, MutexGuard<'a, S>> {
    let mut g = lock(mutex);
    if let Some(r) = attempt(&mut g) {
        return Ok(r);
    }
    let me = Waiter::current();
    loop {
        if deadline.is_some_and(|d| Instant::now() >= d) {
            return Err(g);
        }
        list(&mut g).push(me.clone());
        drop(g);
        let mut guard = LeaveGuard {
            mutex,
            list,
            waiter: Some(&me),
        };
        me.park(deadline);
        guard.waiter = None;
        drop(guard);
        g = lock(mutex);
        if !me.chosen().load(Ordering::Relaxed) {
            // woken by a timer or spuriously: still queued (a chosen waiter was already popped)
            list(&mut g).remove(&me);
        }
        if let Some(r) = attempt(&mut g) {
            return Ok(r);
        }
    }
}

/// A future that waits on a primitive without blocking its executor's thread: the async form of
/// [`wait_until`]. Dropping it before it completes leaves the wait list cleanly (a notification it
/// had already been given is passed on), so it is cancel-safe.
pub(crate) struct WaitFuture<'a, S, R, A>
where
    A: FnMut(&mut S) -> Option<R>,
{
    mutex: &'a Mutex<S>,
    list: fn(&mut S) -> &mut WaitList,
    attempt: A,
    me: Option<Waiter>,
}

impl<'a, S, R, A> WaitFuture<'a, S, R, A>
where
    A: FnMut(&mut S) -> Option<R>,
{
    pub(crate) fn new(mutex: &'a Mutex<S>, list: fn(&mut S) -> &mut WaitList, attempt: A) -> Self {
        WaitFuture {
            mutex,
            list,
            attempt,
            me: None,
        }
    }
}

// The future holds no self-references and never relies on being pinned.
impl<S, R, A> Unpin for WaitFuture<'_, S, R, A> where A: FnMut(&mut S) -> Option<R> {}

impl<S, R, A> Future for WaitFuture<'_, S, R, A>
where
    A: FnMut(&mut S) -> Option<R>,
{
    type Output = R;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<R> {
        let this = self.get_mut();
        let mut g = lock(this.mutex);
        if let Some(me) = &this.me {
            if !me.chosen().load(Ordering::Relaxed) {
                (this.list)(&mut g).remove(me);
            }
        }
        if let Some(r) = (this.attempt)(&mut g) {
            this.me = None;
            return Poll::Ready(r);
        }
        let me = match &this.me {
            Some(Waiter::Async(a)) => {
                let mut w = lock(&a.waker);
                if !w.will_wake(cx.waker()) {
                    *w = cx.waker().clone();
                }
                drop(w);
                Waiter::Async(a.clone())
            }
            _ => Waiter::Async(Arc::new(AsyncWaiter {
                waker: Mutex::new(cx.waker().clone()),
                chosen: AtomicBool::new(false),
            })),
        };
        (this.list)(&mut g).push(me.clone());
        this.me = Some(me);
        Poll::Pending
    }
}

impl<S, R, A> Drop for WaitFuture<'_, S, R, A>
where
    A: FnMut(&mut S) -> Option<R>,
{
    fn drop(&mut self) {
        if let Some(me) = self.me.take() {
            let mut g = lock(self.mutex);
            let list = (self.list)(&mut g);
            if !list.remove(&me) && me.chosen().load(Ordering::Relaxed) {
                list.notify_one();
            }
        }
    }
}

/// Wakes one green thread or OS thread from any thread (the `unpark` half of [`park`]).
///
/// ```
/// let gt = osier_green::spawn(|| {
///     let me = osier_green::Unparker::current();
///     std::thread::spawn(move || me.unpark());
///     osier_green::park(); // only this green thread waits
/// });
/// gt.wait().unwrap();
/// ```
#[derive(Clone, Debug)]
pub struct Unparker(Waiter);

impl Unparker {
    /// The unparker of the calling green thread, or of the calling OS thread.
    pub fn current() -> Unparker {
        Unparker(Waiter::current())
    }

    /// Wakes the thread if it is parked; otherwise its next [`park`] returns at once.
    pub fn unpark(&self) {
        self.0.wake();
    }

    /// True if this unparker wakes a green thread.
    pub fn is_green(&self) -> bool {
        matches!(self.0, Waiter::Green(_))
    }

    /// A `std::task::Waker` that unparks this thread: lets a green thread poll a future itself.
    /// For a green thread it is the green thread itself (no allocation).
    pub fn into_waker(self) -> Waker {
        match self.0 {
            Waiter::Green(t) => Waker::from(t),
            other => Waker::from(Arc::new(Unparker(other))),
        }
    }
}

impl Wake for Unparker {
    fn wake(self: Arc<Self>) {
        self.0.wake();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.0.wake();
    }
}

/// Runs `f` with a `Waker` that unparks the calling green thread, without touching its reference
/// count (the cheapest way for a green thread to poll a future itself). `None` outside a green
/// thread. `f` may park; clones of the waker are ordinary owned wakers.
pub fn with_current_waker<R>(f: impl FnOnce(&Waker) -> R) -> Option<R> {
    let ptr = hub::with_hub(|h| h.current().map(Arc::as_ptr)).flatten()?;
    // SAFETY: `ptr` comes from the live `Arc<Task>` of the running green thread. The hub's task
    // registry holds a strong reference until the green thread's body has returned, which cannot
    // happen while `f` runs in it, so the pointee outlives `f`. The `Arc` rebuilt here is never
    // dropped (ManuallyDrop), so the count it did not increment is never decremented; clones of
    // the waker increment it as usual.
    let waker = std::mem::ManuallyDrop::new(Waker::from(unsafe { Arc::from_raw(ptr) }));
    Some(f(&waker))
}

/// Parks the calling green thread (only it; its hub runs others) or OS thread until its
/// [`Unparker`] is used. A wake-up that came before the call makes it return at once; spurious
/// returns are possible, so call it in a loop that re-checks a condition. In a green thread a
/// pending kill or `Timeout` unwinds from here.
pub fn park() {
    Waiter::current().park(None)
}

/// Like [`park`], returning after `timeout` at the latest.
pub fn park_timeout(timeout: Duration) {
    Waiter::current().park(Some(Instant::now() + timeout))
}
