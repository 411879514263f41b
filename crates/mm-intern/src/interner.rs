//! The shared interner and its frozen form.

use core::{fmt, hash::BuildHasher, mem::size_of};

use crossbeam_utils::CachePadded;

use crate::{
    InternError, InternStats, Symbol,
    store::{ShardStore, StoreFull},
    symbol::max_local,
    sync::{self, AtomicU64, HashBuilder, Mutex, Ordering},
};

/// How to build an [`Interner`]: shard count and optional limits.
///
/// ```
/// use mm_intern::{Interner, InternerConfig};
/// let interner = Interner::with_config(
///     InternerConfig::default().shards(4).max_strings(10_000).max_bytes(1 << 20),
/// )?;
/// # Ok::<(), mm_intern::InternError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(default, deny_unknown_fields)
)]
pub struct InternerConfig {
    shards: usize,
    max_strings: Option<u64>,
    max_bytes: Option<u64>,
}

impl Default for InternerConfig {
    /// 16 shards, no limits.
    fn default() -> Self {
        Self {
            shards: 16,
            max_strings: None,
            max_bytes: None,
        }
    }
}

impl InternerConfig {
    /// Number of shards, a power of two in `1..=256` (checked by
    /// [`Interner::with_config`]). More shards mean less lock contention and fewer strings
    /// per shard (`2^(32 - log2(shards)) - 1` each); each costs one padded lock (128 bytes
    /// on x86-64) even when empty.
    pub fn shards(mut self, shards: usize) -> Self {
        self.shards = shards;
        self
    }

    /// At most this many unique strings; one more gives [`InternError::TooManyStrings`].
    pub fn max_strings(mut self, limit: u64) -> Self {
        self.max_strings = Some(limit);
        self
    }

    /// At most this many bytes of unique string data (the sum of their lengths, not
    /// counting index overhead); a string that would pass it gives
    /// [`InternError::TooManyBytes`].
    pub fn max_bytes(mut self, limit: u64) -> Self {
        self.max_bytes = Some(limit);
        self
    }
}

/// Global counters, kept only when a limit is set so that an unlimited interner touches no
/// shared atomic.
struct Limits {
    max_strings: Option<u64>,
    max_bytes: Option<u64>,
    strings: AtomicU64,
    bytes: AtomicU64,
}

impl Limits {
    /// Reserves room for one more string of `len` bytes, or says which limit stops it.
    fn reserve(&self, len: u64) -> Result<(), InternError> {
        if let Some(limit) = self.max_strings {
            self.strings
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                    (n < limit).then_some(n + 1)
                })
                .map_err(|_| InternError::TooManyStrings { limit })?;
        }
        if let Some(limit) = self.max_bytes {
            let reserved = self
                .bytes
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |stored| {
                    stored.checked_add(len).filter(|&total| total <= limit)
                });
            if let Err(stored) = reserved {
                self.release_strings();
                return Err(InternError::TooManyBytes { len, stored, limit });
            }
        }
        Ok(())
    }

    fn release_strings(&self) {
        if self.max_strings.is_some() {
            self.strings.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

/// A thread-safe string interner: `&self` methods from any number of threads.
///
/// Strings are spread over a fixed number of shards by hash; each shard is a mutex around a
/// hash table and an append-only arena, so two threads contend only when their strings land
/// in the same shard. A string is stored once; every call with equal text returns the same
/// [`Symbol`].
///
/// When the set of strings stops growing, [`freeze`](Self::freeze) turns it into a
/// [`FrozenInterner`] whose lookups take no lock at all.
///
/// See the crate docs for an example and `docs/mm-intern.md` for the design.
pub struct Interner {
    shards: Box<[CachePadded<Mutex<ShardStore>>]>,
    hasher: HashBuilder,
    shard_bits: u32,
    limits: Limits,
}

impl Default for Interner {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for Interner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Interner")
            .field("shards", &self.shards.len())
            .field("max_strings", &self.limits.max_strings)
            .field("max_bytes", &self.limits.max_bytes)
            .finish_non_exhaustive()
    }
}

impl Interner {
    /// An interner with the default configuration (16 shards, no limits). Allocates only
    /// the shard array (about 2 KiB); shards allocate on their first string.
    pub fn new() -> Self {
        match Self::with_config(InternerConfig::default()) {
            Ok(interner) => interner,
            Err(_) => unreachable!("the default configuration is valid"),
        }
    }

    /// An interner built from `config`.
    ///
    /// # Errors
    /// [`InternError::InvalidShardCount`] if the shard count is not a power of two in
    /// `1..=256`.
    pub fn with_config(config: InternerConfig) -> Result<Self, InternError> {
        let shards = config.shards;
        if !(1..=256).contains(&shards) || !shards.is_power_of_two() {
            return Err(InternError::InvalidShardCount(shards));
        }
        Ok(Self {
            shards: (0..shards)
                .map(|_| CachePadded::new(Mutex::new(ShardStore::new())))
                .collect(),
            hasher: HashBuilder::default(),
            shard_bits: shards.trailing_zeros(),
            limits: Limits {
                max_strings: config.max_strings,
                max_bytes: config.max_bytes,
                strings: AtomicU64::new(0),
                bytes: AtomicU64::new(0),
            },
        })
    }

    /// The symbol for `s`, storing a copy of `s` first if it is new.
    ///
    /// Cost: one hash of `s`, one uncontended lock, one hash-table probe; when `s` is new,
    /// also a copy of `s` into the shard's arena (occasionally a new chunk of up to 64 KiB,
    /// or exactly `s.len()` for strings over 4 KiB) and a table insert (occasionally a
    /// table resize).
    ///
    /// # Panics
    /// If `s` is new and cannot be stored because a limit from [`InternerConfig`] or the
    /// symbol space is exhausted. Use [`try_get_or_intern`](Self::try_get_or_intern) on
    /// interners with limits.
    #[inline]
    pub fn get_or_intern(&self, s: &str) -> Symbol {
        match self.try_get_or_intern(s) {
            Ok(sym) => sym,
            Err(e) => panic!("mm_intern::Interner::get_or_intern: {e}"),
        }
    }

    /// The symbol for `s`, storing a copy of `s` first if it is new; same cost as
    /// [`get_or_intern`](Self::get_or_intern).
    ///
    /// # Errors
    /// [`InternError::TooManyStrings`] or [`InternError::TooManyBytes`] when `s` is new and
    /// would pass a configured limit; [`InternError::SymbolSpaceExhausted`] when its shard
    /// is full. Nothing is stored then, and the call is not counted in the stats.
    #[inline]
    pub fn try_get_or_intern(&self, s: &str) -> Result<Symbol, InternError> {
        let hash = self.hasher.hash_one(s);
        let shard = self.shard_of(hash);
        let mut store = sync::lock(&self.shards[shard]);
        let local = self.get_or_insert(&mut store, shard, hash, s)?;
        store.calls += 1;
        store.requested_bytes += s.len() as u64;
        Ok(Symbol::new(shard, local, self.shard_bits))
    }

    /// Interns every string of `strings` and appends their symbols to `out`, in order.
    ///
    /// Same result as calling [`try_get_or_intern`](Self::try_get_or_intern) on each, but
    /// the strings are processed in groups of up to [`BATCH`](Self::BATCH) and each shard's
    /// lock is taken once per group instead of once per string, which is what a per-call
    /// interner spends most of its time on when strings repeat (an uncontended lock and
    /// unlock are two atomic read-modify-writes). Use it for token streams. Needs no heap
    /// memory beyond `out` (the group's scratch is on the stack, about 3 KiB).
    ///
    /// # Errors
    /// As [`try_get_or_intern`](Self::try_get_or_intern). On an error `out` is left as it
    /// was, but strings of the batch interned before the failing one stay interned.
    pub fn try_intern_batch<S: AsRef<str>>(
        &self,
        strings: &[S],
        out: &mut Vec<Symbol>,
    ) -> Result<(), InternError> {
        let start = out.len();
        out.reserve(strings.len());
        for group in strings.chunks(Self::BATCH) {
            if let Err(e) = self.intern_group(group, out) {
                out.truncate(start);
                return Err(e);
            }
        }
        Ok(())
    }

    /// Strings per group in [`try_intern_batch`](Self::try_intern_batch).
    pub const BATCH: usize = 256;

    fn intern_group<S: AsRef<str>>(
        &self,
        group: &[S],
        out: &mut Vec<Symbol>,
    ) -> Result<(), InternError> {
        debug_assert!(group.len() <= Self::BATCH);
        let mut hashes = [0u64; Self::BATCH];
        // Counting sort of the group's positions by shard.
        let mut per_shard = [0u16; 257];
        for (i, s) in group.iter().enumerate() {
            hashes[i] = self.hasher.hash_one(s.as_ref());
            per_shard[self.shard_of(hashes[i]) + 1] += 1;
        }
        for shard in 0..self.shards.len() {
            per_shard[shard + 1] += per_shard[shard];
        }
        let mut order = [0u16; Self::BATCH];
        let mut next = per_shard;
        for (i, &hash) in hashes[..group.len()].iter().enumerate() {
            let shard = self.shard_of(hash);
            order[next[shard] as usize] = i as u16;
            next[shard] += 1;
        }
        let mut symbols = [None::<Symbol>; Self::BATCH];
        for shard in 0..self.shards.len() {
            let range = per_shard[shard] as usize..per_shard[shard + 1] as usize;
            if range.is_empty() {
                continue;
            }
            let mut store = sync::lock(&self.shards[shard]);
            for &i in &order[range] {
                let (i, s) = (i as usize, group[i as usize].as_ref());
                let local = self.get_or_insert(&mut store, shard, hashes[i], s)?;
                store.calls += 1;
                store.requested_bytes += s.len() as u64;
                symbols[i] = Some(Symbol::new(shard, local, self.shard_bits));
            }
        }
        out.extend(symbols[..group.len()].iter().flatten());
        Ok(())
    }

    #[inline]
    fn get_or_insert(
        &self,
        store: &mut ShardStore,
        shard: usize,
        hash: u64,
        s: &str,
    ) -> Result<u32, InternError> {
        let max_local = max_local(self.shard_bits);
        store.get_or_insert(
            hash,
            s,
            &self.hasher,
            max_local,
            || self.limits.reserve(s.len() as u64),
            |full| match full {
                StoreFull::Strings | StoreFull::Chunks => InternError::SymbolSpaceExhausted {
                    shard,
                    shards: self.shards.len(),
                    capacity: u64::from(max_local),
                },
            },
        )
    }

    /// The symbol for `s` if it was interned; never stores anything. Cost: one hash, one
    /// lock, one probe; no allocation.
    #[inline]
    pub fn get(&self, s: &str) -> Option<Symbol> {
        let hash = self.hasher.hash_one(s);
        let shard = self.shard_of(hash);
        let local = sync::lock(&self.shards[shard]).find(hash, s)?;
        Some(Symbol::new(shard, local, self.shard_bits))
    }

    /// The string of `sym`. The `&str` borrows the interner, not a lock: it stays valid
    /// while other threads keep interning, because stored strings never move.
    ///
    /// Cost: one lock and two indexed loads; no hashing, no allocation.
    ///
    /// # Panics
    /// If `sym` was not made by this interner and does not name one of its strings (a
    /// symbol from another interner may also silently name a different string). Use
    /// [`try_resolve`](Self::try_resolve) when symbols may come from elsewhere.
    #[inline]
    pub fn resolve(&self, sym: Symbol) -> &str {
        match self.try_resolve(sym) {
            Some(s) => s,
            None => panic!("mm_intern::Interner::resolve: {sym:?} is not from this interner"),
        }
    }

    /// The string of `sym`, or `None` if it names no string in this interner.
    #[inline]
    pub fn try_resolve(&self, sym: Symbol) -> Option<&str> {
        let (shard, local) = sym.split(self.shard_bits);
        let store = sync::lock(self.shards.get(shard)?);
        let text: *const str = store.resolve(local)?;
        drop(store);
        // SAFETY: `text` points into a chunk of the store inside `self.shards[shard]`. By
        // the store's pinning guarantee (store.rs) those bytes keep their address and are
        // never written until the store is dropped or compacted; both need the store by
        // value or `&mut`, which `Interner` only gives up in `freeze(self)` and `Drop`, and
        // neither can run while the returned borrow of `self` is alive. Other threads'
        // inserts after we unlocked write only other bytes, through raw pointers. The bytes
        // were written before the span was published under the same lock we acquired, so
        // they are visible to us.
        Some(unsafe { &*text })
    }

    /// Unique strings stored. Locks each shard in turn.
    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| sync::lock(s).len()).sum()
    }

    /// True if no string has been stored.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Number of shards.
    pub fn shards(&self) -> usize {
        self.shards.len()
    }

    /// Byte accounting, read from each shard under its lock (see [`InternStats`]).
    pub fn stats(&self) -> InternStats {
        let mut stats = InternStats {
            fixed_bytes: (self.shards.len() * size_of::<CachePadded<Mutex<ShardStore>>>()) as u64,
            ..InternStats::default()
        };
        for shard in self.shards.iter() {
            stats.add_shard(&sync::lock(shard));
        }
        stats
    }

    /// Turns the interner into a read-only [`FrozenInterner`] whose lookups and resolves
    /// take no lock. Every symbol keeps naming the same string.
    ///
    /// Cost: gives back all unused capacity (chunk tails, spare table and list capacity),
    /// which reallocates each chunk and rebuilds each hash table: O(strings + bytes), once.
    pub fn freeze(self) -> FrozenInterner {
        let Interner {
            shards,
            hasher,
            shard_bits,
            ..
        } = self;
        let shards: Box<[ShardStore]> = Vec::from(shards)
            .into_iter()
            .map(|shard| {
                let mut store = sync::into_inner(CachePadded::into_inner(shard));
                store.compact(&hasher);
                store
            })
            .collect();
        FrozenInterner {
            shards,
            hasher,
            shard_bits,
        }
    }

    #[inline]
    fn shard_of(&self, hash: u64) -> usize {
        // hashbrown indexes buckets with the low bits and tags them with the top 7; bits
        // 32.. are used by neither until a table has 2^32 buckets, so choosing the shard
        // with them keeps both well mixed within a shard.
        ((hash >> 32) as usize) & (self.shards.len() - 1)
    }
}

/// The read-only form of an [`Interner`], made by [`Interner::freeze`]: `get` and `resolve`
/// are plain reads with no lock and no atomic, so any number of threads can share it (for
/// example in an `Arc`) at the cost of a hash-table probe each.
///
/// It cannot intern new strings. Its [`stats`](Self::stats) are those of the interner at
/// freezing time, after unused capacity was given back.
pub struct FrozenInterner {
    shards: Box<[ShardStore]>,
    hasher: HashBuilder,
    shard_bits: u32,
}

impl fmt::Debug for FrozenInterner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FrozenInterner")
            .field("shards", &self.shards.len())
            .field("strings", &self.len())
            .finish_non_exhaustive()
    }
}

impl FrozenInterner {
    /// The symbol for `s` if it was interned before freezing. One hash, one probe.
    #[inline]
    pub fn get(&self, s: &str) -> Option<Symbol> {
        let hash = self.hasher.hash_one(s);
        let shard = ((hash >> 32) as usize) & (self.shards.len() - 1);
        let local = self.shards[shard].find(hash, s)?;
        Some(Symbol::new(shard, local, self.shard_bits))
    }

    /// The string of `sym`.
    ///
    /// # Panics
    /// If `sym` does not name a string here; see [`Interner::resolve`].
    #[inline]
    pub fn resolve(&self, sym: Symbol) -> &str {
        match self.try_resolve(sym) {
            Some(s) => s,
            None => panic!("mm_intern::FrozenInterner::resolve: {sym:?} is not from this interner"),
        }
    }

    /// The string of `sym`, or `None` if it names no string here.
    #[inline]
    pub fn try_resolve(&self, sym: Symbol) -> Option<&str> {
        let (shard, local) = sym.split(self.shard_bits);
        self.shards.get(shard)?.resolve(local)
    }

    /// Unique strings stored.
    pub fn len(&self) -> usize {
        self.shards.iter().map(ShardStore::len).sum()
    }

    /// True if no string is stored.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Byte accounting of the frozen form (see [`InternStats`]).
    pub fn stats(&self) -> InternStats {
        let mut stats = InternStats {
            fixed_bytes: (self.shards.len() * size_of::<ShardStore>()) as u64,
            ..InternStats::default()
        };
        for shard in self.shards.iter() {
            stats.add_shard(shard);
        }
        stats
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    /// The one `unsafe` lifetime extension (`try_resolve`), exercised with a writer in the
    /// same shard at the same time; small enough for Miri's race detector.
    #[test]
    fn resolve_while_another_thread_fills_the_same_shard() {
        let interner = Interner::with_config(InternerConfig::default().shards(1)).unwrap();
        let sym = interner.get_or_intern("stay");
        let text = interner.resolve(sym);
        std::thread::scope(|s| {
            s.spawn(|| {
                for i in 0..300 {
                    interner.get_or_intern(&format!("filler-{i}"));
                }
            });
            for _ in 0..50 {
                assert_eq!(text, "stay");
                assert_eq!(interner.resolve(sym), "stay");
            }
        });
        assert_eq!(text, "stay");
        let frozen = interner.freeze();
        assert_eq!(frozen.resolve(sym), "stay");
        assert_eq!(frozen.len(), 301);
    }
}
