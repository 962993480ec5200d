//! A span's fields formatted when a line first needs them, not when the span is made.
//!
//! tracing-subscriber's `fmt` layer formats every span's fields into text as the span is
//! created, and appends to that text on each `record`, whether or not anything is ever logged
//! inside the span. An RPC service makes two or three spans per request and, at INFO, logs
//! nothing in most of them. [`FmtLayer`] keeps a span's values as they came (strings copied,
//! numbers as numbers, what only `Debug` or `Display` can show as that text) and formats them
//! the first time an event inside the span is logged, with the same [`Fields`] formatter and in
//! the same order, so every line reads as the eager layer writes it. A span that logs nothing
//! never has its fields formatted.

use std::fmt::{self, Write as _};
use std::io;

use tracing::field::{Field, FieldSet, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Metadata, Subscriber};
use tracing_subscriber::fmt::format::{Format, Full};
use tracing_subscriber::fmt::time::{FormatTime, SystemTime};
use tracing_subscriber::fmt::{FormattedFields, MakeWriter};
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::Layer;

use super::{write_fields, Fields};

/// The `fmt` layer of [`layer`](super::layer): text lines, [`Fields`] formatting, and span
/// fields formatted only when a line inside the span is written (see the module docs). It
/// writes no span events of its own (no "new" or "close" lines); for those, build a `fmt`
/// layer with `.fmt_fields(Fields)` and `.with_span_events(...)`, which formats eagerly.
pub struct FmtLayer<S, T = SystemTime, W = fn() -> io::Stderr> {
    inner: tracing_subscriber::fmt::Layer<S, Fields, Format<Full, T>, W>,
}

impl<S, T, W> FmtLayer<S, T, W> {
    pub(super) fn new(
        inner: tracing_subscriber::fmt::Layer<S, Fields, Format<Full, T>, W>,
    ) -> Self {
        FmtLayer { inner }
    }

    /// Writes lines to `writer` instead (as `fmt::Layer::with_writer`).
    pub fn with_writer<W2>(self, writer: W2) -> FmtLayer<S, T, W2>
    where
        W2: for<'w> MakeWriter<'w> + 'static,
    {
        FmtLayer {
            inner: self.inner.with_writer(writer),
        }
    }

    /// Writes lines without a timestamp (as `fmt::Layer::without_time`).
    pub fn without_time(self) -> FmtLayer<S, (), W> {
        FmtLayer {
            inner: self.inner.without_time(),
        }
    }
}

impl<S, T, W> fmt::Debug for FmtLayer<S, T, W> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FmtLayer").finish_non_exhaustive()
    }
}

/// A span's values not formatted yet, in one buffer: for each field its index in the span's
/// field set, a tag, and the value (a number's eight bytes, or a text's length and bytes),
/// with a marker where each `record` after the span's own fields starts. The groups are
/// formatted as the eager layer formats a new span and then adds recorded fields.
struct Kept(Vec<u8>);

const STR: u8 = 0;
/// A value shown by `Debug`, or an error with its sources: its text.
const SHOWN: u8 = 1;
const U64: u8 = 2;
const I64: u8 = 3;
const F64: u8 = 4;
const BOOL: u8 = 5;
/// Where a `record`'s fields start (no field index before it).
const RECORD: u8 = 0xff;

/// What most spans' values take (an RPC span's ids and names): one allocation per span.
const KEPT_CAPACITY: usize = 256;

impl Kept {
    fn new() -> Self {
        Kept(Vec::with_capacity(KEPT_CAPACITY))
    }

    /// A field's index and tag.
    fn field(&mut self, field: &Field, tag: u8) {
        // `on_new_span` keeps only spans whose field set is indexed in a byte below `RECORD`.
        self.0.push(field.index() as u8);
        self.0.push(tag);
    }

    fn text(&mut self, field: &Field, tag: u8, write: impl FnOnce(&mut Vec<u8>)) {
        self.field(field, tag);
        let at = self.0.len();
        self.0.extend_from_slice(&[0; 4]);
        write(&mut self.0);
        let len = (self.0.len() - at - 4) as u32;
        self.0[at..at + 4].copy_from_slice(&len.to_le_bytes());
    }

    /// A string: its length is known before it is written, so it goes in once (no length to
    /// write afterwards, as `text` does for what only formatting shows).
    fn str(&mut self, field: &Field, value: &str) {
        self.field(field, STR);
        self.0
            .extend_from_slice(&(value.len() as u32).to_le_bytes());
        self.0.extend_from_slice(value.as_bytes());
    }

    fn number(&mut self, field: &Field, tag: u8, bytes: [u8; 8]) {
        self.field(field, tag);
        self.0.extend_from_slice(&bytes);
    }

    /// The kept fields, read back in order, with a [`Replayed::Record`] where each record's
    /// fields start.
    fn read<'a>(&'a self, fields: &'a FieldSet) -> Reader<'a> {
        Reader {
            b: &self.0,
            at: 0,
            fields,
        }
    }

    /// The text the eager layer would hold for these fields: the span's own, then for each
    /// record a space (when there is text already) and the recorded fields.
    fn format(&self, fields: &FieldSet) -> FormattedFields<Fields> {
        let mut out = FormattedFields::<Fields>::new(String::new());
        let mut read = self.read(fields);
        loop {
            let mut record_follows = false;
            // Writing into a `String` does not fail.
            let _ = write_fields(out.as_writer(), |v| {
                for r in read.by_ref() {
                    if let Replayed::Record = r {
                        record_follows = true;
                        break;
                    }
                    r.visit(v);
                }
            });
            if !record_follows {
                return out;
            }
            if !out.fields.is_empty() {
                out.fields.push(' ');
            }
        }
    }
}

/// Reads [`Kept`] fields back.
struct Reader<'a> {
    b: &'a [u8],
    at: usize,
    fields: &'a FieldSet,
}

impl<'a> Reader<'a> {
    fn bytes<const N: usize>(&mut self) -> [u8; N] {
        let got = self
            .b
            .get(self.at..self.at + N)
            .and_then(|w| w.try_into().ok())
            .unwrap_or([0; N]);
        self.at += N;
        got
    }
}

impl<'a> Iterator for Reader<'a> {
    type Item = Replayed<'a>;

    fn next(&mut self) -> Option<Replayed<'a>> {
        let &index = self.b.get(self.at)?;
        self.at += 1;
        if index == RECORD {
            return Some(Replayed::Record);
        }
        let [tag] = self.bytes::<1>();
        // Only `Keep` writes the buffer, with indexes of this span's own field set.
        let field = self.fields.iter().nth(index.into())?;
        Some(match tag {
            STR | SHOWN => {
                let len = u32::from_le_bytes(self.bytes::<4>()) as usize;
                // Whole `&str`s were copied in, so the text is UTF-8.
                let text = self
                    .b
                    .get(self.at..self.at + len)
                    .and_then(|t| std::str::from_utf8(t).ok())
                    .unwrap_or_default();
                self.at += len;
                if tag == STR {
                    Replayed::Str(field, text)
                } else {
                    Replayed::Shown(field, text)
                }
            }
            U64 => Replayed::U64(field, u64::from_le_bytes(self.bytes::<8>())),
            I64 => Replayed::I64(field, i64::from_le_bytes(self.bytes::<8>())),
            F64 => Replayed::F64(field, f64::from_le_bytes(self.bytes::<8>())),
            _ => Replayed::Bool(field, self.bytes::<8>()[0] != 0),
        })
    }
}

/// One kept value, read back.
enum Replayed<'a> {
    Record,
    Str(Field, &'a str),
    Shown(Field, &'a str),
    U64(Field, u64),
    I64(Field, i64),
    F64(Field, f64),
    Bool(Field, bool),
}

impl Replayed<'_> {
    fn visit(self, v: &mut dyn Visit) {
        match self {
            Replayed::Record => {}
            Replayed::Str(f, t) => v.record_str(&f, t),
            Replayed::Shown(f, t) => v.record_debug(&f, &AsWritten(t)),
            Replayed::U64(f, n) => v.record_u64(&f, n),
            Replayed::I64(f, n) => v.record_i64(&f, n),
            Replayed::F64(f, n) => v.record_f64(&f, n),
            Replayed::Bool(f, b) => v.record_bool(&f, b),
        }
    }
}

/// Text written as it is by `Debug` (a value already shown once, when it was kept).
struct AsWritten<'a>(&'a str);

impl fmt::Debug for AsWritten<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

/// Keeps the values a span is made or recorded with.
struct Keep<'a>(&'a mut Kept);

/// `fmt::Write` into the kept bytes (whole `&str`s only, so they stay UTF-8).
struct Appender<'a>(&'a mut Vec<u8>);

impl fmt::Write for Appender<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.0.extend_from_slice(s.as_bytes());
        Ok(())
    }
}

impl Visit for Keep<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.str(field, value);
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.number(field, U64, value.to_le_bytes());
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.number(field, I64, value.to_le_bytes());
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        self.0.number(field, F64, value.to_le_bytes());
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.number(field, BOOL, u64::from(value).to_le_bytes());
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        // As `Fields` writes an error: its text, then each source's after ": ". A `Display`
        // that fails leaves what it wrote, as it would in the eager layer's line.
        self.0.text(field, SHOWN, |b| {
            let mut t = Appender(b);
            let _ = write!(t, "{value}");
            let mut source = value.source();
            while let Some(s) = source {
                let _ = write!(t, ": {s}");
                source = s.source();
            }
        });
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.0.text(field, SHOWN, |b| {
            let _ = write!(Appender(b), "{value:?}");
        });
    }
}

impl<S, T, W> Layer<S> for FmtLayer<S, T, W>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    T: FormatTime + 'static,
    W: for<'w> MakeWriter<'w> + 'static,
{
    fn on_register_dispatch(&self, subscriber: &tracing::Dispatch) {
        self.inner.on_register_dispatch(subscriber);
    }

    fn on_layer(&mut self, subscriber: &mut S) {
        self.inner.on_layer(subscriber);
    }

    fn register_callsite(
        &self,
        metadata: &'static Metadata<'static>,
    ) -> tracing::subscriber::Interest {
        self.inner.register_callsite(metadata)
    }

    fn enabled(&self, metadata: &Metadata<'_>, ctx: Context<'_, S>) -> bool {
        self.inner.enabled(metadata, ctx)
    }

    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let kept = {
            let Some(span) = ctx.span(id) else {
                return;
            };
            let mut ext = span.extensions_mut();
            // Formatted at once, as the eager layer does: a span already formatted by another
            // layer with the same formatter (that text is kept), or one whose field set is too
            // large to index in a byte (no span of osier's comes near).
            let small = attrs.metadata().fields().len() < usize::from(RECORD);
            if small && ext.get_mut::<FormattedFields<Fields>>().is_none() {
                let mut kept = Kept::new();
                attrs.record(&mut Keep(&mut kept));
                ext.insert(kept);
                true
            } else {
                false
            }
        };
        if !kept {
            self.inner.on_new_span(attrs, id, ctx);
        }
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        let kept = {
            let Some(span) = ctx.span(id) else {
                return;
            };
            let mut ext = span.extensions_mut();
            match ext.get_mut::<Kept>() {
                Some(kept) => {
                    kept.0.push(RECORD);
                    values.record(&mut Keep(kept));
                    true
                }
                None => false,
            }
        };
        if !kept {
            self.inner.on_record(id, values, ctx);
        }
    }

    fn on_follows_from(&self, span: &Id, follows: &Id, ctx: Context<'_, S>) {
        self.inner.on_follows_from(span, follows, ctx);
    }

    fn event_enabled(&self, event: &Event<'_>, ctx: Context<'_, S>) -> bool {
        self.inner.event_enabled(event, ctx)
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        // Every span the line shows gets its fields formatted, once.
        if let Some(scope) = ctx.event_scope(event) {
            for span in scope {
                let mut ext = span.extensions_mut();
                if let Some(kept) = ext.remove::<Kept>() {
                    ext.insert(kept.format(span.metadata().fields()));
                }
            }
        }
        self.inner.on_event(event, ctx);
    }

    // Entering, leaving and closing a span: the `fmt` layer acts on them only to write span
    // events or time spans, which this layer's inner `fmt` layer is never configured to do
    // (only `with_writer` and `without_time` reach it), so they are not passed on: a span is
    // entered and left on every poll of the future it instruments.
    fn on_enter(&self, _id: &Id, _ctx: Context<'_, S>) {}

    fn on_exit(&self, _id: &Id, _ctx: Context<'_, S>) {}

    fn on_close(&self, _id: Id, _ctx: Context<'_, S>) {}

    fn on_id_change(&self, old: &Id, new: &Id, ctx: Context<'_, S>) {
        self.inner.on_id_change(old, new, ctx);
    }

    // SAFETY: this returns a pointer to `self` only for `FmtLayer`'s own type id, and for any
    // other id exactly what the inner `fmt` layer returns (a pointer to itself or one of its
    // parts, for their own type ids), which upholds `downcast_raw`'s contract.
    unsafe fn downcast_raw(&self, id: std::any::TypeId) -> Option<*const ()> {
        if id == std::any::TypeId::of::<Self>() {
            return Some(self as *const Self as *const ());
        }
        // SAFETY: forwarded as it came; the inner layer answers for its own types.
        unsafe { self.inner.downcast_raw(id) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logging::tests::{logged, Captured};
    use std::sync::{Arc, Mutex};
    use tracing_subscriber::layer::SubscriberExt;

    #[derive(Debug, thiserror::Error)]
    #[error("outer\nline")]
    struct Outer(#[source] io::Error);

    /// Spans made, recorded (before and after a line inside them), nested and left, with
    /// every kind of value.
    fn workload() {
        let e = Outer(io::Error::other("refused"));
        let outer = tracing::info_span!(
            "rpc.server",
            target = "compute.host-1",
            method = "get",
            empty = "",
            spaced = "a b",
            quoted = "c\"\r",
            forged = %"x\ny\u{1b}[31m",
            n = 3u64,
            neg = -4i64,
            ratio = 0.5f64,
            big = 1u128 << 100,
            ok = true,
            dbg = ?Some("v"),
            error = &e as &(dyn std::error::Error + 'static),
            outcome = tracing::field::Empty,
            msg_id = tracing::field::Empty,
        );
        outer.record("msg_id", "abc");
        outer.record("outcome", "ok");
        outer.in_scope(|| {
            let inner = tracing::info_span!("rpc.call", a = 1, b = tracing::field::Empty);
            inner.in_scope(|| tracing::info!(x = "y", "first"));
            inner.record("b", "after a line");
            inner.in_scope(|| tracing::warn!("second"));
            let bare = tracing::info_span!("bare");
            bare.in_scope(|| tracing::info!("in a span without fields"));
            let late = tracing::info_span!("late", v = tracing::field::Empty);
            late.record("v", 1);
            late.in_scope(|| tracing::info!("recorded into a span made without values"));
            let silent = tracing::info_span!("silent", s = "never shown");
            silent.record("s", "still never shown");
        });
        tracing::info!(parent: &outer, "explicit parent");
        tracing::info!("no span");
    }

    #[test]
    fn lines_read_as_the_eager_fmt_layer_writes_them() {
        let eager = Captured::default();
        let subscriber = tracing_subscriber::registry().with(
            tracing_subscriber::fmt::layer()
                .fmt_fields(Fields)
                .with_ansi(false)
                .without_time()
                .with_writer(eager.clone()),
        );
        tracing::subscriber::with_default(subscriber, workload);
        let (eager, deferred) = (eager.text(), logged(workload));
        assert_eq!(eager.lines().count(), 6, "{eager}");
        assert!(eager.contains("late{v=1}"), "{eager}");
        assert!(
            eager.contains("rpc.server{target=compute.host-1 method=get empty=\"\""),
            "{eager}"
        );
        assert!(
            eager.contains("rpc.call{a=1 b=\"after a line\"}"),
            "{eager}"
        );
        assert_eq!(deferred, eager);
    }

    /// Notes, as each span closes, whether its fields were ever formatted.
    struct Formatted(Arc<Mutex<Vec<(String, bool)>>>);

    impl<S: Subscriber + for<'a> LookupSpan<'a>> Layer<S> for Formatted {
        fn on_close(&self, id: Id, ctx: Context<'_, S>) {
            if let Some(span) = ctx.span(&id) {
                let formatted = span.extensions().get::<FormattedFields<Fields>>().is_some();
                crate::lock::lock(&self.0).push((span.name().to_string(), formatted));
            }
        }
    }

    #[test]
    fn a_span_that_logs_nothing_is_never_formatted() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let subscriber = tracing_subscriber::registry()
            .with(
                super::super::layer()
                    .without_time()
                    .with_writer(Captured::default()),
            )
            .with(Formatted(seen.clone()));
        tracing::subscriber::with_default(subscriber, || {
            let quiet =
                tracing::info_span!("quiet", method = "get", outcome = tracing::field::Empty);
            quiet.record("outcome", "ok");
            drop(quiet);
            tracing::info_span!("loud", method = "get").in_scope(|| tracing::info!("logged"));
        });
        let seen = crate::lock::lock(&seen).clone();
        assert_eq!(
            seen,
            vec![("quiet".to_string(), false), ("loud".to_string(), true)]
        );
    }
}
