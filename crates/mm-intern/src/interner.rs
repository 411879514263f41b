//! The shared interner and its frozen form.

use core::{fmt, mem::size_of};

use crossbeam_utils::CachePadded;

use crate::{
    InternError, InternStats, Symbol,
    counters::CallCounters,
    frozen::FrozenInterner,
    live::{LiveShard, Writer, span_text},
    spans::SpanTable,
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
    /// [`Interner::with_config`]). More shards mean less lock contention between threads
    /// adding strings; each costs a padded lock and its table's header (384 bytes on
    /// x86-64) even when empty, and up to 2 KiB of span segment it has not filled yet.
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

/// Global counters, touched only when a limit is set so that an unlimited interner touches
/// no shared atomic.
struct Limits {
    max_strings: Option<u64>,
    max_bytes: Option<u64>,
    /// Reserved strings and bytes. On the heap, so that `Interner` itself holds no
    /// `UnsafeCell`: a `&Interner` is then a read-only reference to the compiler, which
    /// keeps its fields in registers across opaque calls in a caller's loop.
    reserved: Box<[AtomicU64; 2]>,
}

impl Limits {
    /// Reserves room for one more string of `len` bytes, or says which limit stops it.
    fn reserve(&self, len: u64) -> Result<(), InternError> {
        if let Some(limit) = self.max_strings {
            self.reserved[0]
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                    (n < limit).then_some(n + 1)
                })
                .map_err(|_| InternError::TooManyStrings { limit })?;
        }
        if let Some(limit) = self.max_bytes {
            let reserved =
                self.reserved[1].fetch_update(Ordering::AcqRel, Ordering::Acquire, |stored| {
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
            self.reserved[0].fetch_sub(1, Ordering::AcqRel);
        }
    }

    /// Gives back a reservation of `len` bytes made by [`reserve`](Self::reserve) for a
    /// string that could not be stored after all.
    fn release(&self, len: u64) {
        self.release_strings();
        if self.max_bytes.is_some() {
            self.reserved[1].fetch_sub(len, Ordering::AcqRel);
        }
    }
}

/// A thread-safe string interner: `&self` methods from any number of threads.
///
/// Strings are spread over a fixed number of shards by hash. Finding a stored string
/// ([`get`](Self::get), a hit of [`get_or_intern`](Self::get_or_intern)) and resolving a
/// symbol take no lock and make no atomic read-modify-write: they read the shard's
/// published index table and span table with plain (Acquire) loads. Only a new string takes
/// its shard's lock, so two threads contend only when they add strings to the same shard
/// at the same time. A string is stored once; every call with equal text returns the same
/// [`Symbol`].
///
/// When the set of strings stops growing, [`freeze`](Self::freeze) turns it into a
/// compacted [`FrozenInterner`].
///
/// See the crate docs for an example and `docs/mm-intern.md` for the design.
pub struct Interner {
    shards: Box<[Shard]>,
    /// Every shard's spans, indexed by symbol.
    spans: SpanTable,
    hasher: HashBuilder,
    /// `shards.len() - 1`: `x & shard_mask` is always a valid shard number.
    shard_mask: u32,
    counters: CallCounters,
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
    /// the shard array, the span table's directory and the per-thread call counters
    /// (about 27 KiB); shards allocate on their first string.
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
                .map(|_| Shard {
                    live: CachePadded::new(LiveShard::new()),
                    writer: LiveShard::new_writer(),
                })
                .collect(),
            spans: SpanTable::new(),
            hasher: HashBuilder::default(),
            shard_mask: (shards - 1) as u32,
            counters: CallCounters::new(),
            limits: Limits {
                max_strings: config.max_strings,
                max_bytes: config.max_bytes,
                reserved: Box::new([AtomicU64::new(0), AtomicU64::new(0)]),
            },
        })
    }

    /// The symbol for `s`, storing a copy of `s` first if it is new.
    ///
    /// Cost of a hit: one hash of `s`, one probe of the shard's table (no lock, no atomic
    /// read-modify-write) and a per-thread counter update. When `s` is new, also the
    /// shard's lock, a copy of `s` into the shard's arena (occasionally a new chunk of up
    /// to 8 KiB, or exactly `s.len()` for strings over 1 KiB), and a table insert
    /// (occasionally a rebuild of the shard's table at twice the size).
    ///
    /// # Panics
    /// If `s` is new and cannot be stored because a limit from [`InternerConfig`] or the
    /// symbol space is exhausted. Use [`try_get_or_intern`](Self::try_get_or_intern) on
    /// interners with limits.
    #[inline(always)]
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
    /// would pass a configured limit; [`InternError::SymbolSpaceExhausted`] when the
    /// interner is full. Nothing is stored then, and the call is not counted in the stats.
    #[inline(always)]
    pub fn try_get_or_intern(&self, s: &str) -> Result<Symbol, InternError> {
        let sym = self.intern_uncounted(s)?;
        self.counters.add(1, s.len() as u64);
        Ok(sym)
    }

    #[inline(always)]
    fn intern_uncounted(&self, s: &str) -> Result<Symbol, InternError> {
        let key = self.hasher.key(s);
        let shard = self.shard_of(key.hash);
        let sym = match self.shard(shard).find(&key, s, &self.spans) {
            Ok(sym) => sym,
            Err(seen) => self.insert_slow(s, seen)?,
        };
        // SAFETY: `find` and `insert` return symbols of stored strings, never 0.
        Ok(unsafe { Symbol::new(sym) })
    }

    /// The locked path: confirm the miss of a probe that saw `seen` published strings,
    /// then store `s`. It hashes `s` again, so that the hit path keeps nothing alive for
    /// it but `s` and `seen`.
    #[cold]
    #[inline(never)]
    fn insert_slow(&self, s: &str, seen: u32) -> Result<u32, InternError> {
        let key = self.hasher.key(s);
        let shard = self.shard_of(key.hash);
        let live = self.shard(shard);
        let mut w = sync::lock(self.writer(shard));
        // The miss is exact if no string was published since the probe read the count
        // (`live.rs`, invariant 4); otherwise probe again, exactly now that no table is
        // being changed.
        if live.len() != seen
            && let Ok(sym) = live.find(&key, s, &self.spans)
        {
            return Ok(sym);
        }
        let len = s.len() as u64;
        self.limits.reserve(len)?;
        live.insert(&mut w, &self.spans, key.hash, s, &self.hasher)
            .inspect_err(|_| {
                self.limits.release(len);
            })
    }

    /// The symbol for `s`, storing a copy of `s` first if it is new, through exclusive
    /// access: for filling an interner the caller owns (a vocabulary at start-up, before
    /// it is shared), as `string-interner`'s `&mut self` interning does.
    ///
    /// Same strings, symbols and stats as [`get_or_intern`](Self::get_or_intern): a hit is
    /// the same lock-free probe; a new string is stored without taking the shard's lock
    /// (`Mutex::get_mut`) and without confirming the probe's miss (no other thread can be
    /// writing); the call is counted exactly, with two plain adds instead of the
    /// per-thread slot's thread-local lookup.
    ///
    /// # Panics
    /// As [`get_or_intern`](Self::get_or_intern), when a limit or the symbol space stops
    /// a new string; [`try_get_or_intern_mut`](Self::try_get_or_intern_mut) returns the
    /// error instead.
    #[inline(always)]
    pub fn get_or_intern_mut(&mut self, s: &str) -> Symbol {
        match self.try_get_or_intern_mut(s) {
            Ok(sym) => sym,
            Err(e) => panic!("mm_intern::Interner::get_or_intern_mut: {e}"),
        }
    }

    /// [`get_or_intern_mut`](Self::get_or_intern_mut) that returns an error instead of
    /// panicking.
    ///
    /// # Errors
    /// As [`try_get_or_intern`](Self::try_get_or_intern); nothing is stored then, and the
    /// call is not counted.
    #[inline(always)]
    pub fn try_get_or_intern_mut(&mut self, s: &str) -> Result<Symbol, InternError> {
        let key = self.hasher.key(s);
        let shard = self.shard_of(key.hash);
        let sym = match self.shard(shard).find(&key, s, &self.spans) {
            Ok(sym) => sym,
            Err(_) => self.insert_exclusive(shard, key.hash, s)?,
        };
        self.counters.add_exclusive(1, s.len() as u64);
        // SAFETY: `find` and `insert` return symbols of stored strings, never 0.
        Ok(unsafe { Symbol::new(sym) })
    }

    /// The exclusive path's insert: `&mut self` means no other thread is probing or
    /// writing, so the lock-free probe's miss is exact (no table change can be in
    /// progress) and the writer is borrowed without its lock.
    #[cold]
    #[inline(never)]
    fn insert_exclusive(&mut self, shard: usize, hash: u64, s: &str) -> Result<u32, InternError> {
        let len = s.len() as u64;
        self.limits.reserve(len)?;
        let Shard { live, writer } = &mut self.shards[shard];
        live.insert(sync::get_mut(writer), &self.spans, hash, s, &self.hasher)
            .inspect_err(|_| self.limits.release(len))
    }

    /// Interns every string of `strings` and appends their symbols to `out`, in order.
    ///
    /// Same result as calling [`try_get_or_intern`](Self::try_get_or_intern) on each
    /// (hits take no lock either way); the calls are counted once per batch instead of once
    /// per string. Needs no heap memory beyond `out`.
    ///
    /// # Errors
    /// As [`try_get_or_intern`](Self::try_get_or_intern). On an error `out` is left as it
    /// was, but strings of the batch interned before the failing one stay interned (and
    /// their calls are counted).
    pub fn try_intern_batch<S: AsRef<str>>(
        &self,
        strings: &[S],
        out: &mut Vec<Symbol>,
    ) -> Result<(), InternError> {
        let start = out.len();
        out.reserve(strings.len());
        let mut bytes = 0;
        for s in strings {
            let s = s.as_ref();
            match self.intern_uncounted(s) {
                Ok(sym) => {
                    out.push(sym);
                    bytes += s.len() as u64;
                }
                Err(e) => {
                    let done = (out.len() - start) as u64;
                    self.counters.add(done, bytes);
                    out.truncate(start);
                    return Err(e);
                }
            }
        }
        self.counters.add((out.len() - start) as u64, bytes);
        Ok(())
    }

    /// The symbol for `s` if it was interned; never stores anything. Cost of a hit: one
    /// hash and one probe, no lock, no allocation; a miss confirms itself under the shard's
    /// lock (a table rebuild in progress can hide a stored string from the lock-free probe).
    #[inline(always)]
    pub fn get(&self, s: &str) -> Option<Symbol> {
        let key = self.hasher.key(s);
        let shard = self.shard_of(key.hash);
        let sym = match self.shard(shard).find(&key, s, &self.spans) {
            Ok(sym) => sym,
            Err(seen) => self.confirm_miss(s, seen)?,
        };
        // SAFETY: `find` returns symbols of stored strings, never 0.
        Some(unsafe { Symbol::new(sym) })
    }

    /// `get`'s locked path: confirms a miss as `insert_slow` does.
    #[cold]
    #[inline(never)]
    fn confirm_miss(&self, s: &str, seen: u32) -> Option<u32> {
        let key = self.hasher.key(s);
        let shard = self.shard_of(key.hash);
        let live = self.shard(shard);
        let _w = sync::lock(self.writer(shard));
        if live.len() == seen {
            return None;
        }
        live.find(&key, s, &self.spans).ok()
    }

    /// The string of `sym`. The `&str` borrows the interner: it stays valid while other
    /// threads keep interning, because stored strings never move.
    ///
    /// Cost: for the interner's first 524,032 strings two dependent loads (span segment,
    /// span) and two tests, no lock, no hashing, no allocation; past them a few more loads,
    /// out of line.
    ///
    /// # Panics
    /// If `sym` was not made by this interner and does not name one of its strings (a
    /// symbol from another interner may also silently name a different string). Use
    /// [`try_resolve`](Self::try_resolve) when symbols may come from elsewhere.
    #[inline(always)]
    pub fn resolve(&self, sym: Symbol) -> &str {
        let span = self.spans.load(sym.to_u32());
        if span == 0 {
            not_here(sym);
        }
        // SAFETY: a non-zero span read with Acquire names the initialised bytes of a stored
        // string, which stay put while `self` lives (`live.rs`, invariants 1 and 2).
        unsafe { span_text(span) }
    }

    /// The string of `sym`, or `None` if it names no string in this interner. Same cost
    /// as [`resolve`](Self::resolve).
    #[inline(always)]
    pub fn try_resolve(&self, sym: Symbol) -> Option<&str> {
        let span = self.spans.load(sym.to_u32());
        // SAFETY: as in `resolve`.
        (span != 0).then(|| unsafe { span_text(span) })
    }

    /// Unique strings stored. Reads each shard's published count; no lock.
    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| s.live.len() as usize).sum()
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
        let (calls, requested_bytes) = self.counters.totals();
        let (span_fixed, span_index) = self.spans.held();
        let mut stats = InternStats {
            calls,
            requested_bytes,
            index_bytes: span_index,
            fixed_bytes: (self.shards.len() * size_of::<Shard>()
                + self.counters.heap_bytes()
                + size_of::<[AtomicU64; 2]>()) as u64
                + span_fixed,
            ..InternStats::default()
        };
        for Shard {
            live: shard,
            writer,
        } in self.shards.iter()
        {
            let w = sync::lock(writer);
            let held = shard.held(&w);
            stats.add_shard(
                u64::from(shard.len()),
                w.string_bytes,
                held.arena,
                held.index,
            );
        }
        stats
    }

    /// Turns the interner into a read-only [`FrozenInterner`]. Every symbol keeps naming
    /// the same string.
    ///
    /// Cost: copies every string into one exactly sized chunk, builds a span array indexed
    /// by symbol and one `hashbrown` table, then frees the live shards: O(strings + bytes),
    /// once, and for a moment both copies are held.
    pub fn freeze(self) -> FrozenInterner {
        let (calls, requested_bytes) = self.counters.totals();
        let Interner {
            shards,
            spans,
            hasher,
            ..
        } = self;
        let locked: Vec<_> = shards
            .iter()
            .map(|shard| (sync::lock(&shard.writer), shard.live.len() as usize))
            .collect();
        let frozen = FrozenInterner::build(
            || locked.iter().flat_map(|(w, n)| w.texts(*n)),
            hasher,
            calls,
            requested_bytes,
        );
        // The texts borrowed the shards' chunks and the span table until here.
        drop(locked);
        drop(shards);
        drop(spans);
        frozen
    }

    #[inline(always)]
    fn shard_of(&self, hash: u64) -> usize {
        // The index tables use the low bits for the group and the top 7 for tags; bits
        // 32.. are used by neither until a table has 2^32 groups, so choosing the shard
        // with them keeps both well mixed within a shard.
        ((hash >> 32) as u32 & self.shard_mask) as usize
    }

    /// Shard `shard`, which is `x & shard_mask` for some `x` (so no bounds check).
    #[inline(always)]
    fn shard(&self, shard: usize) -> &LiveShard {
        debug_assert!(shard <= self.shard_mask as usize);
        // SAFETY: `shard <= shard_mask = shards.len() - 1` (every caller masks it).
        unsafe { &self.shards.get_unchecked(shard).live }
    }

    /// The writer of shard `shard`, which is `x & shard_mask` for some `x`.
    #[inline(always)]
    fn writer(&self, shard: usize) -> &Mutex<Writer> {
        debug_assert!(shard <= self.shard_mask as usize);
        // SAFETY: as in `shard`.
        unsafe { &self.shards.get_unchecked(shard).writer }
    }
}

/// One shard and its writer. They are separate fields so that `&mut Interner` borrows
/// both at once, the writer without its lock (`Mutex::get_mut`); each in its own cache
/// line (inserts write the lock word, lookups never read it), 512 bytes in all on x86-64,
/// a power of two, so that choosing a shard is a shift.
struct Shard {
    live: CachePadded<LiveShard>,
    writer: CachePadded<Mutex<Writer>>,
}

/// `resolve`'s panic, out of line.
#[cold]
#[inline(never)]
fn not_here(sym: Symbol) -> ! {
    panic!("mm_intern::Interner::resolve: {sym:?} is not from this interner")
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    /// Strings of every length up to 40 bytes that differ from each other in one byte, at
    /// every position, stay distinct: the short-string word comparisons (one word read
    /// ending at the string's end up to 8 bytes, two words up to 16) see every byte, also
    /// for the first strings of a chunk (one shard, so chunks fill and roll over).
    #[test]
    fn strings_differing_in_any_one_byte_stay_distinct() {
        let interner = Interner::with_config(InternerConfig::default().shards(1)).unwrap();
        let mut all = Vec::new();
        for len in 0..=40usize {
            let base = "x".repeat(len);
            all.push(base.clone());
            for at in 0..len {
                let mut b = base.clone().into_bytes();
                b[at] = b'y';
                all.push(String::from_utf8(b).unwrap());
            }
        }
        let syms: Vec<_> = all.iter().map(|s| interner.get_or_intern(s)).collect();
        assert_eq!(interner.len(), all.len());
        for (s, sym) in all.iter().zip(&syms) {
            assert_eq!(interner.get(s), Some(*sym), "{s:?}");
            assert_eq!(interner.resolve(*sym), s);
        }
        assert!(interner.get("xxxxy").is_some());
        assert_eq!(interner.get("z"), None);
        assert_eq!(interner.get("xxxxxxxxxxz"), None);
    }

    /// Lock-free resolves and lookups with a writer in the same shard at the same time
    /// (300 strings: two span-segment claims, under Miri the second through the overflow
    /// directory as it is made, and table rebuilds); small enough for Miri's race detector.
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
                assert_eq!(interner.get("stay"), Some(sym));
            }
        });
        assert_eq!(text, "stay");
        let frozen = interner.freeze();
        assert_eq!(frozen.resolve(sym), "stay");
        assert_eq!(frozen.len(), 301);
    }
}
