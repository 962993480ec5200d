//! A budget of log lines per kind of event, so a flood of bad messages writes a bounded amount
//! of log: the first lines of each second are written, the rest counted and reported in one
//! line when the next second opens.
//!
//! ```
//! use osier_messaging::LogBudget;
//!
//! static MALFORMED: LogBudget = LogBudget::new(10);
//! let written = (0..1000).filter(|_| MALFORMED.allow().is_some()).count();
//! assert_eq!(written, 10);
//! ```

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::Instant;

/// A per-second budget of log lines (lock-free; shared by every task that logs the same event).
#[derive(Debug)]
pub struct LogBudget {
    per_second: u64,
    /// The second (since the process's first use of any budget) the counter belongs to.
    second: AtomicU64,
    used: AtomicU64,
    suppressed: AtomicU64,
}

fn epoch() -> Instant {
    static E: OnceLock<Instant> = OnceLock::new();
    *E.get_or_init(Instant::now)
}

impl LogBudget {
    /// A budget of `per_second` lines a second.
    pub const fn new(per_second: u64) -> Self {
        LogBudget {
            per_second,
            second: AtomicU64::new(0),
            used: AtomicU64::new(0),
            suppressed: AtomicU64::new(0),
        }
    }

    /// `Some(n)` when a line may be written now, with `n` the lines suppressed since the last
    /// one written (for the line to mention); `None` when this second's budget is spent.
    pub fn allow(&self) -> Option<u64> {
        let now = epoch().elapsed().as_secs() + 1;
        let seen = self.second.load(Ordering::Acquire);
        if seen != now
            && self
                .second
                .compare_exchange(seen, now, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
        {
            self.used.store(0, Ordering::Release);
        }
        if self.used.fetch_add(1, Ordering::AcqRel) < self.per_second {
            Some(self.suppressed.swap(0, Ordering::AcqRel))
        } else {
            self.suppressed.fetch_add(1, Ordering::AcqRel);
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_next_second_reports_what_was_suppressed() {
        let b = LogBudget::new(2);
        assert_eq!(b.allow(), Some(0));
        assert_eq!(b.allow(), Some(0));
        assert_eq!(b.allow(), None);
        assert_eq!(b.allow(), None);
        // Move the budget to a past second: the next line opens a new one.
        b.second.store(0, Ordering::Release);
        assert_eq!(b.allow(), Some(2));
    }
}
