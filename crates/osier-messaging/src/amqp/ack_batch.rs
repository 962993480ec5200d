//! Acks coalesced: what a consumer's owner settles between two looks at its queue goes to the
//! broker in as few frames as the order of the deliveries allows.
//!
//! AMQP's `basic.ack` with `multiple` set acknowledges every delivery of its channel, up to and
//! including its tag, that is still unacknowledged. So one frame may stand for a run of acks
//! only when no other delivery below the run's last tag is still outstanding: none held by a
//! handler, none the owner has not seen yet (the consumers of one channel share its tags and
//! their deliveries come through different streams), none rejected or requeued after the
//! frame (frames go out in the order they are made: a reject made before the multiple ack
//! settles its delivery first). Everything else goes out on its own, at once: no ack waits for
//! a slow handler.
//!
//! ```text
//! delivered   1  2  3  4  5  6
//! settled     A  A  .  A  R  A      (A ack, R reject, . still held by a handler)
//! frames      ack(4) reject(5) ack(6) ack(2, multiple)
//! ```
//!
//! Counted on RabbitMQ (docs/benchmarks.md, "Acks coalesced", with the rates before and
//! after): 26 to 61 frames per 100 settlements with 16 callers or senders.

use std::collections::{BTreeSet, VecDeque};

/// What is sent for a delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AckKind {
    Ack,
    Reject,
    Requeue,
}

/// One frame to send: the kind, the delivery tag, and for an ack whether it is `multiple`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct AckFrame {
    pub(crate) kind: AckKind,
    pub(crate) tag: u64,
    pub(crate) multiple: bool,
}

/// How many deliveries seen ahead of one not yet seen are tracked; beyond it, acks of this
/// channel go out one frame each (a consumer stream that is no longer read would otherwise
/// grow the set for ever).
const SEEN_AHEAD_MAX: usize = 4096;

/// The deliveries of one channel (a tag sequence from 1) and the acks waiting to be sent.
#[derive(Debug, Default)]
pub(crate) struct AckBatch {
    /// Every tag up to this one has been seen.
    seen_upto: u64,
    /// Seen while a lower one was not yet.
    seen_ahead: BTreeSet<u64>,
    /// Seen, handed to a handler that has not settled them yet; in order (tags mostly come
    /// in order, so a tag is mostly pushed at the back, and a handful are held at a time).
    held: VecDeque<u64>,
    /// Settled since the last [`drain`](Self::drain).
    ready: Vec<(AckKind, u64)>,
    /// The frames of the last drain (kept, so a drain allocates nothing).
    frames: Vec<AckFrame>,
    /// `seen_ahead` outgrew its bound: no `multiple` frame on this channel any more.
    one_by_one: bool,
}

impl AckBatch {
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// Delivery `tag` came, and its handler keeps it to settle later ([`settle_held`]).
    ///
    /// [`settle_held`]: Self::settle_held
    pub(crate) fn held(&mut self, tag: u64) {
        self.seen(tag);
        match self.held.back() {
            Some(&last) if last > tag => {
                let at = self.held.partition_point(|&h| h < tag);
                self.held.insert(at, tag);
            }
            _ => self.held.push_back(tag),
        }
    }

    /// Delivery `tag` came and is settled at once (its handler decided).
    pub(crate) fn settled_on_arrival(&mut self, kind: AckKind, tag: u64) {
        self.seen(tag);
        self.ready.push((kind, tag));
    }

    /// A handler settles `tag`, which it held. False (and nothing is sent) when the tag is not
    /// held: settled already, so a second frame for it would close the channel.
    pub(crate) fn settle_held(&mut self, kind: AckKind, tag: u64) -> bool {
        match self.held.binary_search(&tag) {
            Ok(at) => {
                self.held.remove(at);
                self.ready.push((kind, tag));
                true
            }
            Err(_) => false,
        }
    }

    /// True when settlements wait for [`drain`](Self::drain).
    pub(crate) fn has_ready(&self) -> bool {
        !self.ready.is_empty()
    }

    /// The frames for what was settled since the last drain, in the order to send them.
    pub(crate) fn drain(&mut self) -> std::vec::Drain<'_, AckFrame> {
        let frames = &mut self.frames;
        frames.clear();
        self.ready.sort_unstable_by_key(|&(_, tag)| tag);
        // Below `limit`, every delivery is seen and none is held: the ones not settled in
        // this batch were settled by frames already made.
        let limit = match self.held.front() {
            Some(&h) => h.min(self.seen_upto + 1),
            None => self.seen_upto + 1,
        };
        let coalesce = !self.one_by_one;
        let mut run: Option<(u64, usize)> = None;
        for (kind, tag) in self.ready.drain(..) {
            if coalesce && kind == AckKind::Ack && tag < limit {
                run = Some((tag, run.map_or(1, |(_, n)| n + 1)));
                continue;
            }
            frames.push(AckFrame {
                kind,
                tag,
                multiple: false,
            });
        }
        // Last: a reject or requeue below it was made before it, so it does not cover them.
        if let Some((tag, n)) = run {
            frames.push(AckFrame {
                kind: AckKind::Ack,
                tag,
                multiple: n > 1,
            });
        }
        frames.drain(..)
    }

    fn seen(&mut self, tag: u64) {
        if tag == self.seen_upto + 1 {
            self.seen_upto = tag;
            while self.seen_ahead.first() == Some(&(self.seen_upto + 1)) {
                self.seen_ahead.pop_first();
                self.seen_upto += 1;
            }
        } else if tag > self.seen_upto && !self.one_by_one {
            self.seen_ahead.insert(tag);
            if self.seen_ahead.len() > SEEN_AHEAD_MAX {
                self.seen_ahead.clear();
                self.one_by_one = true;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: AckKind = AckKind::Ack;
    const REJECT: AckKind = AckKind::Reject;
    const REQUEUE: AckKind = AckKind::Requeue;

    /// One step of a consumer's life, as its owner tells the batch.
    enum Step {
        /// Deliveries settled as they arrive (the handler decided at once).
        Arrived(AckKind, &'static [u64]),
        /// Deliveries handed to a handler that keeps them.
        Held(&'static [u64]),
        /// A handler settles what it held.
        Settled(AckKind, &'static [u64]),
        /// The owner drains the batch: these frames, in this order.
        Sent(&'static [(AckKind, u64, bool)]),
    }
    use Step::*;

    fn play(steps: &[Step]) {
        let mut b = AckBatch::new();
        for (i, step) in steps.iter().enumerate() {
            match step {
                Arrived(kind, tags) => tags.iter().for_each(|&t| b.settled_on_arrival(*kind, t)),
                Held(tags) => tags.iter().for_each(|&t| b.held(t)),
                Settled(kind, tags) => {
                    for &t in tags.iter() {
                        assert!(b.settle_held(*kind, t), "step {i}: {t} was held");
                    }
                }
                Sent(want) => {
                    let sent: Vec<_> = b.drain().map(|f| (f.kind, f.tag, f.multiple)).collect();
                    assert_eq!(sent, *want, "step {i}");
                    assert!(!b.has_ready());
                }
            }
        }
    }

    #[test]
    fn acks_of_every_delivery_so_far_go_as_one_multiple_ack() {
        play(&[
            Held(&[1, 2, 3]),
            Settled(A, &[2, 1, 3]),
            Sent(&[(A, 3, true)]),
        ]);
    }

    #[test]
    fn a_lone_ack_is_not_multiple() {
        play(&[Arrived(A, &[1]), Sent(&[(A, 1, false)])]);
    }

    #[test]
    fn an_ack_above_a_held_delivery_goes_alone_and_at_once() {
        play(&[
            Held(&[1, 2, 3, 4]),
            Settled(A, &[1, 2, 4]),
            Sent(&[(A, 4, false), (A, 2, true)]),
            // 3 settled later: alone, since 1, 2 and 4 went already.
            Settled(A, &[3]),
            Sent(&[(A, 3, false)]),
            // Everything below 5 is settled: 5 and 6 go as one.
            Arrived(A, &[5, 6]),
            Sent(&[(A, 6, true)]),
        ]);
    }

    #[test]
    fn a_delivery_not_yet_seen_is_never_covered() {
        play(&[
            // 2 is still in another consumer's stream.
            Arrived(A, &[1, 3, 4]),
            Sent(&[(A, 3, false), (A, 4, false), (A, 1, false)]),
            Held(&[2]),
            Arrived(A, &[5]),
            Settled(A, &[2]),
            Arrived(A, &[6]),
            Sent(&[(A, 6, true)]),
        ]);
    }

    #[test]
    fn rejects_and_requeues_go_before_the_multiple_ack_that_passes_them() {
        play(&[
            Arrived(A, &[1]),
            Arrived(REJECT, &[2]),
            Held(&[3]),
            Settled(REQUEUE, &[3]),
            Arrived(A, &[4]),
            Sent(&[(REJECT, 2, false), (REQUEUE, 3, false), (A, 4, true)]),
        ]);
    }

    #[test]
    fn deliveries_held_out_of_order_still_stop_the_run_at_the_lowest() {
        play(&[
            Arrived(A, &[1]),
            // Another consumer's stream gives 3 before this one gives 2.
            Held(&[3, 2]),
            Settled(A, &[3]),
            Sent(&[(A, 3, false), (A, 1, false)]),
            Settled(A, &[2]),
            Arrived(A, &[4]),
            Sent(&[(A, 4, true)]),
        ]);
    }

    #[test]
    fn a_delivery_settled_twice_is_sent_once() {
        let mut b = AckBatch::new();
        b.held(1);
        assert!(b.settle_held(A, 1));
        assert!(!b.settle_held(REQUEUE, 1));
        assert!(!b.settle_held(A, 9), "never held");
        let sent: Vec<_> = b.drain().map(|f| (f.kind, f.tag, f.multiple)).collect();
        assert_eq!(sent, [(A, 1, false)]);
    }

    #[test]
    fn deliveries_seen_far_ahead_of_a_missing_one_stop_coalescing_within_a_bound() {
        let mut b = AckBatch::new();
        // Tag 1 never comes (its stream is no longer read).
        for tag in 2..(SEEN_AHEAD_MAX as u64 + 3) {
            b.settled_on_arrival(A, tag);
        }
        assert!(b.seen_ahead.is_empty());
        let sent: Vec<_> = b.drain().map(|f| f.multiple).collect();
        assert_eq!(sent.len(), SEEN_AHEAD_MAX + 1);
        assert!(sent.iter().all(|multiple| !multiple));
        b.held(1);
        b.settle_held(A, 1);
        b.settled_on_arrival(A, SEEN_AHEAD_MAX as u64 + 3);
        assert!(b.drain().all(|f| !f.multiple));
    }
}
