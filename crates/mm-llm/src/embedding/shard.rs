//! One shard: the index, the entry records, the policy, the slot store and the budget charge,
//! kept consistent under the shard's lock. Every method here runs with that lock held.

use std::collections::HashMap;
use std::sync::Arc;

use mm_budget::{MemoryBudget, Reservation};

use super::config::{EmbeddingStats, EvictionNotice, RemovalCause};
use super::entry_bytes;
use super::flight::Flight;
use super::key::{EmbeddingKey, KeyHash};
use super::policy::Policy;
use super::storage::{Embedding, SlotRef, SlotStore};
use crate::LlmError;
use crate::sync::{AtomicU64, Mutex, MutexGuard, Ordering, lock};

/// A shard with its lock, and a mirror of its figures in atomics, rewritten whenever a lock
/// of it ends, so a reading (the memory manager's report) needs no lock: a component's reading
/// may run on a thread that holds this shard's lock (a budget charge under the lock can raise
/// a pressure event, delivered synchronously), where locking again would deadlock.
#[derive(Debug)]
#[repr(C)] // the mirror shares the cache line of the lock word, which a locker owns anyway
pub(super) struct ShardCell {
    mirror: Mirror,
    shard: Mutex<Shard>,
}

/// The figures a lock-free reading sees.
#[derive(Debug, Default)]
struct Mirror {
    bytes: AtomicU64,
    entries: AtomicU64,
    hits: AtomicU64,
    misses: AtomicU64,
    evictions: AtomicU64,
    tables: AtomicU64,
}

/// A shard's figures as last mirrored.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct MirrorReading {
    pub(super) bytes: u64,
    pub(super) entries: u64,
    pub(super) hits: u64,
    pub(super) misses: u64,
    pub(super) evictions: u64,
    /// Bytes of the policy's sketch and ghost table (0 before the first lookup).
    pub(super) tables: u64,
}

/// A locked shard; updates the mirror when dropped.
pub(super) struct ShardGuard<'a> {
    guard: MutexGuard<'a, Shard>,
    mirror: &'a Mirror,
}

impl ShardCell {
    pub(super) fn new(shard: Shard) -> Self {
        Self {
            mirror: Mirror::default(),
            shard: Mutex::new(shard),
        }
    }

    /// Locks the shard (ignoring poisoning, see `sync::lock`).
    pub(super) fn lock(&self) -> ShardGuard<'_> {
        ShardGuard {
            guard: lock(&self.shard),
            mirror: &self.mirror,
        }
    }

    /// Locks the shard if no one holds it (this thread included).
    pub(super) fn try_lock(&self) -> Option<ShardGuard<'_>> {
        let guard = match self.shard.try_lock() {
            Ok(g) => g,
            Err(std::sync::TryLockError::Poisoned(p)) => p.into_inner(),
            Err(std::sync::TryLockError::WouldBlock) => return None,
        };
        Some(ShardGuard {
            guard,
            mirror: &self.mirror,
        })
    }

    /// The figures as of the last unlock, without locking.
    pub(super) fn mirrored(&self) -> MirrorReading {
        let m = &self.mirror;
        MirrorReading {
            bytes: m.bytes.load(Ordering::Relaxed),
            entries: m.entries.load(Ordering::Relaxed),
            hits: m.hits.load(Ordering::Relaxed),
            misses: m.misses.load(Ordering::Relaxed),
            evictions: m.evictions.load(Ordering::Relaxed),
            tables: m.tables.load(Ordering::Relaxed),
        }
    }
}

impl std::ops::Deref for ShardGuard<'_> {
    type Target = Shard;
    fn deref(&self) -> &Shard {
        &self.guard
    }
}

impl std::ops::DerefMut for ShardGuard<'_> {
    fn deref_mut(&mut self) -> &mut Shard {
        &mut self.guard
    }
}

impl Drop for ShardGuard<'_> {
    fn drop(&mut self) {
        let (s, m) = (&*self.guard, self.mirror);
        m.bytes.store(s.policy.bytes(), Ordering::Relaxed);
        m.entries.store(s.index.len() as u64, Ordering::Relaxed);
        m.hits.store(s.counters.hits, Ordering::Relaxed);
        m.misses.store(s.counters.misses, Ordering::Relaxed);
        m.evictions
            .store(s.counters.evicted.iter().sum(), Ordering::Relaxed);
        m.tables.store(s.policy.table_bytes(), Ordering::Relaxed);
    }
}

/// What one entry's record holds besides its policy node.
#[derive(Debug, Clone, Copy)]
struct Record {
    key: EmbeddingKey,
    /// `None` only between the record's creation and its slot write in `insert`.
    slot: Option<SlotRef>,
    dims: u32,
}

/// Bytes of one record (for the overhead test).
#[cfg(test)]
pub(super) const RECORD_SIZE: usize = size_of::<Record>();

/// Notices gathered under the lock for the listener, which runs after it is released.
#[derive(Debug, Default)]
pub(super) struct Notes {
    /// Whether to gather at all (a listener is set).
    pub(super) on: bool,
    pub(super) list: Vec<EvictionNotice>,
}

/// What a `get_with` caller does after its lookup.
#[derive(Debug)]
pub(super) enum Lookup {
    Hit(Embedding),
    /// Another caller computes the key: wait on its flight.
    Wait(Arc<Flight>),
    /// This caller computes the key (its flight is registered).
    Lead(Arc<Flight>),
}

/// Counters of one shard.
#[derive(Debug, Default, Clone, Copy)]
struct Counters {
    hits: u64,
    misses: u64,
    inserts: u64,
    coalesced: u64,
    evicted: [u64; 5],
}

/// One shard of the cache.
#[derive(Debug)]
pub(super) struct Shard {
    index: HashMap<EmbeddingKey, u32, KeyHash>,
    records: Vec<Record>,
    free_records: Vec<u32>,
    policy: Policy,
    store: SlotStore,
    reservation: Option<Reservation>,
    counters: Counters,
    /// Scratch list of entries the policy removed, emptied by `drain` (capacity reused).
    victims: Vec<(u32, RemovalCause)>,
    flights: HashMap<EmbeddingKey, Arc<Flight>, KeyHash>,
    max_entries: usize,
    max_bytes: u64,
}

impl Shard {
    pub(super) fn new(
        max_entries: usize,
        max_bytes: u64,
        ttl: Option<u64>,
        tti: Option<u64>,
    ) -> Self {
        Self {
            index: HashMap::default(),
            records: Vec::new(),
            free_records: Vec::new(),
            policy: Policy::new(max_entries, max_bytes, ttl, tti),
            store: SlotStore::default(),
            reservation: None,
            counters: Counters::default(),
            victims: Vec::new(),
            flights: HashMap::default(),
            max_entries,
            max_bytes,
        }
    }

    /// A lookup: counts the request, drops the entry if it expired, marks a hit used.
    pub(super) fn get(
        &mut self,
        key: &EmbeddingKey,
        now: u64,
        notes: &mut Notes,
    ) -> Option<Embedding> {
        let found = self.index.get(key).copied();
        if let Some(slot) = found.and_then(|idx| self.records[idx as usize].slot) {
            self.store.prefetch(slot);
        }
        self.policy.record(key.mixed());
        let live = found.filter(|&idx| {
            let expired = self.policy.is_expired(idx, now);
            if expired {
                self.policy.remove(idx);
                self.victims.push((idx, RemovalCause::Expired));
            }
            !expired
        });
        let handle = live.and_then(|idx| {
            self.policy.touch(idx, now);
            self.records[idx as usize]
                .slot
                .map(|s| self.store.handle(s))
        });
        if handle.is_none() {
            // A miss on a key the cache let go lately may resize the window (and evict).
            self.policy.missed(key.mixed(), &mut self.victims);
        }
        self.drain(notes);
        match handle {
            Some(_) => self.counters.hits += 1,
            None => self.counters.misses += 1,
        }
        handle
    }

    /// The live vector under `key` without counting or touching it.
    pub(super) fn peek(&self, key: &EmbeddingKey, now: u64) -> Option<Embedding> {
        let idx = *self.index.get(key)?;
        if self.policy.is_expired(idx, now) {
            return None;
        }
        self.records[idx as usize]
            .slot
            .map(|s| self.store.handle(s))
    }

    /// Whether a live entry is under `key`.
    pub(super) fn contains(&self, key: &EmbeddingKey, now: u64) -> bool {
        self.index
            .get(key)
            .is_some_and(|&idx| !self.policy.is_expired(idx, now))
    }

    /// Stores `vector` under `key`; returns a handle on it if it is cached afterwards (it
    /// may lose admission) and `want_handle` is set.
    pub(super) fn insert(
        &mut self,
        key: EmbeddingKey,
        vector: &[f32],
        now: u64,
        budget: Option<&MemoryBudget>,
        want_handle: bool,
        notes: &mut Notes,
    ) -> Result<Option<Embedding>, LlmError> {
        let dims = vector.len();
        if dims == 0 {
            return Err(LlmError::InvalidConfig(
                "an embedding must have at least one dimension",
            ));
        }
        let need = entry_bytes(dims);
        if need > self.max_bytes || dims > u32::MAX as usize {
            return Err(LlmError::EmbeddingTooLarge {
                bytes: need,
                max: self.max_bytes,
            });
        }
        if let Some(&old) = self.index.get(&key) {
            self.policy.remove(old);
            self.victims.push((old, RemovalCause::Replaced));
        }
        self.policy.expire(now, &mut self.victims);
        self.drain(notes);
        self.counters.inserts += 1;
        self.charge(need, budget, notes)?;
        let record = Record {
            key,
            slot: None,
            dims: dims as u32,
        };
        let idx = match self.free_records.pop() {
            Some(i) => {
                self.records[i as usize] = record;
                i
            }
            None => {
                self.records.push(record);
                (self.records.len() - 1) as u32
            }
        };
        self.index.insert(key, idx);
        self.policy
            .insert(idx, need, key.mixed(), now, &mut self.victims);
        self.drain(notes);
        if self.index.get(&key) != Some(&idx) {
            return Ok(None);
        }
        let max_slots = self.max_entries.min((self.max_bytes / need) as usize);
        let slot = self.store.take(dims, max_slots);
        self.store.write(slot, vector);
        self.records[idx as usize].slot = Some(slot);
        Ok(want_handle.then(|| self.store.handle(slot)))
    }

    /// Removes `key`; returns whether it was cached.
    pub(super) fn invalidate(&mut self, key: &EmbeddingKey, notes: &mut Notes) -> bool {
        let Some(&idx) = self.index.get(key) else {
            return false;
        };
        self.policy.remove(idx);
        self.victims.push((idx, RemovalCause::Explicit));
        self.drain(notes);
        true
    }

    /// Removes every entry (storage is kept for reuse).
    pub(super) fn invalidate_all(&mut self, notes: &mut Notes) {
        self.victims
            .extend(self.index.values().map(|&i| (i, RemovalCause::Explicit)));
        self.policy.clear();
        self.drain(notes);
    }

    /// Removes up to `count` entries in eviction order, with `cause`; returns how many.
    pub(super) fn evict(&mut self, count: usize, cause: RemovalCause, notes: &mut Notes) -> usize {
        self.policy.evict(count, cause, &mut self.victims);
        let n = self.victims.len();
        self.drain(notes);
        n
    }

    /// Removes the entries expired at `now`; returns how many.
    pub(super) fn expire(&mut self, now: u64, notes: &mut Notes) -> usize {
        self.policy.expire(now, &mut self.victims);
        let n = self.victims.len();
        self.drain(notes);
        n
    }

    /// Entries held.
    pub(super) fn len(&self) -> usize {
        self.index.len()
    }

    /// Bytes counted against the bound.
    pub(super) fn bytes(&self) -> u64 {
        self.policy.bytes()
    }

    /// Drops every entry and all storage, bookkeeping and budget charge.
    pub(super) fn clear(&mut self, notes: &mut Notes) {
        self.invalidate_all(notes);
        self.store.clear();
        self.policy.release();
        self.index = HashMap::default();
        self.records = Vec::new();
        self.free_records = Vec::new();
        self.victims = Vec::new();
        self.reservation = None;
    }

    /// Gives wholly unused storage blocks back to the allocator; returns the bytes.
    pub(super) fn release_unused(&mut self) -> u64 {
        self.store.release_unused()
    }

    /// The flight for a missing `key`: an existing one to wait on, or a new one to lead.
    pub(super) fn lookup_or_lead(
        &mut self,
        key: &EmbeddingKey,
        now: u64,
        notes: &mut Notes,
    ) -> Lookup {
        if let Some(hit) = self.get(key, now, notes) {
            return Lookup::Hit(hit);
        }
        if let Some(f) = self.flights.get(key) {
            self.counters.coalesced += 1;
            return Lookup::Wait(Arc::clone(f));
        }
        let flight = Arc::new(Flight::new());
        self.flights.insert(*key, Arc::clone(&flight));
        Lookup::Lead(flight)
    }

    /// Unregisters the flight of `key` (its leader finished or gave up).
    pub(super) fn end_flight(&mut self, key: &EmbeddingKey) {
        self.flights.remove(key);
    }

    /// Adds this shard's counters and sizes to `s`.
    pub(super) fn add_to(&self, s: &mut EmbeddingStats, evicted: &mut [u64; 5]) {
        let c = &self.counters;
        s.hits += c.hits;
        s.misses += c.misses;
        s.inserts += c.inserts;
        s.coalesced += c.coalesced;
        s.rejected += self.policy.rejected();
        for (total, n) in evicted.iter_mut().zip(c.evicted) {
            *total += n;
        }
        s.entries += self.index.len() as u64;
        s.bytes += self.policy.bytes();
        s.storage_bytes += self.store.bytes();
        s.policy_bytes += self.policy.overhead_bytes();
        s.tables_bytes += self.policy.table_bytes();
        s.pinned_slots += self.store.deferred() as u64;
    }

    /// Charges `need` bytes to the budget, evicting (cause `Pressure`) while it refuses.
    fn charge(
        &mut self,
        need: u64,
        budget: Option<&MemoryBudget>,
        notes: &mut Notes,
    ) -> Result<(), LlmError> {
        let Some(budget) = budget else {
            return Ok(());
        };
        loop {
            let result = match &mut self.reservation {
                Some(r) => r.try_grow(need),
                None => budget.try_reserve(need).map(|r| self.reservation = Some(r)),
            };
            match result {
                Ok(()) => return Ok(()),
                Err(source) if self.policy.len() == 0 => {
                    return Err(LlmError::Budget {
                        bytes: need,
                        source,
                    });
                }
                Err(_) => {
                    self.policy
                        .evict(1, RemovalCause::Pressure, &mut self.victims);
                    self.drain(notes);
                }
            }
        }
    }

    /// Finishes the removal of the entries the policy let go: index, slot, budget, counters,
    /// notices.
    fn drain(&mut self, notes: &mut Notes) {
        if self.victims.is_empty() {
            return;
        }
        let mut victims = std::mem::take(&mut self.victims);
        for &(idx, cause) in &victims {
            let rec = self.records[idx as usize];
            if self.index.get(&rec.key) == Some(&idx) {
                self.index.remove(&rec.key);
            }
            if let Some(slot) = rec.slot {
                self.store.release(slot);
            }
            let weight = self.policy.weight(idx);
            if let Some(r) = &mut self.reservation {
                r.shrink(weight);
            }
            self.records[idx as usize].slot = None;
            self.free_records.push(idx);
            self.counters.evicted[cause.index()] += 1;
            // Per entry, so at trace level: the counters carry the totals.
            tracing::trace!(
                cause = cause.as_str(),
                dims = rec.dims,
                "embedding cache removed an entry"
            );
            if notes.on {
                notes.list.push(EvictionNotice {
                    key: rec.key,
                    cause,
                    dims: rec.dims as usize,
                });
            }
        }
        victims.clear();
        self.victims = victims;
    }

    /// Checks the invariants of `EmbeddingCache` (see its docs) for this shard.
    #[cfg(test)]
    pub(super) fn check_invariants(&self) {
        let tracked = self.policy.check_invariants();
        let mut indexed: Vec<u32> = self.index.values().copied().collect();
        indexed.sort_unstable();
        assert_eq!(tracked, indexed, "policy and index disagree");
        let mut live = Vec::new();
        let mut bytes = 0;
        for &idx in &indexed {
            let rec = self.records[idx as usize];
            assert_eq!(self.index.get(&rec.key), Some(&idx), "record key");
            live.push(rec.slot.expect("an indexed entry has a slot"));
            assert_eq!(self.policy.weight(idx), entry_bytes(rec.dims as usize));
            bytes += self.policy.weight(idx);
            assert!(
                !self.free_records.contains(&idx),
                "live record on the free list"
            );
        }
        assert_eq!(indexed.len() + self.free_records.len(), self.records.len());
        assert_eq!(bytes, self.policy.bytes());
        assert!(self.index.len() <= self.max_entries);
        assert!(bytes <= self.max_bytes);
        if let Some(r) = &self.reservation {
            assert_eq!(r.bytes(), bytes, "budget charge");
        }
        self.store.check_invariants(&live);
    }
}
