//! Call counters with no shared read-modify-write on the hot path.
//!
//! Every `get_or_intern` call is counted (`calls`, `requested_bytes`). A shared atomic per
//! interner or per shard would put a `lock`-prefixed add (and, between threads, a cache-line
//! transfer) on every hit. Instead each thread owns one slot of a process-wide set
//! (`sync::claim_slot`) for as long as it lives, and every interner keeps one padded pair
//! of counters per slot: the owner updates its pair with a plain load and store, readers sum
//! all pairs. A thread that finds every slot taken uses one extra, shared pair (number 0)
//! with `fetch_add`, so the totals are exact in every case. The hot path reads the slot
//! from a `const` thread-local cell (one load), the claim is out of line.

use crossbeam_utils::CachePadded;

use crate::sync::{self, AtomicU64, Ordering, SLOTS};

#[derive(Default)]
struct Pair {
    calls: AtomicU64,
    bytes: AtomicU64,
}

/// Per-slot call counters of one interner.
pub(crate) struct CallCounters {
    pairs: Box<[CachePadded<Pair>; SLOTS + 1]>,
}

impl CallCounters {
    pub(crate) fn new() -> Self {
        Self {
            pairs: Box::new(core::array::from_fn(|_| CachePadded::new(Pair::default()))),
        }
    }

    /// Counts `calls` calls asking for `bytes` bytes in total, on the calling thread's slot.
    #[inline(always)]
    pub(crate) fn add(&self, calls: u64, bytes: u64) {
        match sync::cached_slot() {
            0 => self.add_uncached(calls, bytes),
            slot => {
                debug_assert!(slot <= SLOTS);
                // SAFETY: a cached slot is one this thread claimed, `1..=SLOTS`, and
                // `pairs` has `SLOTS + 1` entries.
                let pair = unsafe { self.pairs.get_unchecked(slot) };
                Self::add_owned(pair, calls, bytes);
            }
        }
    }

    /// `add` for a thread with no cached slot: its first call, or every call of a thread
    /// without a slot of its own (the shared pair, with read-modify-writes).
    #[cold]
    #[inline(never)]
    fn add_uncached(&self, calls: u64, bytes: u64) {
        let slot = sync::claim_slot();
        let pair = &self.pairs[slot.min(SLOTS)];
        if slot == 0 {
            pair.calls.fetch_add(calls, Ordering::Relaxed);
            pair.bytes.fetch_add(bytes, Ordering::Relaxed);
        } else {
            Self::add_owned(pair, calls, bytes);
        }
    }

    /// Only the thread that owns a slot writes its pair (see `sync::claim_slot`; ownership
    /// moves between threads with Release/Acquire), so a load and a store lose no update;
    /// readers see either value, never a torn one.
    #[inline(always)]
    fn add_owned(pair: &Pair, calls: u64, bytes: u64) {
        pair.calls.store(
            pair.calls.load(Ordering::Relaxed) + calls,
            Ordering::Relaxed,
        );
        pair.bytes.store(
            pair.bytes.load(Ordering::Relaxed) + bytes,
            Ordering::Relaxed,
        );
    }

    /// `(calls, bytes)` summed over every slot. Exact for every call that happened before
    /// this one (for example in threads that were joined); calls running at the same time
    /// may or may not be included.
    pub(crate) fn totals(&self) -> (u64, u64) {
        self.pairs.iter().fold((0, 0), |(c, b), p| {
            (
                c + p.calls.load(Ordering::Relaxed),
                b + p.bytes.load(Ordering::Relaxed),
            )
        })
    }

    /// Heap bytes of the counter array.
    pub(crate) fn heap_bytes(&self) -> usize {
        self.pairs.len() * size_of::<CachePadded<Pair>>()
    }
}
