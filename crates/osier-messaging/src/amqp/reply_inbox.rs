//! A call's inbox: where the reply queue's consumer puts the events of one call (heartbeats,
//! parts, the final reply) and the caller takes them, in the order they came.
//!
//! One allocation per call: the first event waits in a place of its own, and only a call that
//! has a second event waiting (heartbeats or parts not yet taken) makes a queue. An unbounded
//! channel would allocate its shared state, a stub node and a node per event.
//!
//! ```text
//! reply consumer ──put──▶ [first | rest…] ──take──▶ the caller (woken by put)
//! ```

use std::collections::VecDeque;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::task::Poll;

use futures::task::AtomicWaker;

use crate::driver::ReplyEvent;
use crate::lock::lock;

#[derive(Default)]
struct Events {
    /// The oldest event not taken, when `rest` is empty or holds newer ones.
    first: Option<ReplyEvent>,
    rest: VecDeque<ReplyEvent>,
}

#[derive(Default)]
struct Shared {
    events: Mutex<Events>,
    waker: AtomicWaker,
}

/// The reply consumer's end: puts events for the caller. Cheap to clone.
#[derive(Clone)]
pub(crate) struct InboxSender(Arc<Shared>);

/// The caller's end.
pub(crate) struct Inbox(Arc<Shared>);

/// A new inbox and the sender that fills it.
pub(crate) fn inbox() -> (InboxSender, Inbox) {
    let shared = Arc::new(Shared::default());
    (InboxSender(shared.clone()), Inbox(shared))
}

impl InboxSender {
    /// Puts `ev` after every event already there, and wakes the caller.
    pub(crate) fn put(&self, ev: ReplyEvent) {
        {
            let mut e = lock(&self.0.events);
            if e.first.is_none() && e.rest.is_empty() {
                e.first = Some(ev);
            } else {
                e.rest.push_back(ev);
            }
        }
        self.0.waker.wake();
    }
}

impl Inbox {
    fn try_take(&self) -> Option<ReplyEvent> {
        let mut e = lock(&self.0.events);
        e.first.take().or_else(|| e.rest.pop_front())
    }

    /// The oldest event not taken yet; waits for one.
    pub(crate) fn take(&mut self) -> impl Future<Output = ReplyEvent> + '_ {
        std::future::poll_fn(move |cx| {
            if let Some(ev) = self.try_take() {
                return Poll::Ready(ev);
            }
            self.0.waker.register(cx.waker());
            // An event put between the look above and the registration woke no one.
            match self.try_take() {
                Some(ev) => Poll::Ready(ev),
                None => Poll::Pending,
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use std::task::Poll;

    use super::*;
    use crate::amqp::wake_count::{poll_once, Wakes};

    fn poll_take(inbox: &mut Inbox, wakes: &Arc<Wakes>) -> Poll<ReplyEvent> {
        poll_once(inbox.take(), wakes)
    }

    fn done(v: i64) -> ReplyEvent {
        ReplyEvent::Done(Ok(serde_json::json!(v)))
    }

    fn value(ev: Poll<ReplyEvent>) -> Option<serde_json::Value> {
        match ev {
            Poll::Ready(ReplyEvent::Done(Ok(v)) | ReplyEvent::Part(Ok(v))) => Some(v),
            Poll::Ready(ReplyEvent::Heartbeat) => Some(serde_json::Value::Null),
            _ => None,
        }
    }

    #[test]
    fn events_are_taken_in_the_order_they_were_put_across_both_places() {
        let (tx, mut rx) = inbox();
        let wakes = Arc::new(Wakes::default());
        tx.put(done(1));
        tx.put(done(2));
        assert_eq!(value(poll_take(&mut rx, &wakes)), Some(1.into()));
        // The first place is free again while 2 waits in the queue: 3 goes after 2.
        tx.put(done(3));
        assert_eq!(value(poll_take(&mut rx, &wakes)), Some(2.into()));
        assert_eq!(value(poll_take(&mut rx, &wakes)), Some(3.into()));
        assert!(poll_take(&mut rx, &wakes).is_pending());
    }

    #[test]
    fn a_caller_waiting_on_an_empty_inbox_is_woken_by_a_put() {
        let (tx, mut rx) = inbox();
        let wakes = Arc::new(Wakes::default());
        assert!(poll_take(&mut rx, &wakes).is_pending());
        tx.clone().put(ReplyEvent::Heartbeat);
        assert_eq!(wakes.count(), 1);
        assert_eq!(
            value(poll_take(&mut rx, &wakes)),
            Some(serde_json::Value::Null)
        );
    }

    #[test]
    fn events_put_from_another_thread_all_arrive_in_order() {
        let (tx, mut rx) = inbox();
        let t = std::thread::spawn(move || {
            for i in 0..1000 {
                tx.put(done(i));
            }
        });
        let got: Vec<_> = futures::executor::block_on(async {
            let mut got = Vec::new();
            for _ in 0..1000 {
                match rx.take().await {
                    ReplyEvent::Done(Ok(v)) => got.push(v),
                    _ => unreachable!("only results were put"),
                }
            }
            got
        });
        t.join().expect("the sender thread");
        let want: Vec<_> = (0..1000).map(serde_json::Value::from).collect();
        assert_eq!(got, want);
    }
}
