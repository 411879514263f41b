//! [`BufferPool`]: tiers of `BytesMut`, with a one-buffer LIFO per thread and tier.

use std::fmt;
use std::ops::{Deref, DerefMut};

use crate::lease::{Handle, Lease, Lending};
use crate::tiers::{Core, Event, Lent, OwnLent, own_lent};
use crate::{PoolError, PoolStats};
use bytes::{Bytes, BytesMut};

/// One tier: buffers of exactly `size` bytes of capacity, at most `max_idle` kept idle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(deny_unknown_fields)
)]
pub struct TierConfig {
    size: usize,
    max_idle: usize,
}

impl TierConfig {
    /// A tier of buffers of `size` bytes keeping at most `max_idle` idle ones (both must be
    /// at least 1, checked by [`BufferPoolConfig::validate`]).
    pub const fn new(size: usize, max_idle: usize) -> Self {
        Self { size, max_idle }
    }

    /// Capacity of every buffer of the tier, in bytes.
    pub const fn size(&self) -> usize {
        self.size
    }

    /// Most idle buffers of the tier the pool keeps.
    pub const fn max_idle(&self) -> usize {
        self.max_idle
    }
}

/// Tiers and limits of a [`BufferPool`].
///
/// The default is 4 KiB x 64, 64 KiB x 16 and 1 MiB x 2 (a bound of 3.25 MiB held, all
/// filled lazily), with a per-thread cache and a 64 MiB `max_request` for
/// [`BufferPool::try_acquire`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(default, deny_unknown_fields)
)]
pub struct BufferPoolConfig {
    tiers: Vec<TierConfig>,
    max_request: usize,
    thread_cache: bool,
}

impl Default for BufferPoolConfig {
    fn default() -> Self {
        Self {
            tiers: vec![
                TierConfig {
                    size: 4 * 1024,
                    max_idle: 64,
                },
                TierConfig {
                    size: 64 * 1024,
                    max_idle: 16,
                },
                TierConfig {
                    size: 1024 * 1024,
                    max_idle: 2,
                },
            ],
            max_request: 64 * 1024 * 1024,
            thread_cache: true,
        }
    }
}

impl BufferPoolConfig {
    /// Tiers from `(size, max_idle)` pairs, smallest first; other settings as the default.
    pub fn with_tiers(tiers: impl IntoIterator<Item = (usize, usize)>) -> Self {
        Self {
            tiers: tiers
                .into_iter()
                .map(|(size, max_idle)| TierConfig { size, max_idle })
                .collect(),
            ..Self::default()
        }
    }

    /// Largest request [`BufferPool::try_acquire`] accepts, in bytes (default 64 MiB).
    #[must_use]
    pub fn with_max_request(mut self, bytes: usize) -> Self {
        self.max_request = bytes;
        self
    }

    /// Whether each thread keeps its last returned buffer of each tier (a one-deep LIFO in
    /// front of the FIFO queue, so the hottest buffer is reused). On by default.
    #[must_use]
    pub fn with_thread_cache(mut self, on: bool) -> Self {
        self.thread_cache = on;
        self
    }

    /// Largest request [`BufferPool::try_acquire`] accepts, in bytes.
    pub fn max_request(&self) -> usize {
        self.max_request
    }

    /// Whether each thread keeps its last returned buffer of each tier.
    pub fn thread_cache(&self) -> bool {
        self.thread_cache
    }

    /// The tiers.
    pub fn tiers(&self) -> &[TierConfig] {
        &self.tiers
    }

    /// Checks the tiers; returns the pool's bound in bytes.
    ///
    /// # Errors
    /// [`PoolError::NoTiers`], [`PoolError::ZeroSizedTier`], [`PoolError::ZeroCapacity`],
    /// [`PoolError::TiersNotIncreasing`], [`PoolError::BoundOverflow`].
    pub fn validate(&self) -> Result<usize, PoolError> {
        if self.tiers.is_empty() {
            return Err(PoolError::NoTiers);
        }
        let mut bound = 0usize;
        for (index, tier) in self.tiers.iter().enumerate() {
            if tier.size == 0 {
                return Err(PoolError::ZeroSizedTier { index });
            }
            if tier.max_idle == 0 {
                return Err(PoolError::ZeroCapacity { index });
            }
            if index > 0 && tier.size <= self.tiers[index - 1].size {
                return Err(PoolError::TiersNotIncreasing {
                    index,
                    previous: self.tiers[index - 1].size,
                    size: tier.size,
                });
            }
            bound = tier
                .size
                .checked_mul(tier.max_idle)
                .and_then(|b| b.checked_add(bound))
                .ok_or(PoolError::BoundOverflow)?;
        }
        Ok(bound)
    }
}

struct Shared {
    /// Buffer capacity of each tier, smallest first.
    sizes: Box<[usize]>,
    /// Buffers are pooled boxed: a guard and the caches move a pointer, never the
    /// `BytesMut` (moving it right after a write to its length stalls store forwarding).
    core: Core<BytesMut>,
    max_request: usize,
    bound: usize,
}

impl Lending for Shared {
    type Item = BytesMut;
    #[inline(always)]
    fn core(&self) -> &Core<BytesMut> {
        &self.core
    }
}

impl Shared {
    #[inline]
    fn tier_for(&self, min_len: usize) -> Option<usize> {
        self.sizes.iter().position(|&size| size >= min_len)
    }

    /// A buffer for `min_len` bytes and its tier (`None`: oversize plain allocation).
    #[inline]
    fn checkout(&self, min_len: usize) -> (Box<BytesMut>, Option<usize>) {
        if let Some(t) = self.tier_for(min_len)
            && let Some((buf, _)) = self.core.take_hot(t)
        {
            return (buf, Some(t));
        }
        self.checkout_slow(min_len)
    }

    /// As [`checkout`](Self::checkout), and counts an owned guard on this thread's record
    /// (`None`: there is no record, the caller takes a strong count instead).
    #[inline]
    fn checkout_lent(&self, min_len: usize) -> (Box<BytesMut>, Option<usize>, Option<&Lent>) {
        if let Some(t) = self.tier_for(min_len)
            && let Some((buf, l)) = self.core.take_hot(t)
        {
            return (buf, Some(t), Some(self.core.lend(&l)));
        }
        let (buf, t) = self.checkout_slow(min_len);
        (buf, t, self.core.local().map(|l| self.core.lend(&l)))
    }

    #[cold]
    #[inline(never)]
    fn checkout_slow(&self, min_len: usize) -> (Box<BytesMut>, Option<usize>) {
        let local = self.core.local();
        let local = local.as_ref();
        match self.tier_for(min_len) {
            Some(t) => match self.core.take(t, local) {
                Some(buf) => {
                    self.core.count(local, Event::Hit);
                    (buf, Some(t))
                }
                None => {
                    self.core.count(local, Event::Miss);
                    (Box::new(BytesMut::with_capacity(self.sizes[t])), Some(t))
                }
            },
            None => {
                self.core.count(local, Event::Oversize);
                (Box::new(BytesMut::with_capacity(min_len)), None)
            }
        }
    }

    /// Returns `buf` to tier `t`, and this thread's record for an owned guard's give-back
    /// (none without one). Runs no user code, so it does not unwind.
    #[inline]
    fn give_back(&self, t: usize, mut buf: Box<BytesMut>) -> OwnLent {
        buf.clear();
        if buf.capacity() == self.sizes[t]
            && let Some(l) = self.core.hinted()
        {
            match self.core.put_hot(&l, t, buf) {
                Ok(()) => return own_lent(&l),
                Err(back) => buf = back,
            }
        }
        self.give_back_slow(t, buf)
    }

    #[cold]
    #[inline(never)]
    fn give_back_slow(&self, t: usize, mut buf: Box<BytesMut>) -> OwnLent {
        let local = self.core.local();
        let mine = local.as_ref().map_or(OwnLent::NONE, own_lent);
        let local = local.as_ref();
        if buf.capacity() != self.sizes[t] && !self.restore(t, &mut buf) {
            // Grown past the tier, or split while the other part is alive: not ours to keep.
            self.core.count(local, Event::Reshaped);
            self.core.count(local, Event::Discard);
            return mine;
        }
        match self.core.put(t, local, buf) {
            Ok(()) => self.core.count(local, Event::Return),
            Err(dropped) => {
                drop(dropped);
                self.core.count(local, Event::Discard);
            }
        }
        mine
    }
}

impl Shared {
    /// Gives a split buffer its whole allocation back, if every split-off part is gone
    /// and the allocation is the tier's; true when `buf` has the tier's capacity again.
    #[cold]
    fn restore(&self, t: usize, buf: &mut BytesMut) -> bool {
        let size = self.sizes[t];
        buf.capacity() < size && buf.try_reclaim(size) && buf.capacity() == size
    }
}

/// The owner of the bytes of a frozen [`PooledBuffer`]: returns the buffer to its pool when
/// the last `Bytes` clone drops.
struct Frozen(PooledBuffer);

impl AsRef<[u8]> for Frozen {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

/// A pool of `BytesMut` buffers in size tiers.
///
/// [`acquire(n)`](Self::acquire) hands out a buffer from the smallest tier whose size is at
/// least `n` (capacity exactly the tier size, length 0); dropping the [`PooledBuffer`] clears
/// it and returns it, unless its tier is full or its capacity changed (it grew, or was
/// split and the split-off part still lives: counted in [`PoolStats::reshaped`]), in which
/// case it is dropped. [`PooledBuffer::into_bytes`] turns a buffer into a zero-copy
/// `Bytes` body that returns it when the last clone drops. A request above the largest tier is a plain
/// allocation, counted in [`PoolStats::oversize`] and never pooled.
///
/// Tiers fill lazily: the pool allocates no buffer until asked. The buffers held idle never
/// exceed each tier's `max_idle` (so never the config's bound, 3.25 MiB by default).
///
/// Each thread keeps its last returned buffer of each tier in a one-buffer cache and gets it
/// back first: the shared queue is FIFO and would hand out the coldest buffer. Up to half a
/// tier's places can be thread caches (the rest stay for the queue). Cached buffers count in
/// `held` and in the bound. Another thread never takes from a live thread's cache (that is
/// what keeps the owner's hit free of atomic read-modify-writes): [`trim`](Self::trim)
/// releases the queues, the calling thread's cache and the caches of exited threads at
/// once, and every other thread drops its cached buffer at its next operation on the pool.
/// The cache of a thread that has exited goes to the next thread that misses on that tier,
/// or to the next thread given the same thread id. A guard dropped during thread-local
/// destruction (kept in a `thread_local!`) goes to the shared queue, or is counted as a
/// discard when the tier is full; it never panics. See `docs/mm-pool.md`.
///
/// ```
/// use mm_pool::BufferPool;
///
/// let pool = BufferPool::new(Default::default())?;
/// for _ in 0..100 {
///     let mut buf = pool.acquire(1500);
///     buf.extend_from_slice(b"data: {\"token\":\"hi\"}\n\n");
///     assert_eq!(buf.capacity(), 4096);
/// }
/// let stats = pool.stats();
/// assert_eq!((stats.misses, stats.hits), (1, 99));
/// assert!(stats.held_bytes <= stats.bound_bytes);
/// # Ok::<(), mm_pool::PoolError>(())
/// ```
///
/// A pool's main win is bounded, predictable memory; a round trip on one thread is also
/// faster than a fresh allocation here (see `docs/benchmarks.md`).
#[derive(Clone)]
pub struct BufferPool {
    /// Owned guards keep the state alive through `src/lease.rs`.
    shared: Handle<Shared>,
}

impl BufferPool {
    /// Builds the pool; allocates the queues' slots, no buffer.
    ///
    /// # Errors
    /// Whatever [`BufferPoolConfig::validate`] reports.
    pub fn new(config: BufferPoolConfig) -> Result<Self, PoolError> {
        let bound = config.validate()?;
        Ok(Self {
            shared: Handle::new(Shared {
                sizes: config.tiers.iter().map(|t| t.size).collect(),
                core: Core::new(config.tiers.iter().map(|t| t.max_idle), config.thread_cache),
                max_request: config.max_request,
                bound,
            }),
        })
    }

    /// A buffer with `capacity() >= min_len` and `len() == 0`.
    ///
    /// Cost at steady state: a thread-local lookup and a take from this thread's cache
    /// (plain loads and stores on the thread's own record, no atomic read-modify-write);
    /// from the shared queue, a pop and a place update. The guard is counted on this
    /// thread's record (a plain increment), not on a reference count shared by all
    /// threads: given back on this thread it makes plain stores, on another one
    /// read-modify-write of a counter on that record's own cache line (as for
    /// [`ObjectPool::acquire`](crate::ObjectPool::acquire); dropping the last handle of a
    /// pool whose owned guards were used runs a process-wide memory barrier,
    /// `docs/mm-pool.md`).
    /// A miss allocates the tier size; an oversize request allocates `min_len` bytes: use
    /// [`try_acquire`](Self::try_acquire) when `min_len` comes from untrusted input.
    #[inline]
    pub fn acquire(&self, min_len: usize) -> PooledBuffer {
        let (buf, tier, lent) = self.shared.state().checkout_lent(min_len);
        PooledBuffer {
            buf: Some(buf),
            tier,
            // No record (thread-local destruction): the lease takes a strong count.
            lease: self.shared.lease(lent),
        }
    }

    /// As [`acquire`](Self::acquire), with a guard that borrows the pool instead of holding
    /// an `Arc` to it: no reference-count traffic, which two threads sharing a pool would
    /// otherwise bounce between their caches on every acquire and return. Use it where the
    /// buffer does not outlive the pool handle (a request handler, a scoped thread).
    #[inline]
    pub fn acquire_ref(&self, min_len: usize) -> BufferRef<'_> {
        let (buf, tier) = self.shared.state().checkout(min_len);
        BufferRef {
            buf: Some(buf),
            tier,
            pool: self.shared.state(),
        }
    }

    /// As [`acquire`](Self::acquire), refusing requests above the configured `max_request`.
    ///
    /// # Errors
    /// [`PoolError::TooLarge`].
    pub fn try_acquire(&self, min_len: usize) -> Result<PooledBuffer, PoolError> {
        let max = self.shared.state().max_request;
        if min_len > max {
            return Err(PoolError::TooLarge {
                requested: min_len,
                max,
            });
        }
        Ok(self.acquire(min_len))
    }

    /// Drops the idle buffers this thread can reach now (the queues, its own cache, the
    /// caches of exited threads) and returns the bytes released; every other live thread
    /// drops its cached buffer at its next operation on this pool. The memory-pressure
    /// handler calls this. Buffers in use are untouched.
    pub fn trim(&self) -> usize {
        let shared = self.shared.state();
        let mut bytes = 0;
        shared.core.trim(&mut |t| bytes += shared.sizes[t]);
        bytes
    }

    /// Counters summed over threads, and what is held now. O(threads x tiers).
    pub fn stats(&self) -> PoolStats {
        let shared = self.shared.state();
        let mut stats = shared.core.counts();
        for (t, &size) in shared.sizes.iter().enumerate() {
            let held = shared.core.held(t);
            stats.held += held as u64;
            stats.held_bytes += (held * size) as u64;
        }
        stats.bound_bytes = shared.bound as u64;
        stats
    }

    /// Idle buffers per tier right now (queue plus thread caches), smallest tier first.
    pub fn held_per_tier(&self) -> Vec<usize> {
        (0..self.shared.state().sizes.len())
            .map(|t| self.shared.state().core.held(t))
            .collect()
    }

    /// The tier sizes, smallest first.
    pub fn tier_sizes(&self) -> Vec<usize> {
        self.shared.state().sizes.to_vec()
    }
}

impl fmt::Debug for BufferPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BufferPool")
            .field("tiers", &self.tier_sizes())
            .field("thread_cache", &self.shared.state().core.thread_cache())
            .field("stats", &self.stats())
            .finish()
    }
}

/// A buffer checked out of a [`BufferPool`]; derefs to `BytesMut`, returns on drop.
///
/// `Send`: it may be dropped on another thread (it then lands in that thread's cache). It
/// holds the pool's shared state, so it may outlive every `BufferPool` handle.
pub struct PooledBuffer {
    /// `Some` until drop or `detach`.
    buf: Option<Box<BytesMut>>,
    /// `None` for an oversize buffer, or after `detach`.
    tier: Option<usize>,
    /// The pool's state, kept alive until the guard ends.
    lease: Lease<Shared>,
}

impl PooledBuffer {
    /// Keeps the buffer; it will not return to the pool.
    pub fn detach(mut self) -> BytesMut {
        self.tier = None;
        match self.buf.take() {
            Some(b) => *b,
            None => unreachable!("a buffer guard holds its buffer until drop"),
        }
    }

    /// Whether the buffer came from a tier (false for an oversize plain allocation).
    pub fn is_pooled(&self) -> bool {
        self.tier.is_some()
    }

    /// Freezes the filled bytes into [`Bytes`] without copying; the buffer goes back to the
    /// pool when the last clone (or slice) of the `Bytes` is dropped, on whatever thread.
    /// Use it for a response body. (Freezing through `BytesMut` instead, as
    /// `buf.split().freeze()`, keeps the bytes but loses the buffer to the pool while they
    /// live: see [`PoolStats::reshaped`].) Costs one small allocation (the owner's
    /// reference count, in `bytes`).
    ///
    /// ```
    /// let pool = mm_pool::BufferPool::new(Default::default())?;
    /// let mut buf = pool.acquire(100);
    /// buf.extend_from_slice(b"data: hi\n\n");
    /// let body = buf.into_bytes();
    /// let part = body.slice(6..8);
    /// drop(body);
    /// assert_eq!(&part[..], b"hi");
    /// assert_eq!(pool.stats().returns, 0, "still in use by `part`");
    /// drop(part);
    /// assert_eq!(pool.stats().returns, 1);
    /// # Ok::<(), mm_pool::PoolError>(())
    /// ```
    pub fn into_bytes(self) -> Bytes {
        Bytes::from_owner(Frozen(self))
    }
}

impl From<PooledBuffer> for Bytes {
    /// As [`PooledBuffer::into_bytes`].
    fn from(buf: PooledBuffer) -> Bytes {
        buf.into_bytes()
    }
}

impl Deref for PooledBuffer {
    type Target = BytesMut;
    #[inline]
    fn deref(&self) -> &BytesMut {
        match &self.buf {
            Some(b) => b,
            None => unreachable!("a buffer guard holds its buffer until drop"),
        }
    }
}

impl DerefMut for PooledBuffer {
    #[inline]
    fn deref_mut(&mut self) -> &mut BytesMut {
        match &mut self.buf {
            Some(b) => b,
            None => unreachable!("a buffer guard holds its buffer until drop"),
        }
    }
}

impl Drop for PooledBuffer {
    #[inline]
    fn drop(&mut self) {
        let mine = match (self.tier, self.buf.take()) {
            (Some(t), Some(buf)) => self.lease.state().give_back(t, buf),
            // Oversize or detached: the buffer (if any) is dropped with the guard.
            _ => OwnLent::NONE,
        };
        // SAFETY: `drop` runs once, and this is the guard's last use of the pool (the
        // give-back above does not unwind: it runs no user code).
        unsafe { self.lease.release(mine) };
    }
}

impl fmt::Debug for PooledBuffer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PooledBuffer")
            .field("len", &self.len())
            .field("capacity", &self.capacity())
            .field("tier", &self.tier)
            .finish()
    }
}

/// A buffer checked out with [`BufferPool::acquire_ref`]: like [`PooledBuffer`], but it
/// borrows the pool, so it cannot outlive the `BufferPool` handle it came from.
pub struct BufferRef<'a> {
    buf: Option<Box<BytesMut>>,
    tier: Option<usize>,
    pool: &'a Shared,
}

impl BufferRef<'_> {
    /// Keeps the buffer; it will not return to the pool.
    pub fn detach(mut self) -> BytesMut {
        self.tier = None;
        match self.buf.take() {
            Some(b) => *b,
            None => unreachable!("a buffer guard holds its buffer until drop"),
        }
    }

    /// Whether the buffer came from a tier (false for an oversize plain allocation).
    pub fn is_pooled(&self) -> bool {
        self.tier.is_some()
    }
}

impl Deref for BufferRef<'_> {
    type Target = BytesMut;
    #[inline]
    fn deref(&self) -> &BytesMut {
        match &self.buf {
            Some(b) => b,
            None => unreachable!("a buffer guard holds its buffer until drop"),
        }
    }
}

impl DerefMut for BufferRef<'_> {
    #[inline]
    fn deref_mut(&mut self) -> &mut BytesMut {
        match &mut self.buf {
            Some(b) => b,
            None => unreachable!("a buffer guard holds its buffer until drop"),
        }
    }
}

impl Drop for BufferRef<'_> {
    fn drop(&mut self) {
        if let (Some(t), Some(buf)) = (self.tier, self.buf.take()) {
            self.pool.give_back(t, buf);
        }
    }
}

impl fmt::Debug for BufferRef<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BufferRef")
            .field("len", &self.len())
            .field("capacity", &self.capacity())
            .field("tier", &self.tier)
            .finish()
    }
}
