//! The window's sizing signal: which part of the cache let go of a key that is asked for again.
//!
//! A direct-mapped table of the hashes of recently evicted keys, one `u64` per slot (about one
//! slot per cached entry), each tagged with the part that evicted it: the **window** (a
//! candidate that lost admission, or window overflow) or the **main** space (a victim of
//! admission or of the bounds). A miss on a key still in the table is a "ghost hit": had that
//! part been larger, the lookup would have hit. So a ghost hit of the window argues for a larger
//! window and one of main for a smaller one, the signal ARC uses to split its cache between
//! recency and frequency. Unlike a hill climber that compares the hit rates of successive
//! samples, it needs no quiet sample: a workload whose hit rate swings (a popular set that moves)
//! still tells it which side was wrong, one miss at a time. A newer eviction overwrites an older
//! one in its slot, so the table remembers roughly the last `capacity` evictions.

/// Which part of the cache evicted a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Evictor {
    /// The admission window (a rejected candidate, or window overflow).
    Window,
    /// The main space (probation or protected).
    Main,
}

/// Hashes of recently evicted keys with the part that evicted them.
#[derive(Debug, Default)]
pub(super) struct Ghosts {
    /// `hash & !1 | (1 if evicted by the window)`, 0 for an empty slot; empty until
    /// [`ensure`](Self::ensure).
    slots: Vec<u64>,
}

impl Ghosts {
    /// Sizes the table for about `capacity` cached keys (one slot per key rounded up to a power
    /// of two, between 16 and 2^20). Allocates on the first call only.
    pub(super) fn ensure(&mut self, capacity: usize) {
        if self.slots.is_empty() {
            self.slots = vec![0; Self::slots_for(capacity)];
        }
    }

    fn slots_for(capacity: usize) -> usize {
        capacity.clamp(16, 1 << 20).next_power_of_two()
    }

    /// Bytes [`ensure`](Self::ensure) allocates for `capacity` keys.
    pub(super) fn bytes_for(capacity: usize) -> u64 {
        Self::slots_for(capacity) as u64 * 8
    }

    /// Bytes of the table.
    pub(super) fn bytes(&self) -> u64 {
        self.slots.len() as u64 * 8
    }

    fn slot(&self, hash: u64) -> usize {
        // The low bit is the tag; the sketch uses the hash's other bits in other ways, and the
        // shard its top bits, so index by the middle ones.
        ((hash >> 1) as usize) & (self.slots.len() - 1)
    }

    /// Remembers that `by` evicted the key of `hash`. No-op before [`ensure`](Self::ensure).
    pub(super) fn remember(&mut self, hash: u64, by: Evictor) {
        if self.slots.is_empty() {
            return;
        }
        let i = self.slot(hash);
        self.slots[i] = (hash & !1) | u64::from(by == Evictor::Window);
    }

    /// Which part evicted the key of `hash`, if the table still remembers it; forgets it (one
    /// eviction argues once).
    pub(super) fn take(&mut self, hash: u64) -> Option<Evictor> {
        if self.slots.is_empty() {
            return None;
        }
        let i = self.slot(hash);
        let g = self.slots[i];
        if g == 0 || g | 1 != hash | 1 {
            return None;
        }
        self.slots[i] = 0;
        Some(if g & 1 == 1 {
            Evictor::Window
        } else {
            Evictor::Main
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembers_who_evicted_until_asked_or_overwritten() {
        let mut g = Ghosts::default();
        g.remember(6, Evictor::Window);
        assert_eq!(g.take(6), None, "nothing kept before ensure");
        g.ensure(100);
        assert_eq!(g.bytes(), 128 * 8);
        g.remember(6, Evictor::Window);
        g.remember(7 << 20, Evictor::Main);
        assert_eq!(g.take(5), None, "another key");
        assert_eq!(g.take(6), Some(Evictor::Window));
        assert_eq!(g.take(6), None, "one eviction argues once");
        assert_eq!(g.take(7 << 20), Some(Evictor::Main));
        // A later eviction in the same slot replaces the earlier one.
        let (a, b) = (10, 10 + (128 << 1));
        g.remember(a, Evictor::Main);
        g.remember(b, Evictor::Window);
        assert_eq!(g.take(a), None);
        assert_eq!(g.take(b), Some(Evictor::Window));
    }
}
