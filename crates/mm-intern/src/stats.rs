//! Byte accounting.

/// What an interner holds and what it saved, in bytes measured from its own allocations.
///
/// `arena_bytes + index_bytes + fixed_bytes` ([`held_bytes`](Self::held_bytes)) is the
/// capacity the interner has asked the global allocator for and not given back: chunk
/// capacities, `Vec` capacities and the hash tables' allocation sizes, read from the
/// structures themselves rather than estimated from string counts. The tests check it byte
/// for byte against `mm-track`'s live-bytes delta. It does not include the allocator's own
/// rounding or headers, which depend on the allocator.
///
/// The interner reads the figures shard by shard, each under its own lock, and the call
/// counters from per-thread slots, so while other threads intern the totals may mix
/// moments; once they are done (joined) every figure is exact.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct InternStats {
    /// Unique strings stored.
    pub strings: u64,
    /// Successful `get_or_intern` calls (hits and insertions).
    pub calls: u64,
    /// Sum of the lengths of the strings passed to those calls: what owned `String`s for
    /// every call would have put on the heap.
    pub requested_bytes: u64,
    /// Sum of the lengths of the unique strings stored.
    pub string_bytes: u64,
    /// Capacity of the byte arenas holding the strings (`>= string_bytes`; the difference
    /// is the unused tail of each chunk).
    pub arena_bytes: u64,
    /// Capacity of the index: hash tables, span segments or the frozen span array (8 bytes
    /// per string), and chunk and segment lists.
    pub index_bytes: u64,
    /// Parts whose size does not grow with the strings: the shard array (a padded lock and
    /// table header per shard), the per-thread call counters, the span table's inline
    /// directory (16 KiB). 0 for the frozen form.
    pub fixed_bytes: u64,
}

impl InternStats {
    /// Everything the interner holds: `arena_bytes + index_bytes + fixed_bytes`.
    pub fn held_bytes(&self) -> u64 {
        self.arena_bytes + self.index_bytes + self.fixed_bytes
    }

    /// `requested_bytes - held_bytes`: heap bytes saved against keeping one owned `String`
    /// per call (counting only the strings' heap buffers, not the 24-byte `String` values
    /// against 4-byte symbols). Negative while there is little repetition.
    pub fn saved_bytes(&self) -> i64 {
        let requested = i64::try_from(self.requested_bytes).unwrap_or(i64::MAX);
        let held = i64::try_from(self.held_bytes()).unwrap_or(i64::MAX);
        requested - held
    }

    pub(crate) fn add_shard(&mut self, strings: u64, string_bytes: u64, arena: u64, index: u64) {
        self.strings += strings;
        self.string_bytes += string_bytes;
        self.arena_bytes += arena;
        self.index_bytes += index;
    }
}
