//! The four stages of the migration, OpenStack's 2015 plan for leaving eventlet made
//! executable. Each changes one component; every stage answers the same queries the same way,
//! so a fleet can run any mix of them.
//!
//! | stage | notification listener | storage driver | RPC API | periodic aggregation | launched as |
//! |---|---|---|---|---|---|
//! | 0 | green endpoint | blocking, in `tpool` | green | a green thread | `GreenService` |
//! | 1 | **async** endpoint | blocking, via `Bridge::run_blocking` | green | a green thread | `GreenService` |
//! | 2 | async | **async driver** | green, storage via `yield_future` | a green thread, via `yield_future` | `GreenService` |
//! | 3 | async | async | **async** | **a `LoopingCall`** | **`Service`**: no green thread left |

use std::fmt;

/// One stage of the migration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Stage {
    /// Everything green, the database through its blocking driver in a thread pool.
    AllGreen,
    /// The listener's endpoints are async; storage is still blocking.
    AsyncListener,
    /// Storage moves to an async driver.
    AsyncStorage,
    /// The service itself is async: no green thread left.
    AsyncMain,
}

impl Stage {
    /// The four, in order.
    pub const ALL: [Stage; 4] = [
        Stage::AllGreen,
        Stage::AsyncListener,
        Stage::AsyncStorage,
        Stage::AsyncMain,
    ];

    /// 0 to 3.
    pub fn number(self) -> u8 {
        self as u8
    }

    /// The stage numbered `n`.
    pub fn from_number(n: u8) -> Option<Stage> {
        Stage::ALL.get(usize::from(n)).copied()
    }

    /// What this stage changed, in a few words.
    pub fn describe(self) -> &'static str {
        match self {
            Stage::AllGreen => "all green",
            Stage::AsyncListener => "async listener",
            Stage::AsyncStorage => "async storage",
            Stage::AsyncMain => "async main",
        }
    }
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "stage {} ({})", self.number(), self.describe())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stages_are_numbered_in_order() {
        for (i, s) in Stage::ALL.iter().enumerate() {
            assert_eq!(usize::from(s.number()), i);
            assert_eq!(Stage::from_number(s.number()), Some(*s));
        }
        assert_eq!(Stage::from_number(4), None);
    }
}
