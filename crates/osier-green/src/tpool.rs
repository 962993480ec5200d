//! `tpool`: run blocking calls on native threads; only the calling green thread waits
//! (GREEN-31, GREEN-33).
//!
//! ```
//! let n = osier_green::spawn(|| {
//!     // std::fs, DNS, a C library...: anything that blocks the OS thread
//!     osier_green::tpool::execute(|| std::fs::read_dir(".").map(|d| d.count()).unwrap_or(0))
//! });
//! assert!(n.wait().unwrap() > 0);
//! ```
//!
//! The pool size comes from `OSIER_THREADPOOL_SIZE` (default 20, eventlet's
//! `EVENTLET_THREADPOOL_SIZE`) or [`set_num_threads`]; threads start on demand. A size of 0 runs
//! every call inline (with a warning), as eventlet does. A call made from a pool thread, or from a
//! plain OS thread, runs inline: it cannot deadlock the pool and blocks only its own thread.

use std::cell::Cell;
use std::collections::VecDeque;
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::thread::JoinHandle;

use crate::error::{panic_message, GreenError};
use crate::hub::{self, lock};
use crate::waiter::{wait_until, WaitList};

type Job = Box<dyn FnOnce() + Send>;

const DEFAULT_SIZE: usize = 20;

struct State {
    jobs: VecDeque<Job>,
    size: usize,
    threads: Vec<JoinHandle<()>>,
    idle: usize,
    stopping: bool,
}

struct Pool {
    state: Mutex<State>,
    cv: Condvar,
}

thread_local! {
    static IN_TPOOL: Cell<bool> = const { Cell::new(false) };
}

fn pool() -> &'static Arc<Pool> {
    static POOL: OnceLock<Arc<Pool>> = OnceLock::new();
    POOL.get_or_init(|| {
        let size = std::env::var("OSIER_THREADPOOL_SIZE")
            .ok()
            .and_then(|v| v.trim().parse::<usize>().ok())
            .unwrap_or(DEFAULT_SIZE);
        Arc::new(Pool {
            state: Mutex::new(State {
                jobs: VecDeque::new(),
                size,
                threads: Vec::new(),
                idle: 0,
                stopping: false,
            }),
            cv: Condvar::new(),
        })
    })
}

fn worker(pool: Arc<Pool>) {
    IN_TPOOL.with(|c| c.set(true));
    let mut g = lock(&pool.state);
    loop {
        if let Some(job) = g.jobs.pop_front() {
            drop(g);
            job();
            g = lock(&pool.state);
            continue;
        }
        if g.stopping {
            return;
        }
        g.idle += 1;
        g = pool.cv.wait(g).unwrap_or_else(|e| e.into_inner());
        g.idle -= 1;
    }
}

struct Slot<T> {
    value: Option<std::thread::Result<T>>,
    waiters: WaitList,
}

/// Runs `f` on a pool thread and returns its value; only the calling green thread parks. A panic
/// in `f` is raised again in the caller (eventlet re-raises the exception), with its payload.
pub fn execute<T, F>(f: F) -> T
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    match run(f) {
        Ok(v) => v,
        Err(p) => resume_unwind(p),
    }
}

/// Like [`execute`], returning a panic in `f` as [`GreenError::Panicked`] instead of raising it.
pub fn try_execute<T, F>(f: F) -> Result<T, GreenError>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    run(f).map_err(|p| GreenError::Panicked(panic_message(&*p)))
}

fn run<T, F>(f: F) -> std::thread::Result<T>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    if IN_TPOOL.with(|c| c.get()) || !hub::in_green_thread() {
        return catch_unwind(AssertUnwindSafe(f));
    }
    let pool = pool();
    if lock(&pool.state).size == 0 {
        tracing::warn!("tpool size is 0: running a blocking call inline on the green hub");
        return catch_unwind(AssertUnwindSafe(f));
    }
    let slot = Arc::new(Mutex::new(Slot {
        value: None,
        waiters: WaitList::default(),
    }));
    let s2 = slot.clone();
    submit(
        pool,
        Box::new(move || {
            let r = catch_unwind(AssertUnwindSafe(f));
            let mut g = lock(&s2);
            g.value = Some(r);
            g.waiters.notify_all();
        }),
    );
    let r = wait_until(&slot, |s| &mut s.waiters, None, |s| s.value.take());
    match r {
        Ok(r) => r,
        Err(_) => unreachable!("an untimed wait returned without a value"),
    }
}

fn submit(pool: &Arc<Pool>, job: Job) {
    let mut g = lock(&pool.state);
    g.jobs.push_back(job);
    if g.idle == 0 && g.threads.len() < g.size {
        let p = pool.clone();
        let n = g.threads.len();
        match std::thread::Builder::new()
            .name(format!("osier-tpool-{n}"))
            .spawn(move || worker(p))
        {
            Ok(h) => g.threads.push(h),
            Err(e) => tracing::error!(error = %e, "could not start a tpool thread"),
        }
    }
    pool.cv.notify_one();
}

/// Sets the number of pool threads (eventlet's `tpool.set_num_threads`). Takes effect for new
/// threads at once; existing threads beyond the new size leave at the next [`killall`].
pub fn set_num_threads(n: usize) {
    lock(&pool().state).size = n;
}

/// The configured number of pool threads.
pub fn num_threads() -> usize {
    lock(&pool().state).size
}

/// Pool threads started now.
pub fn threads_started() -> usize {
    lock(&pool().state).threads.len()
}

/// Stops the pool threads after they finish every queued call (so pending results are handed
/// out). The next [`execute`] starts threads again (GREEN-33). Call it in a forked child before
/// using the pool.
pub fn killall() {
    let pool = pool();
    let threads = {
        let mut g = lock(&pool.state);
        g.stopping = true;
        std::mem::take(&mut g.threads)
    };
    pool.cv.notify_all();
    let join_all = move || {
        for t in threads {
            let _ = t.join();
        }
    };
    if hub::in_green_thread() {
        // Joining OS threads blocks: do it on a helper thread and park only this green thread.
        let done: crate::Event<(), ()> = crate::Event::new();
        let d2 = done.clone();
        match std::thread::Builder::new()
            .name("osier-tpool-killall".into())
            .spawn(move || {
                join_all();
                let _ = d2.send(());
            }) {
            Ok(_) => {
                let _ = done.wait();
            }
            Err(e) => tracing::error!(error = %e, "tpool killall could not start its helper"),
        }
    } else {
        join_all();
    }
    lock(&pool.state).stopping = false;
}
