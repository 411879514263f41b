//! Call counters with no shared read-modify-write on the hot path.
//!
//! Every `get_or_intern` call is counted (`calls`, `requested_bytes`). A shared atomic per
//! interner or per shard would put a `lock`-prefixed add (and, between threads, a cache-line
//! transfer) on every hit. Instead each thread owns one slot of a process-wide set
//! (`sync::thread_slot`) for as long as it lives, and every interner keeps one padded pair
//! of counters per slot: the owner updates its pair with a plain load and store, readers sum
//! all pairs. A thread that finds every slot taken uses one extra, shared pair with
//! `fetch_add`, so the totals are exact in every case.

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
    #[inline]
    pub(crate) fn add(&self, calls: u64, bytes: u64) {
        // `min` lets the compiler drop the bounds check (`thread_slot` is at most `SLOTS`).
        let slot = sync::thread_slot().min(SLOTS);
        let pair = &self.pairs[slot];
        if slot < SLOTS {
            // Only the thread that owns `slot` writes this pair (see `sync::thread_slot`;
            // ownership moves between threads with Release/Acquire), so a load and a store
            // lose no update; readers see either value, never a torn one.
            pair.calls.store(
                pair.calls.load(Ordering::Relaxed) + calls,
                Ordering::Relaxed,
            );
            pair.bytes.store(
                pair.bytes.load(Ordering::Relaxed) + bytes,
                Ordering::Relaxed,
            );
        } else {
            pair.calls.fetch_add(calls, Ordering::Relaxed);
            pair.bytes.fetch_add(bytes, Ordering::Relaxed);
        }
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
