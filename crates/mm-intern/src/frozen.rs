//! The read-only form: every string in one exactly sized chunk, one span per symbol in one
//! flat array, and one `hashbrown` table of symbols.

use core::{fmt, slice, str};

use hashbrown::HashTable;

use crate::{
    InternStats, Symbol,
    live::{EMPTY_SPAN, HEADER_LEN, header_text},
    store::Chunk,
    sync::HashBuilder,
};

/// The read-only form of an [`Interner`](crate::Interner), made by
/// [`Interner::freeze`](crate::Interner::freeze): compacted (no spare capacity), with `get`
/// and `resolve` as plain reads with no lock and no atomic, so any number of threads can
/// share it (for example in an `Arc`).
///
/// It cannot intern new strings. Its [`stats`](Self::stats) are those of the interner at
/// freezing time, after unused capacity was given back.
pub struct FrozenInterner {
    /// Span of symbol `x` at `x`: offset in `bytes` (48 bits) and length (16 bits, or
    /// `HEADER_LEN`: an 8-byte length precedes the string); 0 for a value that names no
    /// string.
    spans: Box<[u64]>,
    bytes: Chunk,
    table: HashTable<u32>,
    hasher: HashBuilder,
    strings: u64,
    string_bytes: u64,
    calls: u64,
    requested_bytes: u64,
}

impl fmt::Debug for FrozenInterner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FrozenInterner")
            .field("strings", &self.strings)
            .finish_non_exhaustive()
    }
}

/// The text of a frozen span over the chunk starting at `base`.
///
/// # Safety
/// `span` is non-zero and was made by [`FrozenInterner::build`] for the chunk at `base`.
#[inline(always)]
unsafe fn text_at<'a>(base: *const u8, span: u64) -> &'a str {
    let len = span & 0xFFFF;
    // A wrapping add: `EMPTY_SPAN`'s offset 1 may lie past an empty chunk; it is never
    // dereferenced (length 0).
    let at = base.wrapping_add((span >> 16) as usize);
    if len == HEADER_LEN {
        // SAFETY: `build` wrote an 8-byte length and then that many bytes of a `&str` at
        // this offset of the chunk.
        return unsafe { header_text(at) };
    }
    // SAFETY: `build` copied the `len` bytes of a `&str` to this offset of the chunk, which
    // is never written again (none for `EMPTY_SPAN`: a zero-length slice at a non-null
    // address).
    unsafe { str::from_utf8_unchecked(slice::from_raw_parts(at, len as usize)) }
}

impl FrozenInterner {
    /// Copies the strings that `texts()` lists (each symbol once; the function is called
    /// twice and lists the same pairs both times) into a frozen interner.
    pub(crate) fn build<'a, I>(
        texts: impl Fn() -> I,
        hasher: HashBuilder,
        calls: u64,
        requested_bytes: u64,
    ) -> Self
    where
        I: Iterator<Item = (u32, &'a str)>,
    {
        let long = |t: &str| t.len() >= HEADER_LEN as usize;
        let (mut total, mut last, mut strings) = (0usize, None, 0u64);
        for (sym, t) in texts() {
            total += t.len() + if long(t) { 8 } else { 0 };
            last = last.max(Some(sym));
            strings += 1;
        }
        let mut bytes = if total > 0 {
            Chunk::with_capacity(total)
        } else {
            Chunk::empty()
        };
        let slots = last.map_or(0, |last| last as usize + 1);
        let mut spans = vec![0u64; slots].into_boxed_slice();
        let mut string_bytes = 0;
        for (sym, t) in texts() {
            // Offsets stay below 2^48: the live chunks these strings come from all lie
            // below 2^48 (`live.rs`), so their total length does too.
            spans[sym as usize] = if t.is_empty() {
                EMPTY_SPAN
            } else if long(t) {
                let at = bytes.push(&(t.len() as u64).to_ne_bytes());
                bytes.push(t.as_bytes());
                (at as u64) << 16 | HEADER_LEN
            } else {
                (bytes.push(t.as_bytes()) as u64) << 16 | t.len() as u64
            };
            string_bytes += t.len() as u64;
        }
        let base = bytes.base().as_ptr().cast_const();
        let text = |span: u64| {
            // SAFETY: only non-zero spans of `spans` reach here, made just above for the
            // chunk at `base`.
            unsafe { text_at(base, span) }
        };
        let mut table = HashTable::with_capacity(strings as usize);
        for (sym, &span) in spans.iter().enumerate() {
            if span != 0 {
                table.insert_unique(hasher.hash_one(text(span)), sym as u32, |&i| {
                    hasher.hash_one(text(spans[i as usize]))
                });
            }
        }
        Self {
            spans,
            bytes,
            table,
            hasher,
            strings,
            string_bytes,
            calls,
            requested_bytes,
        }
    }

    /// The text of a non-zero span of `self.spans`.
    #[inline(always)]
    fn text(&self, span: u64) -> &str {
        debug_assert_ne!(span, 0);
        // SAFETY: every non-zero span of `spans` was made by `build` for `bytes`, which
        // lives as long as `self`.
        unsafe { text_at(self.bytes.base().as_ptr(), span) }
    }

    /// The symbol for `s` if it was interned before freezing. One hash, one probe.
    #[inline(always)]
    pub fn get(&self, s: &str) -> Option<Symbol> {
        let hash = self.hasher.hash_one(s);
        let spans = &self.spans;
        self.table
            .find(hash, |&i| self.text(spans[i as usize]) == s)
            // SAFETY: the table holds symbols of the live interner's stored strings,
            // never 0.
            .map(|&i| unsafe { Symbol::new(i) })
    }

    /// The string of `sym`.
    ///
    /// # Panics
    /// If `sym` does not name a string here; see [`Interner::resolve`](crate::Interner::resolve).
    #[inline(always)]
    pub fn resolve(&self, sym: Symbol) -> &str {
        match self.try_resolve(sym) {
            Some(s) => s,
            None => not_here(sym),
        }
    }

    /// The string of `sym`, or `None` if it names no string here. A bounds check, one
    /// load and a test.
    #[inline(always)]
    pub fn try_resolve(&self, sym: Symbol) -> Option<&str> {
        match self.spans.get(sym.to_u32() as usize) {
            Some(&span) if span != 0 => Some(self.text(span)),
            _ => None,
        }
    }

    /// Unique strings stored.
    pub fn len(&self) -> usize {
        self.strings as usize
    }

    /// True if no string is stored.
    pub fn is_empty(&self) -> bool {
        self.strings == 0
    }

    /// Byte accounting of the frozen form (see [`InternStats`]): the one chunk of string
    /// bytes (8 more per string of 64 KiB or longer) as `arena_bytes`, the span array and
    /// the table as `index_bytes`; nothing fixed.
    pub fn stats(&self) -> InternStats {
        InternStats {
            strings: self.strings,
            calls: self.calls,
            requested_bytes: self.requested_bytes,
            string_bytes: self.string_bytes,
            arena_bytes: self.bytes.cap as u64,
            index_bytes: (self.spans.len() * size_of::<u64>() + self.table.allocation_size())
                as u64,
            fixed_bytes: 0,
        }
    }
}

#[cold]
#[inline(never)]
fn not_here(sym: Symbol) -> ! {
    panic!("mm_intern::FrozenInterner::resolve: {sym:?} is not from this interner")
}
