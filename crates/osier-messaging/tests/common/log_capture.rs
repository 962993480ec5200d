//! Every log line of a test binary in one buffer: a global subscriber, installed once, at the
//! level its first caller asks for, with lapin's secret-bearing events filtered out
//! (`osier_messaging::secrets::lapin_secret_filter`, as an application would).

use std::io::Write;
use std::sync::{Mutex, OnceLock};

use tracing_subscriber::prelude::*;

static BUFFER: OnceLock<Mutex<Vec<u8>>> = OnceLock::new();

fn buffer() -> &'static Mutex<Vec<u8>> {
    BUFFER.get_or_init(Default::default)
}

struct Writer;

impl Write for Writer {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        buffer()
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Installs the capturing subscriber (the first call decides the `filter`, an `EnvFilter`
/// directive such as `debug`) and returns the buffer.
pub fn capture(filter: &str) -> &'static Mutex<Vec<u8>> {
    static INIT: OnceLock<()> = OnceLock::new();
    INIT.get_or_init(|| {
        let subscriber = tracing_subscriber::registry()
            .with(
                tracing_subscriber::fmt::layer()
                    .with_ansi(false)
                    .with_writer(|| Writer),
            )
            .with(tracing_subscriber::EnvFilter::new(filter))
            .with(osier_messaging::secrets::lapin_secret_filter());
        tracing::subscriber::set_global_default(subscriber).unwrap();
    });
    buffer()
}

/// What was written so far.
pub fn text() -> String {
    String::from_utf8_lossy(&buffer().lock().unwrap_or_else(|e| e.into_inner())).into_owned()
}
