//! The hand-off between a hub going to sleep and a thread handing it work.
//!
//! A hub sleeps in one of three ways: in its socket poller, on a futex (no sockets), or, when an
//! event loop of its own drives it, in that loop (woken through the waker the loop registered).
//! Another thread hands it work by pushing onto its inject queue, counted here, and then rings:
//! it reads how the hub sleeps and wakes it that way, or does nothing while the hub is awake.
//!
//! Both live in one atomic word: the count of items above two bits that say how the hub sleeps.
//! Counting an item ([`Doorbell::add`]) returns, in the same read-modify-write, how the hub
//! slept at that moment; the hub announces its sleep ([`Doorbell::try_sleep`]) with a
//! compare-and-swap that fails if an item was counted. The two are ordered on that one word, so
//! either the hub sees the item and stays awake, or the item's sender sees the hub asleep and
//! wakes it: no wake-up is lost, whatever the interleaving (no reasoning about two locations
//! and sequential consistency needed). The loom model at the bottom of this file checks it for
//! every way of sleeping.

#[cfg(loom)]
use loom::sync::atomic::{AtomicUsize, Ordering};
#[cfg(not(loom))]
use std::sync::atomic::{AtomicUsize, Ordering};

/// How a hub sleeps right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Sleep {
    /// Awake: work handed over now is seen before it sleeps.
    Awake = 0,
    /// In its poller (`epoll_wait`): woken through the poller's waker.
    InPoll = 1,
    /// Parked on a futex (it has no sockets): woken by unparking its thread.
    InPark = 2,
    /// Idle under the event loop driving it: woken through that loop's waker.
    InDriver = 3,
}

impl Sleep {
    fn from_bits(v: usize) -> Sleep {
        match v & MODE {
            1 => Sleep::InPoll,
            2 => Sleep::InPark,
            3 => Sleep::InDriver,
            _ => Sleep::Awake,
        }
    }
}

/// How a hub sleeps, and how many items wait in its inject queue (see the module docs).
#[derive(Debug)]
pub(crate) struct Doorbell(AtomicUsize);

/// The bits of the word that say how the hub sleeps; the count is above them.
const MODE: usize = 0b11;
const ONE: usize = MODE + 1;

impl Doorbell {
    pub(crate) fn new() -> Doorbell {
        Doorbell(AtomicUsize::new(Sleep::Awake as usize))
    }

    /// Counts an item pushed onto the inject queue (under its lock), and returns how the hub
    /// must be woken for it: `None` while it is awake (it will see the item before it sleeps).
    pub(crate) fn add(&self) -> Option<Sleep> {
        match Sleep::from_bits(self.0.fetch_add(ONE, Ordering::AcqRel)) {
            Sleep::Awake => None,
            how => Some(how),
        }
    }

    /// Uncounts `n` items taken from the inject queue (under its lock).
    pub(crate) fn take(&self, n: usize) {
        let before = self.0.fetch_sub(n * ONE, Ordering::AcqRel);
        debug_assert!(before / ONE >= n, "the count covers the queue");
    }

    /// True when items wait in the inject queue.
    #[inline]
    pub(crate) fn pending(&self) -> bool {
        self.0.load(Ordering::Acquire) >= ONE
    }

    /// How the hub sleeps now (for a wake-up that is not an item: a shutdown).
    pub(crate) fn state(&self) -> Sleep {
        Sleep::from_bits(self.0.load(Ordering::Acquire))
    }

    /// The hub is about to sleep `how`. Returns `false` when items wait: the hub stays awake
    /// and must take them instead of sleeping.
    pub(crate) fn try_sleep(&self, how: Sleep) -> bool {
        let mut cur = self.0.load(Ordering::Acquire);
        loop {
            if cur >= ONE {
                return false;
            }
            match self.0.compare_exchange_weak(
                cur,
                (cur & !MODE) | how as usize,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return true,
                Err(now) => cur = now,
            }
        }
    }

    /// The hub is awake (back from its sleep, or starting a turn).
    #[inline]
    pub(crate) fn wake_up(&self) {
        if self.0.load(Ordering::Relaxed) & MODE != Sleep::Awake as usize {
            self.0.fetch_and(!MODE, Ordering::AcqRel);
        }
    }
}

#[cfg(all(test, loom))]
mod loom_tests {
    use super::*;
    use loom::sync::atomic::AtomicBool;
    use loom::sync::Arc;
    use loom::thread;

    /// A hub goes to sleep (each way) while another thread hands it an item: either the hub
    /// does not sleep, or the other thread wakes it.
    #[test]
    fn no_wake_up_is_lost() {
        for how in [Sleep::InPoll, Sleep::InPark, Sleep::InDriver] {
            loom::model(move || {
                let bell = Arc::new(Doorbell::new());
                let woken = Arc::new(AtomicBool::new(false));
                let (b, w) = (bell.clone(), woken.clone());
                let giver = thread::spawn(move || {
                    if b.add() == Some(how) {
                        w.store(true, Ordering::SeqCst);
                    }
                });
                let slept = bell.try_sleep(how);
                giver.join().unwrap();
                assert!(
                    !slept || woken.load(Ordering::SeqCst),
                    "the item's wake-up was lost"
                );
                if !slept {
                    assert!(
                        bell.pending(),
                        "the hub stayed awake for nothing it can see"
                    );
                }
            });
        }
    }

    /// Two threads hand over items at once: every item is either seen before the hub sleeps
    /// or wakes it, and the count never runs below what was taken.
    #[test]
    fn two_givers_and_a_sleeping_hub() {
        loom::model(|| {
            let bell = Arc::new(Doorbell::new());
            let woken = Arc::new(AtomicUsize::new(0));
            let givers: Vec<_> = (0..2)
                .map(|_| {
                    let (b, w) = (bell.clone(), woken.clone());
                    thread::spawn(move || {
                        if b.add().is_some() {
                            w.fetch_add(1, Ordering::SeqCst);
                        }
                    })
                })
                .collect();
            let slept = bell.try_sleep(Sleep::InDriver);
            for g in givers {
                g.join().unwrap();
            }
            assert!(!slept || woken.load(Ordering::SeqCst) > 0);
            bell.take(2);
            assert!(!bell.pending());
        });
    }
}
