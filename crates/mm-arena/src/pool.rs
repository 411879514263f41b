//! [`ArenaPool`]: warm [`RequestArena`]s handed out as `Send + 'static` guards, for async
//! request handlers that allocate, await, and allocate again.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use crate::{Arena, ArenaConfig, ArenaError, ArenaStats, RequestArena};

/// A pool of request arenas. Cloning is cheap (an `Arc`); clones share the arenas.
///
/// [`get`](Self::get) hands out a [`PooledArena`]: an idle arena when there is one (warm: its
/// retained chunk is reused, so a request that fits makes no heap allocation), a new one
/// otherwise. Dropping the guard resets the arena and puts it back, up to `max_idle` idle
/// arenas; past that it is freed. The pool never holds more than `max_idle` arenas, each of
/// which keeps at most one chunk (its largest, after the reset).
///
/// Taking and returning an arena lock a mutex for a push or a pop on a vector preallocated
/// to `max_idle`; the lock is never held while allocating or resetting.
///
/// ```
/// use mm_arena::{ArenaConfig, ArenaPool};
///
/// let pool = ArenaPool::new(ArenaConfig::new().with_initial_capacity(64 * 1024), 8)?;
/// for _ in 0..3 {
///     let arena = pool.get()?; // `Send + 'static`: may be held across an `.await`
///     let prompt = arena.alloc_str("system: be brief")?;
///     assert_eq!(prompt.len(), 16);
/// } // reset and back to the pool here
/// assert_eq!(pool.stats().warm_gets, 2);
/// # Ok::<(), mm_arena::ArenaError>(())
/// ```
#[derive(Clone)]
pub struct ArenaPool {
    inner: Arc<Shared>,
}

struct Shared {
    config: ArenaConfig,
    max_idle: usize,
    idle: Mutex<Vec<RequestArena>>,
    gets: AtomicU64,
    warm_gets: AtomicU64,
    returns: AtomicU64,
    discards: AtomicU64,
    idle_bytes: AtomicU64,
}

/// Figures of an [`ArenaPool`] since it was built.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct ArenaPoolStats {
    /// Guards handed out.
    pub gets: u64,
    /// Of those, served by an idle arena (the rest built a new one).
    pub warm_gets: u64,
    /// Guards whose arena went back to the pool.
    pub returns: u64,
    /// Guards whose arena was freed because `max_idle` arenas were already idle.
    pub discards: u64,
    /// Arenas idle in the pool now.
    pub idle: usize,
    /// Bytes of chunks the idle arenas hold.
    pub idle_bytes: u64,
}

impl ArenaPool {
    /// A pool of arenas built with `config`, keeping up to `max_idle` idle ones. Allocates the
    /// idle list now and no arena until the first [`get`](Self::get).
    ///
    /// # Errors
    /// [`ArenaError::ZeroMaxIdle`] for `max_idle` of 0, and the errors of
    /// [`ArenaConfig::validate`].
    pub fn new(config: ArenaConfig, max_idle: usize) -> Result<Self, ArenaError> {
        config.validate()?;
        if max_idle == 0 {
            return Err(ArenaError::ZeroMaxIdle);
        }
        Ok(Self {
            inner: Arc::new(Shared {
                config,
                max_idle,
                idle: Mutex::new(Vec::with_capacity(max_idle)),
                gets: AtomicU64::new(0),
                warm_gets: AtomicU64::new(0),
                returns: AtomicU64::new(0),
                discards: AtomicU64::new(0),
                idle_bytes: AtomicU64::new(0),
            }),
        })
    }

    /// An arena from the pool (warm) or a new one.
    ///
    /// # Errors
    /// [`ArenaError::OutOfMemory`] when a new arena's initial capacity cannot be allocated.
    pub fn get(&self) -> Result<PooledArena, ArenaError> {
        self.inner.gets.fetch_add(1, Ordering::Relaxed);
        let warm = self.inner.lock().pop();
        let arena = match warm {
            Some(arena) => {
                self.inner.warm_gets.fetch_add(1, Ordering::Relaxed);
                self.inner
                    .idle_bytes
                    .fetch_sub(arena.stats().retained_bytes, Ordering::Relaxed);
                arena
            }
            None => RequestArena::new(self.inner.config)?,
        };
        Ok(PooledArena {
            arena: Some(arena),
            pool: Arc::clone(&self.inner),
        })
    }

    /// Frees every idle arena (a memory-pressure handler calls this); returns the bytes of
    /// chunks released. Guards in use are not affected.
    pub fn trim(&self) -> u64 {
        let drained: Vec<RequestArena> = std::mem::take(&mut *self.inner.lock());
        let bytes: u64 = drained.iter().map(|a| a.stats().retained_bytes).sum();
        self.inner.idle_bytes.fetch_sub(bytes, Ordering::Relaxed);
        drop(drained);
        // Give the idle list its capacity back, so later returns do not allocate.
        self.inner.lock().reserve_exact(self.inner.max_idle);
        bytes
    }

    /// Current figures.
    pub fn stats(&self) -> ArenaPoolStats {
        let idle = self.inner.lock().len();
        ArenaPoolStats {
            gets: self.inner.gets.load(Ordering::Relaxed),
            warm_gets: self.inner.warm_gets.load(Ordering::Relaxed),
            returns: self.inner.returns.load(Ordering::Relaxed),
            discards: self.inner.discards.load(Ordering::Relaxed),
            idle,
            idle_bytes: self.inner.idle_bytes.load(Ordering::Relaxed),
        }
    }

    /// The configuration each arena is built with.
    pub fn config(&self) -> ArenaConfig {
        self.inner.config
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Vec<RequestArena>> {
        // The list is consistent after any panic (a push or a pop), so poisoning is ignored.
        self.idle.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn give_back(&self, mut arena: RequestArena) {
        arena.reset();
        let bytes = arena.stats().retained_bytes;
        let mut idle = self.lock();
        if idle.len() < self.max_idle {
            idle.push(arena);
            drop(idle);
            self.idle_bytes.fetch_add(bytes, Ordering::Relaxed);
            self.returns.fetch_add(1, Ordering::Relaxed);
        } else {
            drop(idle);
            self.discards.fetch_add(1, Ordering::Relaxed);
            drop(arena);
        }
    }
}

impl fmt::Debug for ArenaPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ArenaPool")
            .field("max_idle", &self.inner.max_idle)
            .field("stats", &self.stats())
            .finish()
    }
}

/// A request arena on loan from an [`ArenaPool`]: `Send + 'static`, reset and returned when
/// dropped.
///
/// The allocation methods are on the guard itself and take `&self`, so an async handler can
/// allocate, `.await`, and allocate again while its future stays `Send`: nothing `!Send` is
/// held across the await (an [`Arena`] handle, by contrast, holds a `&Bump`, which is not
/// `Send`). References it returns borrow the guard, so none outlives the reset.
///
/// ```
/// # let pool = mm_arena::ArenaPool::new(mm_arena::ArenaConfig::new(), 4)?;
/// fn assert_send<F: std::future::Future + Send>(f: F) -> F { f }
/// let arena = pool.get()?;
/// let handler = assert_send(async move {
///     let name = arena.alloc_str("user-42")?;
///     std::future::ready(()).await; // any await point
///     let ids = arena.alloc_slice_copy(&[1u32, 2, 3])?;
///     Ok::<_, mm_arena::ArenaError>(name.len() + ids.len())
/// });
/// # drop(handler);
/// # Ok::<(), mm_arena::ArenaError>(())
/// ```
///
/// Like [`Arena::alloc`], it refuses values with a destructor at compile time.
pub struct PooledArena {
    /// `Some` until dropped.
    arena: Option<RequestArena>,
    pool: Arc<Shared>,
}

impl PooledArena {
    fn inner(&self) -> &RequestArena {
        // `arena` is only taken in `drop`.
        self.arena
            .as_ref()
            .unwrap_or_else(|| unreachable!("a PooledArena's arena is taken only on drop"))
    }

    /// The allocation handle, for synchronous code; do not hold it across an `.await` (it is
    /// not `Send`), call the guard's own methods there.
    #[inline]
    pub fn arena(&self) -> Arena<'_> {
        self.inner().arena()
    }

    /// As [`Arena::alloc`].
    ///
    /// # Errors
    /// As [`Arena::alloc`].
    #[inline]
    pub fn alloc<T>(&self, val: T) -> Result<&mut T, ArenaError> {
        self.arena().alloc(val)
    }

    /// As [`Arena::alloc_str`].
    ///
    /// # Errors
    /// As [`Arena::alloc`].
    #[inline]
    pub fn alloc_str(&self, s: &str) -> Result<&mut str, ArenaError> {
        self.arena().alloc_str(s)
    }

    /// As [`Arena::alloc_slice_copy`].
    ///
    /// # Errors
    /// As [`Arena::alloc`].
    #[inline]
    pub fn alloc_slice_copy<T: Copy>(&self, src: &[T]) -> Result<&mut [T], ArenaError> {
        self.arena().alloc_slice_copy(src)
    }

    /// As [`Arena::alloc_slice_fill_copy`].
    ///
    /// # Errors
    /// As [`Arena::alloc_slice_fill_copy`].
    #[inline]
    pub fn alloc_slice_fill_copy<T: Copy>(
        &self,
        len: usize,
        value: T,
    ) -> Result<&mut [T], ArenaError> {
        self.arena().alloc_slice_fill_copy(len, value)
    }

    /// As [`Arena::vec_with_capacity`].
    ///
    /// # Errors
    /// As [`Arena::vec_with_capacity`].
    #[inline]
    pub fn vec_with_capacity<T>(
        &self,
        capacity: usize,
    ) -> Result<bumpalo::collections::Vec<'_, T>, ArenaError> {
        self.arena().vec_with_capacity(capacity)
    }

    /// As [`Arena::string_with_capacity`].
    ///
    /// # Errors
    /// As [`Arena::string_with_capacity`].
    #[inline]
    pub fn string_with_capacity(
        &self,
        capacity: usize,
    ) -> Result<bumpalo::collections::String<'_>, ArenaError> {
        self.arena().string_with_capacity(capacity)
    }

    /// Frees this request's allocations now, keeping the arena (and its chunk) on loan.
    pub fn reset(&mut self) {
        if let Some(arena) = self.arena.as_mut() {
            arena.reset();
        }
    }

    /// Figures of the arena on loan (high-water mark and resets accumulate over its life in
    /// the pool).
    pub fn stats(&self) -> ArenaStats {
        self.inner().stats()
    }
}

impl Drop for PooledArena {
    fn drop(&mut self) {
        if let Some(arena) = self.arena.take() {
            self.pool.give_back(arena);
        }
    }
}

impl fmt::Debug for PooledArena {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PooledArena")
            .field("stats", &self.stats())
            .finish()
    }
}
