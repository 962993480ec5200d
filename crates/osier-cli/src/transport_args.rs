//! Where the transport comes from: `--url`, `$OSIER_URL`, or `--config-file` (an oslo config
//! file: `[DEFAULT] transport_url` and `[oslo_messaging_rabbit]`). The URL's password is never
//! printed: what the CLI shows is the transport URL's redacted form.

use std::path::PathBuf;

use clap::Args;
use osier_messaging::config::OsloConfig;
use osier_messaging::{MessagingError, Transport};

/// The transport options every subcommand takes.
#[derive(Debug, Clone, Args)]
pub struct TransportArgs {
    /// Transport URL (rabbit://user:pass@host:5672/vhost); also read from $OSIER_URL.
    #[arg(long, global = true, env = "OSIER_URL", hide_env_values = true)]
    pub url: Option<String>,
    /// An oslo config file with `[DEFAULT] transport_url` (instead of --url).
    #[arg(long, global = true, conflicts_with = "url")]
    pub config_file: Option<PathBuf>,
}

impl TransportArgs {
    /// The transport, or why there is none.
    pub fn open(&self) -> Result<Transport, MessagingError> {
        match (&self.config_file, &self.url) {
            (Some(f), _) => OsloConfig::from_file(f)?.transport(),
            (None, Some(u)) => Transport::new(u),
            (None, None) => Err(MessagingError::InvalidOption {
                option: "url".into(),
                reason: "no transport: give --url, set $OSIER_URL, or --config-file".into(),
            }),
        }
    }
}
