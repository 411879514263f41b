//! The one switch between `std` and `loom` synchronisation types: the rest of the crate imports
//! atomics and locks from here, so the loom models (`tests/loom.rs`, built with
//! `RUSTFLAGS="--cfg loom"`) exercise exactly the production code.

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{AtomicU8, AtomicU64, Ordering};
#[cfg(loom)]
pub(crate) use loom::sync::{Mutex, MutexGuard};

#[cfg(not(loom))]
pub(crate) use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
#[cfg(not(loom))]
pub(crate) use std::sync::{Mutex, MutexGuard};
