//! A future run inside a span: `tracing`'s `Instrumented` less one enter and exit per span.
//!
//! `Instrumented` enters its span on every poll, and once more when it is dropped, to drop the
//! future inside the span. By then a finished future holds nothing (an `async` block that
//! returned has dropped its locals), yet the drop still enters and leaves the span: a trip
//! through the subscriber's enter and exit (tracing-subscriber's registry: a thread-local
//! stack, a span reference taken and given back) per `rpc.call`, `rpc.cast` and `rpc.server`
//! span. [`InSpan`] drops the future inside the poll that finished it, where the span is
//! already entered, and enters the span to drop it only when the future is dropped unfinished
//! (a call given up), so every drop still runs inside the span.
//!
//! Inside that future, [`record_current`] records a field into the span in force without
//! making a handle to it (`Span::current()` clones the span, and closes the clone when it is
//! dropped): a call records its message id so once the driver has sent the request.

use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

pin_project_lite::pin_project! {
    /// `future` polled, and dropped, inside `span` (see the module docs).
    pub(crate) struct InSpan<F> {
        span: tracing::Span,
        // `None` once finished (and dropped).
        #[pin]
        future: Option<F>,
    }

    impl<F> PinnedDrop for InSpan<F> {
        fn drop(this: Pin<&mut Self>) {
            let mut this = this.project();
            if this.future.is_some() {
                let _in = this.span.enter();
                this.future.set(None);
            }
        }
    }
}

impl<F> InSpan<F> {
    pub(crate) fn new(future: F, span: tracing::Span) -> Self {
        InSpan {
            span,
            future: Some(future),
        }
    }

    /// The span, to record into once the future has finished.
    pub(crate) fn span(&self) -> &tracing::Span {
        &self.span
    }
}

/// Records `value` as `field` of the span in force (inside an [`InSpan`]'s poll, its span), as
/// `Span::current().record(field, value)` does, without the handle `Span::current` makes: a
/// clone of the span, and a close when that handle is dropped (each a trip through the
/// subscriber's registry). Nothing happens outside a span, or for a field the span does not
/// declare.
pub(crate) fn record_current(field: &str, value: &dyn tracing::Value) {
    tracing::dispatcher::get_default(|d| {
        let current = d.current_span();
        let (Some(id), Some(meta)) = (current.id(), current.metadata()) else {
            return;
        };
        let Some(field) = meta.fields().field(field) else {
            return;
        };
        let values = [(&field, Some(value))];
        d.record(
            id,
            &tracing::span::Record::new(&meta.fields().value_set(&values)),
        );
    });
}

impl<F: Future> Future for InSpan<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let mut this = self.project();
        let _in = this.span.enter();
        let Some(future) = this.future.as_mut().as_pin_mut() else {
            // As an `async` block does.
            panic!("InSpan polled after it finished");
        };
        let out = ready!(future.poll(cx));
        this.future.set(None);
        Poll::Ready(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};
    use tracing::span::{Attributes, Id, Record};
    use tracing::{Event, Metadata, Subscriber};

    /// A subscriber that records enters and exits, and whether a drop ran inside the span.
    #[derive(Clone, Default)]
    struct Seen(Arc<Mutex<Vec<&'static str>>>);

    impl Subscriber for Seen {
        fn enabled(&self, _: &Metadata<'_>) -> bool {
            true
        }
        fn new_span(&self, _: &Attributes<'_>) -> Id {
            Id::from_u64(1)
        }
        fn record(&self, _: &Id, _: &Record<'_>) {}
        fn record_follows_from(&self, _: &Id, _: &Id) {}
        fn event(&self, _: &Event<'_>) {}
        fn enter(&self, _: &Id) {
            self.0.lock().unwrap().push("enter");
        }
        fn exit(&self, _: &Id) {
            self.0.lock().unwrap().push("exit");
        }
    }

    /// Records "drop" when dropped.
    struct Marker(Seen);

    impl Drop for Marker {
        fn drop(&mut self) {
            self.0 .0.lock().unwrap().push("drop");
        }
    }

    /// Polls, inside a span, a future that holds a [`Marker`] and finishes (or, with `finish`
    /// false, never does), once; then drops it. What the subscriber saw, in order.
    fn polled_once_then_dropped(finish: bool) -> Vec<&'static str> {
        let seen = Seen::default();
        let _guard = tracing::subscriber::set_default(seen.clone());
        let marker = Marker(seen.clone());
        let mut f = Box::pin(InSpan::new(
            async move {
                let _m = marker;
                if !finish {
                    std::future::pending::<()>().await;
                }
            },
            tracing::info_span!("s"),
        ));
        let polled = f
            .as_mut()
            .poll(&mut Context::from_waker(futures::task::noop_waker_ref()));
        assert_eq!(polled.is_ready(), finish);
        drop(f);
        let seen = seen.0.lock().unwrap().clone();
        seen
    }

    #[test]
    fn a_finished_future_is_dropped_inside_the_poll_that_finished_it() {
        assert_eq!(polled_once_then_dropped(true), ["enter", "drop", "exit"]);
    }

    #[test]
    fn an_unfinished_future_is_dropped_inside_its_span() {
        assert_eq!(
            polled_once_then_dropped(false),
            ["enter", "exit", "enter", "drop", "exit"]
        );
    }

    /// What a registry-backed subscriber saw recorded: (span name, field, value).
    #[derive(Clone, Default)]
    struct Recorded(Arc<Mutex<Vec<(String, String, String)>>>);

    impl<S> tracing_subscriber::Layer<S> for Recorded
    where
        S: Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    {
        fn on_record(
            &self,
            id: &Id,
            values: &Record<'_>,
            ctx: tracing_subscriber::layer::Context<'_, S>,
        ) {
            struct Put<'a>(&'a mut Vec<(String, String)>);
            impl tracing::field::Visit for Put<'_> {
                fn record_debug(&mut self, f: &tracing::field::Field, v: &dyn std::fmt::Debug) {
                    self.0.push((f.name().to_string(), format!("{v:?}")));
                }
            }
            let name = ctx
                .span(id)
                .map(|s| s.name().to_string())
                .unwrap_or_default();
            let mut put = Vec::new();
            values.record(&mut Put(&mut put));
            let mut seen = self.0.lock().unwrap();
            seen.extend(put.into_iter().map(|(f, v)| (name.clone(), f, v)));
        }
    }

    fn recorded(work: impl FnOnce()) -> Vec<(String, String, String)> {
        use tracing_subscriber::layer::SubscriberExt;
        let rec = Recorded::default();
        let _guard =
            tracing::subscriber::set_default(tracing_subscriber::registry().with(rec.clone()));
        work();
        let seen = rec.0.lock().unwrap().clone();
        seen
    }

    #[test]
    fn a_value_recorded_in_an_in_span_future_lands_on_its_span() {
        let seen = recorded(|| {
            let outer = tracing::info_span!("outer", msg_id = tracing::field::Empty);
            let _o = outer.enter();
            let mut f = Box::pin(InSpan::new(
                async { record_current("msg_id", &"m-1") },
                tracing::info_span!("rpc.call", msg_id = tracing::field::Empty),
            ));
            let polled = f
                .as_mut()
                .poll(&mut Context::from_waker(futures::task::noop_waker_ref()));
            assert!(polled.is_ready());
        });
        assert_eq!(
            seen,
            [("rpc.call".into(), "msg_id".into(), "\"m-1\"".into())]
        );
    }

    #[test]
    fn recording_outside_a_span_or_into_an_undeclared_field_does_nothing() {
        let seen = recorded(|| {
            record_current("msg_id", &"m-1");
            let _in = tracing::info_span!("rpc.call", msg_id = tracing::field::Empty).entered();
            record_current("not_declared", &"m-2");
        });
        assert_eq!(seen, []);
    }
}
