//! [`ObjectPool<T>`] and its guard [`Pooled<T>`].

use std::fmt;
use std::ops::{Deref, DerefMut};

use crate::sync::Arc;
use crate::tiers::{Core, Event};
use crate::{PoolError, PoolStats};

type Factory<T> = Box<dyn Fn() -> T + Send + Sync>;
type ResetHook<T> = Box<dyn Fn(&mut T) + Send + Sync>;

struct Shared<T: Send> {
    /// Objects are pooled boxed: a guard and the caches move a pointer, never the `T`.
    core: Core<Box<T>>,
    max_idle: usize,
    factory: Factory<T>,
    reset: Option<ResetHook<T>>,
}

/// A bounded pool of reusable `T`s: at most `max_idle` are kept idle; beyond that, returned
/// objects are dropped.
///
/// [`acquire`](Self::acquire) pops an idle object or builds one with the factory;
/// dropping the [`Pooled`] guard runs the reset hook and pushes it back. The guard owns an
/// `Arc` to the pool's shared state, so it may be sent to and dropped on another thread,
/// and may outlive the `ObjectPool` handle (the object is then freed with the last guard).
/// `ObjectPool` is `Clone` (another handle to the same pool), `Send` and `Sync`.
///
/// ```
/// let pool = mm_pool::ObjectPool::with_reset(8, Vec::<u32>::new, Vec::clear)?;
/// {
///     let mut v = pool.acquire();
///     v.extend([1, 2, 3]);
/// } // cleared and returned here
/// let v = pool.acquire();
/// assert!(v.is_empty() && v.capacity() >= 3);
/// assert_eq!(pool.stats().hits, 1);
/// # Ok::<(), mm_pool::PoolError>(())
/// ```
///
/// Costs: acquire takes this thread's last returned object (a one-object cache, as in
/// [`BufferPool`](crate::BufferPool): plain loads and stores on the thread's own record, no
/// atomic read-modify-write) or pops the shared FIFO queue, or calls the factory; return
/// runs the reset hook, then refills the cache or pushes to the queue. `acquire`'s guard
/// also clones an `Arc`; [`acquire_ref`](Self::acquire_ref)'s does not. A guard dropped
/// during thread-local destruction goes to the shared queue (or is dropped and counted as a
/// discard); it never panics.
/// It does not bound the number of objects *in use*: that is the caller's concurrency.
pub struct ObjectPool<T: Send> {
    shared: Arc<Shared<T>>,
}

impl<T: Send + 'static> ObjectPool<T> {
    /// A pool keeping up to `max_idle` idle objects, built by `factory`. Nothing is
    /// allocated for objects until the first acquire (the queue's `max_idle` slots are).
    ///
    /// # Errors
    /// [`PoolError::ZeroCapacity`] for `max_idle == 0`.
    pub fn new(
        max_idle: usize,
        factory: impl Fn() -> T + Send + Sync + 'static,
    ) -> Result<Self, PoolError> {
        Self::build(max_idle, Box::new(factory), None)
    }

    /// As [`new`](Self::new), with `reset` run on every returned object (clear a buffer,
    /// zero a struct) before it is pooled. A reset hook that panics drops the object.
    ///
    /// # Errors
    /// [`PoolError::ZeroCapacity`] for `max_idle == 0`.
    pub fn with_reset(
        max_idle: usize,
        factory: impl Fn() -> T + Send + Sync + 'static,
        reset: impl Fn(&mut T) + Send + Sync + 'static,
    ) -> Result<Self, PoolError> {
        Self::build(max_idle, Box::new(factory), Some(Box::new(reset)))
    }

    fn build(
        max_idle: usize,
        factory: Factory<T>,
        reset: Option<ResetHook<T>>,
    ) -> Result<Self, PoolError> {
        if max_idle == 0 {
            return Err(PoolError::ZeroCapacity { index: 0 });
        }
        Ok(Self {
            shared: Arc::new(Shared {
                core: Core::new(std::iter::once(max_idle), true),
                max_idle,
                factory,
                reset,
            }),
        })
    }
}

impl<T: Send> ObjectPool<T> {
    /// An idle object, or a new one from the factory when none is idle.
    ///
    /// The guard holds an `Arc` to the pool: it can move to another thread and outlive
    /// this handle. [`acquire_ref`](Self::acquire_ref) avoids the reference count.
    #[inline]
    pub fn acquire(&self) -> Pooled<T> {
        Pooled {
            value: Some(self.shared.checkout()),
            shared: Arc::clone(&self.shared),
        }
    }

    /// As [`acquire`](Self::acquire), with a guard that borrows the pool: no
    /// reference-count traffic (which two threads would bounce between their caches).
    #[inline]
    pub fn acquire_ref(&self) -> PooledRef<'_, T> {
        PooledRef {
            value: Some(self.shared.checkout()),
            shared: &self.shared,
        }
    }

    /// Drops the idle objects this thread can reach now (the queue, its own cache, the
    /// caches of exited threads); returns how many. Every other live thread drops its
    /// cached object at its next operation on this pool.
    pub fn trim(&self) -> usize {
        let mut n = 0;
        self.shared.core.trim(&mut |_| n += 1);
        n
    }

    /// Counters and the idle count. O(threads).
    pub fn stats(&self) -> PoolStats {
        let held = self.shared.core.held(0) as u64;
        let size = size_of::<T>() as u64;
        PoolStats {
            held,
            held_bytes: held * size,
            bound_bytes: self.shared.max_idle as u64 * size,
            ..self.shared.core.counts()
        }
    }

    /// The most idle objects this pool keeps.
    pub fn max_idle(&self) -> usize {
        self.shared.max_idle
    }
}

impl<T: Send> Shared<T> {
    #[inline]
    fn checkout(&self) -> Box<T> {
        let local = self.core.local();
        match self.core.take(0, local.as_ref()) {
            Some(v) => {
                self.core.count(local.as_ref(), Event::Hit);
                v
            }
            None => {
                self.core.count(local.as_ref(), Event::Miss);
                Box::new((self.factory)())
            }
        }
    }

    #[inline]
    fn give_back(&self, mut value: Box<T>) {
        let local = self.core.local();
        let local = local.as_ref();
        // Skip the reset hook when the pool is visibly full; `put` is the real check.
        if self.core.looks_full(0, local) {
            self.core.count(local, Event::Discard);
            return;
        }
        if let Some(reset) = &self.reset {
            reset(&mut *value);
        }
        match self.core.put(0, local, value) {
            Ok(()) => self.core.count(local, Event::Return),
            Err(dropped) => {
                drop(dropped);
                self.core.count(local, Event::Discard);
            }
        }
    }
}

impl<T: Send> Clone for ObjectPool<T> {
    fn clone(&self) -> Self {
        Self {
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<T: Send> fmt::Debug for ObjectPool<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ObjectPool")
            .field("max_idle", &self.shared.max_idle)
            .field("stats", &self.stats())
            .finish()
    }
}

/// An object checked out of an [`ObjectPool`]; returns it on drop.
///
/// `Send` when `T` is, so it can be dropped on another thread; it keeps the pool's shared
/// state alive, so it can outlive every `ObjectPool` handle.
pub struct Pooled<T: Send> {
    value: Option<Box<T>>,
    shared: Arc<Shared<T>>,
}

impl<T: Send> Pooled<T> {
    /// Keeps the object: it will not go back to the pool (counted neither as a return nor
    /// as a discard).
    pub fn detach(mut self) -> T {
        match self.value.take() {
            Some(v) => *v,
            None => unreachable!("a Pooled guard holds its value until drop"),
        }
    }
}

impl<T: Send> Deref for Pooled<T> {
    type Target = T;
    #[inline]
    fn deref(&self) -> &T {
        match &self.value {
            Some(v) => v,
            None => unreachable!("a Pooled guard holds its value until drop"),
        }
    }
}

impl<T: Send> DerefMut for Pooled<T> {
    #[inline]
    fn deref_mut(&mut self) -> &mut T {
        match &mut self.value {
            Some(v) => v,
            None => unreachable!("a Pooled guard holds its value until drop"),
        }
    }
}

impl<T: Send> Drop for Pooled<T> {
    fn drop(&mut self) {
        if let Some(value) = self.value.take() {
            self.shared.give_back(value);
        }
    }
}

impl<T: Send + fmt::Debug> fmt::Debug for Pooled<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Pooled").field(&**self).finish()
    }
}

/// An object checked out with [`ObjectPool::acquire_ref`]: like [`Pooled`], but it borrows
/// the pool, so it cannot outlive the `ObjectPool` handle it came from.
pub struct PooledRef<'a, T: Send> {
    value: Option<Box<T>>,
    shared: &'a Shared<T>,
}

impl<T: Send> PooledRef<'_, T> {
    /// Keeps the object: it will not go back to the pool.
    pub fn detach(mut self) -> T {
        match self.value.take() {
            Some(v) => *v,
            None => unreachable!("a PooledRef guard holds its value until drop"),
        }
    }
}

impl<T: Send> Deref for PooledRef<'_, T> {
    type Target = T;
    #[inline]
    fn deref(&self) -> &T {
        match &self.value {
            Some(v) => v,
            None => unreachable!("a PooledRef guard holds its value until drop"),
        }
    }
}

impl<T: Send> DerefMut for PooledRef<'_, T> {
    #[inline]
    fn deref_mut(&mut self) -> &mut T {
        match &mut self.value {
            Some(v) => v,
            None => unreachable!("a PooledRef guard holds its value until drop"),
        }
    }
}

impl<T: Send> Drop for PooledRef<'_, T> {
    fn drop(&mut self) {
        if let Some(value) = self.value.take() {
            self.shared.give_back(value);
        }
    }
}

impl<T: Send + fmt::Debug> fmt::Debug for PooledRef<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("PooledRef").field(&**self).finish()
    }
}
