//! A byte-bounded (segmented) LRU cache of embedding vectors.
//!
//! Layout: vectors live in one contiguous `Vec<f32>` per vector length ("dimension class"),
//! in fixed slots, so an entry is not a separate heap allocation and an evicted slot is
//! reused by the next vector of the same length. Entries are small records in a slab, linked
//! into intrusive doubly linked lists by index; a `HashMap` maps the key to the slab
//! index. Recency is a segmented LRU: a new entry starts on the probation list and moves to
//! the protected list (at most 80% of the bounds) when it is hit; eviction takes the least
//! recently used probation entry first. So a burst of one-time texts (a re-index, a scan)
//! cannot flush the entries that are actually reused, which a plain LRU lets happen. Once the
//! cache is full, an insert evicts entries and reuses their slots: no allocation at steady
//! state.
//!
//! Bounds: at most `max_entries` entries and at most `max_bytes` bytes, counting for each
//! entry its vector (`4 * dims`) plus [`ENTRY_OVERHEAD`] for its slab record and index slot.
//! Slot storage grows in steps capped by what `max_bytes` allows for that vector length, so
//! the memory held stays close to the bound. With a [`MemoryBudget`], the same bytes are
//! charged to it; when the budget refuses, the cache evicts more and retries before giving up.
//!
//! What it does not do: it is not thread-safe on its own (wrap it in a `Mutex`: the critical
//! sections are a hash lookup and a vector copy); it does not compress vectors (no f16 or int8
//! quantisation); and free slots of a vector length no longer used stay allocated until
//! [`EmbeddingCache::clear`] (mixing many vector lengths in one cache wastes memory).

use std::collections::HashMap;
use std::hash::{BuildHasher, BuildHasherDefault, Hasher, RandomState};

use mm_budget::{MemoryBudget, Reservation};

use crate::LlmError;
use crate::names::Symbol;

/// Bytes counted per entry on top of its vector: the slab record and the index slot.
pub const ENTRY_OVERHEAD: u64 = 64;

const NIL: u32 = u32::MAX;

/// The index's hasher. Keys already carry a keyed SipHash of the text, so re-hashing them
/// with SipHash would only cost time: this folds the words with a multiply, which keeps the
/// randomness of `text_hash` (and cannot be steered by an outsider who does not know the
/// per-cache SipHash key).
#[derive(Debug, Default, Clone, Copy)]
struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0 ^ (self.0 >> 29)
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(u64::from(b));
        }
    }

    fn write_u32(&mut self, n: u32) {
        self.write_u64(u64::from(n));
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(23) ^ n).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

type Index = HashMap<EmbeddingKey, u32, BuildHasherDefault<KeyHasher>>;

/// Bounds of an [`EmbeddingCache`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EmbeddingCacheConfig {
    /// Byte bound (default 512 MiB).
    pub max_bytes: u64,
    /// Entry bound (default 10,000).
    pub max_entries: usize,
}

impl Default for EmbeddingCacheConfig {
    fn default() -> Self {
        Self {
            max_bytes: 512 * 1024 * 1024,
            max_entries: 10_000,
        }
    }
}

/// A cache key: the model and a 64-bit keyed hash of the text.
///
/// The hash is SipHash-1-3 with a key drawn at random per cache, so keys from one cache mean
/// nothing to another and an outsider cannot build colliding texts. Two different texts
/// sharing a key (probability about `n^2 / 2^65` for `n` cached texts, ~3e-12 at 10,000)
/// would return one text's vector for the other; store the text yourself if that is not
/// acceptable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct EmbeddingKey {
    /// The model id (interned).
    pub model: Symbol,
    /// The keyed hash of the text.
    pub text_hash: u64,
}

/// Counters and sizes of an [`EmbeddingCache`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EmbeddingStats {
    /// Lookups that found their key.
    pub hits: u64,
    /// Lookups that did not.
    pub misses: u64,
    /// Vectors inserted (new keys and replacements).
    pub inserts: u64,
    /// Entries evicted to make room (by bounds or budget).
    pub evictions: u64,
    /// Inserts declined by frequency admission (see
    /// [`EmbeddingCache::with_frequency_admission`]).
    pub rejected: u64,
    /// Entries held.
    pub entries: u64,
    /// Bytes counted against the bound (vectors plus per-entry overhead).
    pub bytes: u64,
    /// Bytes of vector storage allocated (all slots, used or free).
    pub storage_bytes: u64,
}

impl EmbeddingStats {
    /// `hits / (hits + misses)`, or `None` before the first lookup.
    pub fn hit_rate(&self) -> Option<f64> {
        let total = self.hits + self.misses;
        (total > 0).then(|| self.hits as f64 / total as f64)
    }
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    key: EmbeddingKey,
    class: u32,
    slot: u32,
    prev: u32,
    next: u32,
    segment: Segment,
}

/// Which list of the segmented LRU an entry is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Segment {
    /// New entries, not hit since they were inserted (or demoted from protected).
    Probation = 0,
    /// Entries hit at least once while cached.
    Protected = 1,
}

/// One recency list: most recent at `head`.
#[derive(Debug, Clone, Copy)]
struct List {
    head: u32,
    tail: u32,
    len: usize,
    bytes: u64,
}

impl List {
    const EMPTY: List = List {
        head: NIL,
        tail: NIL,
        len: 0,
        bytes: 0,
    };
}

/// A count-min sketch of how often keys were seen, with 4-bit-style saturating counters that
/// are halved every `period` additions so old popularity fades (the TinyLFU scheme).
#[derive(Debug)]
struct FrequencySketch {
    /// Four rows of `width` counters, one after the other.
    table: Vec<u8>,
    width_bits: u32,
    additions: u64,
    period: u64,
}

impl FrequencySketch {
    const ROWS: usize = 4;
    const MAX: u8 = 15;
    const SEEDS: [u64; 4] = [
        0x9E37_79B9_7F4A_7C15,
        0xC2B2_AE3D_27D4_EB4F,
        0x1656_67B1_9E37_79F9,
        0xD6E8_FEB8_6659_FD93,
    ];

    fn new(entries: usize) -> Self {
        let width = entries
            .saturating_mul(2)
            .next_power_of_two()
            .clamp(256, 1 << 22);
        Self {
            table: vec![0; width * Self::ROWS],
            width_bits: width.trailing_zeros(),
            additions: 0,
            period: 10 * width as u64,
        }
    }

    fn slots(&self, hash: u64) -> [usize; 4] {
        let width = 1usize << self.width_bits;
        std::array::from_fn(|row| {
            let h = hash.wrapping_mul(Self::SEEDS[row]);
            row * width + (h >> (64 - self.width_bits)) as usize
        })
    }

    fn increment(&mut self, hash: u64) {
        for slot in self.slots(hash) {
            let c = &mut self.table[slot];
            *c = (*c + 1).min(Self::MAX);
        }
        self.additions += 1;
        if self.additions >= self.period {
            for c in &mut self.table {
                *c >>= 1;
            }
            self.additions /= 2;
        }
    }

    fn frequency(&self, hash: u64) -> u8 {
        self.slots(hash)
            .into_iter()
            .map(|s| self.table[s])
            .min()
            .unwrap_or(0)
    }
}

/// The sketch's hash of a key (the text hash is already random; fold the model in).
fn sketch_hash(key: &EmbeddingKey) -> u64 {
    key.text_hash ^ u64::from(key.model.to_u32()).wrapping_mul(0xA076_1D64_78BD_642F)
}

/// Share of the bounds the protected segment may hold (the rest is probation).
const PROTECTED_SHARE: f64 = 0.8;

#[derive(Debug)]
struct DimClass {
    dims: usize,
    data: Vec<f32>,
    free: Vec<u32>,
    /// Most slots the byte bound allows for this length.
    max_slots: usize,
}

impl DimClass {
    fn slot(&self, slot: u32) -> &[f32] {
        let start = slot as usize * self.dims;
        &self.data[start..start + self.dims]
    }

    fn slot_mut(&mut self, slot: u32) -> &mut [f32] {
        let start = slot as usize * self.dims;
        &mut self.data[start..start + self.dims]
    }

    fn take_slot(&mut self) -> u32 {
        if let Some(s) = self.free.pop() {
            return s;
        }
        let slots = self.data.len() / self.dims;
        if self.data.len() + self.dims > self.data.capacity() {
            // Grow by half (at least 16 slots), never past what the byte bound allows.
            let want = (slots + slots / 2)
                .max(slots + 16)
                .min(self.max_slots.max(slots + 1));
            self.data.reserve_exact(want * self.dims - self.data.len());
        }
        self.data.resize(self.data.len() + self.dims, 0.0);
        slots as u32
    }
}

/// A byte-bounded (segmented) LRU cache of embedding vectors.
///
/// Layout: vectors live in one contiguous `Vec<f32>` per vector length ("dimension class"),
/// in fixed slots, so an entry is not a separate heap allocation and an evicted slot is
/// reused by the next vector of the same length. Entries are small records in a slab, linked
/// into intrusive doubly linked lists by index; a `HashMap` maps the key to the slab
/// index. Recency is a segmented LRU: a new entry starts on the probation list and moves to
/// the protected list (at most 80% of the bounds) when it is hit; eviction takes the least
/// recently used probation entry first. So a burst of one-time texts (a re-index, a scan)
/// cannot flush the entries that are actually reused, which a plain LRU lets happen. Once the
/// cache is full, an insert evicts entries and reuses their slots: no allocation at steady
/// state.
///
/// Bounds: at most `max_entries` entries and at most `max_bytes` bytes, counting for each
/// entry its vector (`4 * dims`) plus [`ENTRY_OVERHEAD`] for its slab record and index slot.
/// Slot storage grows in steps capped by what `max_bytes` allows for that vector length, so
/// the memory held stays close to the bound. With a [`MemoryBudget`], the same bytes are
/// charged to it; when the budget refuses, the cache evicts more and retries before giving up.
///
/// What it does not do: it is not thread-safe on its own (wrap it in a `Mutex`: the critical
/// sections are a hash lookup and a vector copy); it does not compress vectors (no f16 or int8
/// quantisation); and free slots of a vector length no longer used stay allocated until
/// [`EmbeddingCache::clear`] (mixing many vector lengths in one cache wastes memory).
///
/// ```
/// use mm_llm::{EmbeddingCache, EmbeddingCacheConfig, Interner};
/// let names = Interner::new();
/// let model = names.get_or_intern("nomic-embed-text");
/// let mut cache = EmbeddingCache::new(EmbeddingCacheConfig::default(), None);
/// let key = cache.key(model, "hello world");
/// assert!(cache.get(&key).is_none());
/// cache.insert(key, &[0.1, 0.2, 0.3])?;
/// assert_eq!(cache.get(&key), Some(&[0.1, 0.2, 0.3][..]));
/// assert_eq!(cache.stats().hit_rate(), Some(0.5));
/// # Ok::<(), mm_llm::LlmError>(())
/// ```
#[derive(Debug)]
pub struct EmbeddingCache {
    config: EmbeddingCacheConfig,
    hasher: RandomState,
    index: Index,
    entries: Vec<Entry>,
    free_entries: Vec<u32>,
    classes: Vec<DimClass>,
    /// Probation and protected lists, indexed by `Segment as usize`.
    lists: [List; 2],
    bytes: u64,
    reservation: Option<Reservation>,
    budget: Option<MemoryBudget>,
    admission: Option<FrequencySketch>,
    stats: EmbeddingStats,
}

impl EmbeddingCache {
    /// An empty cache; allocates nothing until the first insert. With a `budget`, the bytes
    /// counted against the bound are also charged to it.
    pub fn new(config: EmbeddingCacheConfig, budget: Option<MemoryBudget>) -> Self {
        Self {
            config,
            hasher: RandomState::new(),
            index: Index::default(),
            entries: Vec::new(),
            free_entries: Vec::new(),
            classes: Vec::new(),
            lists: [List::EMPTY; 2],
            bytes: 0,
            reservation: None,
            budget,
            admission: None,
            stats: EmbeddingStats::default(),
        }
    }

    /// Turns on frequency-based admission (TinyLFU): every [`get`](Self::get) and
    /// [`insert`](Self::insert) counts its key in a small count-min sketch, and when the cache
    /// is full a new key is admitted only if it has been seen more often than the entry it
    /// would evict; otherwise the insert is declined (counted in
    /// [`EmbeddingStats::rejected`]) and the cache is unchanged. On skewed workloads this keeps
    /// the popular texts cached where recency alone would let a stream of one-off texts push
    /// them out. The sketch takes about `8 * max_entries` bytes (capped at 16 MiB), allocated
    /// here; it is not counted against `max_bytes`.
    ///
    /// The trade-off: once full, a text inserted without having been looked up before is
    /// admitted only if its earlier lookups outnumber the victim's, so "insert then get" is no
    /// longer guaranteed to hit. Call `get` before `insert` (the usual miss path does).
    pub fn with_frequency_admission(mut self) -> Self {
        self.admission = Some(FrequencySketch::new(self.config.max_entries));
        self
    }

    /// The key for `text` under `model`. Hashes the text once (SipHash, about 1 GB/s).
    pub fn key(&self, model: Symbol, text: &str) -> EmbeddingKey {
        EmbeddingKey {
            model,
            text_hash: self.hasher.hash_one(text),
        }
    }

    /// The vector for `key`, marking it most recently used (and protected). O(1).
    pub fn get(&mut self, key: &EmbeddingKey) -> Option<&[f32]> {
        if let Some(sketch) = &mut self.admission {
            sketch.increment(sketch_hash(key));
        }
        match self.index.get(key) {
            Some(&idx) => {
                self.stats.hits += 1;
                self.unlink(idx);
                self.push_front(idx, Segment::Protected);
                self.rebalance();
                let e = self.entries[idx as usize];
                Some(self.classes[e.class as usize].slot(e.slot))
            }
            None => {
                self.stats.misses += 1;
                None
            }
        }
    }

    /// The vector for `key` without touching recency or counters.
    pub fn peek(&self, key: &EmbeddingKey) -> Option<&[f32]> {
        let e = self.entries[*self.index.get(key)? as usize];
        Some(self.classes[e.class as usize].slot(e.slot))
    }

    /// Whether `key` is cached (no recency change).
    pub fn contains(&self, key: &EmbeddingKey) -> bool {
        self.index.contains_key(key)
    }

    /// Stores a copy of `vector` under `key` (replacing an older vector), evicting least
    /// recently used entries (probation first) until both bounds and the budget allow it.
    /// O(1) amortised plus the copy and the evictions.
    ///
    /// # Errors
    /// [`LlmError::EmbeddingTooLarge`] when one entry exceeds `max_bytes`;
    /// [`LlmError::InvalidConfig`] for an empty vector or a cache with `max_entries == 0`;
    /// [`LlmError::Budget`] when the budget refuses even with the cache emptied. On error the
    /// key is not cached (an older vector under it is gone too).
    pub fn insert(&mut self, key: EmbeddingKey, vector: &[f32]) -> Result<(), LlmError> {
        if vector.is_empty() {
            return Err(LlmError::InvalidConfig(
                "an embedding must have at least one dimension",
            ));
        }
        if self.config.max_entries == 0 {
            return Err(LlmError::InvalidConfig(
                "EmbeddingCacheConfig::max_entries is 0",
            ));
        }
        let need = entry_bytes(vector.len());
        if need > self.config.max_bytes {
            return Err(LlmError::EmbeddingTooLarge {
                bytes: need,
                max: self.config.max_bytes,
            });
        }
        if let Some(&idx) = self.index.get(&key) {
            let e = self.entries[idx as usize];
            let class = &mut self.classes[e.class as usize];
            if class.dims == vector.len() {
                class.slot_mut(e.slot).copy_from_slice(vector);
                self.unlink(idx);
                self.push_front(idx, e.segment);
                self.stats.inserts += 1;
                return Ok(());
            }
            self.remove_idx(idx);
        }
        if self.admission.is_some() {
            let full = self.index.len() >= self.config.max_entries
                || self.bytes + need > self.config.max_bytes;
            let victim = self.victim().filter(|_| full);
            let victim_hash = victim.map(|v| sketch_hash(&self.entries[v as usize].key));
            if let Some(sketch) = &mut self.admission {
                let hash = sketch_hash(&key);
                sketch.increment(hash);
                if let Some(vh) = victim_hash
                    && sketch.frequency(hash) <= sketch.frequency(vh)
                {
                    self.stats.rejected += 1;
                    return Ok(());
                }
            }
        }
        while self.index.len() >= self.config.max_entries
            || self.bytes + need > self.config.max_bytes
        {
            self.evict_lru();
        }
        self.charge(need)?;
        let class = self.class_for(vector.len());
        let slot = self.classes[class].take_slot();
        self.classes[class].slot_mut(slot).copy_from_slice(vector);
        let entry = Entry {
            key,
            class: class as u32,
            slot,
            prev: NIL,
            next: NIL,
            segment: Segment::Probation,
        };
        let idx = match self.free_entries.pop() {
            Some(i) => {
                self.entries[i as usize] = entry;
                i
            }
            None => {
                self.entries.push(entry);
                (self.entries.len() - 1) as u32
            }
        };
        self.push_front(idx, Segment::Probation);
        self.index.insert(key, idx);
        self.bytes += need;
        self.stats.inserts += 1;
        Ok(())
    }

    /// Removes `key`; returns whether it was cached.
    pub fn remove(&mut self, key: &EmbeddingKey) -> bool {
        match self.index.get(key) {
            Some(&idx) => {
                self.remove_idx(idx);
                true
            }
            None => false,
        }
    }

    /// Drops every entry and all storage, and releases the budget.
    pub fn clear(&mut self) {
        self.index = Index::default();
        self.entries = Vec::new();
        self.free_entries = Vec::new();
        self.classes = Vec::new();
        self.lists = [List::EMPTY; 2];
        self.bytes = 0;
        self.reservation = None;
    }

    /// Entries held.
    pub fn len(&self) -> usize {
        self.index.len()
    }

    /// Whether the cache holds nothing.
    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    /// Bytes counted against the bound.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// The bounds.
    pub fn config(&self) -> EmbeddingCacheConfig {
        self.config
    }

    /// Counters and sizes.
    pub fn stats(&self) -> EmbeddingStats {
        EmbeddingStats {
            entries: self.index.len() as u64,
            bytes: self.bytes,
            storage_bytes: self
                .classes
                .iter()
                .map(|c| c.data.capacity() as u64 * 4)
                .sum(),
            ..self.stats
        }
    }

    fn charge(&mut self, need: u64) -> Result<(), LlmError> {
        loop {
            let result = match (&mut self.reservation, &self.budget) {
                (Some(r), _) => r.try_grow(need),
                (None, Some(budget)) => match budget.try_reserve(need) {
                    Ok(r) => {
                        self.reservation = Some(r);
                        Ok(())
                    }
                    Err(e) => Err(e),
                },
                (None, None) => return Ok(()),
            };
            match result {
                Ok(()) => return Ok(()),
                Err(source) if self.index.is_empty() => {
                    return Err(LlmError::Budget {
                        bytes: need,
                        source,
                    });
                }
                Err(_) => self.evict_lru(),
            }
        }
    }

    fn class_for(&mut self, dims: usize) -> usize {
        if let Some(i) = self.classes.iter().position(|c| c.dims == dims) {
            return i;
        }
        let max_slots = (self.config.max_bytes / entry_bytes(dims)) as usize;
        self.classes.push(DimClass {
            dims,
            data: Vec::new(),
            free: Vec::new(),
            max_slots: max_slots.min(self.config.max_entries),
        });
        self.classes.len() - 1
    }

    /// Evicts the least recently used probation entry, or the least recently used protected
    /// one when probation is empty.
    fn evict_lru(&mut self) {
        if let Some(victim) = self.victim() {
            self.remove_idx(victim);
            self.stats.evictions += 1;
        }
    }

    /// The entry the next eviction would remove.
    fn victim(&self) -> Option<u32> {
        let probation = self.lists[Segment::Probation as usize].tail;
        let victim = if probation != NIL {
            probation
        } else {
            self.lists[Segment::Protected as usize].tail
        };
        (victim != NIL).then_some(victim)
    }

    /// Demotes protected entries (least recent first) to the head of probation while the
    /// protected segment is over its share of either bound.
    fn rebalance(&mut self) {
        let max_len = ((self.config.max_entries as f64 * PROTECTED_SHARE) as usize).max(1);
        let max_bytes = (self.config.max_bytes as f64 * PROTECTED_SHARE) as u64;
        loop {
            let prot = self.lists[Segment::Protected as usize];
            if prot.len <= 1 || (prot.len <= max_len && prot.bytes <= max_bytes) {
                return;
            }
            let idx = prot.tail;
            self.unlink(idx);
            self.push_front(idx, Segment::Probation);
        }
    }

    fn entry_size(&self, idx: u32) -> u64 {
        entry_bytes(self.classes[self.entries[idx as usize].class as usize].dims)
    }

    fn remove_idx(&mut self, idx: u32) {
        self.unlink(idx);
        let e = self.entries[idx as usize];
        self.index.remove(&e.key);
        let class = &mut self.classes[e.class as usize];
        class.free.push(e.slot);
        let freed = entry_bytes(class.dims);
        self.bytes -= freed;
        if let Some(r) = &mut self.reservation {
            r.shrink(freed);
        }
        self.free_entries.push(idx);
    }

    fn unlink(&mut self, idx: u32) {
        let size = self.entry_size(idx);
        let Entry {
            prev,
            next,
            segment,
            ..
        } = self.entries[idx as usize];
        let list = &mut self.lists[segment as usize];
        list.len -= 1;
        list.bytes -= size;
        if prev == NIL {
            list.head = next;
        } else {
            self.entries[prev as usize].next = next;
        }
        if next == NIL {
            list.tail = prev;
        } else {
            self.entries[next as usize].prev = prev;
        }
    }

    fn push_front(&mut self, idx: u32, segment: Segment) {
        let size = self.entry_size(idx);
        let list = &mut self.lists[segment as usize];
        let old = list.head;
        list.head = idx;
        if list.tail == NIL {
            list.tail = idx;
        }
        list.len += 1;
        list.bytes += size;
        let e = &mut self.entries[idx as usize];
        e.prev = NIL;
        e.next = old;
        e.segment = segment;
        if old != NIL {
            self.entries[old as usize].prev = idx;
        }
    }
}

/// Bytes one entry of `dims` dimensions counts against the bound.
fn entry_bytes(dims: usize) -> u64 {
    dims as u64 * 4 + ENTRY_OVERHEAD
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::names::Interner;

    fn vec_of(v: f32, dims: usize) -> Vec<f32> {
        vec![v; dims]
    }

    #[test]
    fn lru_order_and_entry_bound() {
        let names = Interner::new();
        let m = names.get_or_intern("m");
        let cfg = EmbeddingCacheConfig {
            max_bytes: 1 << 30,
            max_entries: 3,
        };
        let mut c = EmbeddingCache::new(cfg, None);
        let k: Vec<_> = (0..4).map(|i| c.key(m, &format!("t{i}"))).collect();
        for (i, key) in k.iter().take(3).enumerate() {
            c.insert(*key, &vec_of(i as f32, 8)).unwrap();
        }
        assert!(c.get(&k[0]).is_some()); // k0 now most recent; k1 is LRU
        c.insert(k[3], &vec_of(3.0, 8)).unwrap();
        assert!(!c.contains(&k[1]));
        assert!(c.contains(&k[0]) && c.contains(&k[2]) && c.contains(&k[3]));
        assert_eq!(c.len(), 3);
        assert_eq!(c.stats().evictions, 1);
        assert_eq!(c.peek(&k[3]).unwrap(), &vec_of(3.0, 8)[..]);
    }

    /// Walks both lists and checks them against the index and the byte counts.
    fn check(c: &EmbeddingCache) {
        let mut seen = 0;
        let mut bytes = 0;
        for (seg, list) in c.lists.iter().enumerate() {
            let (mut n, mut b, mut prev, mut at) = (0, 0, NIL, list.head);
            while at != NIL {
                let e = c.entries[at as usize];
                assert_eq!(e.segment as usize, seg);
                assert_eq!(e.prev, prev);
                assert_eq!(c.index.get(&e.key), Some(&at));
                n += 1;
                b += c.entry_size(at);
                prev = at;
                at = e.next;
            }
            assert_eq!(list.tail, prev);
            assert_eq!((n, b), (list.len, list.bytes));
            seen += n;
            bytes += b;
        }
        assert_eq!(seen, c.index.len());
        assert_eq!(bytes, c.bytes);
        assert!(c.index.len() <= c.config.max_entries);
        assert!(c.bytes <= c.config.max_bytes);
    }

    #[test]
    fn hit_entries_survive_a_scan_of_one_time_keys() {
        let names = Interner::new();
        let m = names.get_or_intern("m");
        let cfg = EmbeddingCacheConfig {
            max_bytes: 1 << 30,
            max_entries: 10,
        };
        let mut c = EmbeddingCache::new(cfg, None);
        let hot: Vec<_> = (0..5).map(|i| c.key(m, &format!("hot{i}"))).collect();
        for k in &hot {
            c.insert(*k, &[1.0; 4]).unwrap();
            assert!(c.get(k).is_some());
        }
        for i in 0..100 {
            let k = c.key(m, &format!("cold{i}"));
            c.insert(k, &[2.0; 4]).unwrap();
            check(&c);
        }
        assert!(
            hot.iter().all(|k| c.contains(k)),
            "a plain LRU would have lost them"
        );
        assert_eq!(c.len(), 10);
    }

    #[test]
    fn frequency_admission_keeps_popular_keys_against_one_off_texts() {
        let names = Interner::new();
        let m = names.get_or_intern("m");
        let cfg = EmbeddingCacheConfig {
            max_bytes: 1 << 30,
            max_entries: 8,
        };
        let mut c = EmbeddingCache::new(cfg, None).with_frequency_admission();
        let popular: Vec<_> = (0..8).map(|i| c.key(m, &format!("p{i}"))).collect();
        for _ in 0..8 {
            for k in &popular {
                if c.get(k).is_none() {
                    c.insert(*k, &[1.0; 4]).unwrap();
                }
            }
        }
        assert_eq!(c.len(), 8);
        for i in 0..200 {
            let k = c.key(m, &format!("once{i}"));
            assert!(c.get(&k).is_none());
            c.insert(k, &[2.0; 4]).unwrap();
            check(&c);
        }
        assert!(popular.iter().all(|k| c.contains(k)));
        assert_eq!(c.stats().rejected, 200);
        // A newcomer that becomes popular gets in.
        let rising = c.key(m, "rising");
        for _ in 0..6 {
            if c.get(&rising).is_none() {
                c.insert(rising, &[3.0; 4]).unwrap();
            }
        }
        assert!(c.contains(&rising));
        check(&c);
    }

    #[test]
    fn sketch_counts_and_ages() {
        let mut s = FrequencySketch::new(16);
        for _ in 0..5 {
            s.increment(42);
        }
        assert_eq!(s.frequency(42), 5);
        assert!(s.frequency(7) <= 1);
        for _ in 0..40 {
            s.increment(42);
        }
        assert_eq!(s.frequency(42), FrequencySketch::MAX);
        // Fill the period with other keys: the counts are halved.
        for k in 0..s.period {
            s.increment(k.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
        }
        assert!(s.frequency(42) < FrequencySketch::MAX);
    }

    #[test]
    fn random_operations_keep_lists_bounds_and_values_consistent() {
        use proptest::prelude::*;
        let names = Interner::new();
        let m = names.get_or_intern("m");
        proptest!(ProptestConfig::with_cases(200), |(dims_seed in 0u8..2, ops in prop::collection::vec((0u8..4, 0u32..40, 1usize..40), 1..300))| {
            let cfg = EmbeddingCacheConfig { max_bytes: 2_000, max_entries: 12 };
            let mut c = EmbeddingCache::new(cfg, None);
            if dims_seed % 2 == 1 {
                c = c.with_frequency_admission();
            }
            let mut last = std::collections::HashMap::new();
            for (op, k, dims) in ops {
                let key = c.key(m, &k.to_string());
                match op {
                    0 | 1 => {
                        let v = vec![k as f32 + dims as f32; dims];
                        c.insert(key, &v).unwrap();
                        last.insert(k, v);
                    }
                    2 => {
                        if let Some(got) = c.get(&key) {
                            prop_assert_eq!(got, &last[&k][..]);
                        }
                    }
                    _ => {
                        c.remove(&key);
                    }
                }
                check(&c);
            }
        });
    }

    #[test]
    fn byte_bound_holds_and_slots_are_reused() {
        let names = Interner::new();
        let m = names.get_or_intern("m");
        let per = entry_bytes(768);
        let cfg = EmbeddingCacheConfig {
            max_bytes: per * 10,
            max_entries: 1000,
        };
        let mut c = EmbeddingCache::new(cfg, None);
        for i in 0..100 {
            let key = c.key(m, &i.to_string());
            c.insert(key, &vec_of(i as f32, 768)).unwrap();
            assert!(c.bytes() <= cfg.max_bytes);
        }
        assert_eq!(c.len(), 10);
        // Storage never passed the slots the bound allows.
        assert!(c.stats().storage_bytes <= 10 * 768 * 4, "{:?}", c.stats());
        let last = c.key(m, "99");
        assert_eq!(c.get(&last).unwrap()[0], 99.0);
        let big = vec_of(0.0, 10_000);
        assert!(matches!(
            c.insert(last, &big),
            Err(LlmError::EmbeddingTooLarge { .. })
        ));
    }

    #[test]
    fn replace_and_mixed_dims() {
        let names = Interner::new();
        let m = names.get_or_intern("m");
        let mut c = EmbeddingCache::new(EmbeddingCacheConfig::default(), None);
        let k = c.key(m, "x");
        c.insert(k, &[1.0, 2.0]).unwrap();
        c.insert(k, &[3.0, 4.0]).unwrap();
        assert_eq!(c.peek(&k).unwrap(), &[3.0, 4.0]);
        c.insert(k, &[5.0, 6.0, 7.0]).unwrap();
        assert_eq!(c.peek(&k).unwrap(), &[5.0, 6.0, 7.0]);
        assert_eq!(c.len(), 1);
        assert_eq!(c.bytes(), entry_bytes(3));
        assert!(c.remove(&k));
        assert_eq!(c.bytes(), 0);
        assert!(c.insert(k, &[]).is_err());
    }

    #[test]
    fn keys_separate_models_and_texts() {
        let names = Interner::new();
        let (a, b) = (names.get_or_intern("a"), names.get_or_intern("b"));
        let c = EmbeddingCache::new(EmbeddingCacheConfig::default(), None);
        assert_ne!(c.key(a, "t"), c.key(b, "t"));
        assert_ne!(c.key(a, "t"), c.key(a, "u"));
        assert_eq!(c.key(a, "t"), c.key(a, "t"));
    }

    #[test]
    fn budget_is_charged_and_refusal_evicts() {
        let names = Interner::new();
        let m = names.get_or_intern("m");
        let per = entry_bytes(100);
        let budget = MemoryBudget::with_limit(per * 5).unwrap();
        let mut c = EmbeddingCache::new(EmbeddingCacheConfig::default(), Some(budget.clone()));
        for i in 0..20 {
            let key = c.key(m, &i.to_string());
            c.insert(key, &vec_of(1.0, 100)).unwrap();
            assert_eq!(budget.used(), c.bytes());
        }
        assert_eq!(c.len(), 5);
        assert_eq!(c.stats().evictions, 15);
        // Something else holds part of the budget: the cache keeps to what is left.
        c.clear();
        assert_eq!(budget.used(), 0);
        let hog = budget.try_reserve(per * 3).unwrap();
        for i in 0..5 {
            let key = c.key(m, &format!("h{i}"));
            c.insert(key, &vec_of(1.0, 100)).unwrap();
        }
        assert_eq!(c.len(), 2);
        // With the budget all taken, an insert into an emptied cache is refused, typed.
        c.clear();
        let blocker = budget.try_reserve(budget.limit() - budget.used()).unwrap();
        let key = c.key(m, "refused");
        assert!(matches!(
            c.insert(key, &vec_of(1.0, 100)),
            Err(LlmError::Budget { .. })
        ));
        assert!(c.is_empty());
        drop((hog, blocker));
        assert_eq!(budget.used(), 0);
    }
}
