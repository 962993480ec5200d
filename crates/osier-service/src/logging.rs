//! Logging for a service's `main`, as oslo.log's `log.setup(CONF, "nova")` is: one line per
//! event on stderr, `key=value` fields, and before the message the spans in force, so every line
//! a handler logs carries its request's `request_id` and `global_request_id` (osier-messaging's
//! `rpc.server` span), the way oslo.log prints `[req-... ...]`.
//!
//! | oslo.log | osier-service |
//! |---|---|
//! | `log.setup(CONF, "svc")` | [`init`]`("info,lapin=warn")` |
//! | `default_log_levels` | the default directives; `RUST_LOG` replaces them |
//! | `[req-...]` from the thread's request context | the `rpc.server` span's fields on each line |
//! | `logging_context_format_string` | build your own subscriber around [`layer`] or [`Fields`] |
//!
//! Libraries never install a subscriber; a binary calls [`init`] once, or composes [`layer`]
//! (or [`Fields`] in a `fmt` layer of its own) with other layers.
//!
//! ```no_run
//! osier_service::logging::init("info,lapin=warn")?;
//! tracing::info!(workers = 4, "starting");
//! # Ok::<(), osier_service::logging::LogInitError>(())
//! ```
//!
//! # Why a field formatter of its own
//!
//! A `fmt` layer formats a span's fields when the span is created, whether or not anything is
//! logged inside it, and an RPC server creates a span per request. [`layer`] keeps the values
//! instead and formats them when a line inside the span is first written ([`FmtLayer`]); a
//! span that logs nothing is never formatted. tracing-subscriber's default
//! formatter writes every field through its styling wrappers (even with colours off) and one
//! `format_args!` of three parts; [`Fields`] writes the name, `=` and the value straight into
//! the line, which costs about a third of what the default does for an RPC call's spans
//! (docs/benchmarks.md, "Tracing and metrics"). It also escapes control characters (a
//! newline, an ANSI escape) in every value, not only in the message, so a crafted value cannot
//! forge or recolour log lines.

use std::fmt::{self, Write};
use std::io;

use tracing::field::{Field, Visit};
use tracing::Subscriber;
use tracing_subscriber::field::RecordFields;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::FormatFields;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

mod deferred;

pub use deferred::FmtLayer;

/// Why [`init`] could not install the subscriber.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LogInitError {
    /// The default directives the program passed do not parse.
    #[error("the default log directives {directives:?} are not valid")]
    Directives {
        /// What was passed.
        directives: String,
        /// Why they do not parse.
        #[source]
        source: tracing_subscriber::filter::ParseError,
    },
    /// A global subscriber is installed already.
    #[error("a tracing subscriber is installed already")]
    Installed(#[source] tracing_subscriber::util::TryInitError),
}

/// The layer [`init`] installs: text lines on stderr, no colours, fields by [`Fields`], and a
/// span's fields formatted only once a line inside the span is written ([`FmtLayer`]).
/// Change the writer with `.with_writer(...)`.
pub fn layer<S>() -> FmtLayer<S>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    FmtLayer::new(
        tracing_subscriber::fmt::layer()
            .fmt_fields(Fields)
            .with_ansi(false)
            .with_writer(io::stderr as fn() -> io::Stderr),
    )
}

/// Installs the process's subscriber: [`layer`], levels from `RUST_LOG` or else `default`
/// (`EnvFilter` directives, e.g. `"info,lapin=warn"`), and (feature `rpc`) osier-messaging's
/// filter that keeps lapin's frames, which carry the broker password, and returned bodies out
/// of the log. A `RUST_LOG` that does not parse is not ignored silently: the default applies and
/// the first line logged says so.
pub fn init(default: &str) -> Result<(), LogInitError> {
    let fallback = || {
        filter(default).map_err(|source| LogInitError::Directives {
            directives: default.to_string(),
            source,
        })
    };
    let (levels, bad_env) = match std::env::var("RUST_LOG") {
        Ok(v) if !v.trim().is_empty() => match filter(&v) {
            Ok(f) => (f, None),
            Err(e) => (fallback()?, Some(e)),
        },
        _ => (fallback()?, None),
    };
    let registry = tracing_subscriber::registry().with(layer()).with(levels);
    #[cfg(feature = "rpc")]
    let registry = registry.with(osier_messaging::secrets::lapin_secret_filter());
    registry.try_init().map_err(LogInitError::Installed)?;
    if let Some(e) = bad_env {
        tracing::warn!(error = %e, default, "RUST_LOG is not valid; logging at the default levels");
    }
    Ok(())
}

/// The level filter [`init`] installs for `directives` (`EnvFilter`'s syntax, as `RUST_LOG`
/// takes it), for a subscriber of your own. Directives that name only targets and levels
/// (`"info,lapin=warn"`) are decided once per call site by tracing-subscriber's `Targets`;
/// directives that filter on spans or fields (`"[rpc.server{method=get}]=debug"`) need an
/// `EnvFilter`, which follows every span: a lock taken on each span created, entered,
/// exited, recorded and closed, by every thread, whether or not a directive names it. Both
/// accept and decide the same directives alike; the error is `EnvFilter`'s.
pub fn filter<S>(
    directives: &str,
) -> Result<Box<dyn Layer<S> + Send + Sync>, tracing_subscriber::filter::ParseError>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    let env = EnvFilter::try_new(directives)?;
    Ok(match static_levels(directives) {
        Some(targets) => Box::new(targets),
        None => Box::new(env),
    })
}

/// `directives` as a static filter, when they hold no span or field filter (and nothing
/// whose reading might differ between the two parsers: spaces, brackets, braces).
fn static_levels(directives: &str) -> Option<Targets> {
    if directives.contains(|c: char| "[]{}".contains(c) || c.is_whitespace()) {
        return None;
    }
    let pieces: Vec<&str> = directives.split(',').filter(|p| !p.is_empty()).collect();
    if pieces.is_empty() {
        return None;
    }
    pieces.join(",").parse().ok()
}

/// A field formatter for tracing-subscriber's `fmt` layer (`.fmt_fields(Fields)`): `name=value`
/// separated by spaces, the `message` field bare, string values quoted when they are empty or
/// hold a space, a quote, `=` or a backslash (logfmt's rule), control characters in any value
/// escaped (`\n`, `\u{1b}`). The default formatter's text without colours, for a fraction of
/// its cost per field.
#[derive(Debug, Clone, Copy, Default)]
pub struct Fields;

impl<'w> FormatFields<'w> for Fields {
    fn format_fields<R: RecordFields>(&self, writer: Writer<'w>, fields: R) -> fmt::Result {
        write_fields(writer, |v| fields.record(v))
    }
}

/// Writes the fields `record` visits as [`Fields`] does.
fn write_fields(writer: Writer<'_>, record: impl FnOnce(&mut dyn Visit)) -> fmt::Result {
    let mut line = FieldWriter {
        out: Line {
            out: writer,
            buf: [0; LINE_BUFFER],
            len: 0,
        },
        first: true,
        result: Ok(()),
    };
    record(&mut line);
    line.result.and_then(|_| line.out.flush())
}

/// How much of a span's or event's fields is assembled on the stack before it is written out:
/// the `fmt` layer keeps a span's fields in a `String` that would otherwise grow (and be
/// reallocated) a few times per span.
const LINE_BUFFER: usize = 256;

/// The fields being written: whole `str` pieces gathered in `buf`, then handed to `out` at
/// once. As a [`fmt::Write`], it escapes control characters (what values go through); names
/// and punctuation go through [`Line::raw`].
struct Line<'w> {
    out: Writer<'w>,
    buf: [u8; LINE_BUFFER],
    len: usize,
}

impl Line<'_> {
    #[inline]
    fn raw(&mut self, s: &str) -> fmt::Result {
        if self.len + s.len() > LINE_BUFFER {
            self.flush()?;
            if s.len() > LINE_BUFFER {
                return self.out.write_str(s);
            }
        }
        self.buf[self.len..self.len + s.len()].copy_from_slice(s.as_bytes());
        self.len += s.len();
        Ok(())
    }

    fn flush(&mut self) -> fmt::Result {
        let gathered = &self.buf[..self.len];
        debug_assert!(std::str::from_utf8(gathered).is_ok());
        // SAFETY: `raw` is the only writer of `buf`, and it copies whole `&str`s into it, one
        // after another from `len`, so `buf[..len]` is a concatenation of valid UTF-8 strings,
        // which is valid UTF-8. (Checking it again cost every span a tenth of its formatting.)
        let text = unsafe { std::str::from_utf8_unchecked(gathered) };
        let r = self.out.write_str(text);
        self.len = 0;
        r
    }
}

/// What a byte of a value asks of the formatter: escaping (a C0 control byte, DEL, or the lead
/// byte of a C1 control, U+0080 to U+009F being `0xC2 0x80..=0x9F` in UTF-8), quotes (a space
/// or `=`, logfmt's rule), or quotes with escaping inside them (`"` and `\\`).
const CONTROL: u8 = 1;
const QUOTE: u8 = 2;
const ESCAPE_IN_QUOTES: u8 = 4;

const CLASS: [u8; 256] = {
    let mut t = [0; 256];
    let mut b = 0;
    while b < 0x20 {
        t[b] = CONTROL;
        b += 1;
    }
    t[0x7f] = CONTROL;
    t[0xc2] = CONTROL;
    t[b' ' as usize] = QUOTE;
    t[b'=' as usize] = QUOTE;
    t[b'"' as usize] = QUOTE | ESCAPE_IN_QUOTES;
    t[b'\\' as usize] = QUOTE | ESCAPE_IN_QUOTES;
    t
};

/// The classes of every byte of `s`, in one pass without branches (most values are short and
/// need nothing).
fn classify(s: &str) -> u8 {
    s.bytes().fold(0, |any, b| any | CLASS[b as usize])
}

impl Write for Line<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        if classify(s) & CONTROL == 0 {
            return self.raw(s);
        }
        let mut clean = 0;
        for (i, c) in s.char_indices() {
            if c.is_control() {
                self.raw(&s[clean..i])?;
                for e in c.escape_default() {
                    self.raw(e.encode_utf8(&mut [0; 4]))?;
                }
                clean = i + c.len_utf8();
            }
        }
        self.raw(&s[clean..])
    }
}

/// An integer's decimal digits, written without the formatter (a span's `timeout_ms`, an
/// event's counts): `u64::MAX` and a sign fit in 21 bytes.
struct Digits {
    buf: [u8; 21],
    start: usize,
}

impl Digits {
    fn of(mut n: u64, negative: bool) -> Digits {
        let mut d = Digits {
            buf: [0; 21],
            start: 21,
        };
        loop {
            d.start -= 1;
            d.buf[d.start] = b'0' + (n % 10) as u8;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        if negative {
            d.start -= 1;
            d.buf[d.start] = b'-';
        }
        d
    }

    fn as_str(&self) -> &str {
        // Only ASCII digits and `-` are written.
        std::str::from_utf8(&self.buf[self.start..]).unwrap_or_default()
    }
}

struct FieldWriter<'w> {
    out: Line<'w>,
    first: bool,
    result: fmt::Result,
}

impl FieldWriter<'_> {
    /// Starts a field: the separator and, but for the message, `name=`. `None` when the field
    /// is not written (tracing-log's `log.*` metadata, which the line already shows) or an
    /// earlier write failed; `Some(true)` for the message.
    fn start(&mut self, field: &Field) -> Option<bool> {
        let name = field.name();
        if self.result.is_err() || name.starts_with("log.") {
            return None;
        }
        let sep = if self.first { "" } else { " " };
        self.first = false;
        if name == "message" {
            self.result = self.out.raw(sep);
            return self.result.is_ok().then_some(true);
        }
        let name = name.strip_prefix("r#").unwrap_or(name);
        self.result = self
            .out
            .raw(sep)
            .and_then(|_| self.out.raw(name))
            .and_then(|_| self.out.raw("="));
        self.result.is_ok().then_some(false)
    }
}

impl Visit for FieldWriter<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        let Some(message) = self.start(field) else {
            return;
        };
        let class = classify(value);
        self.result = if message {
            self.out.write_str(value)
        } else if class == 0 && !value.is_empty() {
            self.out.raw(value)
        } else if class & (CONTROL | ESCAPE_IN_QUOTES) != 0 {
            write!(self.out, "{value:?}")
        } else {
            self.out
                .raw("\"")
                .and_then(|_| self.out.raw(value))
                .and_then(|_| self.out.raw("\""))
        };
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        if self.start(field).is_some() {
            self.result = self.out.raw(Digits::of(value, false).as_str());
        }
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        if self.start(field).is_some() {
            let digits = Digits::of(value.unsigned_abs(), value < 0);
            self.result = self.out.raw(digits.as_str());
        }
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        if self.start(field).is_some() {
            self.result = self.out.raw(if value { "true" } else { "false" });
        }
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        if self.start(field).is_none() {
            return;
        }
        self.result = write!(self.out, "{value}");
        let mut source = value.source();
        while let (Some(s), Ok(())) = (source, self.result) {
            self.result = write!(self.out, ": {s}");
            source = s.source();
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if self.start(field).is_some() {
            self.result = write!(self.out, "{value:?}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};
    use tracing_subscriber::fmt::MakeWriter;

    /// A writer that keeps what is written, for tests of this module and its children.
    #[derive(Clone, Default)]
    pub(super) struct Captured(Arc<Mutex<Vec<u8>>>);

    impl Captured {
        /// What was written so far.
        pub(super) fn text(&self) -> String {
            String::from_utf8(crate::lock::lock(&self.0).clone()).unwrap_or_default()
        }
    }

    impl io::Write for Captured {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            crate::lock::lock(&self.0).extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl<'a> MakeWriter<'a> for Captured {
        type Writer = Captured;
        fn make_writer(&'a self) -> Captured {
            self.clone()
        }
    }

    /// What `f` logs through [`layer`] at TRACE, without time stamps.
    pub(super) fn logged(f: impl FnOnce()) -> String {
        let out = Captured::default();
        let subscriber =
            tracing_subscriber::registry().with(layer().without_time().with_writer(out.clone()));
        tracing::subscriber::with_default(subscriber, f);
        out.text()
    }

    #[derive(Debug, thiserror::Error)]
    #[error("outer")]
    struct Outer(#[source] io::Error);

    #[test]
    fn fields_are_written_as_name_equals_value_with_strings_quoted_when_needed() {
        let out = logged(|| {
            let span = tracing::info_span!("rpc.server", method = %"get", request_id = "req-1");
            let _e = span.enter();
            tracing::info!(
                n = 3,
                ok = true,
                r#type = "x",
                empty = "",
                spaced = "a b",
                eq = "k=v",
                "handled"
            );
        });
        assert!(
            out.contains("rpc.server{method=get request_id=req-1}: "),
            "{out}"
        );
        assert!(
            out.ends_with("handled n=3 ok=true type=x empty=\"\" spaced=\"a b\" eq=\"k=v\"\n"),
            "{out}"
        );
    }

    #[test]
    fn a_field_recorded_later_joins_the_spans_fields() {
        let out = logged(|| {
            let span = tracing::info_span!("call", a = 1, outcome = tracing::field::Empty);
            span.record("outcome", "ok");
            span.in_scope(|| tracing::info!("done"));
        });
        assert!(out.contains("call{a=1 outcome=ok}: "), "{out}");
    }

    #[test]
    fn control_characters_in_any_value_are_escaped() {
        let out = logged(|| {
            tracing::warn!(
                shown = %"a\nb\u{1b}[31m",
                quoted = "c\"\r",
                c1 = %"x\u{9b}y",
                "line\nforged"
            );
        });
        assert_eq!(out.lines().count(), 1, "{out}");
        assert!(out.contains(r"line\nforged"), "{out}");
        assert!(out.contains(r"shown=a\nb\u{1b}[31m"), "{out}");
        assert!(out.contains(r#"quoted="c\"\r""#), "{out}");
        assert!(out.contains(r"c1=x\u{9b}y"), "{out}");
        assert!(!out.contains('\u{1b}'), "{out}");
    }

    #[test]
    fn fields_longer_than_the_line_buffer_are_written_whole() {
        let long = "x".repeat(3 * LINE_BUFFER);
        let out = logged(|| {
            let span = tracing::info_span!("s", a = %long, b = %"ü".repeat(LINE_BUFFER));
            span.in_scope(|| tracing::info!(c = long.as_str(), "m"));
        });
        let want_a = format!("a={long} b={}", "ü".repeat(LINE_BUFFER));
        assert!(out.contains(&want_a), "{out}");
        assert!(out.contains(&format!("m c={long}")), "{out}");
    }

    #[test]
    fn integers_and_booleans_are_written_as_the_formatter_writes_them() {
        let out = logged(|| {
            tracing::info!(
                zero = 0u64,
                max = u64::MAX,
                min = i64::MIN,
                neg = -42i64,
                pos = 7i64,
                yes = true,
                no = false,
                "m"
            );
        });
        let want = format!(
            "m zero=0 max={} min={} neg=-42 pos=7 yes=true no=false",
            u64::MAX,
            i64::MIN
        );
        assert!(out.contains(&want), "{out}");
    }

    #[test]
    fn non_ascii_text_is_kept() {
        let out = logged(|| tracing::info!(host = %"höst-ü", "café"));
        assert!(out.contains("café host=höst-ü"), "{out}");
    }

    #[test]
    fn an_error_is_written_with_its_sources() {
        let out = logged(|| {
            let e = Outer(io::Error::other("refused"));
            tracing::error!(error = &e as &(dyn std::error::Error + 'static), "failed");
        });
        assert!(out.contains("failed error=outer: refused"), "{out}");
    }

    /// Which of a fixed set of events (targets and levels) a subscriber with `levels` lets
    /// through.
    fn passed(levels: Box<dyn Layer<tracing_subscriber::Registry> + Send + Sync>) -> String {
        let out = Captured::default();
        let subscriber = tracing_subscriber::registry().with(levels).with(
            tracing_subscriber::fmt::layer()
                .without_time()
                .with_ansi(false)
                .with_writer(out.clone()),
        );
        tracing::subscriber::with_default(subscriber, || {
            macro_rules! at_every_level {
                ($($target:literal),*) => {$(
                    tracing::trace!(target: $target, "t");
                    tracing::debug!(target: $target, "d");
                    tracing::info!(target: $target, "i");
                    tracing::warn!(target: $target, "w");
                    tracing::error!(target: $target, "e");
                )*};
            }
            at_every_level!(
                "osier_messaging",
                "osier_messaging::rpc::server",
                "osier_messagingx",
                "lapin",
                "lapin::channel",
                "other"
            );
        });
        out.text()
    }

    #[test]
    fn the_static_filter_decides_as_env_filter_does() {
        let info = passed(Box::new(static_levels("info,lapin=warn").expect("static")));
        assert!(
            info.contains("INFO osier_messaging::rpc::server: i"),
            "{info}"
        );
        assert!(info.contains("WARN lapin::channel: w"), "{info}");
        assert!(
            !info.contains("DEBUG") && !info.contains("lapin: i"),
            "{info}"
        );
        for d in [
            "info",
            "INFO",
            "3",
            "off",
            "warn,lapin=off",
            "info,lapin=warn",
            "info,lapin=warn,",
            ",debug",
            "lapin",
            "osier_messaging=debug,osier_messaging::rpc=trace,error",
            "osier_messaging=warn,osier_messaging=debug",
            "lapin::channel=error,lapin=trace",
        ] {
            let fast = static_levels(d).unwrap_or_else(|| panic!("{d:?} is static"));
            let env = EnvFilter::try_new(d).unwrap_or_else(|e| panic!("{d:?}: {e}"));
            assert_eq!(passed(Box::new(fast)), passed(Box::new(env)), "{d:?}");
        }
    }

    #[test]
    fn span_and_field_directives_keep_env_filter() {
        for d in [
            "[rpc.server]=debug",
            "info,osier_messaging[rpc.server{method=get}]=trace",
            "info, lapin=warn",
            "",
            ",",
        ] {
            assert!(static_levels(d).is_none(), "{d:?}");
        }
        assert!(filter::<tracing_subscriber::Registry>("[rpc.server]=debug").is_ok());
        assert!(filter::<tracing_subscriber::Registry>("info,lapin=loudest").is_err());
        assert!(filter::<tracing_subscriber::Registry>("=info").is_err());
    }

    #[test]
    fn invalid_default_directives_are_an_error() {
        let e = init("info,osier=loudest").err();
        assert!(matches!(e, Some(LogInitError::Directives { .. })), "{e:?}");
    }
}
