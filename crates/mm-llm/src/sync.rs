//! The one switch between `std` and `loom` synchronisation types: the embedding cache imports
//! its locks, condition variables and atomics from here, so the loom models in
//! `tests/loom.rs` (built with `RUSTFLAGS="--cfg loom"`, run by `.ci/loom.sh`) exercise the
//! production code.

#[cfg(loom)]
pub(crate) use loom::sync::{
    Condvar, Mutex, MutexGuard,
    atomic::{AtomicU32, AtomicU64, Ordering},
};
#[cfg(not(loom))]
pub(crate) use std::sync::{
    Condvar, Mutex, MutexGuard,
    atomic::{AtomicU32, AtomicU64, Ordering},
};

/// The hasher that turns a text into a cache key. Loom replays schedules and needs every
/// execution to take the same branches, so under loom the seed is fixed (SipHash with zero
/// keys) instead of a random per-cache key, which would send texts to different shards from
/// one execution to the next.
#[cfg(not(loom))]
pub(crate) type TextHasher = std::hash::RandomState;
#[cfg(loom)]
pub(crate) type TextHasher =
    std::hash::BuildHasherDefault<std::collections::hash_map::DefaultHasher>;

/// Locks `mutex`, ignoring poisoning: the cache runs no user code under its locks (init
/// closures and the eviction listener run after the lock is released), and its own updates
/// do not unwind halfway, so a panic elsewhere leaves the data consistent.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}
