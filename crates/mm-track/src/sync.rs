//! The one place that chooses between `std` and `loom` atomics.
//!
//! The process-wide counters are a `static`, so they always use `core` atomics (loom's have
//! no `const fn new`). The counting logic is generic over [`Atom`], so under `cfg(loom)` the
//! same code runs on loom's atomics in `tests/loom.rs`.

pub(crate) use core::sync::atomic::AtomicU64 as StdAtomicU64;
use core::sync::atomic::Ordering::Relaxed;

/// A 64-bit counter cell shared between threads.
///
/// Every operation is `Relaxed`: the counters carry no data that other memory depends on,
/// and a thread join (or any other synchronisation the caller does) orders them.
pub trait Atom: Sync {
    /// Reads the value.
    fn get(&self) -> u64;
    /// Adds `v` (wrapping) and returns the value before the add.
    fn add(&self, v: u64) -> u64;
    /// Raises the value to `v` when `v` is larger.
    fn raise(&self, v: u64);
    /// Replaces the value.
    fn put(&self, v: u64);
}

impl Atom for StdAtomicU64 {
    #[inline]
    fn get(&self) -> u64 {
        self.load(Relaxed)
    }
    #[inline]
    fn add(&self, v: u64) -> u64 {
        self.fetch_add(v, Relaxed)
    }
    #[inline]
    fn raise(&self, v: u64) {
        self.fetch_max(v, Relaxed);
    }
    #[inline]
    fn put(&self, v: u64) {
        self.store(v, Relaxed);
    }
}

#[cfg(loom)]
impl Atom for loom::sync::atomic::AtomicU64 {
    fn get(&self) -> u64 {
        self.load(loom::sync::atomic::Ordering::Relaxed)
    }
    fn add(&self, v: u64) -> u64 {
        self.fetch_add(v, loom::sync::atomic::Ordering::Relaxed)
    }
    fn raise(&self, v: u64) {
        self.fetch_max(v, loom::sync::atomic::Ordering::Relaxed);
    }
    fn put(&self, v: u64) {
        self.store(v, loom::sync::atomic::Ordering::Relaxed);
    }
}
