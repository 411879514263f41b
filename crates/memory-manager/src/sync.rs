//! The one switch between `std` and `loom` synchronisation types.
//!
//! The code loom should see (the charge gate in `gate.rs`, which decides when the budget's
//! charges for held memory are brought up to date) imports its lock, atomics and thread-local
//! from here, so `--cfg loom` swaps them without `#[cfg]` in the logic. The rest of the
//! crate keeps `std`'s types: its locks guard single pushes and reads.

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{AtomicBool, Ordering};
#[cfg(loom)]
pub(crate) use loom::sync::{Mutex, MutexGuard};

#[cfg(not(loom))]
pub(crate) use std::sync::atomic::{AtomicBool, Ordering};
#[cfg(not(loom))]
pub(crate) use std::sync::{Mutex, MutexGuard};

/// Locks `m`, ignoring poisoning: every critical section behind these locks leaves its data
/// consistent if it panics (a single push, retain, resize or read).
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(not(loom))]
std::thread_local! {
    /// Address of the charge gate whose round this thread runs now (0: none).
    pub(crate) static IN_ROUND: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}
#[cfg(loom)]
loom::thread_local! {
    /// Address of the charge gate whose round this thread runs now (0: none).
    pub(crate) static IN_ROUND: std::cell::Cell<usize> = std::cell::Cell::new(0);
}
