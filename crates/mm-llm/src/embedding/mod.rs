//! A concurrent, byte-bounded cache of embedding vectors: window TinyLFU admission, single
//! flight, time to live and idle, an eviction listener, budget charging.
//!
//! The parts, one file each: `sketch.rs` (the frequency sketch), `policy.rs` (window TinyLFU
//! lists and expiry lists of one shard), `storage.rs` (slot blocks and the `Embedding`
//! handle, all the `unsafe`), `flight.rs` (single flight), `shard.rs` (one shard's index,
//! records and accounting), `config.rs` (configuration, clock, causes, statistics). This file
//! holds the cache type and its public methods; `IMPLEMENTATION.md` next to it explains the
//! concurrency.

mod component;
mod config;
mod flight;
mod ghosts;
mod key;
mod policy;
mod shard;
mod sketch;
mod storage;

use std::fmt;
use std::future::Future;
use std::hash::BuildHasher;
use std::sync::Arc;

use crossbeam_utils::CachePadded;
use mm_budget::MemoryBudget;

pub use config::{
    Clock, EmbeddingCacheConfig, EmbeddingStats, EvictionCounts, EvictionNotice, ManualClock,
    MonotonicClock, RemovalCause,
};
pub use key::EmbeddingKey;
pub use storage::Embedding;

use crate::LlmError;
use crate::names::Symbol;
use crate::sync::TextHasher;
use flight::{Flight, FlightWait};
use shard::{Lookup, Notes, Shard, ShardCell};

/// Bytes counted per entry on top of its vector: its record, its policy node and its index
/// slot, the index counted at half load (a test checks that these fit).
pub const ENTRY_OVERHEAD: u64 = 160;

/// Bytes one entry of `dims` dimensions counts against the bound.
fn entry_bytes(dims: usize) -> u64 {
    dims as u64 * 4 + ENTRY_OVERHEAD
}

type Listener = dyn Fn(&EvictionNotice) + Send + Sync;

/// A concurrent, byte- and entry-bounded cache of embedding vectors, shared by `&` (or in an
/// `Arc`): `Send + Sync`, every method takes `&self`.
///
/// **Layout.** Keys are spread over a power-of-two number of shards (one lock each, padded to
/// its own cache line); each shard owns its share of the bounds. In a shard, vectors live in
/// blocks of fixed-size slots per vector length (no allocation per entry, none at steady
/// state once full: an evicted slot is reused), entries are small records linked by `u32`
/// index, and a `HashMap` maps the key to its record. A hit returns an [`Embedding`] handle
/// that points into the slot and pins it (two atomic increments, no copy, no lock held);
/// a pinned slot is not reused until its handles drop.
///
/// **Policy.** Window TinyLFU (the scheme of Caffeine; moka has its TinyLFU half): a new
/// entry enters a small window and, pushed out of it, is admitted to the main space only if a
/// frequency sketch counts it at least 2 above the entry it would evict; main is a segmented
/// LRU (probation and an 80% protected part). One-time keys (a scan, a re-index) pass through
/// the window without flushing the keys that come back. The window starts at 1% of the
/// bounds and is resized by ghost hits: a miss on a key the window recently let go grows it, a
/// miss on a key the main space let go shrinks it (faster), so a workload where recency
/// matters gets a larger one. Hits in the window and protected
/// lists set a flag (a CLOCK-style second chance at the list end) instead of moving the entry,
/// so a hit on a hot entry writes little. Time to live and time to idle are checked on every
/// lookup and swept on inserts (and by [`evict_expired`](Self::evict_expired)), from lists
/// ordered by time.
///
/// **Bounds.** At most `max_entries` entries and `max_bytes` bytes, each entry counting
/// `4 * dims +` [`ENTRY_OVERHEAD`]; each shard keeps to `1/shards` of both, so one vector may
/// be at most `max_bytes / shards`. With a [`MemoryBudget`], each shard holds one
/// `Reservation` equal to its counted bytes; when the budget refuses, the shard evicts
/// (cause [`RemovalCause::Pressure`]) and retries, and fails only once it is empty.
///
/// **Single flight.** [`get_with`](Self::get_with) and friends compute a missing vector once
/// however many callers ask for it at the same time: the others wait (blocking, or as a
/// future without any runtime) and share the result. A failed or dropped computation is not
/// cached and not handed to the waiters: they start over and one of them computes.
///
/// **Listener.** [`with_listener`](Self::with_listener) is told each entry that leaves and
/// why ([`RemovalCause`]). It runs on the thread that caused the removal, after the shard
/// lock is released, so it may use the cache.
///
/// What it does not do: it does not compress vectors (no f16 or int8 quantisation); it does
/// not compact storage (a slot freed by eviction is reused by the next vector of that length;
/// [`evict_fraction`](Self::evict_fraction) and [`clear`](Self::clear) return wholly unused
/// blocks to the allocator); it does not check for hash collisions (see [`EmbeddingKey`]).
///
/// # Invariants
/// Per shard, under its lock (checked by the test-only `check_invariants` after mutations):
/// 1. every key in the index has one record, one policy node on exactly one of the window,
///    probation and protected lists (and on each configured time list, in time order), and
///    one slot of its vector length; a slot is never both in use and free;
/// 2. the counted bytes are the sum of the entries' `entry_bytes` and stay within the
///    shard's share of `max_bytes`, the entries within its share of `max_entries` (so the
///    totals stay within the bounds);
/// 3. with a budget, the shard's reservation holds exactly its counted bytes;
/// 4. a slot is written only while free and unpinned; evicted slots still pinned by handles
///    wait on a deferred list;
/// 5. at most one flight per key is registered, and only while its leader computes;
/// 6. when a shard's lock is released, its mirror (atomics read by
///    [`reading`](Self::reading) without a lock) holds its counted bytes, entries and counters.
///
/// With a [`MemoryManager`](memory_manager::MemoryManager), build it with
/// [`from_manager`](Self::from_manager): charged to the manager's budget, reported, and
/// relieved under pressure ([`relieve_pressure`](Self::relieve_pressure)).
///
/// ```
/// use mm_llm::{EmbeddingCache, EmbeddingCacheConfig, Interner};
/// let names = Interner::new();
/// let model = names.get_or_intern("nomic-embed-text");
/// let cache = EmbeddingCache::new(EmbeddingCacheConfig::new().with_max_entries(1_000), None)?;
/// let key = cache.key(model, "hello world");
/// assert!(cache.get(&key).is_none());
/// // One computation per missing key, however many threads ask at once.
/// let v = cache.get_with(key, || vec![0.1, 0.2, 0.3])?;
/// assert_eq!(*v, [0.1, 0.2, 0.3]);
/// assert_eq!(cache.get(&key).as_deref(), Some(&[0.1, 0.2, 0.3][..]));
/// assert_eq!(cache.stats().hits, 1);
/// # Ok::<(), mm_llm::LlmError>(())
/// ```
pub struct EmbeddingCache {
    shards: Box<[CachePadded<ShardCell>]>,
    /// Bytes of every shard's policy tables (sketch, ghost table) once allocated.
    tables_bound: u64,
    /// `64 - log2(shards)`: the shard is the top bits of the key's mixed hash.
    shift: u32,
    config: EmbeddingCacheConfig,
    hasher: TextHasher,
    budget: Option<MemoryBudget>,
    clock: Arc<dyn Clock>,
    /// Whether a time to live or idle is set (the clock is read only then).
    expiry: bool,
    listener: Option<Arc<Listener>>,
}

impl fmt::Debug for EmbeddingCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EmbeddingCache")
            .field("config", &self.config)
            .field("shards", &self.shards.len())
            .field("budget", &self.budget)
            .field("clock", &self.clock)
            .field("listener", &self.listener.is_some())
            .finish()
    }
}

impl EmbeddingCache {
    /// An empty cache; allocates its shard table only (vectors, index and sketch come with
    /// the first inserts). With a `budget`, the bytes counted against the bound are also
    /// charged to it.
    ///
    /// # Errors
    /// [`LlmError::InvalidConfig`] when `config` does not
    /// [`validate`](EmbeddingCacheConfig::validate).
    pub fn new(
        config: EmbeddingCacheConfig,
        budget: Option<MemoryBudget>,
    ) -> Result<Self, LlmError> {
        config.validate()?;
        let n = config.shard_count();
        let nanos = |d: std::time::Duration| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        let (ttl, tti) = (
            config.time_to_live().map(nanos),
            config.time_to_idle().map(nanos),
        );
        let (entries, bytes) = (config.max_entries(), config.max_bytes());
        let shard_entries = |i: usize| entries / n + usize::from(i < entries % n);
        let tables_bound = (0..n)
            .map(|i| policy::Policy::table_bytes_for(shard_entries(i)))
            .sum();
        let shards = (0..n)
            .map(|i| {
                let e = shard_entries(i);
                let b = bytes / n as u64 + u64::from((i as u64) < bytes % n as u64);
                CachePadded::new(ShardCell::new(Shard::new(e, b, ttl, tti)))
            })
            .collect();
        Ok(Self {
            shards,
            tables_bound,
            shift: 64 - n.trailing_zeros(),
            config,
            hasher: TextHasher::default(),
            budget,
            clock: Arc::new(MonotonicClock::default()),
            expiry: ttl.is_some() || tti.is_some(),
            listener: None,
        })
    }

    /// Calls `listener` for every entry that leaves the cache, with the cause. It runs on the
    /// thread whose call removed the entry, after the shard lock is released.
    pub fn with_listener<F>(mut self, listener: F) -> Self
    where
        F: Fn(&EvictionNotice) + Send + Sync + 'static,
    {
        self.listener = Some(Arc::new(listener));
        self
    }

    /// Uses `clock` for expiry (a [`ManualClock`] in tests) instead of `Instant`.
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// The key for `text` under `model`. Hashes the text once (SipHash, about 1 GB/s).
    pub fn key(&self, model: Symbol, text: &str) -> EmbeddingKey {
        EmbeddingKey {
            model,
            text_hash: self.hasher.hash_one(text),
        }
    }

    /// The vector for `key`, marking it used. O(1); the handle pins the vector (no copy).
    pub fn get(&self, key: &EmbeddingKey) -> Option<Embedding> {
        self.with_shard(key, |s, now, notes| s.get(key, now, notes))
    }

    /// The vector for `key` without counting a lookup or touching recency.
    pub fn peek(&self, key: &EmbeddingKey) -> Option<Embedding> {
        let now = self.now();
        self.shard(key).lock().peek(key, now)
    }

    /// Whether a live (unexpired) entry is under `key`; no recency change.
    pub fn contains(&self, key: &EmbeddingKey) -> bool {
        let now = self.now();
        self.shard(key).lock().contains(key, now)
    }

    /// Stores a copy of `vector` under `key` (replacing an older vector). The entry starts in
    /// the admission window, so a `get` right after hits; whether it stays once the window
    /// moves on depends on how often its key is asked for. O(1) amortised plus the copy and
    /// the evictions.
    ///
    /// # Errors
    /// [`LlmError::EmbeddingTooLarge`] when one entry exceeds its shard's share of
    /// `max_bytes`; [`LlmError::InvalidConfig`] for an empty vector; [`LlmError::Budget`] when
    /// the budget refuses even with the shard emptied. On error the key is not cached (an
    /// older vector under it is gone too).
    pub fn insert(&self, key: EmbeddingKey, vector: &[f32]) -> Result<(), LlmError> {
        let budget = self.budget.as_ref();
        self.with_shard(&key, |s, now, notes| {
            s.insert(key, vector, now, budget, false, notes).map(drop)
        })
    }

    /// The vector for `key`, computing it with `init` on a miss: one computation per key at
    /// a time, other callers of the same key wait for it (blocking) and share its result.
    ///
    /// # Errors
    /// What [`insert`](Self::insert) returns for the computed vector (then waiters start
    /// over). A panic in `init` propagates to this caller; waiters start over.
    pub fn get_with<V, F>(&self, key: EmbeddingKey, init: F) -> Result<Embedding, LlmError>
    where
        V: AsRef<[f32]>,
        F: FnOnce() -> V,
    {
        self.try_get_with(key, || Ok::<V, LlmError>(init()))
    }

    /// [`get_with`](Self::get_with) for a fallible computation. An error is returned to this
    /// caller only: it is not cached, and callers waiting on this computation start over (one
    /// of them computes with its own `init`).
    ///
    /// # Errors
    /// `init`'s error, or the cache's (converted with `From<LlmError>`).
    pub fn try_get_with<V, E, F>(&self, key: EmbeddingKey, init: F) -> Result<Embedding, E>
    where
        V: AsRef<[f32]>,
        E: From<LlmError>,
        F: FnOnce() -> Result<V, E>,
    {
        let flight = loop {
            match self.with_shard(&key, |s, now, n| s.lookup_or_lead(&key, now, n)) {
                Lookup::Hit(hit) => return Ok(hit),
                Lookup::Wait(f) => {
                    if let Some(shared) = f.wait() {
                        return Ok(shared);
                    }
                }
                Lookup::Lead(f) => break f,
            }
        };
        let leader = Leader::new(self, key, flight);
        let value = init()?;
        leader.complete(value.as_ref()).map_err(E::from)
    }

    /// [`get_with`](Self::get_with) for an async computation; waiting callers are woken
    /// through their task's waker (no runtime is assumed). Dropping the future of the
    /// computing caller hands the computation to a waiter.
    ///
    /// # Errors
    /// As [`get_with`](Self::get_with).
    pub async fn get_with_async<V, F>(
        &self,
        key: EmbeddingKey,
        init: F,
    ) -> Result<Embedding, LlmError>
    where
        V: AsRef<[f32]>,
        F: Future<Output = V>,
    {
        self.try_get_with_async(key, async { Ok::<V, LlmError>(init.await) })
            .await
    }

    /// [`try_get_with`](Self::try_get_with) for an async computation.
    ///
    /// # Errors
    /// As [`try_get_with`](Self::try_get_with).
    pub async fn try_get_with_async<V, E, F>(
        &self,
        key: EmbeddingKey,
        init: F,
    ) -> Result<Embedding, E>
    where
        V: AsRef<[f32]>,
        E: From<LlmError>,
        F: Future<Output = Result<V, E>>,
    {
        let flight = loop {
            match self.with_shard(&key, |s, now, n| s.lookup_or_lead(&key, now, n)) {
                Lookup::Hit(hit) => return Ok(hit),
                Lookup::Wait(f) => {
                    if let Some(shared) = FlightWait(&f).await {
                        return Ok(shared);
                    }
                }
                Lookup::Lead(f) => break f,
            }
        };
        let leader = Leader::new(self, key, flight);
        let value = init.await?;
        leader.complete(value.as_ref()).map_err(E::from)
    }

    /// Removes `key` (listener cause [`RemovalCause::Explicit`]); returns whether it was
    /// cached.
    pub fn invalidate(&self, key: &EmbeddingKey) -> bool {
        self.with_shard(key, |s, _, notes| s.invalidate(key, notes))
    }

    /// Removes every entry (cause [`RemovalCause::Explicit`]); storage is kept for reuse.
    pub fn invalidate_all(&self) {
        for shard in self.shards.iter() {
            let mut notes = self.notes();
            shard.lock().invalidate_all(&mut notes);
            self.notify(notes);
        }
    }

    /// Evicts about `fraction` (0 to 1) of the entries of every shard, in eviction order
    /// (least valuable first; cause [`RemovalCause::Pressure`]), then returns wholly unused
    /// storage blocks to the allocator. The pressure hook: call it when memory runs short.
    /// Returns the entries evicted.
    pub fn evict_fraction(&self, fraction: f64) -> u64 {
        let fraction = if fraction.is_nan() {
            0.0
        } else {
            fraction.clamp(0.0, 1.0)
        };
        let mut evicted = 0;
        for shard in self.shards.iter() {
            let mut notes = self.notes();
            {
                let mut s = shard.lock();
                let count = (s.len() as f64 * fraction).ceil() as usize;
                evicted += s.evict(count, RemovalCause::Pressure, &mut notes) as u64;
                s.release_unused();
            }
            self.notify(notes);
        }
        tracing::info!(
            fraction,
            evicted,
            "embedding cache evicted a fraction of its entries"
        );
        evicted
    }

    /// Removes every expired entry now (lookups and inserts also do, as they meet them).
    /// Returns how many.
    pub fn evict_expired(&self) -> u64 {
        if !self.expiry {
            return 0;
        }
        let mut removed = 0;
        for shard in self.shards.iter() {
            let mut notes = self.notes();
            let now = self.now();
            removed += shard.lock().expire(now, &mut notes) as u64;
            self.notify(notes);
        }
        if removed > 0 {
            tracing::debug!(removed, "embedding cache removed expired entries");
        }
        removed
    }

    /// Drops every entry and all storage and bookkeeping, and releases the budget (handles
    /// still held keep their own vectors).
    pub fn clear(&self) {
        for shard in self.shards.iter() {
            let mut notes = self.notes();
            shard.lock().clear(&mut notes);
            self.notify(notes);
        }
    }

    /// Entries held.
    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| s.lock().len()).sum()
    }

    /// Whether the cache holds nothing.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes counted against the bound.
    pub fn bytes(&self) -> u64 {
        self.shards.iter().map(|s| s.lock().bytes()).sum()
    }

    /// The configuration.
    pub fn config(&self) -> EmbeddingCacheConfig {
        self.config
    }

    /// The budget charged, if any.
    pub fn budget(&self) -> Option<&MemoryBudget> {
        self.budget.as_ref()
    }

    /// Counters and sizes, summed over the shards.
    pub fn stats(&self) -> EmbeddingStats {
        let mut s = EmbeddingStats {
            max_bytes: self.config.max_bytes(),
            max_entries: self.config.max_entries() as u64,
            shards: self.shards.len() as u64,
            ..EmbeddingStats::default()
        };
        let mut evicted = [0; 5];
        for shard in self.shards.iter() {
            shard.lock().add_to(&mut s, &mut evicted);
        }
        s.evictions = EvictionCounts::from_array(evicted);
        s
    }

    fn shard(&self, key: &EmbeddingKey) -> &ShardCell {
        let i = key.mixed().checked_shr(self.shift).unwrap_or(0) as usize;
        &self.shards[i]
    }

    fn now(&self) -> u64 {
        if self.expiry {
            self.clock.now_nanos()
        } else {
            0
        }
    }

    fn notes(&self) -> Notes {
        Notes {
            on: self.listener.is_some(),
            list: Vec::new(),
        }
    }

    /// Runs `f` on `key`'s shard under its lock, then tells the listener what left.
    fn with_shard<R>(
        &self,
        key: &EmbeddingKey,
        f: impl FnOnce(&mut Shard, u64, &mut Notes) -> R,
    ) -> R {
        let mut notes = self.notes();
        let now = self.now();
        let r = f(&mut self.shard(key).lock(), now, &mut notes);
        self.notify(notes);
        r
    }

    fn notify(&self, notes: Notes) {
        if let Some(listener) = &self.listener {
            notes.list.iter().for_each(|n| listener(n));
        }
    }

    /// Checks the invariants of every shard (see the type's docs).
    #[cfg(test)]
    fn check_invariants(&self) {
        for shard in self.shards.iter() {
            shard.lock().check_invariants();
        }
        let s = self.stats();
        assert!(s.bytes <= s.max_bytes && s.entries <= s.max_entries);
    }
}

/// The caller computing a key: finishes its flight, or abandons it when dropped early.
struct Leader<'a> {
    cache: &'a EmbeddingCache,
    key: EmbeddingKey,
    flight: Arc<Flight>,
    done: bool,
}

impl<'a> Leader<'a> {
    fn new(cache: &'a EmbeddingCache, key: EmbeddingKey, flight: Arc<Flight>) -> Self {
        Self {
            cache,
            key,
            flight,
            done: false,
        }
    }

    /// Caches `vector`, unregisters the flight and hands the result to the waiters.
    fn complete(mut self, vector: &[f32]) -> Result<Embedding, LlmError> {
        let key = self.key;
        let budget = self.cache.budget.as_ref();
        let result = self.cache.with_shard(&key, |s, now, notes| {
            let r = s.insert(key, vector, now, budget, true, notes);
            s.end_flight(&key);
            r
        });
        self.done = true;
        match result {
            Ok(handle) => {
                let handle = handle.unwrap_or_else(|| Embedding::owned(vector));
                self.flight.finish(Some(handle.clone()));
                Ok(handle)
            }
            Err(e) => {
                self.flight.finish(None);
                Err(e)
            }
        }
    }
}

impl Drop for Leader<'_> {
    fn drop(&mut self) {
        if !self.done {
            let key = self.key;
            self.cache.with_shard(&key, |s, _, _| s.end_flight(&key));
            self.flight.finish(None);
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests;
