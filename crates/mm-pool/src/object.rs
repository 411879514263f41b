//! [`ObjectPool<T>`] and its guard [`Pooled<T>`].

use std::fmt;
use std::mem::ManuallyDrop;
use std::ops::{Deref, DerefMut};

use crate::lease::{Handle, Lease, Lending, ReleaseOnUnwind};
use crate::tiers::{Core, Event, Lent, OwnLent, own_lent};
use crate::{PoolError, PoolStats};

type Factory<T> = Box<dyn Fn() -> T + Send + Sync>;

/// What an [`ObjectPool`] runs on every returned object before it is pooled (clear a
/// buffer, zero a struct). Implemented for every `Fn(&mut T) + Send + Sync` and for
/// [`DynReset`], the default: a pool's reset type is part of its type, so a hook given as
/// its own type ([`ObjectPool::with_typed_reset`]) is inlined into the guards' drop, where
/// the default makes an indirect call.
pub trait Reset<T>: Send + Sync {
    /// Resets `value` for its next use. A panic drops the object (it is not pooled).
    fn reset(&self, value: &mut T);
}

impl<T, F: Fn(&mut T) + Send + Sync> Reset<T> for F {
    #[inline(always)]
    fn reset(&self, value: &mut T) {
        self(value)
    }
}

/// The default reset of an [`ObjectPool`]: none ([`ObjectPool::new`]) or a boxed hook
/// ([`ObjectPool::with_reset`]), called through a pointer.
pub struct DynReset<T>(Option<ResetHook<T>>);

type ResetHook<T> = Box<dyn Fn(&mut T) + Send + Sync>;

impl<T> Reset<T> for DynReset<T> {
    #[inline(always)]
    fn reset(&self, value: &mut T) {
        if let Some(hook) = &self.0 {
            hook(value);
        }
    }
}

impl<T> fmt::Debug for DynReset<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_some() {
            "DynReset(hook)"
        } else {
            "DynReset(none)"
        })
    }
}

struct Shared<T: Send, R> {
    /// Objects are pooled boxed: a guard and the caches move a pointer, never the `T`.
    core: Core<T>,
    max_idle: usize,
    factory: Factory<T>,
    reset: R,
}

impl<T: Send, R: Reset<T>> Lending for Shared<T, R> {
    type Item = T;
    #[inline(always)]
    fn core(&self) -> &Core<T> {
        &self.core
    }
}

/// A bounded pool of reusable `T`s: at most `max_idle` are kept idle; beyond that, returned
/// objects are dropped.
///
/// [`acquire`](Self::acquire) pops an idle object or builds one with the factory;
/// dropping the [`Pooled`] guard runs the reset hook and pushes it back. The guard keeps the
/// pool's shared state alive (counted on the acquiring thread's record, not on a shared
/// reference count), so it may be sent to and dropped on another thread, and may outlive
/// the `ObjectPool` handle (the state is then freed with the last guard).
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
/// also counts itself on the thread's record: plain stores when it is given back on that
/// thread, one read-modify-write (on a line of that record the owner's fast path does not
/// touch) when it is given back on another; [`acquire_ref`](Self::acquire_ref)'s counts
/// nothing. Dropping the last handle of a pool whose owned guards were used runs a
/// process-wide memory barrier (Linux `membarrier`; `docs/mm-pool.md`). A guard dropped
/// during thread-local destruction goes to the shared queue (or is dropped and counted as a
/// discard); it never panics.
/// It does not bound the number of objects *in use*: that is the caller's concurrency.
pub struct ObjectPool<T: Send, R: Reset<T> = DynReset<T>> {
    /// Owned guards keep the state alive through `src/lease.rs`.
    shared: Handle<Shared<T, R>>,
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
        Self::build(max_idle, Box::new(factory), DynReset(None))
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
        Self::build(max_idle, Box::new(factory), DynReset(Some(Box::new(reset))))
    }
}

impl<T: Send + 'static, R: Reset<T> + 'static> ObjectPool<T, R> {
    /// As [`with_reset`](ObjectPool::with_reset), with the hook's type in the pool's type
    /// (`ObjectPool<T, R>`): the guards' drop calls it directly, so the compiler can inline
    /// it (a `Vec::clear` becomes one store), where `with_reset` calls it through a
    /// pointer.
    ///
    /// ```
    /// let pool = mm_pool::ObjectPool::with_typed_reset(8, Vec::<u8>::new, Vec::clear)?;
    /// pool.acquire_ref().push(1);
    /// assert!(pool.acquire_ref().is_empty());
    /// # Ok::<(), mm_pool::PoolError>(())
    /// ```
    ///
    /// # Errors
    /// [`PoolError::ZeroCapacity`] for `max_idle == 0`.
    pub fn with_typed_reset(
        max_idle: usize,
        factory: impl Fn() -> T + Send + Sync + 'static,
        reset: R,
    ) -> Result<Self, PoolError> {
        Self::build(max_idle, Box::new(factory), reset)
    }

    fn build(max_idle: usize, factory: Factory<T>, reset: R) -> Result<Self, PoolError> {
        if max_idle == 0 {
            return Err(PoolError::ZeroCapacity { index: 0 });
        }
        Ok(Self {
            shared: Handle::new(Shared {
                core: Core::new(std::iter::once(max_idle), true),
                max_idle,
                factory,
                reset,
            }),
        })
    }
}

impl<T: Send, R: Reset<T>> ObjectPool<T, R> {
    /// An idle object, or a new one from the factory when none is idle.
    ///
    /// The guard keeps the pool alive: it can move to another thread and outlive this
    /// handle. It is counted on this thread's record in the pool (a plain increment here,
    /// and plain stores when it is given back on this thread, or one read-modify-write when
    /// on another), not on a reference count shared by all threads;
    /// [`acquire_ref`](Self::acquire_ref) skips even that.
    #[inline]
    pub fn acquire(&self) -> Pooled<T, R> {
        let (value, lent) = self.shared.state().checkout_lent();
        Pooled {
            value: ManuallyDrop::new(value),
            // No record (thread-local destruction): the lease takes a strong count.
            lease: self.shared.lease(lent),
        }
    }

    /// As [`acquire`](Self::acquire), with a guard that borrows the pool: it counts
    /// nothing, so a round trip on the owning thread makes no atomic read-modify-write.
    #[inline]
    pub fn acquire_ref(&self) -> PooledRef<'_, T, R> {
        PooledRef {
            value: ManuallyDrop::new(self.shared.state().checkout()),
            shared: self.shared.state(),
        }
    }

    /// Drops the idle objects this thread can reach now (the queue, its own cache, the
    /// caches of exited threads); returns how many. Every other live thread drops its
    /// cached object at its next operation on this pool.
    pub fn trim(&self) -> usize {
        let mut n = 0;
        self.shared.state().core.trim(&mut |_| n += 1);
        n
    }

    /// Counters and the idle count. O(threads).
    pub fn stats(&self) -> PoolStats {
        let shared = self.shared.state();
        let held = shared.core.held(0) as u64;
        let size = size_of::<T>() as u64;
        PoolStats {
            held,
            held_bytes: held * size,
            bound_bytes: shared.max_idle as u64 * size,
            ..shared.core.counts()
        }
    }

    /// The most idle objects this pool keeps.
    pub fn max_idle(&self) -> usize {
        self.shared.state().max_idle
    }
}

/// Whether a returned object still needs its reset hook run.
#[derive(Clone, Copy, PartialEq, Eq)]
enum ResetState {
    Pending,
    Done,
}

impl<T: Send, R: Reset<T>> Shared<T, R> {
    /// The fast path: this thread's cached object, found through the thread's hint.
    #[inline(always)]
    fn checkout(&self) -> Box<T> {
        match self.core.take_hot(0) {
            Some((v, _)) => v,
            None => self.checkout_slow(),
        }
    }

    /// As [`checkout`](Self::checkout), and counts an owned guard on this thread's record
    /// (`None`: there is no record, the caller takes a strong count instead).
    #[inline(always)]
    fn checkout_lent(&self) -> (Box<T>, Option<&Lent>) {
        if let Some((v, l)) = self.core.take_hot(0) {
            return (v, Some(self.core.lend(&l)));
        }
        let v = self.checkout_slow();
        (v, self.core.local().map(|l| self.core.lend(&l)))
    }

    #[cold]
    #[inline(never)]
    fn checkout_slow(&self) -> Box<T> {
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

    /// The fast path: the reset hook, then into this thread's cache when it has room.
    /// Returns this thread's record, for an owned guard's give-back, when the hint had it.
    #[inline(always)]
    fn give_back(&self, mut value: Box<T>) -> OwnLent {
        let Some(l) = self.core.hinted() else {
            self.give_back_slow(value, ResetState::Pending);
            return OwnLent::NONE;
        };
        self.reset.reset(&mut *value);
        // `l` is still this thread's record (a thread keeps its claim until it gives its id
        // back, at thread-local destruction, never inside this call); the hook may have used
        // the pool, so `put_hot` checks the slot only now.
        if let Err(back) = self.core.put_hot(&l, 0, value) {
            self.give_back_slow(back, ResetState::Done);
        }
        own_lent(&l)
    }

    #[cold]
    #[inline(never)]
    fn give_back_slow(&self, mut value: Box<T>, reset: ResetState) {
        let local = self.core.local();
        let local = local.as_ref();
        if reset == ResetState::Pending {
            // Skip the reset hook when the pool is visibly full; `put` is the real check.
            if self.core.looks_full(0, local) {
                self.core.count(local, Event::Discard);
                return;
            }
            self.reset.reset(&mut *value);
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

impl<T: Send, R: Reset<T>> Clone for ObjectPool<T, R> {
    fn clone(&self) -> Self {
        Self {
            shared: self.shared.clone(),
        }
    }
}

impl<T: Send, R: Reset<T>> fmt::Debug for ObjectPool<T, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ObjectPool")
            .field("max_idle", &self.shared.state().max_idle)
            .field("stats", &self.stats())
            .finish()
    }
}

/// An object checked out of an [`ObjectPool`]; returns it on drop.
///
/// `Send` when `T` is, so it can be dropped on another thread; it keeps the pool's shared
/// state alive, so it can outlive every `ObjectPool` handle.
pub struct Pooled<T: Send, R: Reset<T> = DynReset<T>> {
    /// Taken only by `drop` or `detach`, each of which ends the guard.
    value: ManuallyDrop<Box<T>>,
    /// The pool's state, kept alive until the guard ends.
    lease: Lease<Shared<T, R>>,
}

impl<T: Send, R: Reset<T>> Pooled<T, R> {
    /// Keeps the object: it will not go back to the pool (counted neither as a return nor
    /// as a discard).
    pub fn detach(self) -> T {
        let mut me = ManuallyDrop::new(self);
        // SAFETY: `me` is never used again and its `Drop` does not run, so the value is
        // taken once and the lender released once.
        unsafe {
            let value = ManuallyDrop::take(&mut me.value);
            me.lease.release(OwnLent::NONE);
            *value
        }
    }
}

impl<T: Send, R: Reset<T>> Deref for Pooled<T, R> {
    type Target = T;
    #[inline]
    fn deref(&self) -> &T {
        &self.value
    }
}

impl<T: Send, R: Reset<T>> DerefMut for Pooled<T, R> {
    #[inline]
    fn deref_mut(&mut self) -> &mut T {
        &mut self.value
    }
}

impl<T: Send, R: Reset<T>> Drop for Pooled<T, R> {
    #[inline(always)]
    fn drop(&mut self) {
        // SAFETY: `drop` runs once and nothing reads the value after it.
        let mut value = unsafe { ManuallyDrop::take(&mut self.value) };
        let lease = &self.lease;
        let shared = lease.state();
        // The fast path, inline: this thread's hint, the reset, the cache, the owner's
        // give-back. Every other case leaves through a cold call (two call sites keep this
        // small enough for LLVM to inline `drop_in_place::<Pooled>` when the reset hook is
        // typed, and keep nothing but the guard and the record live across a boxed hook's
        // call).
        let Some(l) = shared.core.hinted() else {
            // SAFETY: as the guard's last use of the pool (`drop` runs once).
            return unsafe { drop_slow(lease, Some(value), ResetState::Pending, OwnLent::NONE) };
        };
        let unwind = ReleaseOnUnwind(lease);
        shared.reset.reset(&mut *value);
        unwind.disarm();
        // The same path as `Shared::give_back`, with the lease released at its end.
        let (rest, mine) = match shared.core.put_hot(&l, 0, value) {
            Err(back) => (Some(back), own_lent(&l)),
            Ok(()) => {
                // SAFETY: once, as the guard's last use of the pool when it returns true;
                // `l` is this thread's record, found during this drop.
                if unsafe { lease.release_mine(own_lent(&l)) } {
                    return;
                }
                // The pool is closing: the give-back takes the read-modify-write.
                (None, OwnLent::NONE)
            }
        };
        // SAFETY: as the guard's last use of the pool (`drop` runs once; the lease was not
        // released above).
        unsafe { drop_slow(lease, rest, ResetState::Done, mine) }
    }
}

/// The rest of a [`Pooled`] drop past the fast path: the slow return of `value` (none: it
/// is back already), then the lease.
///
/// # Safety
/// Called once, from `drop`, with the guard's lease (not released yet) and value; `mine`
/// is none or this thread's record, found during this drop.
#[cold]
#[inline(never)]
unsafe fn drop_slow<T: Send, R: Reset<T>>(
    lease: &Lease<Shared<T, R>>,
    value: Option<Box<T>>,
    reset: ResetState,
    mine: OwnLent,
) {
    if let Some(value) = value {
        let unwind = ReleaseOnUnwind(lease);
        lease.state().give_back_slow(value, reset);
        unwind.disarm();
    }
    // SAFETY: once (the unwinding path above did not run), as the guard's last use of the
    // pool.
    unsafe { lease.release(mine) };
}

impl<T: Send + fmt::Debug, R: Reset<T>> fmt::Debug for Pooled<T, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Pooled").field(&**self).finish()
    }
}

/// An object checked out with [`ObjectPool::acquire_ref`]: like [`Pooled`], but it borrows
/// the pool, so it cannot outlive the `ObjectPool` handle it came from.
pub struct PooledRef<'a, T: Send, R: Reset<T> = DynReset<T>> {
    /// Taken only by `drop` or `detach`, each of which ends the guard.
    value: ManuallyDrop<Box<T>>,
    shared: &'a Shared<T, R>,
}

impl<T: Send, R: Reset<T>> PooledRef<'_, T, R> {
    /// Keeps the object: it will not go back to the pool.
    pub fn detach(self) -> T {
        let mut me = ManuallyDrop::new(self);
        // SAFETY: `me` is never used again and its `Drop` does not run.
        *unsafe { ManuallyDrop::take(&mut me.value) }
    }
}

impl<T: Send, R: Reset<T>> Deref for PooledRef<'_, T, R> {
    type Target = T;
    #[inline]
    fn deref(&self) -> &T {
        &self.value
    }
}

impl<T: Send, R: Reset<T>> DerefMut for PooledRef<'_, T, R> {
    #[inline]
    fn deref_mut(&mut self) -> &mut T {
        &mut self.value
    }
}

impl<T: Send, R: Reset<T>> Drop for PooledRef<'_, T, R> {
    #[inline]
    fn drop(&mut self) {
        // SAFETY: `drop` runs once and nothing reads the field after it.
        let value = unsafe { ManuallyDrop::take(&mut self.value) };
        self.shared.give_back(value);
    }
}

impl<T: Send + fmt::Debug, R: Reset<T>> fmt::Debug for PooledRef<'_, T, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("PooledRef").field(&**self).finish()
    }
}
