//! The frequency sketch behind admission: how often each key was asked for, recently.
//!
//! A count-min sketch of 4-bit counters, sixteen to a `u64` word. A key maps to one counter in
//! each of four rows (four independent multiply-shift hashes of the key's 64-bit hash); its
//! estimate is the smallest of the four. Increments are conservative (only the counters equal
//! to the current minimum grow), which keeps the over-estimate from colliding keys small.
//! Every `10 x capacity` increments all counters are halved, so popularity fades and a key
//! that was popular an hour ago does not keep its place for ever (the TinyLFU "reset").

/// Count-min sketch of 4-bit saturating counters with periodic halving.
#[derive(Debug, Default)]
pub(super) struct FrequencySketch {
    /// Sixteen 4-bit counters per word; empty until [`ensure`](Self::ensure).
    words: Vec<u64>,
    /// `words.len() - 1` (a power of two minus one).
    mask: u64,
    /// Increments since the last halving.
    additions: u64,
    /// Increments between two halvings.
    period: u64,
}

impl FrequencySketch {
    /// A counter's largest value.
    pub(super) const MAX: u8 = 15;
    const SEEDS: [u64; 4] = [
        0x9E37_79B9_7F4A_7C15,
        0xC2B2_AE3D_27D4_EB4F,
        0x1656_67B1_9E37_79F9,
        0xD6E8_FEB8_6659_FD93,
    ];
    /// Counters halve their low bit away: `0b0111` in every nibble.
    const HALF_MASK: u64 = 0x7777_7777_7777_7777;

    /// Sizes the table for about `capacity` cached keys (one word, i.e. 16 counters, per key
    /// rounded up to a power of two, between 16 and 2^20 words). Allocates on the first call
    /// only, so an unused cache costs nothing.
    pub(super) fn ensure(&mut self, capacity: usize) {
        if !self.words.is_empty() {
            return;
        }
        let words = capacity.clamp(16, 1 << 20).next_power_of_two();
        self.words = vec![0; words];
        self.mask = words as u64 - 1;
        self.period = 10 * capacity.max(16) as u64;
    }

    /// Bytes of counters held.
    pub(super) fn bytes(&self) -> u64 {
        self.words.len() as u64 * 8
    }

    /// (word, shift) of the counter of `hash` in row `row`.
    fn cell(&self, hash: u64, row: usize) -> (usize, u32) {
        let h = (hash ^ Self::SEEDS[row]).wrapping_mul(Self::SEEDS[(row + 1) % 4]);
        let h = h ^ (h >> 31);
        ((h & self.mask) as usize, ((h >> 60) as u32) * 4)
    }

    fn counter(&self, (word, shift): (usize, u32)) -> u8 {
        ((self.words[word] >> shift) & 0xF) as u8
    }

    /// Counts one occurrence of `hash`. No-op before [`ensure`](Self::ensure).
    pub(super) fn increment(&mut self, hash: u64) {
        if self.words.is_empty() {
            return;
        }
        let cells: [(usize, u32); 4] = std::array::from_fn(|row| self.cell(hash, row));
        let min = cells.iter().map(|&c| self.counter(c)).min().unwrap_or(0);
        if min == Self::MAX {
            return;
        }
        for c in cells {
            if self.counter(c) == min {
                self.words[c.0] += 1 << c.1;
            }
        }
        self.additions += 1;
        if self.additions >= self.period {
            self.halve();
        }
    }

    /// Halves every counter (the reset that lets old popularity fade).
    fn halve(&mut self) {
        for w in &mut self.words {
            *w = (*w >> 1) & Self::HALF_MASK;
        }
        self.additions /= 2;
    }

    /// The estimated recent count of `hash` (0 to [`MAX`](Self::MAX)).
    pub(super) fn frequency(&self, hash: u64) -> u8 {
        if self.words.is_empty() {
            return 0;
        }
        (0..4)
            .map(|row| self.counter(self.cell(hash, row)))
            .min()
            .unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spread(k: u64) -> u64 {
        k.wrapping_mul(0x2545_F491_4F6C_DD1D) ^ 0x5555
    }

    #[test]
    fn counts_saturate_and_start_empty() {
        let mut s = FrequencySketch::default();
        s.increment(1);
        assert_eq!(s.frequency(1), 0, "nothing counted before ensure");
        s.ensure(64);
        assert_eq!(s.bytes(), 64 * 8);
        for _ in 0..5 {
            s.increment(42);
        }
        assert_eq!(s.frequency(42), 5);
        for _ in 0..40 {
            s.increment(42);
        }
        assert_eq!(s.frequency(42), FrequencySketch::MAX);
    }

    #[test]
    fn collisions_overestimate_little() {
        let mut s = FrequencySketch::default();
        s.ensure(1000);
        for k in 0..1000 {
            s.increment(spread(k));
        }
        // Every key was seen once; conservative update keeps nearly all estimates at 1.
        let over = (0..1000).filter(|&k| s.frequency(spread(k)) > 1).count();
        assert!(over < 20, "{over} of 1000 keys over-estimated");
        assert!((0..1000).all(|k| s.frequency(spread(k)) >= 1));
    }

    #[test]
    fn halving_fades_old_counts() {
        let mut s = FrequencySketch::default();
        s.ensure(16);
        for _ in 0..12 {
            s.increment(7);
        }
        assert_eq!(s.frequency(7), 12);
        // Enough other keys to reach the period: the old count is halved.
        let mut k = 0;
        while s.additions != 0 && s.frequency(7) == 12 {
            s.increment(spread(1000 + k));
            k += 1;
        }
        assert_eq!(s.frequency(7), 6);
    }
}
