//! Looping calls (`oslo_service.loopingcall`, SVC-LOOP-*), for async code.
//!
//! | oslo.service | osier-service |
//! |---|---|
//! | `FixedIntervalLoopingCall(f).start(interval, initial_delay)` | [`LoopingCall::fixed_interval`]`(interval).initial_delay(d).start(f)` |
//! | `FixedIntervalWithTimeoutLoopingCall(f).start(interval, timeout=t)` | [`LoopingCall::fixed_interval`]`(i).timeout(t).start(f)` |
//! | `DynamicLoopingCall(f).start(periodic_interval_max=m)` | [`LoopingCall::dynamic`]`().periodic_interval_max(m).start(f)` |
//! | `BackOffLoopingCall(f).start(starting_interval, timeout, max_interval, jitter)` | [`LoopingCall::backoff`]`().starting_interval(..)...start(f)` |
//! | `raise LoopingCallDone(retvalue)` | return [`Step::Done`]`(value)` |
//! | `stop_on_exception=False` | [`LoopingCall::keep_going_on_error`] |
//! | `call.stop()`; `call.wait()` | [`LoopHandle::stop`] (wakes the sleep at once); [`LoopHandle::wait`] |
//! | `RetryDecorator(max_retry_count, inc_sleep_time, max_sleep_time, exceptions)` | [`Retry`] |
//!
//! What the function returns tells the loop what to do: [`Step::Continue`] (fixed interval),
//! [`Step::Sleep`] (dynamic: how long to idle), [`Step::Success`] / [`Step::Failure`]
//! (back-off), or [`Step::Done`] to end the loop with a value. Time is `tokio::time`, so tests
//! run on a paused clock.
//!
//! ```
//! use std::time::Duration;
//! use osier_service::looping::{LoopEnd, LoopingCall, Step};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() {
//! let mut n = 0;
//! let h = LoopingCall::fixed_interval(Duration::from_secs(1)).start(move || {
//!     n += 1;
//!     async move { Ok::<_, std::io::Error>(if n == 3 { Step::Done(n) } else { Step::Continue }) }
//! });
//! assert!(matches!(h.wait().await, Ok(LoopEnd::Done(3))));
//! # }
//! ```
//!
//! Differences from oslo, on purpose: starting a call twice cannot happen (`start` consumes the
//! builder), so there is no RuntimeError for it; [`Retry`]'s counters start afresh on every
//! call (oslo's `RetryDecorator` keeps them on the decorator object and never resets them).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{oneshot, watch};
use tokio::time::Instant;

/// What the looped function asks for.
#[derive(Debug, Clone, PartialEq)]
pub enum Step<T> {
    /// Run again after the interval (fixed-interval loops).
    Continue,
    /// Idle this long, capped at `periodic_interval_max`; `None` means the maximum (dynamic loops).
    Sleep(Option<Duration>),
    /// The attempt worked: back to the starting interval (back-off loops).
    Success,
    /// The attempt did not work: back off (back-off loops).
    Failure,
    /// End the loop; [`LoopHandle::wait`] returns [`LoopEnd::Done`] with the value
    /// (oslo's `LoopingCallDone(retvalue)`).
    Done(T),
}

/// How a loop ended well.
#[derive(Debug, Clone, PartialEq)]
pub enum LoopEnd<T> {
    /// [`LoopHandle::stop`] was called (oslo's `wait()` returns True).
    Stopped,
    /// The function returned [`Step::Done`].
    Done(T),
}

/// How a loop ended badly.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum LoopError<E> {
    /// The function failed (with the default stop-on-error).
    #[error("the looped function failed: {0}")]
    Failed(E),
    /// The timeout passed (oslo's LoopingCallTimeOut).
    #[error("looping call timed out after {0:?}")]
    TimedOut(Duration),
    /// A dynamic loop got `Sleep(None)` with no `periodic_interval_max` (oslo's RuntimeError).
    #[error("a dynamic looping call returned no interval and has no periodic_interval_max")]
    NoInterval,
    /// The function returned a step its kind of loop does not take.
    #[error("step {0} is not valid for a {1} looping call")]
    WrongStep(&'static str, &'static str),
    /// The loop's task panicked or was cancelled.
    #[error("the looping call's task ended abnormally: {0}")]
    Aborted(String),
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    Fixed { interval: Duration },
    Dynamic { max: Option<Duration> },
    BackOff(BackOff),
}

#[derive(Debug, Clone, Copy, PartialEq)]
struct BackOff {
    starting_interval: f64,
    max_interval: f64,
    jitter: f64,
    min_interval: f64,
}

/// A looping call, configured with its builder methods, then [`start`](LoopingCall::start)ed.
pub struct LoopingCall {
    kind: Kind,
    initial_delay: Option<Duration>,
    timeout: Option<Duration>,
    stop_on_error: bool,
    gauss: Option<Box<dyn FnMut(f64) -> f64 + Send>>,
}

impl std::fmt::Debug for LoopingCall {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoopingCall")
            .field("kind", &self.kind)
            .field("initial_delay", &self.initial_delay)
            .field("timeout", &self.timeout)
            .field("stop_on_error", &self.stop_on_error)
            .finish_non_exhaustive()
    }
}

impl LoopingCall {
    fn new(kind: Kind) -> Self {
        LoopingCall {
            kind,
            initial_delay: None,
            timeout: None,
            stop_on_error: true,
            gauss: None,
        }
    }

    /// Runs every `interval`, measured from the start of each run: the sleep is
    /// `interval - elapsed` rounded to 10 ms, or none (with a warning) when the run overran
    /// (SVC-LOOP-02). With [`timeout`](Self::timeout), oslo's `FixedIntervalWithTimeoutLoopingCall`.
    pub fn fixed_interval(interval: Duration) -> Self {
        Self::new(Kind::Fixed { interval })
    }

    /// Sleeps for what the function returns ([`Step::Sleep`]), capped at
    /// [`periodic_interval_max`](Self::periodic_interval_max) (SVC-LOOP-05).
    pub fn dynamic() -> Self {
        Self::new(Kind::Dynamic { max: None })
    }

    /// Backs off on [`Step::Failure`] with oslo's series, and returns to the starting interval
    /// on [`Step::Success`] (SVC-LOOP-06). Defaults: starting 1 s, timeout 300 s, max 300 s,
    /// jitter 0.75, min 0.001 s.
    pub fn backoff() -> Self {
        let mut c = Self::new(Kind::BackOff(BackOff {
            starting_interval: 1.0,
            max_interval: 300.0,
            jitter: 0.75,
            min_interval: 0.001,
        }));
        c.timeout = Some(Duration::from_secs(300));
        c
    }

    /// A sleep before the first run (stop interrupts it too).
    pub fn initial_delay(mut self, d: Duration) -> Self {
        self.initial_delay = Some(d);
        self
    }

    /// Fixed interval: fail with [`LoopError::TimedOut`] once this much time has passed since
    /// the start, checked after each run (SVC-LOOP-04). Back-off: the total of the sleeps after
    /// failures may not pass it. `Duration::ZERO` means none.
    pub fn timeout(mut self, t: Duration) -> Self {
        self.timeout = (!t.is_zero()).then_some(t);
        self
    }

    /// Dynamic loops: the longest sleep, and the sleep for `Sleep(None)`.
    pub fn periodic_interval_max(mut self, max: Duration) -> Self {
        if let Kind::Dynamic { max: m } = &mut self.kind {
            *m = Some(max);
        }
        self
    }

    /// oslo's `stop_on_exception=False`: an error is logged and the loop goes on as if the
    /// function had returned `Continue` (fixed), `Sleep(Some(0))` (dynamic) or `Failure`
    /// (back-off) (SVC-LOOP-03).
    pub fn keep_going_on_error(mut self) -> Self {
        self.stop_on_error = false;
        self
    }

    /// Back-off: the starting interval in seconds.
    pub fn starting_interval(mut self, secs: f64) -> Self {
        if let Kind::BackOff(b) = &mut self.kind {
            b.starting_interval = secs;
        }
        self
    }

    /// Back-off: the longest sleep in seconds.
    pub fn max_interval(mut self, secs: f64) -> Self {
        if let Kind::BackOff(b) = &mut self.kind {
            b.max_interval = secs;
        }
        self
    }

    /// Back-off: the jitter factor (the mean of the random factor).
    pub fn jitter(mut self, jitter: f64) -> Self {
        if let Kind::BackOff(b) = &mut self.kind {
            b.jitter = jitter;
        }
        self
    }

    /// Back-off: the shortest interval in seconds.
    pub fn min_interval(mut self, secs: f64) -> Self {
        if let Kind::BackOff(b) = &mut self.kind {
            b.min_interval = secs;
        }
        self
    }

    /// Back-off: replaces `gauss(jitter, 0.1)` (for tests, like oslo's tests patch `random.gauss`).
    pub fn gauss_with(mut self, f: impl FnMut(f64) -> f64 + Send + 'static) -> Self {
        self.gauss = Some(Box::new(f));
        self
    }

    /// Starts the loop on the current tokio runtime.
    pub fn start<F, Fut, T, E>(self, f: F) -> LoopHandle<T, E>
    where
        F: FnMut() -> Fut + Send + 'static,
        Fut: Future<Output = Result<Step<T>, E>> + Send,
        T: Send + 'static,
        E: std::fmt::Display + Send + 'static,
    {
        let (stop_tx, stop_rx) = watch::channel(false);
        let (done_tx, done_rx) = oneshot::channel();
        tokio::spawn(async move {
            let r = self.run(f, stop_rx).await;
            let _ = done_tx.send(r);
        });
        LoopHandle {
            stop: Arc::new(stop_tx),
            done: done_rx,
        }
    }

    async fn run<F, Fut, T, E>(
        mut self,
        mut f: F,
        mut stop: watch::Receiver<bool>,
    ) -> Result<LoopEnd<T>, LoopError<E>>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<Step<T>, E>>,
        E: std::fmt::Display,
    {
        let kind_name = match self.kind {
            Kind::Fixed { .. } => "fixed-interval",
            Kind::Dynamic { .. } => "dynamic",
            Kind::BackOff(_) => "back-off",
        };
        if let Some(d) = self.initial_delay {
            if sleep_or_stop(d, &mut stop).await {
                return Ok(LoopEnd::Stopped);
            }
        }
        let started = Instant::now();
        let mut interval = match self.kind {
            Kind::BackOff(b) => b.starting_interval,
            _ => 0.0,
        };
        let mut failure_sleeps = 0.0;
        loop {
            if *stop.borrow() {
                return Ok(LoopEnd::Stopped);
            }
            let run_start = Instant::now();
            let step = match f().await {
                Ok(Step::Done(v)) => return Ok(LoopEnd::Done(v)),
                Ok(step) => step,
                Err(e) if self.stop_on_error => {
                    tracing::error!(error = %e, "{kind_name} looping call failed");
                    return Err(LoopError::Failed(e));
                }
                Err(e) => {
                    tracing::error!(error = %e, "{kind_name} looping call failed; going on");
                    match self.kind {
                        Kind::Fixed { .. } => Step::Continue,
                        Kind::Dynamic { .. } => Step::Sleep(Some(Duration::ZERO)),
                        Kind::BackOff(_) => Step::Failure,
                    }
                }
            };
            if *stop.borrow() {
                return Ok(LoopEnd::Stopped);
            }
            let sleep = match (self.kind, step) {
                (Kind::Fixed { interval }, Step::Continue) => {
                    if let Some(t) = self.timeout {
                        if started.elapsed() > t {
                            return Err(LoopError::TimedOut(t));
                        }
                    }
                    fixed_sleep(interval, run_start.elapsed())
                }
                (Kind::Dynamic { max }, Step::Sleep(want)) => match (want, max) {
                    (Some(w), Some(m)) => w.min(m),
                    (Some(w), None) => w,
                    (None, Some(m)) => m,
                    (None, None) => return Err(LoopError::NoInterval),
                },
                (Kind::BackOff(b), Step::Success) => {
                    interval = b.starting_interval;
                    let j = self.draw(b.jitter);
                    Duration::from_secs_f64(b.starting_interval * j)
                }
                (Kind::BackOff(b), Step::Failure) => {
                    let j = self.draw(b.jitter);
                    let secs = (interval * 2.0 * j).max(b.min_interval).min(b.max_interval);
                    interval = (interval * 2.0 * b.jitter).max(b.min_interval);
                    if let Some(t) = self.timeout {
                        if failure_sleeps + secs > t.as_secs_f64() {
                            return Err(LoopError::TimedOut(t));
                        }
                    }
                    failure_sleeps += secs;
                    Duration::from_secs_f64(secs)
                }
                (_, s) => {
                    let name = match s {
                        Step::Continue => "Continue",
                        Step::Sleep(_) => "Sleep",
                        Step::Success => "Success",
                        Step::Failure => "Failure",
                        Step::Done(_) => "Done",
                    };
                    return Err(LoopError::WrongStep(name, kind_name));
                }
            };
            if sleep_or_stop(sleep, &mut stop).await {
                return Ok(LoopEnd::Stopped);
            }
        }
    }

    /// `|gauss(jitter, 0.1)|`, fresh each time.
    fn draw(&mut self, jitter: f64) -> f64 {
        let g = match &mut self.gauss {
            Some(f) => f(jitter),
            None => gauss(jitter, 0.1),
        };
        g.abs()
    }
}

/// `interval - elapsed`, rounded to 10 ms like oslo's `round(delay, 2)`, or zero with a warning
/// when the run took longer than the interval.
pub fn fixed_sleep(interval: Duration, elapsed: Duration) -> Duration {
    let delay = interval.as_secs_f64() - elapsed.as_secs_f64();
    if delay <= 0.0 {
        tracing::warn!(
            overran_by_s = -delay,
            "function run outlasted the looping call's interval"
        );
        return Duration::ZERO;
    }
    Duration::from_secs_f64((delay * 100.0).round() / 100.0)
}

/// A normal draw (Box-Muller on fastrand's uniform numbers).
fn gauss(mu: f64, sigma: f64) -> f64 {
    let u1 = fastrand::f64().max(f64::MIN_POSITIVE);
    let u2 = fastrand::f64();
    mu + sigma * (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
}

/// Sleeps `d`; returns true if stopped meanwhile (the sleep ends at once, SVC-LOOP-01).
async fn sleep_or_stop(d: Duration, stop: &mut watch::Receiver<bool>) -> bool {
    if *stop.borrow() {
        return true;
    }
    let woke = tokio::select! {
        _ = tokio::time::sleep(d) => None,
        r = stop.wait_for(|s| *s) => Some(r.is_ok()),
    };
    woke.unwrap_or_else(|| *stop.borrow())
}

/// A running looping call.
pub struct LoopHandle<T, E> {
    stop: Arc<watch::Sender<bool>>,
    done: oneshot::Receiver<Result<LoopEnd<T>, LoopError<E>>>,
}

impl<T, E> std::fmt::Debug for LoopHandle<T, E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoopHandle")
            .field("stopped", &*self.stop.borrow())
            .finish_non_exhaustive()
    }
}

impl<T, E> LoopHandle<T, E> {
    /// Stops the loop: a sleep ends at once, a run in progress finishes first. Calling it again
    /// does nothing.
    pub fn stop(&self) {
        self.stop.send_replace(true);
    }

    /// A handle that can stop the loop from elsewhere.
    pub fn stopper(&self) -> Stopper {
        Stopper(self.stop.clone())
    }

    /// Waits for the end of the loop.
    pub async fn wait(self) -> Result<LoopEnd<T>, LoopError<E>> {
        self.done
            .await
            .unwrap_or_else(|_| Err(LoopError::Aborted("the loop's task is gone".into())))
    }
}

/// Stops a looping call (see [`LoopHandle::stop`]).
#[derive(Debug, Clone)]
pub struct Stopper(Arc<watch::Sender<bool>>);

impl Stopper {
    /// Stops the loop.
    pub fn stop(&self) {
        self.0.send_replace(true);
    }
}

/// oslo's `RetryDecorator` (SVC-LOOP-07): retries a call whose error `retry_on` accepts, after
/// sleeps that grow by `inc_sleep_time` up to `max_sleep_time`, at most `max_retry_count` times
/// (`None`: no limit). Other errors are returned at once.
///
/// ```
/// use std::time::Duration;
/// use osier_service::looping::Retry;
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// let mut tries = 0;
/// let r = Retry::new(Some(5), Duration::from_secs(1), Duration::from_secs(3))
///     .run(|e: &&str| *e == "busy", || {
///         tries += 1;
///         let t = tries;
///         async move { if t < 3 { Err("busy") } else { Ok(t) } }
///     })
///     .await;
/// assert_eq!(r, Ok(3));
/// # }
/// ```
#[derive(Debug, Clone, Copy)]
pub struct Retry {
    max_retry_count: Option<u32>,
    inc_sleep_time: Duration,
    max_sleep_time: Duration,
}

impl Retry {
    /// A retry policy.
    pub fn new(
        max_retry_count: Option<u32>,
        inc_sleep_time: Duration,
        max_sleep_time: Duration,
    ) -> Self {
        Retry {
            max_retry_count,
            inc_sleep_time,
            max_sleep_time,
        }
    }

    /// Runs `f` until it succeeds, fails with an error `retry_on` refuses, or runs out of
    /// retries (then the last error is returned).
    pub async fn run<F, Fut, T, E>(&self, retry_on: impl Fn(&E) -> bool, mut f: F) -> Result<T, E>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let mut retries = 0u32;
        let mut sleep = Duration::ZERO;
        loop {
            match f().await {
                Ok(v) => return Ok(v),
                Err(e) if !retry_on(&e) => return Err(e),
                Err(e) => {
                    if self.max_retry_count.is_some_and(|m| retries >= m) {
                        return Err(e);
                    }
                    retries += 1;
                    sleep = (sleep + self.inc_sleep_time).min(self.max_sleep_time);
                    tracing::debug!(retries, sleep_s = sleep.as_secs_f64(), "retrying");
                    tokio::time::sleep(sleep).await;
                }
            }
        }
    }
}
