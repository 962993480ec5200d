//! Locking a `std::sync::Mutex` that a panic may have poisoned. Every mutex of this crate guards
//! state that a panic cannot leave half-changed (maps, queues and flags changed in one step), so
//! the guard is taken back instead of the panic spreading to every later user.

use std::sync::{Mutex, MutexGuard};

/// Locks `m`, whether or not a panic poisoned it.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
