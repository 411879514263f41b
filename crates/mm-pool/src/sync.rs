//! The one place that switches between std/crossbeam and loom (`--cfg loom`).
//!
//! Under loom, `ArrayQueue` (whose atomics loom cannot see) becomes a `loom` mutex around a
//! `VecDeque` with the same bounded push/pop contract, and the per-thread cache becomes one
//! shared instance (loom threads all run on one OS thread, so `thread_local` would see a
//! single thread anyway). The pool logic above them is the same code in both builds.

#[cfg(not(loom))]
pub(crate) use std::sync::Arc;
#[cfg(not(loom))]
pub(crate) use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

#[cfg(loom)]
pub(crate) use loom::sync::Arc;
#[cfg(loom)]
pub(crate) use loom::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

#[cfg(not(loom))]
pub(crate) use crossbeam_queue::ArrayQueue as Queue;

/// Bounded MPMC queue with `ArrayQueue`'s contract, visible to loom.
#[cfg(loom)]
#[derive(Debug)]
pub(crate) struct Queue<T> {
    items: loom::sync::Mutex<std::collections::VecDeque<T>>,
    cap: usize,
}

#[cfg(loom)]
impl<T> Queue<T> {
    pub(crate) fn new(cap: usize) -> Self {
        Self {
            items: loom::sync::Mutex::new(std::collections::VecDeque::new()),
            cap,
        }
    }
    pub(crate) fn push(&self, value: T) -> Result<(), T> {
        let mut items = self.items.lock().unwrap_or_else(|e| e.into_inner());
        if items.len() >= self.cap {
            return Err(value);
        }
        items.push_back(value);
        Ok(())
    }
    pub(crate) fn pop(&self) -> Option<T> {
        self.items
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .pop_front()
    }
    pub(crate) fn len(&self) -> usize {
        self.items.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
    pub(crate) fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// One `T` per thread, created on the thread's first use; all of them visible to `iter`.
#[cfg(not(loom))]
pub(crate) struct PerThread<T: Send> {
    inner: thread_local::ThreadLocal<T>,
    init: fn(usize) -> T,
    arg: usize,
}

#[cfg(not(loom))]
impl<T: Send> PerThread<T> {
    pub(crate) fn new(init: fn(usize) -> T, arg: usize) -> Self {
        Self {
            inner: thread_local::ThreadLocal::new(),
            init,
            arg,
        }
    }
    #[inline]
    pub(crate) fn get(&self) -> &T {
        self.inner.get_or(|| (self.init)(self.arg))
    }
    pub(crate) fn iter(&self) -> impl Iterator<Item = &T>
    where
        T: Sync,
    {
        self.inner.iter()
    }
}

/// Under loom: a single instance shared by every (simulated) thread.
#[cfg(loom)]
pub(crate) struct PerThread<T: Send> {
    one: T,
}

#[cfg(loom)]
impl<T: Send> PerThread<T> {
    pub(crate) fn new(init: fn(usize) -> T, arg: usize) -> Self {
        Self { one: init(arg) }
    }
    pub(crate) fn get(&self) -> &T {
        &self.one
    }
    pub(crate) fn iter(&self) -> impl Iterator<Item = &T>
    where
        T: Sync,
    {
        std::iter::once(&self.one)
    }
}

/// A statistics counter owned by one thread (it lives in that thread's `PerThread` entry)
/// and read by any. Only the owner writes, so the increment is a plain load and store: no
/// locked read-modify-write on the hot path. Under loom the `PerThread` entry is shared by
/// every simulated thread, so there it is a real `fetch_add`.
#[derive(Debug, Default)]
pub(crate) struct Counter(AtomicU64);

impl Counter {
    #[inline]
    pub(crate) fn inc(&self) {
        #[cfg(not(loom))]
        self.0.store(
            self.0.load(Ordering::Relaxed).wrapping_add(1),
            Ordering::Relaxed,
        );
        #[cfg(loom)]
        self.0.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}
