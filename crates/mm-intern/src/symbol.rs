//! Symbols: a string's index in its interner's span table.

use core::{fmt, num::NonZeroU32};

/// A handle to an interned string: 4 bytes, `Copy`, and `Option<Symbol>` is 4 bytes too.
///
/// A symbol is only meaningful to the interner that made it (or the [`FrozenInterner`] it
/// was frozen into). Its value is the string's index in the interner's one table of
/// spans, which hands indices to its shards 256 at a time: with one shard the symbols are
/// 256, 257, 258, ... in insertion order; with more shards each shard's runs of 256
/// interleave with the others', so symbol values are not dense (at most 255 unused values
/// per shard, plus the first 256): do not use them as indices into your own arrays.
///
/// [`FrozenInterner`]: crate::FrozenInterner
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Symbol(NonZeroU32);

impl Symbol {
    /// The symbol of span-table index `index`.
    ///
    /// # Safety
    /// `index` is not 0: it names a stored string, and segment 0 of the span table is
    /// never handed out (`spans.rs`).
    #[inline(always)]
    pub(crate) unsafe fn new(index: u32) -> Self {
        debug_assert_ne!(index, 0);
        // SAFETY: the caller's guarantee.
        Symbol(unsafe { NonZeroU32::new_unchecked(index) })
    }

    /// The symbol's raw value (never 0), for logging or compact storage.
    #[inline(always)]
    pub fn to_u32(self) -> u32 {
        self.0.get()
    }
}

impl fmt::Debug for Symbol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Symbol({})", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_keeps_the_niche() {
        for raw in [1, 256, u32::MAX] {
            // SAFETY: not 0.
            assert_eq!(unsafe { Symbol::new(raw) }.to_u32(), raw);
        }
        // SAFETY: not 0.
        assert_eq!(format!("{:?}", unsafe { Symbol::new(7) }), "Symbol(7)");
        assert_eq!(core::mem::size_of::<Option<Symbol>>(), 4);
    }
}
