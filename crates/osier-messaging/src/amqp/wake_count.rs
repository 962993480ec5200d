//! For tests of the owners' wake-ups: a waker that counts its wakes, and one poll of a future
//! with it.

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use futures::task::{waker, ArcWake};

/// A waker that counts its wakes.
#[derive(Default)]
pub(crate) struct Wakes(AtomicUsize);

impl Wakes {
    /// How many times it was woken.
    pub(crate) fn count(&self) -> usize {
        self.0.load(Ordering::SeqCst)
    }
}

impl ArcWake for Wakes {
    fn wake_by_ref(me: &Arc<Self>) {
        me.0.fetch_add(1, Ordering::SeqCst);
    }
}

/// Polls `f` once with `wakes` as its waker.
pub(crate) fn poll_once<T>(f: impl Future<Output = T>, wakes: &Arc<Wakes>) -> Poll<T> {
    let w = waker(wakes.clone());
    let mut cx = Context::from_waker(&w);
    std::pin::pin!(f).poll(&mut cx)
}
