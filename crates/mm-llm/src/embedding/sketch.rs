//! The frequency sketch behind admission: how often each key was asked for, recently.
//!
//! A count-min sketch of 4-bit counters, sixteen to a `u64` word, eight words to a 64-byte
//! block. A key maps to one block and to one counter in each of four rows within it (row `i`
//! is word `2i` or `2i + 1` of the block, and a nibble of it, picked by bits of a second mix of
//! the key's hash); its estimate is the smallest of the four. Keeping a key's four counters in
//! one cache line makes a lookup one memory access instead of four (the layout of Caffeine's
//! sketch); the rows still see independent bits of the hash. Increments are conservative (only the counters equal
//! to the current minimum grow), which keeps the over-estimate from colliding keys small.
//! Every `10 x capacity` increments all counters are halved, so popularity fades and a key
//! that was popular an hour ago does not keep its place for ever (the TinyLFU "reset").

/// Count-min sketch of 4-bit saturating counters with periodic halving.
#[derive(Debug, Default)]
pub(super) struct FrequencySketch {
    /// Sixteen 4-bit counters per word, eight words per block; empty until
    /// [`ensure`](Self::ensure).
    blocks: Vec<Block>,
    /// `blocks.len() - 1` (a power of two minus one).
    mask: u64,
    /// Increments since the last halving.
    additions: u64,
    /// Increments between two halvings.
    period: u64,
}

/// One cache line of counters.
#[derive(Debug, Default, Clone, Copy)]
#[repr(align(64))]
struct Block([u64; 8]);

impl FrequencySketch {
    /// A counter's largest value.
    pub(super) const MAX: u8 = 15;
    const BLOCK_SEED: u64 = 0x9E37_79B9_7F4A_7C15;
    const CELL_SEED: u64 = 0xC2B2_AE3D_27D4_EB4F;
    /// Counters halve their low bit away: `0b0111` in every nibble.
    const HALF_MASK: u64 = 0x7777_7777_7777_7777;

    /// Sizes the table for about `capacity` cached keys (one word, i.e. 16 counters, per key
    /// rounded up to a power of two, between 16 and 2^20 words). Allocates on the first call
    /// only, so an unused cache costs nothing.
    pub(super) fn ensure(&mut self, capacity: usize) {
        if !self.blocks.is_empty() {
            return;
        }
        let blocks = Self::blocks_for(capacity);
        self.blocks = vec![Block::default(); blocks];
        self.mask = blocks as u64 - 1;
        self.period = 10 * capacity.max(16) as u64;
    }

    fn blocks_for(capacity: usize) -> usize {
        (capacity.clamp(16, 1 << 20).next_power_of_two() / 8).max(2)
    }

    /// Bytes [`ensure`](Self::ensure) allocates for `capacity` keys.
    pub(super) fn bytes_for(capacity: usize) -> u64 {
        Self::blocks_for(capacity) as u64 * 64
    }

    /// Bytes of counters held.
    pub(super) fn bytes(&self) -> u64 {
        self.blocks.len() as u64 * 64
    }

    /// The block of `hash` and the (word, shift) of its counter in each row.
    fn cells(&self, hash: u64) -> (usize, [(usize, u32); 4]) {
        let b = hash.wrapping_mul(Self::BLOCK_SEED);
        let block = ((b ^ (b >> 32)) & self.mask) as usize;
        let c = (hash ^ (hash >> 29)).wrapping_mul(Self::CELL_SEED);
        // Five bits per row: one picks the word of the row's pair, four the nibble.
        let cells = std::array::from_fn(|row| {
            let bits = c >> (64 - 5 * (row as u32 + 1));
            (
                2 * row + (bits & 1) as usize,
                ((bits >> 1) & 0xF) as u32 * 4,
            )
        });
        (block, cells)
    }

    fn counter(words: &[u64; 8], (word, shift): (usize, u32)) -> u8 {
        ((words[word] >> shift) & 0xF) as u8
    }

    /// Counts one occurrence of `hash`. No-op before [`ensure`](Self::ensure).
    pub(super) fn increment(&mut self, hash: u64) {
        if self.blocks.is_empty() {
            return;
        }
        let (block, cells) = self.cells(hash);
        let words = &mut self.blocks[block].0;
        let min = cells
            .iter()
            .map(|&c| Self::counter(words, c))
            .min()
            .unwrap_or(0);
        if min == Self::MAX {
            return;
        }
        for c in cells {
            if Self::counter(words, c) == min {
                words[c.0] += 1 << c.1;
            }
        }
        self.additions += 1;
        if self.additions >= self.period {
            self.halve();
        }
    }

    /// Halves every counter (the reset that lets old popularity fade).
    fn halve(&mut self) {
        for w in self.blocks.iter_mut().flat_map(|b| b.0.iter_mut()) {
            *w = (*w >> 1) & Self::HALF_MASK;
        }
        self.additions /= 2;
    }

    /// The estimated recent count of `hash` (0 to [`MAX`](Self::MAX)).
    pub(super) fn frequency(&self, hash: u64) -> u8 {
        if self.blocks.is_empty() {
            return 0;
        }
        let (block, cells) = self.cells(hash);
        let words = &self.blocks[block].0;
        cells
            .iter()
            .map(|&c| Self::counter(words, c))
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
