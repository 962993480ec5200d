//! Looping calls on tokio's paused clock (SVC-LOOP-*, TEST-SVC-10/11/12): no real sleeps, exact
//! times.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use osier_service::looping::{fixed_sleep, LoopEnd, LoopError, LoopingCall, Retry, Step};
use tokio::time::Instant;

type R<T> = Result<Step<T>, String>;

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s)
}

/// Records the paused clock at each run, relative to the start.
fn recorder() -> (Arc<Mutex<Vec<f64>>>, Instant) {
    (Arc::new(Mutex::new(Vec::new())), Instant::now())
}

/// SVC-LOOP-02, TEST-SVC-10: interval 1.01 with runs of 0.99, 2.0 and 1.01 s sleeps 0.02, 0, 0.
#[test]
fn fixed_interval_sleeps_what_is_left_of_the_interval() {
    let i = secs(1.01);
    assert_eq!(fixed_sleep(i, secs(0.99)), secs(0.02));
    assert_eq!(fixed_sleep(i, secs(2.0)), Duration::ZERO);
    assert_eq!(fixed_sleep(i, secs(1.01)), Duration::ZERO);
}

/// SVC-LOOP-02: runs start every interval, measured from the start of the previous run, even
/// when each run takes time (drift correction).
#[tokio::test(start_paused = true)]
async fn fixed_interval_runs_on_a_steady_beat() {
    let (times, t0) = recorder();
    let t2 = times.clone();
    let h = LoopingCall::fixed_interval(secs(1.0)).start(move || {
        let t2 = t2.clone();
        async move {
            t2.lock().unwrap().push(t0.elapsed().as_secs_f64());
            tokio::time::sleep(secs(0.3)).await; // the work
            let n = t2.lock().unwrap().len();
            R::<usize>::Ok(if n == 4 {
                Step::Done(n)
            } else {
                Step::Continue
            })
        }
    });
    assert!(matches!(h.wait().await, Ok(LoopEnd::Done(4))));
    let t = times.lock().unwrap().clone();
    let rounded: Vec<f64> = t.iter().map(|x| (x * 100.0).round() / 100.0).collect();
    assert_eq!(rounded, vec![0.0, 1.0, 2.0, 3.0]);
}

/// SVC-LOOP-01: `initial_delay` comes first; `stop()` wakes the sleep at once and `wait`
/// returns Stopped; stopping twice is fine.
#[tokio::test(start_paused = true)]
async fn stop_wakes_the_sleep_at_once() {
    let t0 = Instant::now();
    let h = LoopingCall::fixed_interval(secs(3600.0))
        .initial_delay(secs(10.0))
        .start(|| async { R::<()>::Ok(Step::Continue) });
    tokio::time::sleep(secs(5.0)).await;
    h.stop();
    h.stop();
    assert!(matches!(h.wait().await, Ok(LoopEnd::Stopped)));
    assert_eq!(
        t0.elapsed().as_secs_f64().round(),
        5.0,
        "stopped during the initial delay"
    );
}

/// SVC-LOOP-01, TEST-SVC-10: an error ends the loop and comes out of `wait`.
#[tokio::test(start_paused = true)]
async fn an_error_ends_the_loop_by_default() {
    let h =
        LoopingCall::fixed_interval(secs(1.0)).start(|| async { R::<()>::Err("boom".to_string()) });
    match h.wait().await {
        Err(LoopError::Failed(e)) => assert_eq!(e, "boom"),
        other => panic!("{other:?}"),
    }
}

/// SVC-LOOP-03, TEST-SVC-10: with keep-going, two errors are followed by Done(false).
#[tokio::test(start_paused = true)]
async fn keep_going_on_error_logs_and_continues() {
    let mut n = 0;
    let h = LoopingCall::fixed_interval(secs(1.0))
        .keep_going_on_error()
        .start(move || {
            n += 1;
            let n = n;
            async move {
                if n <= 2 {
                    Err("boom".to_string())
                } else {
                    Ok(Step::Done(false))
                }
            }
        });
    assert!(matches!(h.wait().await, Ok(LoopEnd::Done(false))));
}

/// SVC-LOOP-04, TEST-SVC-10: interval 0.1 and timeout 0.3 times out.
#[tokio::test(start_paused = true)]
async fn fixed_interval_with_timeout_times_out() {
    let h = LoopingCall::fixed_interval(secs(0.1))
        .timeout(secs(0.3))
        .start(|| async { R::<()>::Ok(Step::Continue) });
    assert!(matches!(h.wait().await, Err(LoopError::TimedOut(_))));
}

/// SVC-LOOP-05: the returned idle time is capped at the maximum; None means the maximum; None
/// with no maximum is an error.
#[tokio::test(start_paused = true)]
async fn dynamic_sleeps_what_the_function_says_capped() {
    let (times, t0) = recorder();
    let t2 = times.clone();
    let mut n = 0;
    let h = LoopingCall::dynamic()
        .periodic_interval_max(secs(5.0))
        .start(move || {
            n += 1;
            t2.lock().unwrap().push(t0.elapsed().as_secs_f64());
            let step = match n {
                1 => Step::Sleep(Some(secs(2.0))),
                2 => Step::Sleep(Some(secs(60.0))), // capped to 5
                3 => Step::Sleep(None),             // the maximum
                _ => Step::Done(n),
            };
            async move { R::<i32>::Ok(step) }
        });
    assert!(matches!(h.wait().await, Ok(LoopEnd::Done(4))));
    assert_eq!(*times.lock().unwrap(), vec![0.0, 2.0, 7.0, 12.0]);
    let h = LoopingCall::dynamic().start(|| async { R::<()>::Ok(Step::Sleep(None)) });
    assert!(matches!(h.wait().await, Err(LoopError::NoInterval)));
}

/// Asserts `got` is `want` to within tokio's timer resolution (1 ms).
fn assert_series(got: &[f64], want: &[f64], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: {got:?}");
    for (g, w) in got.iter().zip(want) {
        assert!((g - w).abs() < 0.0015, "{what}: {got:?} vs {want:?}");
    }
}

/// The sleeps between the runs of a back-off loop that always fails, until it times out.
async fn backoff_series(call: LoopingCall) -> (Vec<f64>, bool) {
    let (times, t0) = recorder();
    let t2 = times.clone();
    let h = call.start(move || {
        t2.lock().unwrap().push(t0.elapsed().as_secs_f64());
        async { R::<()>::Ok(Step::Failure) }
    });
    let timed_out = matches!(h.wait().await, Err(LoopError::TimedOut(_)));
    let t = times.lock().unwrap().clone();
    let gaps = t
        .windows(2)
        .map(|w| ((w[1] - w[0]) * 1e4).round() / 1e4)
        .collect();
    (gaps, timed_out)
}

/// SVC-LOOP-06, TEST-SVC-11: oslo's exact series with gauss = 0.8 (and -0.8: abs is applied),
/// then the timeout; with max_interval 60 the series ends at 60, 60, 60.
#[tokio::test(start_paused = true)]
async fn backoff_follows_oslos_series() {
    let want = vec![
        1.6, 2.4, 3.6, 5.4, 8.1, 12.15, 18.225, 27.3375, 41.00625, 61.509375, 92.2640625,
    ];
    for g in [0.8, -0.8] {
        let (gaps, timed_out) = backoff_series(LoopingCall::backoff().gauss_with(move |_| g)).await;
        assert_series(&gaps, &want, &format!("gauss {g}"));
        assert!(timed_out);
    }
    let (gaps, timed_out) = backoff_series(
        LoopingCall::backoff()
            .max_interval(60.0)
            .gauss_with(|_| 0.8),
    )
    .await;
    assert_series(&gaps[7..], &[27.3375, 41.00625, 60.0, 60.0, 60.0], "max 60");
    assert!(timed_out);
}

/// TEST-SVC-11: success sleeps the starting interval each time, then Done returns the value; done
/// on the first call means no sleep at all.
#[tokio::test(start_paused = true)]
async fn backoff_success_sleeps_the_starting_interval() {
    let t0 = Instant::now();
    let mut n = 0;
    let h = LoopingCall::backoff().gauss_with(|_| 1.0).start(move || {
        n += 1;
        let n = n;
        async move {
            R::<&str>::Ok(if n == 4 {
                Step::Done("return value")
            } else {
                Step::Success
            })
        }
    });
    assert!(matches!(h.wait().await, Ok(LoopEnd::Done("return value"))));
    assert_eq!(t0.elapsed().as_secs_f64().round(), 3.0);
    let t0 = Instant::now();
    let h = LoopingCall::backoff().start(|| async { R::<i32>::Ok(Step::Done(1)) });
    assert!(matches!(h.wait().await, Ok(LoopEnd::Done(1))));
    assert_eq!(t0.elapsed(), Duration::ZERO);
}

/// A step the kind of loop does not take is a typed error, not a guess.
#[tokio::test(start_paused = true)]
async fn a_wrong_step_is_an_error() {
    let h = LoopingCall::fixed_interval(secs(1.0)).start(|| async { R::<()>::Ok(Step::Success) });
    assert!(matches!(
        h.wait().await,
        Err(LoopError::WrongStep("Success", _))
    ));
}

/// Runs `retry` (retrying "retry me") on a function that always fails with `err`; returns the
/// result and how many times the function ran.
async fn always_failing(retry: &Retry, err: &'static str) -> (Result<(), &'static str>, usize) {
    let mut calls = 0;
    let r = retry
        .run(
            |e: &&str| *e == "retry me",
            || {
                calls += 1;
                async move { Err(err) }
            },
        )
        .await;
    (r, calls)
}

/// SVC-LOOP-07, TEST-SVC-12: listed errors are retried with growing, capped sleeps up to the
/// count.
#[tokio::test(start_paused = true)]
async fn retry_grows_its_sleeps_and_gives_up() {
    let retry = Retry::new(Some(3), secs(10.0), secs(25.0));
    let t0 = Instant::now();
    let (r, calls) = always_failing(&retry, "retry me").await;
    assert_eq!(r, Err("retry me"));
    assert_eq!(calls, 4, "one try and three retries");
    assert_eq!(t0.elapsed().as_secs_f64().round(), 10.0 + 20.0 + 25.0);
}

/// SVC-LOOP-07, TEST-SVC-12: an error that is not listed is returned at once.
#[tokio::test(start_paused = true)]
async fn retry_returns_an_unlisted_error_at_once() {
    let retry = Retry::new(Some(3), secs(10.0), secs(25.0));
    assert_eq!(always_failing(&retry, "fatal").await, (Err("fatal"), 1));
}

/// SVC-LOOP-07, TEST-SVC-12: success returns the value.
#[tokio::test(start_paused = true)]
async fn retry_returns_the_value_on_success() {
    let retry = Retry::new(Some(3), secs(10.0), secs(25.0));
    let r: Result<i32, &str> = retry.run(|_| true, || async { Ok(7) }).await;
    assert_eq!(r, Ok(7));
}
