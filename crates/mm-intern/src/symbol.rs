//! Symbols and how they encode a shard and an index.

use core::{fmt, num::NonZeroU32};

/// A handle to an interned string: 4 bytes, `Copy`, and `Option<Symbol>` is 4 bytes too.
///
/// A symbol is only meaningful to the interner that made it (or the [`FrozenInterner`] it
/// was frozen into). It encodes a shard number in its low bits and the string's index within
/// the shard above them, so symbol values are not dense: do not use them as indices into
/// your own arrays.
///
/// [`FrozenInterner`]: crate::FrozenInterner
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Symbol(NonZeroU32);

impl Symbol {
    /// Packs `(local << shard_bits | shard) + 1`; the caller keeps `local` below
    /// [`max_local`] so this cannot overflow.
    #[inline]
    pub(crate) fn new(shard: usize, local: u32, shard_bits: u32) -> Self {
        let raw = (local << shard_bits | shard as u32) + 1;
        match NonZeroU32::new(raw) {
            Some(raw) => Symbol(raw),
            None => unreachable!("raw symbol is at least 1"),
        }
    }

    /// The shard number and the index within the shard.
    #[inline]
    pub(crate) fn split(self, shard_bits: u32) -> (usize, u32) {
        let raw = self.0.get() - 1;
        let mask = (1u32 << shard_bits) - 1;
        ((raw & mask) as usize, raw >> shard_bits)
    }

    /// The symbol's raw value (never 0), for logging or compact storage.
    #[inline]
    pub fn to_u32(self) -> u32 {
        self.0.get()
    }
}

impl fmt::Debug for Symbol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Symbol({})", self.0)
    }
}

/// The number of strings one shard may hold with `shard_bits` shard bits: local indices are
/// `0..max_local`, so the largest packed value is `2^32 - 2^shard_bits`.
pub(crate) fn max_local(shard_bits: u32) -> u32 {
    ((1u64 << (32 - shard_bits)) - 1) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packs_and_splits_at_the_extremes() {
        for bits in 0..=8 {
            let shards = 1usize << bits;
            for shard in [0, shards - 1] {
                for local in [0, 1, max_local(bits) - 1] {
                    let sym = Symbol::new(shard, local, bits);
                    assert_eq!(sym.split(bits), (shard, local), "bits {bits}");
                }
            }
        }
        assert_eq!(core::mem::size_of::<Option<Symbol>>(), 4);
    }
}
