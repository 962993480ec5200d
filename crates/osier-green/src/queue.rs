//! Green queues: [`Queue`], [`LightQueue`], [`LifoQueue`], [`PriorityQueue`] (GREEN-20, GREEN-21).
//!
//! eventlet's rules, including the one that differs from the standard library: **`maxsize`
//! `Some(0)` is a rendezvous channel**, where `put` waits until a getter takes the item. `None`
//! is unbounded.
//!
//! ```
//! use osier_green::{spawn, Queue};
//!
//! let q: Queue<u32> = Queue::new(Some(0));          // rendezvous
//! let getter = { let q = q.clone(); spawn(move || q.get()) };
//! q.put(5);                                         // returns once the getter is there
//! assert_eq!(getter.wait().unwrap(), 5);
//! ```

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::marker::PhantomData;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::hub::lock;
use crate::waiter::{wait_until, WaitFuture, WaitList};

/// The order a queue hands items out in.
pub trait Store<T>: Send {
    /// An empty store.
    fn empty() -> Self;
    /// Adds an item.
    fn push(&mut self, item: T);
    /// Takes the next item.
    fn pop(&mut self) -> Option<T>;
    /// Number of items held.
    fn len(&self) -> usize;
    /// True when empty.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// First in, first out.
#[derive(Debug)]
pub struct Fifo<T>(VecDeque<T>);
/// Last in, first out.
#[derive(Debug)]
pub struct Lifo<T>(Vec<T>);
/// Smallest first (a heap).
#[derive(Debug)]
pub struct Smallest<T: Ord>(BinaryHeap<Reverse<T>>);

impl<T: Send> Store<T> for Fifo<T> {
    fn empty() -> Self {
        Fifo(VecDeque::new())
    }
    fn push(&mut self, item: T) {
        self.0.push_back(item)
    }
    fn pop(&mut self) -> Option<T> {
        self.0.pop_front()
    }
    fn len(&self) -> usize {
        self.0.len()
    }
}

impl<T: Send> Store<T> for Lifo<T> {
    fn empty() -> Self {
        Lifo(Vec::new())
    }
    fn push(&mut self, item: T) {
        self.0.push(item)
    }
    fn pop(&mut self) -> Option<T> {
        self.0.pop()
    }
    fn len(&self) -> usize {
        self.0.len()
    }
}

impl<T: Ord + Send> Store<T> for Smallest<T> {
    fn empty() -> Self {
        Smallest(BinaryHeap::new())
    }
    fn push(&mut self, item: T) {
        self.0.push(Reverse(item))
    }
    fn pop(&mut self) -> Option<T> {
        self.0.pop().map(|r| r.0)
    }
    fn len(&self) -> usize {
        self.0.len()
    }
}

/// `put` found the queue full (non-blocking, or its timeout ran out); the item comes back.
#[derive(PartialEq, Eq, thiserror::Error)]
#[error("queue is full")]
pub struct Full<T>(pub T);

impl<T> std::fmt::Debug for Full<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Full(..)")
    }
}

/// `get` found the queue empty (non-blocking, or its timeout ran out).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("queue is empty")]
pub struct Empty;

/// `task_done` was called more times than items were put (eventlet: ValueError).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("task_done() called too many times")]
pub struct TaskDoneError;

struct Inner<T, S> {
    items: S,
    maxsize: Option<usize>,
    getters: WaitList,
    putters: WaitList,
    joiners: WaitList,
    unfinished: usize,
    _t: PhantomData<fn(T) -> T>,
}

impl<T, S: Store<T>> Inner<T, S> {
    fn can_put(&self) -> bool {
        match self.maxsize {
            None => true,
            // rendezvous: only when a getter is waiting for it
            Some(0) => self.getters.len() > self.items.len(),
            Some(n) => self.items.len() < n,
        }
    }

    fn do_put(&mut self, item: T) {
        self.items.push(item);
        self.unfinished += 1;
        self.getters.notify_one();
    }

    fn do_get(&mut self) -> Option<T> {
        let item = self.items.pop()?;
        self.putters.notify_one();
        Some(item)
    }

    /// One attempt of a put: `slot` holds the item until it goes in.
    fn attempt_put(&mut self, slot: &mut Option<T>) -> Option<()> {
        if !self.can_put() {
            return None;
        }
        if let Some(item) = slot.take() {
            self.do_put(item);
        }
        Some(())
    }

    /// One attempt of a get.
    fn attempt_get(&mut self) -> Option<T> {
        let r = self.do_get();
        if r.is_none() && self.maxsize == Some(0) {
            // A putter of a rendezvous queue waits for a getter: we are about to be one.
            self.putters.notify_one();
        }
        r
    }
}

/// A green queue with store `S`. Cloning gives another handle to the same queue. Usable from
/// green threads (only the caller parks) and from plain OS threads (the thread blocks).
pub struct GenericQueue<T, S> {
    inner: Arc<Mutex<Inner<T, S>>>,
}

/// FIFO queue with `task_done`/`join` (eventlet's `Queue`).
pub type Queue<T> = GenericQueue<T, Fifo<T>>;
/// FIFO queue (eventlet's `LightQueue`; here the same type as [`Queue`]).
pub type LightQueue<T> = GenericQueue<T, Fifo<T>>;
/// Newest item first (eventlet's `LifoQueue`).
pub type LifoQueue<T> = GenericQueue<T, Lifo<T>>;
/// Smallest item first (eventlet's `PriorityQueue`; use `(priority, item)` tuples).
pub type PriorityQueue<T> = GenericQueue<T, Smallest<T>>;

impl<T, S> Clone for GenericQueue<T, S> {
    fn clone(&self) -> Self {
        GenericQueue {
            inner: self.inner.clone(),
        }
    }
}

impl<T, S: Store<T>> std::fmt::Debug for GenericQueue<T, S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let g = lock(&self.inner);
        f.debug_struct("Queue")
            .field("len", &g.items.len())
            .field("maxsize", &g.maxsize)
            .finish()
    }
}

impl<T: Send, S: Store<T>> GenericQueue<T, S> {
    /// A queue holding at most `maxsize` items: `None` unbounded, `Some(0)` rendezvous.
    pub fn new(maxsize: Option<usize>) -> Self {
        GenericQueue {
            inner: Arc::new(Mutex::new(Inner {
                items: S::empty(),
                maxsize,
                getters: WaitList::default(),
                putters: WaitList::default(),
                joiners: WaitList::default(),
                unfinished: 0,
                _t: PhantomData,
            })),
        }
    }

    /// An unbounded queue.
    pub fn unbounded() -> Self {
        Self::new(None)
    }

    fn put_deadline(&self, item: T, deadline: Option<Instant>) -> Result<(), Full<T>> {
        let mut slot = Some(item);
        let r = wait_until(
            &self.inner,
            |s| &mut s.putters,
            deadline,
            |s| s.attempt_put(&mut slot),
        );
        match (r, slot) {
            (Ok(()), _) => Ok(()),
            (Err(_), Some(item)) => Err(Full(item)),
            (Err(_), None) => Ok(()),
        }
    }

    fn get_deadline(&self, deadline: Option<Instant>) -> Result<T, Empty> {
        wait_until(
            &self.inner,
            |s| &mut s.getters,
            deadline,
            Inner::attempt_get,
        )
        .map_err(|_| Empty)
    }

    /// Adds `item`, waiting while the queue is full, from async code: the task is suspended, its
    /// executor thread is not blocked. Dropping the future before it completes drops the item.
    pub async fn put_async(&self, item: T) {
        let mut slot = Some(item);
        WaitFuture::new(
            &self.inner,
            |s| &mut s.putters,
            move |s: &mut Inner<T, S>| s.attempt_put(&mut slot),
        )
        .await
    }

    /// Takes the next item from async code, without blocking the executor's thread. Cancel-safe:
    /// an item is taken only when the future completes.
    pub async fn get_async(&self) -> T {
        WaitFuture::new(&self.inner, |s| &mut s.getters, Inner::attempt_get).await
    }

    /// Adds `item`, waiting while the queue is full.
    pub fn put(&self, item: T) {
        // An untimed wait only returns once the item is in.
        let _ = self.put_deadline(item, None);
    }

    /// Adds `item`, waiting at most `timeout`; `Err(Full(item))` if there was no room in time.
    pub fn put_timeout(&self, item: T, timeout: Duration) -> Result<(), Full<T>> {
        self.put_deadline(item, Some(Instant::now() + timeout))
    }

    /// Adds `item` only if there is room now (`put_nowait`).
    pub fn try_put(&self, item: T) -> Result<(), Full<T>> {
        let mut g = lock(&self.inner);
        if g.can_put() {
            g.do_put(item);
            Ok(())
        } else {
            Err(Full(item))
        }
    }

    /// Takes the next item, waiting while the queue is empty.
    pub fn get(&self) -> T {
        loop {
            if let Ok(v) = self.get_deadline(None) {
                return v;
            }
        }
    }

    /// Takes the next item, waiting at most `timeout`.
    pub fn get_timeout(&self, timeout: Duration) -> Result<T, Empty> {
        self.get_deadline(Some(Instant::now() + timeout))
    }

    /// Takes the next item only if there is one now (`get_nowait`).
    pub fn try_get(&self) -> Result<T, Empty> {
        lock(&self.inner).do_get().ok_or(Empty)
    }

    /// Items in the queue.
    pub fn qsize(&self) -> usize {
        lock(&self.inner).items.len()
    }

    /// True when no item is queued.
    pub fn is_empty(&self) -> bool {
        lock(&self.inner).items.is_empty()
    }

    /// True when a non-blocking `put` would fail. An unbounded queue is never full.
    pub fn is_full(&self) -> bool {
        !lock(&self.inner).can_put()
    }

    /// The size limit (`None`: unbounded).
    pub fn maxsize(&self) -> Option<usize> {
        lock(&self.inner).maxsize
    }

    /// Callers blocked in `put`.
    pub fn putting(&self) -> usize {
        lock(&self.inner).putters.len()
    }

    /// Callers blocked in `get`.
    pub fn getting(&self) -> usize {
        lock(&self.inner).getters.len()
    }

    /// Changes the size limit; growing it wakes blocked putters.
    pub fn resize(&self, maxsize: Option<usize>) {
        let mut g = lock(&self.inner);
        g.maxsize = maxsize;
        g.putters.notify_all();
    }

    /// Marks one item taken with `get` as processed (GREEN-21).
    pub fn task_done(&self) -> Result<(), TaskDoneError> {
        let mut g = lock(&self.inner);
        if g.unfinished == 0 {
            return Err(TaskDoneError);
        }
        g.unfinished -= 1;
        if g.unfinished == 0 {
            g.joiners.notify_all();
        }
        Ok(())
    }

    /// Waits until every item put has been matched by a `task_done` (at once if none is
    /// outstanding).
    pub fn join(&self) {
        let _ = wait_until(
            &self.inner,
            |s| &mut s.joiners,
            None,
            |s| (s.unfinished == 0).then_some(()),
        );
    }

    /// Items put and not yet marked done.
    pub fn unfinished_tasks(&self) -> usize {
        lock(&self.inner).unfinished
    }
}
