//! What the bridge builds on: primitives awaited from async code without blocking the executor,
//! `park`/`Unparker`, and spans that follow a green thread across its switches (LESSON-12).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use osier_green::{park, sleep, spawn, Event, GreenBuilder, Queue, Runtime, Semaphore, Unparker};

fn current_thread_rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// A current_thread executor keeps running other tasks while one awaits a green queue: the
/// await does not block the executor's only thread.
#[test]
fn queue_get_async_does_not_block_current_thread_executor() {
    let rt = current_thread_rt();
    let q: Queue<u32> = Queue::unbounded();
    let q2 = q.clone();
    let got = rt.block_on(async move {
        let waiter = tokio::spawn(async move { q2.get_async().await });
        // if get_async blocked the thread, this task could never run
        let ticker = tokio::spawn(async {
            tokio::time::sleep(Duration::from_millis(5)).await;
            1
        });
        assert_eq!(ticker.await.unwrap(), 1);
        let q3 = q.clone();
        spawn(move || q3.put(42)); // a green producer
        waiter.await.unwrap()
    });
    assert_eq!(got, 42);
}

/// Dropping a pending get_async leaves the queue usable and does not swallow an item meant for
/// another waiter (cancel safety).
#[test]
fn dropped_get_async_passes_its_item_on() {
    let rt = current_thread_rt();
    let q: Queue<u32> = Queue::unbounded();
    rt.block_on(async {
        let (a, b) = (q.clone(), q.clone());
        let first = tokio::spawn(async move { a.get_async().await });
        tokio::task::yield_now().await;
        let second = tokio::spawn(async move { b.get_async().await });
        tokio::task::yield_now().await;
        q.put(7); // picks `first` ...
        first.abort(); // ... which is cancelled before it runs
        let _ = first.await;
        let v = tokio::time::timeout(Duration::from_secs(2), second).await;
        assert_eq!(v.unwrap().unwrap(), 7);
    });
}

/// Event, Semaphore, put_async and GreenThread::join_async from async code.
#[test]
fn event_semaphore_put_and_join_from_async() {
    let rt = current_thread_rt();
    let ev: Event<&'static str> = Event::new();
    let sem = Semaphore::new(0);
    let q: Queue<u8> = Queue::new(Some(1));
    let (e2, s2, q2) = (ev.clone(), sem.clone(), q.clone());
    let green = spawn(move || {
        sleep(Duration::from_millis(2));
        e2.send("sent").unwrap();
        s2.release();
        (q2.get(), q2.get())
    });
    let r = rt.block_on(async move {
        assert_eq!(ev.wait_async().await, Ok("sent"));
        sem.acquire_async().await;
        q.put_async(1).await;
        q.put_async(2).await; // waits for the green getter: maxsize 1
        green.join_async().await
    });
    assert_eq!(r, Ok((1, 2)));
}

/// park/Unparker: an OS thread wakes a parked green thread; a wake-up before park is kept.
#[test]
fn unparker_wakes_parked_green_thread() {
    let gt = spawn(|| {
        let me = Unparker::current();
        assert!(me.is_green());
        me.unpark();
        park(); // returns at once: the wake-up came first
        let me2 = me.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(5));
            me2.unpark();
        });
        park();
        "woken"
    });
    assert_eq!(gt.wait(), Ok("woken"));
}

/// LESSON-12: a span given to a green thread is current only while that green thread runs:
/// spans it creates get it as parent, and another green thread running in between does not see it.
#[test]
fn instrument_span_follows_green_thread_across_switches() {
    use tracing_subscriber::layer::SubscriberExt;

    /// (span name, parent span name) for every span created.
    type Seen = Vec<(String, Option<String>)>;
    #[derive(Clone, Default)]
    struct Parents(Arc<Mutex<Seen>>);
    impl<S> tracing_subscriber::Layer<S> for Parents
    where
        S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    {
        fn on_new_span(
            &self,
            attrs: &tracing::span::Attributes<'_>,
            id: &tracing::span::Id,
            ctx: tracing_subscriber::layer::Context<'_, S>,
        ) {
            let parent = ctx
                .span(id)
                .and_then(|s| s.parent().map(|p| p.name().to_string()));
            self.0
                .lock()
                .unwrap()
                .push((attrs.metadata().name().to_string(), parent));
        }
    }
    let parents = Parents::default();
    // Global, so the hub thread sees it too (this is the only test here that traces).
    tracing::subscriber::set_global_default(tracing_subscriber::registry().with(parents.clone()))
        .unwrap();
    let rt = Runtime::builder().build().unwrap();
    let outer = tracing::info_span!("request");
    let a = GreenBuilder::new().instrument(outer).spawn_on(&rt, || {
        sleep(Duration::from_millis(2)); // switch away and back
        let _inner = tracing::info_span!("inside_request").entered();
    });
    let b = rt.spawn(|| {
        sleep(Duration::from_millis(1)); // runs while `a` is switched out
        let _other = tracing::info_span!("unrelated").entered();
    });
    a.wait().unwrap();
    b.wait().unwrap();
    let seen = parents.0.lock().unwrap().clone();
    assert!(
        seen.contains(&("inside_request".into(), Some("request".into()))),
        "{seen:?}"
    );
    assert!(seen.contains(&("unrelated".into(), None)), "{seen:?}");
    rt.shutdown_timeout(Duration::from_secs(2)).unwrap();
}
