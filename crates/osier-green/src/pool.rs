//! `GreenPool` and `GreenPile` (GREEN-11..16): bounded concurrency for green threads.
//!
//! ```
//! use osier_green::{GreenPool, GreenPile};
//!
//! let pool = GreenPool::new(2);
//! let squares: Vec<u64> = pool.imap(|x: u64| x * x, 1..=4).map(Result::unwrap).collect();
//! assert_eq!(squares, vec![1, 4, 9, 16]);          // input order, whatever the finishing order
//!
//! let mut pile = GreenPile::new(4);
//! for i in 0..3 { pile.spawn(move || i * 10); }
//! let got: Vec<_> = pile.map(Result::unwrap).collect();
//! assert_eq!(got, vec![0, 10, 20]);
//! ```

use std::collections::VecDeque;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crate::error::{panic_message, GreenError, GreenletExit};
use crate::greenthread::{self, current_pool_id, GreenBuilder, GreenThread};
use crate::hub::lock;
use crate::waiter::{wait_until, WaitList};

/// Misuse of a [`GreenPool`].
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PoolError {
    /// `waitall` from a member of the pool could never return (eventlet: AssertionError).
    #[error("waitall() called from a member of the same pool would wait forever")]
    WaitallFromMember,
}

struct State {
    size: usize,
    running: usize,
    spawners: WaitList,
    idle_waiters: WaitList,
}

struct Inner {
    id: u64,
    state: Mutex<State>,
}

static NEXT_POOL: AtomicU64 = AtomicU64::new(1);

/// A pool of at most `size` running green threads. Cloning shares the pool.
#[derive(Clone)]
pub struct GreenPool {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for GreenPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let g = lock(&self.inner.state);
        f.debug_struct("GreenPool")
            .field("size", &g.size)
            .field("running", &g.running)
            .finish()
    }
}

/// Frees a pool slot when the member ends, however it ends (even killed before it started).
struct Slot(Arc<Inner>);

impl Drop for Slot {
    fn drop(&mut self) {
        let mut g = lock(&self.0.state);
        g.running -= 1;
        if g.running < g.size {
            g.spawners.notify_one();
        }
        if g.running == 0 {
            g.idle_waiters.notify_all();
        }
    }
}

impl Default for GreenPool {
    /// eventlet's default size, 1000.
    fn default() -> Self {
        GreenPool::new(1000)
    }
}

impl GreenPool {
    /// A pool running at most `size` green threads at once (a negative size is ruled out by the
    /// type; eventlet raises ValueError).
    pub fn new(size: usize) -> Self {
        GreenPool {
            inner: Arc::new(Inner {
                id: NEXT_POOL.fetch_add(1, Ordering::Relaxed),
                state: Mutex::new(State {
                    size,
                    running: 0,
                    spawners: WaitList::default(),
                    idle_waiters: WaitList::default(),
                }),
            }),
        }
    }

    /// Spawns `f` in the pool, parking the caller while the pool is full (GREEN-12). If the
    /// caller is itself a member of this pool and the pool is full, `f` runs inline in the caller
    /// (so the pool cannot deadlock itself) and a finished handle is returned.
    pub fn spawn<T, F>(&self, f: F) -> GreenThread<T>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        match self.take_slot() {
            Ok(slot) => {
                let mut b = GreenBuilder::new();
                b.pool_id = self.inner.id;
                b.spawn(move || {
                    let _slot = slot;
                    f()
                })
            }
            Err(()) => {
                let r = match catch_unwind(AssertUnwindSafe(f)) {
                    Ok(v) => Ok(v),
                    Err(p) if p.is::<GreenletExit>() => std::panic::resume_unwind(p),
                    Err(p) => Err(GreenError::Panicked(panic_message(&*p))),
                };
                greenthread::completed(r)
            }
        }
    }

    /// Takes a slot, parking while the pool is full; `Err` means "run inline": the caller is a
    /// member of this full pool.
    fn take_slot(&self) -> Result<Slot, ()> {
        let mut g = lock(&self.inner.state);
        if g.running < g.size {
            g.running += 1;
        } else {
            drop(g);
            if current_pool_id() == self.inner.id {
                return Err(());
            }
            let _ = wait_until(
                &self.inner.state,
                |s| &mut s.spawners,
                None,
                |s| {
                    if s.running < s.size {
                        s.running += 1;
                        Some(())
                    } else {
                        None
                    }
                },
            );
        }
        Ok(Slot(self.inner.clone()))
    }

    /// Spawns `f` with no handle (GREEN-12: member panics are reported, never raised).
    pub fn spawn_n<F>(&self, f: F)
    where
        F: FnOnce() + Send + 'static,
    {
        match self.take_slot() {
            Ok(slot) => {
                let mut b = GreenBuilder::new();
                b.pool_id = self.inner.id;
                b.spawn_detached(move || {
                    let _slot = slot;
                    f()
                });
            }
            Err(()) => {
                if let Err(p) = catch_unwind(AssertUnwindSafe(f)) {
                    if p.is::<GreenletExit>() {
                        std::panic::resume_unwind(p);
                    }
                }
            }
        }
    }

    /// Waits until no member is running; returns at once for an idle pool (GREEN-14).
    pub fn waitall(&self) -> Result<(), PoolError> {
        if current_pool_id() == self.inner.id {
            return Err(PoolError::WaitallFromMember);
        }
        let _ = wait_until(
            &self.inner.state,
            |s| &mut s.idle_waiters,
            None,
            |s| (s.running == 0).then_some(()),
        );
        Ok(())
    }

    /// Changes the size for later spawns; running members carry on (GREEN-13).
    pub fn resize(&self, size: usize) {
        let mut g = lock(&self.inner.state);
        g.size = size;
        let free = g.size.saturating_sub(g.running);
        for _ in 0..free {
            if !g.spawners.notify_one() {
                break;
            }
        }
    }

    /// The size limit.
    pub fn size(&self) -> usize {
        lock(&self.inner.state).size
    }

    /// Members running now.
    pub fn running(&self) -> usize {
        lock(&self.inner.state).running
    }

    /// Size minus running; negative after shrinking below the running count (GREEN-11).
    pub fn free(&self) -> isize {
        let g = lock(&self.inner.state);
        g.size as isize - g.running as isize
    }

    /// Spawners parked waiting for a slot.
    pub fn waiting(&self) -> usize {
        lock(&self.inner.state).spawners.len()
    }

    /// Lazily maps `f` over `items` with at most `size` calls at once; results come out in input
    /// order. An `Err` item is followed by the end of the iteration (GREEN-15).
    pub fn imap<I, F, R>(&self, f: F, items: I) -> Imap<I::IntoIter, F, R>
    where
        I: IntoIterator,
        I::Item: Send + 'static,
        F: Fn(I::Item) -> R + Send + Sync + 'static,
        R: Send + 'static,
    {
        Imap {
            pool: self.clone(),
            f: Arc::new(f),
            items: items.into_iter(),
            pending: VecDeque::new(),
            stopped: false,
        }
    }
}

/// The iterator returned by [`GreenPool::imap`].
pub struct Imap<I, F, R> {
    pool: GreenPool,
    f: Arc<F>,
    items: I,
    pending: VecDeque<GreenThread<R>>,
    stopped: bool,
}

impl<I, F, R> std::fmt::Debug for Imap<I, F, R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Imap")
            .field("pending", &self.pending.len())
            .finish()
    }
}

impl<I, F, R> Iterator for Imap<I, F, R>
where
    I: Iterator,
    I::Item: Send + 'static,
    F: Fn(I::Item) -> R + Send + Sync + 'static,
    R: Send + 'static,
{
    type Item = Result<R, GreenError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.stopped {
            return None;
        }
        let window = self.pool.size().max(1);
        while self.pending.len() < window {
            let Some(item) = self.items.next() else { break };
            let f = self.f.clone();
            self.pending.push_back(self.pool.spawn(move || f(item)));
        }
        let r = self.pending.pop_front()?.join();
        if r.is_err() {
            self.stopped = true;
        }
        Some(r)
    }
}

/// Results of spawned jobs, in spawn order (eventlet's `GreenPile`, GREEN-16).
#[derive(Debug)]
pub struct GreenPile<T> {
    pool: GreenPool,
    pending: VecDeque<GreenThread<T>>,
}

impl<T: Send + 'static> GreenPile<T> {
    /// A pile with its own pool of `size`.
    pub fn new(size: usize) -> Self {
        Self::with_pool(GreenPool::new(size))
    }

    /// A pile that spawns into `pool`.
    pub fn with_pool(pool: GreenPool) -> Self {
        GreenPile {
            pool,
            pending: VecDeque::new(),
        }
    }

    /// Queues a job; parks while the pool is full.
    pub fn spawn<F>(&mut self, f: F)
    where
        F: FnOnce() -> T + Send + 'static,
    {
        let gt = self.pool.spawn(f);
        self.pending.push_back(gt);
    }

    /// Jobs spawned and not yet consumed.
    pub fn len(&self) -> usize {
        self.pending.len()
    }

    /// True when every spawned job was consumed.
    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }
}

impl<T: Send + 'static> Iterator for GreenPile<T> {
    type Item = Result<T, GreenError>;

    fn next(&mut self) -> Option<Self::Item> {
        Some(self.pending.pop_front()?.join())
    }
}
