//! The one switch between `std` and `loom` synchronisation types.
//!
//! Everything in the crate that loom should see (the byte ledger and the per-map charge)
//! imports its atomics and locks from here, so `--cfg loom` swaps them without `#[cfg]`
//! scattered through the logic. `Arc` is deliberately *not* switched: the public API hands
//! out `std::sync::Arc<MappedFile>`, and the loom models wrap their fake maps in
//! `loom::sync::Arc` themselves.

#[cfg(loom)]
pub(crate) use loom::sync::Mutex;
#[cfg(loom)]
pub(crate) use loom::sync::atomic::{AtomicU8, AtomicU64, Ordering};

#[cfg(loom)]
pub(crate) use loom::sync::MutexGuard;
#[cfg(not(loom))]
pub(crate) use std::sync::Mutex;
#[cfg(not(loom))]
pub(crate) use std::sync::MutexGuard;
#[cfg(not(loom))]
pub(crate) use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
