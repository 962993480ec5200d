//! Notifications: the [`Notifier`](crate::Notifier) and the
//! [`NotificationListener`](crate::NotificationListener) (MSG-NOT-*, MSG-LSN-*).

mod dispatch;
pub mod endpoint;
pub mod listener;
pub mod log_handler;
pub mod notifier;

use std::fmt;
use std::str::FromStr;

use crate::error::MessagingError;

/// A notification priority (MSG-NOT-02).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Priority {
    /// `audit`
    Audit,
    /// `debug`
    Debug,
    /// `info`
    Info,
    /// `warn` (alias `warning`)
    Warn,
    /// `error`
    Error,
    /// `critical`
    Critical,
    /// `sample`
    Sample,
}

impl Priority {
    /// All seven, in oslo's order.
    pub const ALL: [Priority; 7] = [
        Priority::Audit,
        Priority::Debug,
        Priority::Info,
        Priority::Warn,
        Priority::Error,
        Priority::Critical,
        Priority::Sample,
    ];

    /// Where the priority is in [`ALL`](Self::ALL).
    pub(crate) fn index(self) -> usize {
        self as usize
    }

    /// The lower-case name used in topics and endpoint methods.
    pub fn as_str(self) -> &'static str {
        match self {
            Priority::Audit => "audit",
            Priority::Debug => "debug",
            Priority::Info => "info",
            Priority::Warn => "warn",
            Priority::Error => "error",
            Priority::Critical => "critical",
            Priority::Sample => "sample",
        }
    }

    /// The upper-case name a notification's `priority` member carries (`INFO`, ...).
    pub fn as_upper_str(self) -> &'static str {
        match self {
            Priority::Audit => "AUDIT",
            Priority::Debug => "DEBUG",
            Priority::Info => "INFO",
            Priority::Warn => "WARN",
            Priority::Error => "ERROR",
            Priority::Critical => "CRITICAL",
            Priority::Sample => "SAMPLE",
        }
    }
}

impl fmt::Display for Priority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Priority {
    type Err = MessagingError;

    /// Case-insensitive; `warning` is `warn`. Anything else is a typed error.
    fn from_str(s: &str) -> Result<Self, MessagingError> {
        // Compared in place, not lower-cased into a new string: every notification received
        // is read through here.
        if s.eq_ignore_ascii_case("warning") {
            return Ok(Priority::Warn);
        }
        Priority::ALL
            .into_iter()
            .find(|p| p.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| MessagingError::UnknownPriority(s.to_ascii_lowercase()))
    }
}

/// A count of notifications by priority, under oslo-style `priority` labels: a notifier's
/// [`NOTIFICATIONS_SENT_TOTAL`](crate::metrics::NOTIFICATIONS_SENT_TOTAL), a listener's
/// [`NOTIFICATIONS_RECEIVED_TOTAL`](crate::metrics::NOTIFICATIONS_RECEIVED_TOTAL).
pub(crate) struct PriorityCounters(crate::metrics::CountersBy<{ Priority::ALL.len() }>);

impl PriorityCounters {
    pub(crate) const fn sent() -> Self {
        Self::of(crate::metrics::NOTIFICATIONS_SENT_TOTAL)
    }

    pub(crate) const fn received() -> Self {
        Self::of(crate::metrics::NOTIFICATIONS_RECEIVED_TOTAL)
    }

    const fn of(name: &'static str) -> Self {
        PriorityCounters(crate::metrics::CountersBy::new(name, "priority"))
    }

    /// One more notification at `p`.
    pub(crate) fn count(&self, p: Priority) {
        self.0.increment(p.index(), p.as_str());
    }
}

#[cfg(test)]
mod tests {
    use super::Priority;

    #[test]
    fn every_priority_is_read_in_any_case_and_warning_is_warn() {
        for p in Priority::ALL {
            assert_eq!(p.as_str().parse::<Priority>().unwrap(), p);
            assert_eq!(p.as_upper_str().parse::<Priority>().unwrap(), p);
        }
        assert_eq!("WaRnInG".parse::<Priority>().unwrap(), Priority::Warn);
        for unknown in ["", "infos", "inf", "warnin", "INFO "] {
            assert!(unknown.parse::<Priority>().is_err(), "{unknown:?}");
        }
    }

    #[test]
    fn a_priority_s_index_is_its_place_in_all() {
        for (i, p) in Priority::ALL.into_iter().enumerate() {
            assert_eq!(p.index(), i);
        }
    }

    #[test]
    fn the_upper_case_name_is_the_name_upper_cased() {
        for p in Priority::ALL {
            assert_eq!(p.as_upper_str(), p.as_str().to_uppercase());
        }
    }
}
