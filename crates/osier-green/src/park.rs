//! The park/unpark hand-off between a green thread and whoever wakes it.
//!
//! This is the one place where a green thread and another thread (another hub, a tpool worker, a
//! tokio task through the bridge) race. Everything else in the crate waits through it.
//!
//! A green thread's `state` is one of:
//!
//! | state      | meaning                                                            |
//! |------------|--------------------------------------------------------------------|
//! | `EMPTY`    | running (or queued to run), no wake-up pending                     |
//! | `NOTIFIED` | running, and a wake-up arrived that its next `park` will consume   |
//! | `PARKED`   | off the run queue; the next `unpark` must put it back              |
//!
//! The green thread calls [`ParkState::begin_park`] before it switches to its hub; if a wake-up is
//! already pending it does not switch at all. After the switch the *hub* calls
//! [`ParkState::commit_park`], which moves `EMPTY -> PARKED`; if an `unpark` slipped in between
//! (the state is `NOTIFIED` again) the commit fails and the hub re-queues the thread at once.
//! [`ParkState::unpark`] moves `PARKED -> EMPTY` and returns `true` exactly when the caller must
//! schedule the thread, so a thread is scheduled at most once per park and no wake-up is lost.
//! The loom model at the bottom of this file checks both claims.

#[cfg(loom)]
use loom::sync::atomic::{AtomicU8, Ordering};
#[cfg(not(loom))]
use std::sync::atomic::{AtomicU8, Ordering};

const EMPTY: u8 = 0;
const NOTIFIED: u8 = 1;
const PARKED: u8 = 2;

/// The atomic park state of one green thread (see the module docs).
#[derive(Debug)]
pub(crate) struct ParkState(AtomicU8);

impl ParkState {
    pub(crate) fn new() -> Self {
        ParkState(AtomicU8::new(EMPTY))
    }

    /// Called by the green thread itself before it switches away. Returns `false` when a wake-up
    /// was pending (it is consumed, and the thread must not switch).
    #[inline]
    pub(crate) fn begin_park(&self) -> bool {
        self.0.swap(EMPTY, Ordering::AcqRel) != NOTIFIED
    }

    /// Called by the hub after the green thread switched away to park. Returns `false` when a
    /// wake-up arrived in between: the hub must then run the thread again (the wake-up is consumed).
    #[inline]
    pub(crate) fn commit_park(&self) -> bool {
        match self
            .0
            .compare_exchange(EMPTY, PARKED, Ordering::AcqRel, Ordering::Acquire)
        {
            Ok(_) => true,
            Err(_) => {
                self.0.store(EMPTY, Ordering::Release);
                false
            }
        }
    }

    /// Wakes the thread. Returns `true` when the caller must schedule it (it was parked).
    #[inline]
    pub(crate) fn unpark(&self) -> bool {
        let mut cur = self.0.load(Ordering::Acquire);
        loop {
            let next = match cur {
                PARKED => EMPTY,
                EMPTY => NOTIFIED,
                _ => return false,
            };
            match self
                .0
                .compare_exchange_weak(cur, next, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => return cur == PARKED,
                Err(actual) => cur = actual,
            }
        }
    }
}

#[cfg(all(test, loom))]
mod loom_tests {
    use super::*;
    use loom::sync::atomic::AtomicUsize;
    use loom::sync::Arc;
    use loom::thread;

    /// One park racing one unpark: the thread is either not switched away at all, or re-queued by
    /// the hub, or scheduled by the unparker: exactly one of them, never none (lost wake-up) and
    /// never two (double schedule).
    #[test]
    fn park_races_unpark_without_lost_or_double_wakeup() {
        loom::model(|| {
            let st = Arc::new(ParkState::new());
            let scheduled = Arc::new(AtomicUsize::new(0));
            let (st2, sc2) = (st.clone(), scheduled.clone());
            let waker = thread::spawn(move || {
                if st2.unpark() {
                    sc2.fetch_add(1, Ordering::SeqCst);
                }
            });
            // green thread + hub, on one thread as in the real runtime
            let mut resumed = 0;
            if !st.begin_park() || !st.commit_park() {
                resumed += 1; // did not really park, or the hub re-queued it
            }
            waker.join().unwrap();
            let total = resumed + scheduled.load(Ordering::SeqCst);
            // If it parked and nobody woke it, the unpark must have come before begin_park and
            // been consumed there (resumed == 1). Either way it runs exactly once.
            assert_eq!(total, 1);
        });
    }

    /// Two unparkers racing one park: still scheduled exactly once.
    #[test]
    fn two_unparkers_schedule_once() {
        loom::model(|| {
            let st = Arc::new(ParkState::new());
            let scheduled = Arc::new(AtomicUsize::new(0));
            let mut hs = Vec::new();
            for _ in 0..2 {
                let (st2, sc2) = (st.clone(), scheduled.clone());
                hs.push(thread::spawn(move || {
                    if st2.unpark() {
                        sc2.fetch_add(1, Ordering::SeqCst);
                    }
                }));
            }
            let mut resumed = 0;
            if !st.begin_park() || !st.commit_park() {
                resumed += 1;
            }
            for h in hs {
                h.join().unwrap();
            }
            assert_eq!(resumed + scheduled.load(Ordering::SeqCst), 1);
        });
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn unpark_before_park_is_consumed_by_park() {
        let st = ParkState::new();
        assert!(!st.unpark());
        assert!(!st.begin_park(), "pending wake-up means no switch");
        assert!(st.begin_park());
        assert!(st.commit_park());
        assert!(st.unpark(), "parked thread must be scheduled");
        assert!(!st.unpark(), "second unpark does not schedule again");
    }

    #[test]
    fn unpark_between_begin_and_commit_requeues() {
        let st = ParkState::new();
        assert!(st.begin_park());
        assert!(!st.unpark());
        assert!(!st.commit_park());
        // consumed: the next park parks for real
        assert!(st.begin_park());
        assert!(st.commit_park());
    }
}
