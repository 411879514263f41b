//! The one place that switches between std/crossbeam and loom (`--cfg loom`).
//!
//! Under loom, `ArrayQueue` (whose atomics loom cannot see) becomes a `loom` mutex around a
//! `VecDeque` with the same bounded push/pop contract; atomics, `Arc`, `Mutex`, `UnsafeCell`
//! and `thread_local!` become loom's. The per-thread records (`src/registry.rs`), the thread
//! ids and the pool logic above them are the same code in both builds.
//!
//! The asymmetric fence of the owned guards' give-back is in `src/fence.rs`: under loom (and
//! Miri) both of its sides are `SeqCst` fences, loom's here.

#[cfg(not(loom))]
pub(crate) use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64, AtomicUsize, Ordering};
#[cfg(not(loom))]
pub(crate) use std::sync::{Arc, Mutex};
#[cfg(not(loom))]
pub(crate) use std::thread_local;

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64, AtomicUsize, Ordering};
#[cfg(loom)]
pub(crate) use loom::sync::{Arc, Mutex};
#[cfg(loom)]
pub(crate) use loom::thread_local;

#[cfg(loom)]
pub(crate) use loom::cell::UnsafeCell;

/// `std::cell::UnsafeCell` with loom's closure-based API, so that loom can check every
/// access in the loom build.
#[cfg(not(loom))]
#[derive(Debug)]
pub(crate) struct UnsafeCell<T>(std::cell::UnsafeCell<T>);

#[cfg(not(loom))]
impl<T> UnsafeCell<T> {
    pub(crate) fn new(value: T) -> Self {
        Self(std::cell::UnsafeCell::new(value))
    }
    #[inline]
    pub(crate) fn with_mut<R>(&self, f: impl FnOnce(*mut T) -> R) -> R {
        f(self.0.get())
    }
}

/// Lets another thread run while this one waits for it (loom schedules it).
pub(crate) fn wait_a_moment() {
    #[cfg(not(loom))]
    std::thread::yield_now();
    #[cfg(loom)]
    loom::thread::yield_now();
}

/// Locks `m`, ignoring poisoning: every critical section here leaves the data consistent
/// at each step (no user code runs under these locks).
pub(crate) fn lock<T>(m: &Mutex<T>) -> impl std::ops::DerefMut<Target = T> + '_ {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(not(loom))]
pub(crate) use crossbeam_queue::ArrayQueue as Queue;

/// Bounded MPMC queue with `ArrayQueue`'s contract, visible to loom.
#[cfg(loom)]
#[derive(Debug)]
pub(crate) struct Queue<T> {
    items: Mutex<std::collections::VecDeque<T>>,
    cap: usize,
}

#[cfg(loom)]
impl<T> Queue<T> {
    pub(crate) fn new(cap: usize) -> Self {
        Self {
            items: Mutex::new(std::collections::VecDeque::new()),
            cap,
        }
    }
    pub(crate) fn push(&self, value: T) -> Result<(), T> {
        let mut items = lock(&self.items);
        if items.len() >= self.cap {
            return Err(value);
        }
        items.push_back(value);
        Ok(())
    }
    pub(crate) fn pop(&self) -> Option<T> {
        lock(&self.items).pop_front()
    }
    pub(crate) fn len(&self) -> usize {
        lock(&self.items).len()
    }
}

/// A statistics counter owned by one thread (it lives in that thread's record) and read by
/// any. Only the owner writes, so the increment is a plain load and store: no locked
/// read-modify-write on the hot path. The loom models check the one-writer rule: a lost
/// update would show as counts that do not add up.
#[derive(Debug, Default)]
pub(crate) struct Counter(AtomicU64);

impl Counter {
    #[inline]
    pub(crate) fn inc(&self) {
        self.0.store(
            self.0.load(Ordering::Relaxed).wrapping_add(1),
            Ordering::Relaxed,
        );
    }

    pub(crate) fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}
