//! The lock the registry uses: `std`'s normally, loom's under `cfg(loom)` so the loom models
//! in `tests/loom.rs` explore its interleavings. `Arc`/`Weak` stay `std`'s: the registry's
//! invariants are all kept under this lock.

#[cfg(loom)]
pub(crate) use loom::sync::{Mutex, MutexGuard};
#[cfg(not(loom))]
pub(crate) use std::sync::{Mutex, MutexGuard};
