//! Waiting, for green threads and plain OS threads alike.
//!
//! Every blocking primitive (Event, Semaphore, Queue, GreenThread::wait, pools) is a `Mutex` around
//! its state plus a [`WaitList`]. A caller that must wait puts a [`WaitEntry`] on the list, drops
//! the lock and parks: a green thread parks on its hub (only it stops; the hub runs others), a plain
//! OS thread parks the OS thread. Whoever changes the state pops entries and wakes them; a woken
//! caller re-checks the state under the lock, like a condition variable.
//!
//! A waiter that leaves early (its deadline passed, it was killed, its Timeout fired) after it had
//! already been picked by `notify_one` passes the notification on to the next waiter, so a wake-up
//! meant for "some waiter" is never lost with it (TEST-GREEN-10: "a getter that dies does not
//! swallow an item meant for another waiter").

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::Thread;
use std::time::Instant;

use crate::hub::{self, lock};
use crate::task::Task;

/// Something that can be woken: a green thread or an OS thread.
#[derive(Clone, Debug)]
pub(crate) enum Waiter {
    Green(Arc<Task>),
    Os(Arc<OsParker>),
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
        }
    }

    fn same(&self, other: &Waiter) -> bool {
        match (self, other) {
            (Waiter::Green(a), Waiter::Green(b)) => Arc::ptr_eq(a, b),
            (Waiter::Os(a), Waiter::Os(b)) => Arc::ptr_eq(a, b),
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
        }
    }

    /// Parks the calling thread, which must be the one this waiter was made for, until woken or
    /// `deadline` passes. Spurious returns are possible. In a green thread a pending kill or
    /// Timeout unwinds from here.
    pub(crate) fn park(&self, deadline: Option<Instant>) {
        match self {
            Waiter::Green(t) => hub::park_green(t, deadline),
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
