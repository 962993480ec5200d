//! The sets of futures and streams an owner task waits on inside its `select!` (messages
//! in flight, acks being written, a listener's queues), without futures' courtesy wake-up.
//!
//! futures' `FuturesUnordered` (and `SelectAll`, built on it) ends any poll in which it polled
//! as many members as it holds, the last of them still pending, by waking its own task and
//! returning `Pending`: a task that waits on nothing else then gives the executor back instead
//! of spinning on futures that keep waking themselves. An owner task waits on the set and on
//! its command queue at once, and holds one or two members most of the time (the one message
//! a caller has in flight, a listener's one queue), so that wake-up came after nearly every
//! poll: one more turn of the owner loop, and one more trip through the scheduler, per
//! publish, per ack and per delivery, for nothing.
//!
//! [`FutureSet`] and [`StreamSet`] hold one more member than they show, an anchor that is
//! never ready and never woken: no poll reaches every member, so the wake-up never comes. The
//! other yield (two members that woke themselves while being polled) is kept, and a member is
//! only polled once its waker fired, as before.
//!
//! ```text
//! FuturesUnordered [msg]         : poll -> msg pending -> wake self -> poll again -> pending
//! FutureSet        [anchor, msg] : poll -> msg pending -> pending (until msg's waker fires)
//! ```

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures::stream::{FuturesUnordered, StreamExt, StreamFuture};
use futures::Stream;

pin_project_lite::pin_project! {
    /// A member of the set, or the anchor that keeps the set one larger than any poll reaches.
    /// A member is held in place, not boxed: the set's own node is its only allocation.
    #[project = MemberProj]
    enum Member<F> {
        Real { #[pin] f: F },
        Anchor,
    }
}

impl<F: Future> Future for Member<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        match self.project() {
            MemberProj::Real { f } => f.poll(cx),
            // Never ready and never woken: polled once, when the set is made.
            MemberProj::Anchor => Poll::Pending,
        }
    }
}

/// Futures run together, their outputs taken as they complete (`FuturesUnordered` without its
/// wake-up after polling every member; see the module docs).
pub(crate) struct FutureSet<F> {
    set: FuturesUnordered<Member<F>>,
}

impl<F: Future> FutureSet<F> {
    pub(crate) fn new() -> Self {
        let mut set = FuturesUnordered::new();
        set.push(Member::Anchor);
        // The anchor's one poll, here: polled with the first member, it would make that
        // poll reach every member.
        let mut cx = Context::from_waker(futures::task::noop_waker_ref());
        let _ = set.poll_next_unpin(&mut cx);
        FutureSet { set }
    }

    pub(crate) fn push(&mut self, f: F) {
        self.set.push(Member::Real { f });
    }

    /// How many futures are still running.
    pub(crate) fn len(&self) -> usize {
        self.set.len() - 1
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The output of the next future to complete; pending for ever while the set is empty
    /// (in a `select!`, guard the branch with [`is_empty`](Self::is_empty)).
    pub(crate) fn next(&mut self) -> impl Future<Output = F::Output> + '_ {
        std::future::poll_fn(move |cx| self.poll_next(cx))
    }

    /// [`next`](Self::next) as a poll, for an owner that adds members in the same poll.
    pub(crate) fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<F::Output> {
        match self.set.poll_next_unpin(cx) {
            Poll::Ready(Some(out)) => Poll::Ready(out),
            // The anchor never completes, so the set is never exhausted.
            Poll::Ready(None) | Poll::Pending => Poll::Pending,
        }
    }
}

/// Streams read together, each item taken as it comes (`SelectAll` without its wake-up after
/// polling every stream; see the module docs). A stream that ends is dropped.
pub(crate) struct StreamSet<S> {
    set: FutureSet<StreamFuture<S>>,
}

impl<S: Stream + Unpin> StreamSet<S> {
    pub(crate) fn new() -> Self {
        StreamSet {
            set: FutureSet::new(),
        }
    }

    pub(crate) fn push(&mut self, s: S) {
        self.set.push(s.into_future());
    }

    /// The next item of any stream; `None` once every stream has ended (at once when there
    /// are none).
    pub(crate) fn next(&mut self) -> impl Future<Output = Option<S::Item>> + '_ {
        std::future::poll_fn(move |cx| loop {
            if self.set.is_empty() {
                return Poll::Ready(None);
            }
            match self.set.poll_next(cx) {
                Poll::Ready((Some(item), rest)) => {
                    self.set.push(rest.into_future());
                    return Poll::Ready(Some(item));
                }
                // That stream ended: read the others.
                Poll::Ready((None, _)) => continue,
                Poll::Pending => return Poll::Pending,
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use futures::channel::{mpsc, oneshot};

    use super::*;
    use crate::amqp::wake_count::{poll_once, Wakes};

    #[test]
    fn futures_unordered_wakes_itself_after_polling_its_one_pending_member() {
        // Why this module exists: if futures stops doing this, the sets here are not needed.
        let (_tx, rx) = oneshot::channel::<()>();
        let mut fu = FuturesUnordered::new();
        fu.push(rx);
        let wakes = Arc::new(Wakes::default());
        assert!(poll_once(fu.next(), &wakes).is_pending());
        assert_eq!(wakes.count(), 1);
    }

    #[test]
    fn a_future_set_polled_to_pending_does_not_wake_itself() {
        let (_tx, rx) = oneshot::channel::<()>();
        let mut set = FutureSet::new();
        set.push(rx);
        let wakes = Arc::new(Wakes::default());
        assert!(poll_once(set.next(), &wakes).is_pending());
        assert_eq!(wakes.count(), 0);
    }

    #[test]
    fn a_future_set_is_woken_by_its_member_and_gives_its_output() {
        let (tx, rx) = oneshot::channel::<u32>();
        let mut set = FutureSet::new();
        set.push(rx);
        let wakes = Arc::new(Wakes::default());
        assert!(poll_once(set.next(), &wakes).is_pending());
        assert_eq!(tx.send(7), Ok(()));
        assert_eq!(wakes.count(), 1);
        assert_eq!(poll_once(set.next(), &wakes), Poll::Ready(Ok(7)));
        assert!(set.is_empty());
    }

    #[test]
    fn a_future_set_counts_its_futures_not_its_anchor() {
        let mut set = FutureSet::new();
        assert_eq!((set.len(), set.is_empty()), (0, true));
        set.push(std::future::ready(1));
        set.push(std::future::ready(2));
        assert_eq!((set.len(), set.is_empty()), (2, false));
        let wakes = Arc::new(Wakes::default());
        let mut got = vec![];
        while let Poll::Ready(v) = poll_once(set.next(), &wakes) {
            got.push(v);
        }
        got.sort_unstable();
        assert_eq!(got, [1, 2]);
        assert_eq!(set.len(), 0);
    }

    #[test]
    fn an_empty_future_set_stays_pending() {
        let mut set = FutureSet::<std::future::Ready<()>>::new();
        let wakes = Arc::new(Wakes::default());
        assert!(poll_once(set.next(), &wakes).is_pending());
        assert_eq!(wakes.count(), 0);
    }

    #[test]
    fn a_stream_set_polled_to_pending_does_not_wake_itself() {
        let (_tx, rx) = mpsc::unbounded::<u32>();
        let mut set = StreamSet::new();
        set.push(rx);
        let wakes = Arc::new(Wakes::default());
        assert!(poll_once(set.next(), &wakes).is_pending());
        assert_eq!(wakes.count(), 0);
    }

    #[test]
    fn a_stream_set_gives_every_item_of_every_stream_then_none_once_all_ended() {
        let (a_tx, a) = mpsc::unbounded::<u32>();
        let (b_tx, b) = mpsc::unbounded::<u32>();
        let mut set = StreamSet::new();
        set.push(a);
        set.push(b);
        let wakes = Arc::new(Wakes::default());
        for (tx, v) in [(&a_tx, 1), (&b_tx, 2), (&a_tx, 3)] {
            assert_eq!(tx.unbounded_send(v), Ok(()));
        }
        drop((a_tx, b_tx));
        let mut got = vec![];
        loop {
            match poll_once(set.next(), &wakes) {
                Poll::Ready(Some(v)) => got.push(v),
                Poll::Ready(None) => break,
                Poll::Pending => panic!("every stream has ended; the set must say so"),
            }
        }
        got.sort_unstable();
        assert_eq!(got, [1, 2, 3]);
    }

    #[test]
    fn a_stream_set_with_no_stream_is_at_its_end() {
        let mut set = StreamSet::<mpsc::UnboundedReceiver<u32>>::new();
        let wakes = Arc::new(Wakes::default());
        assert_eq!(poll_once(set.next(), &wakes), Poll::Ready(None));
    }
}
