//! Spans cross the boundary both ways without a guard held across a green switch (LESSON-12).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use osier_bridge::Bridge;
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

/// A span entered in async code is the parent of work done for it on a green thread, and a
/// green thread's span is the parent of the tokio task it spawns and of the futures it polls.
#[test]
fn spans_are_parents_across_the_boundary_both_ways() {
    let parents = Parents::default();
    tracing::subscriber::set_global_default(tracing_subscriber::registry().with(parents.clone()))
        .unwrap();
    let b = Bridge::builder().build().unwrap();
    let b2 = b.clone();
    b.tokio().block_on(async move {
        use tracing::Instrument;
        let b3 = b2.clone();
        async move {
            b3.clone()
                .spawn_green(move || {
                    osier_green::sleep(Duration::from_millis(1)); // switch away and back
                    let _g = tracing::info_span!("green_work").entered();
                    drop(_g);
                    b3.yield_spawned(async {
                        let _t = tracing::info_span!("task_work_for_green").entered();
                    })
                    .unwrap();
                    b3.yield_future(async {
                        tokio::task::yield_now().await;
                        let _f = tracing::info_span!("polled_for_green").entered();
                    })
                    .unwrap();
                })
                .await
                .unwrap();
        }
        .instrument(tracing::info_span!("async_request"))
        .await;
    });
    let seen = parents.0.lock().unwrap().clone();
    let has = |name: &str, parent: &str| seen.contains(&(name.into(), Some(parent.into())));
    assert!(has("green_work", "async_request"), "{seen:?}");
    assert!(has("task_work_for_green", "async_request"), "{seen:?}");
    assert!(has("polled_for_green", "async_request"), "{seen:?}");
    b.shutdown_timeout(Duration::from_secs(2)).unwrap();
}
