//! Exit statuses a script can act on, and which error gives which.

use osier_messaging::{BrokerError, MessagingError};

/// The process's exit status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// It worked.
    Ok = 0,
    /// The server answered with a failure (a remote exception, no such method).
    Remote = 1,
    /// The command line is wrong (clap uses 2 too).
    Usage = 2,
    /// No answer in time.
    Timeout = 3,
    /// The broker (or its management API) could not be reached or refused the login.
    Unreachable = 4,
    /// Anything else (a message too large, a broker that refused a publish...).
    Failed = 5,
}

impl Exit {
    /// Which status `e` means.
    pub fn of(e: &MessagingError) -> Exit {
        match e {
            MessagingError::Remote(_)
            | MessagingError::NoSuchMethod { .. }
            | MessagingError::UnsupportedVersion { .. } => Exit::Remote,
            MessagingError::Timeout(_) | MessagingError::TaskTimeout(_) => Exit::Timeout,
            MessagingError::InvalidTarget { .. }
            | MessagingError::InvalidVersion(_)
            | MessagingError::VersionCap { .. }
            | MessagingError::UnknownPriority(_)
            | MessagingError::InvalidFilter { .. }
            | MessagingError::Config { .. }
            | MessagingError::InvalidOption { .. } => Exit::Usage,
            MessagingError::Broker(
                BrokerError::Unreachable { .. }
                | BrokerError::AuthRefused { .. }
                | BrokerError::VhostRefused { .. }
                | BrokerError::ConnectionLost { .. }
                | BrokerError::Tls { .. },
            )
            | MessagingError::Closed => Exit::Unreachable,
            _ => Exit::Failed,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_timeout_is_three_and_a_remote_failure_one() {
        assert_eq!(
            Exit::of(&MessagingError::Timeout("x".into())),
            Exit::Timeout
        );
        assert_eq!(Exit::Timeout as i32, 3);
        let f = osier_messaging::Failure::new("ValueError", "builtins", "no");
        assert_eq!(Exit::of(&MessagingError::Remote(Box::new(f))), Exit::Remote);
    }

    #[test]
    fn an_unreachable_broker_is_four() {
        let e = MessagingError::Broker(BrokerError::Unreachable {
            reason: "127.0.0.1:1: refused".into(),
            source: None,
        });
        assert_eq!(Exit::of(&e), Exit::Unreachable);
    }
}
