//! The one place that picks `std` or `loom` synchronisation types, so the rest of the crate
//! needs no `cfg(loom)`.

#[cfg(loom)]
pub(crate) use loom::sync::{
    Mutex, MutexGuard,
    atomic::{AtomicU64, Ordering},
};
#[cfg(not(loom))]
pub(crate) use std::sync::{
    Mutex, MutexGuard,
    atomic::{AtomicU64, Ordering},
};

/// The hasher of every interner. Loom replays schedules and needs each execution to behave
/// the same, so under loom the seed is fixed (std's SipHash with zero keys) instead of
/// foldhash's per-interner random seed, which would send strings to different shards (and
/// so different locks) from one execution to the next.
#[cfg(not(loom))]
pub(crate) type HashBuilder = hashbrown::DefaultHashBuilder;
#[cfg(loom)]
pub(crate) type HashBuilder =
    core::hash::BuildHasherDefault<std::collections::hash_map::DefaultHasher>;

/// Locks `mutex`, ignoring poisoning: every store operation leaves the shard consistent at
/// each point where it could unwind (see `store.rs`), so a panic elsewhere does not make the
/// data unusable.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Takes the value out of `mutex`, ignoring poisoning for the same reason as [`lock`].
pub(crate) fn into_inner<T>(mutex: Mutex<T>) -> T {
    mutex
        .into_inner()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}
