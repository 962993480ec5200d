//! Periodic tasks (SVC-PER-*, TEST-SVC-13) on tokio's paused clock.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use osier_service::periodic::{PeriodicTask, PeriodicTasks, DEFAULT_INTERVAL};
use osier_service::BoxError;

type Counts = Arc<Mutex<HashMap<&'static str, usize>>>;

fn counter(
    name: &'static str,
    fail: bool,
) -> impl Fn(Counts) -> std::future::Ready<Result<(), BoxError>> + Send + Sync + 'static {
    move |c: Counts| {
        *c.lock().unwrap().entry(name).or_default() += 1;
        std::future::ready(if fail {
            Err(format!("{name} failed").into())
        } else {
            Ok(())
        })
    }
}

fn count(c: &Counts, name: &str) -> usize {
    c.lock().unwrap().get(name).copied().unwrap_or(0)
}

async fn advance(secs: u64) {
    tokio::time::advance(Duration::from_secs(secs)).await;
}

#[tokio::test(start_paused = true)]
async fn three_passes_run_each_task_at_the_right_pass() {
    // TEST-SVC-13's timeline: normal, crashing, immediate (70 s), 70 s, and a task added
    // later, over passes at 0, 60 and 70 s; SVC-PER-01 (last run set when added), SVC-PER-03.
    let c: Counts = Arc::default();
    let mut tasks = PeriodicTasks::new();
    assert!(tasks.add(PeriodicTask::new("doit", counter("doit", false))));
    assert!(tasks.add(PeriodicTask::new("crashit", counter("crashit", true))));
    assert!(tasks.add(
        PeriodicTask::new("ticks", counter("ticks", false))
            .spacing(70)
            .run_immediately()
    ));
    assert!(tasks.add(PeriodicTask::new("delayed", counter("delayed", false)).spacing(70)));
    assert!(tasks.add(PeriodicTask::new("external", counter("external", false))));

    let idle = tasks.run(c.clone(), false).await.unwrap();
    assert_eq!(idle, DEFAULT_INTERVAL);
    assert_eq!(count(&c, "ticks"), 1, "immediate: first pass");
    assert_eq!(count(&c, "doit") + count(&c, "delayed"), 0);

    advance(60).await;
    let idle = tasks.run(c.clone(), false).await.unwrap();
    assert_eq!(
        idle,
        Duration::from_secs(10),
        "ticks and delayed are due in 10 s"
    );
    assert_eq!(
        (
            count(&c, "doit"),
            count(&c, "crashit"),
            count(&c, "external")
        ),
        (1, 1, 1),
        "a crashing task is logged and the pass goes on"
    );

    advance(10).await;
    let idle = tasks.run(c.clone(), false).await.unwrap();
    assert_eq!((count(&c, "ticks"), count(&c, "delayed")), (2, 1));
    assert_eq!(count(&c, "doit"), 1);
    // doit is next due at 120 s plus up to 5 % of 60 s of jitter, in whole seconds.
    assert!(
        idle >= Duration::from_secs(50) && idle <= Duration::from_secs(53),
        "{idle:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn spacing_9_over_200_one_second_steps_runs_floor_i_over_9_times() {
    // TEST-SVC-13; spacings under 20 s get no jitter (SVC-PER-03).
    let c: Counts = Arc::default();
    let mut tasks = PeriodicTasks::new();
    tasks.add(PeriodicTask::new("nine", counter("nine", false)).spacing(9));
    for i in 1..=200 {
        advance(1).await;
        tasks.run(c.clone(), false).await.unwrap();
        assert_eq!(count(&c, "nine"), i / 9, "after {i} s");
    }
}

#[tokio::test(start_paused = true)]
async fn raise_on_error_returns_the_failure_with_the_task_name() {
    // SVC-PER-03, TEST-SVC-13 ("raise_on_error raises"; "custom names are used").
    let c: Counts = Arc::default();
    let mut tasks = PeriodicTasks::new();
    tasks.add(PeriodicTask::new("my-custom-name", counter("x", true)).run_immediately());
    let e = tasks.run(c, true).await.unwrap_err();
    assert_eq!(e.name, "my-custom-name");
    assert!(e.to_string().contains("x failed"), "{e}");
}

#[tokio::test(start_paused = true)]
async fn disabled_and_negative_spacing_tasks_are_left_out_and_zero_means_60_s() {
    // SVC-PER-01/02, TEST-SVC-13 ("the metaclass leaves disabled tasks out and applies the 60 s
    // default spacing").
    let mut tasks: PeriodicTasks<Counts> = PeriodicTasks::new();
    assert!(!tasks.add(PeriodicTask::new("off", counter("off", false)).enabled(false)));
    assert!(!tasks.add(PeriodicTask::new("neg", counter("neg", false)).spacing(-1)));
    assert!(tasks.add(PeriodicTask::new("zero", counter("zero", false)).spacing(0)));
    assert_eq!(tasks.names(), ["zero"]);
    let c: Counts = Arc::default();
    advance(59).await;
    tasks.run(c.clone(), false).await.unwrap();
    assert_eq!(count(&c, "zero"), 0);
    advance(1).await;
    tasks.run(c.clone(), false).await.unwrap();
    assert_eq!(count(&c, "zero"), 1);
}

#[tokio::test(start_paused = true)]
async fn idle_is_capped_at_60_s_and_shrinks_to_the_next_due_time() {
    // TEST-SVC-13: idle of 60 for spacing 200; then the time until a task is due.
    let c: Counts = Arc::default();
    let mut tasks = PeriodicTasks::new();
    tasks.add(PeriodicTask::new("slow", counter("slow", false)).spacing(200));
    assert_eq!(tasks.run(c.clone(), false).await.unwrap(), DEFAULT_INTERVAL);
    let mut tasks = PeriodicTasks::new();
    tasks.add(PeriodicTask::new("ten", counter("ten", false)).spacing(10));
    advance(5).await;
    assert_eq!(
        tasks.run(c.clone(), false).await.unwrap(),
        Duration::from_secs(5)
    );
    advance(5).await;
    assert_eq!(
        tasks.run(c.clone(), false).await.unwrap(),
        Duration::from_secs(10),
        "it ran: the last run moved by 10"
    );
    assert_eq!(count(&c, "ten"), 1);
}

#[tokio::test(start_paused = true)]
async fn external_tasks_are_skipped_when_run_external_is_off() {
    // SVC-PER-03, TEST-SVC-13.
    let c: Counts = Arc::default();
    let mut tasks = PeriodicTasks::new().run_external(false);
    tasks.add(
        PeriodicTask::new("ext", counter("ext", false))
            .external_process_ok()
            .run_immediately(),
    );
    tasks.add(PeriodicTask::new("own", counter("own", false)).run_immediately());
    tasks.run(c.clone(), false).await.unwrap();
    assert_eq!((count(&c, "ext"), count(&c, "own")), (0, 1));
}

#[tokio::test(start_paused = true)]
async fn the_parallel_variant_runs_due_tasks_together_and_collects_results_as_they_finish() {
    // SVC-PER-05, TEST-SVC-13 ("collects results out of order").
    let mut tasks: PeriodicTasks<()> = PeriodicTasks::new();
    tasks.add(
        PeriodicTask::new("slow", |()| async {
            tokio::time::sleep(Duration::from_secs(2)).await;
            Ok(())
        })
        .run_immediately(),
    );
    tasks.add(
        PeriodicTask::new("fast", |()| async {
            tokio::time::sleep(Duration::from_secs(1)).await;
            Err::<(), BoxError>("fast failed".into())
        })
        .run_immediately(),
    );
    let t0 = tokio::time::Instant::now();
    let (_, outcomes) = tasks.run_parallel((), false).await.unwrap();
    assert_eq!(
        t0.elapsed(),
        Duration::from_secs(2),
        "together, not one after the other"
    );
    let names: Vec<&str> = outcomes.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["fast", "slow"]);
    assert!(outcomes[0].1.is_err());

    advance(60).await;
    let e = tasks.run_parallel((), true).await.unwrap_err();
    assert_eq!(e.name, "fast");
}
