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

use crate::sync::{self, AtomicU64, Ordering, SLOT_SHIFT, SLOTS};

/// One slot's counters, alone on their cache line (two on targets with 64-byte lines,
/// which also keeps the adjacent-line prefetcher from pairing slots), and exactly
/// `1 << SLOT_SHIFT` bytes long, so that `sync::cached_slot_offset` is the byte offset of
/// a slot's pair in the array.
#[derive(Default)]
#[repr(C, align(128))]
struct Pair {
    calls: AtomicU64,
    bytes: AtomicU64,
}

const _: () = assert!(size_of::<Pair>() == 1 << SLOT_SHIFT);

/// Per-slot call counters of one interner.
pub(crate) struct CallCounters {
    pairs: Box<[Pair; SLOTS + 1]>,
}

impl CallCounters {
    pub(crate) fn new() -> Self {
        Self {
            pairs: Box::new(core::array::from_fn(|_| Pair::default())),
        }
    }

    /// Counts `calls` calls asking for `bytes` bytes in total, on the calling thread's slot.
    #[inline(always)]
    pub(crate) fn add(&self, calls: u64, bytes: u64) {
        match sync::cached_slot_offset() {
            0 => self.add_uncached(calls, bytes),
            offset => {
                debug_assert!(offset >> SLOT_SHIFT <= SLOTS && offset % size_of::<Pair>() == 0);
                // SAFETY: a cached offset is `slot << SLOT_SHIFT` for a slot this thread
                // claimed, `1..=SLOTS`; `pairs` has `SLOTS + 1` entries of exactly
                // `1 << SLOT_SHIFT` bytes (asserted above), so the offset is the address
                // of entry `slot`, inside the array and aligned.
                let pair = unsafe { &*self.pairs.as_ptr().cast::<u8>().add(offset).cast::<Pair>() };
                Self::add_owned(pair, calls, bytes);
            }
        }
    }

    /// Counts `calls` calls asking for `bytes` bytes through exclusive access (a caller
    /// with `&mut` of the interner): plain adds to the shared pair, which no other thread
    /// can be updating, and no thread-local lookup.
    #[inline(always)]
    pub(crate) fn add_exclusive(&mut self, calls: u64, bytes: u64) {
        let pair = &mut self.pairs[0];
        sync::add_exclusive(&mut pair.calls, calls);
        sync::add_exclusive(&mut pair.bytes, bytes);
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
        self.pairs.len() * size_of::<Pair>()
    }
}
