//! Error types of osier-bridge.

/// Why a bridge call did not produce its value.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum BridgeError {
    /// `yield_future` was called on a tokio runtime thread: waiting there would block a tokio
    /// worker (aioeventlet refused the loop's own green thread for the same reason, BRIDGE-07).
    /// Use `.await` in async code.
    #[error("yield_future called on a tokio runtime thread; use .await there")]
    OnTokioThread,
    /// `yield_future` was called from inside a future that `yield_future` is polling.
    #[error("yield_future called from inside a future polled by yield_future")]
    Nested,
    /// The bridge (or its tokio runtime) was shut down before the future completed
    /// (aioeventlet left the green thread parked forever here, BRIDGE-08).
    #[error("the bridge was shut down")]
    RuntimeShutdown,
    /// The tokio task awaited through `yield_spawned` was cancelled (aborted).
    #[error("the tokio task was cancelled")]
    Cancelled,
    /// The future (or the tokio task) panicked; the panic message is kept.
    #[error("the future panicked: {0}")]
    Panicked(String),
    /// A process-wide bridge or green runtime was already chosen (LESSON-02).
    #[error("a process-wide bridge or green runtime is already installed; it is chosen once")]
    AlreadyInstalled,
    /// The green runtime failed to start or stop.
    #[error(transparent)]
    Runtime(#[from] osier_green::RuntimeError),
    /// An OS resource (thread, tokio runtime) could not be created.
    #[error("could not start the bridge: {0}")]
    Io(#[from] std::io::Error),
}

pub(crate) use osier_green::panic_message;
