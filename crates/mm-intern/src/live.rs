//! One shard of the live interner: published strings are found without a lock; new
//! strings are added by one thread at a time, the holder of the shard's mutex. Spans live
//! in the interner's one span table (`spans.rs`), in segments this shard was handed.
//!
//! ```text
//! LiveShard
//!   count        AtomicU32       strings of this shard published (the miss check)
//!   groups       AtomicUsize     group count of the index table (a power of two, >= 1)
//!   table_bases  [ptr; 32]       segment k holds groups [2^k / 2, 2^k) (segment 0: group 0),
//!                                kept biased by its first group: group g = base[k] + g
//!                   Group { tags: AtomicU64 (8 one-byte tags), slots: [AtomicU32; 8] }
//!                   (a slot holds a symbol: an index into the span table)
//! Writer         (beside the shard in the interner, under a mutex)
//!                                arena chunks, the span segments handed to this shard,
//!                                byte counts
//! ```
//!
//! The writer is kept apart from the shard so that a caller with `&mut Interner` can
//! borrow a shard and its writer at once without the lock (`Mutex::get_mut`).
//!
//! The shard's `j`-th string (in insertion order) has symbol
//! `segs[j / SPAN_SEG].first + j % SPAN_SEG`.
//!
//! # Invariants (argued where each `unsafe` block relies on them)
//!
//! 1. **Publication.** A writer stores a string's bytes into a chunk, then its span into
//!    its slot of the span table with Release (`spans.rs`, invariant 1). A reader that
//!    loads a non-zero span with Acquire therefore sees the bytes; a zero span is a string
//!    not stored (yet), which a reader skips.
//! 2. **Nothing readable moves or is freed while the shard lives.** Chunks are raw
//!    allocations written only past their initialised prefix; the table's group segments
//!    are never reallocated (span segments: `spans.rs`, invariant 3). Only `Drop` frees
//!    anything, and it has `&mut self`.
//! 3. **Index table.** Group segments are published (Release) before `groups` is raised
//!    (Release), so a reader that read `groups = G` with Acquire finds every segment of the
//!    groups `0..G` non-null. A slot's symbol is stored before its tag byte (Release on the
//!    tag word). A reader may still read a stale or newer symbol (the writer rebuilds the
//!    table in place when it grows): every value a slot ever holds is a symbol handed to
//!    this shard (or the initial 0, which names no span), the reader loads its span
//!    (skipping a zero one) and compares the text, so a stale slot can only cause a missed
//!    hit, never a wrong symbol or an unpublished read. A miss is always confirmed under
//!    the mutex by the caller.
//! 4. **The count closes every table change.** A writer changes the table (places its new
//!    symbol, or grows and rebuilds it) after the string's bytes and span are stored and
//!    before `count.store(j + 1, Release)`, and nothing between its first table write and
//!    that store can fail or unwind. So a probe that read `count = c` (Acquire) before the
//!    table saw every table write that will ever precede `c`; if the count is still `c`
//!    once the caller holds the mutex, no writer changed the table since, the probe read
//!    it unchanged, and its miss is exact without probing again.
//! 5. **Word reads.** A regular chunk starts with `PAD = 8` zero bytes and strings are
//!    appended after them, so for a string at `[a, a + n)` of a regular chunk the bytes
//!    `[a + n - 8, a + n)` are initialised (padding or earlier strings) and never written
//!    again: `find` compares a short string by reading the word that ends where it ends.

use core::{mem::size_of, ptr, slice, str};

use crossbeam_utils::CachePadded;

use crate::{
    InternError,
    spans::{SPAN_SEG, SPAN_SEG_BITS, Segment, SpanTable},
    store::{Chunk, MAX_SMALL},
    sync::{
        AtomicPtr, AtomicU32, AtomicU64, AtomicUsize, HashBuilder, Key, Mutex, Ordering, SHORT,
    },
};

/// Strings per group before the table grows: 7 of 8 slots. Loom grows at one per group, so
/// that two or three strings already rebuild the table under a concurrent reader.
const GROUP_FILL: usize = if cfg!(loom) { 1 } else { 7 };
/// Capacity of a shard's first regular chunk; chunks double up to `MAX_CHUNK`.
const FIRST_CHUNK: usize = 256;
const MAX_CHUNK: usize = 1 << 13;
/// Zero bytes at the start of every regular chunk, so that the `PAD` bytes before the end
/// of any string in it are initialised (invariant 5).
const PAD: usize = 8;
/// The `len` field of a span whose string is longer than 16 bits can say: its chunk starts
/// with the length as 8 native-endian bytes.
pub(crate) const HEADER_LEN: u64 = 0xFFFF;
/// Spans keep a byte address in their top 48 bits.
const ADDR_LIMIT: u64 = 1 << 48;
/// Index-table segments: enough for `2^31` groups, more than a shard can hold strings
/// (and `group_segment`, a 32-bit bit length, is at most 31: no bounds check).
const TABLE_SEGS: usize = 32;
/// Tag byte of an empty slot; a full slot's tag is the hash's top 7 bits (high bit clear).
const EMPTY_GROUP: u64 = 0x8080_8080_8080_8080;
const LO_BITS: u64 = 0x0101_0101_0101_0101;

/// Eight slots of the index table: a tag byte and a symbol each.
struct Group {
    tags: AtomicU64,
    slots: [AtomicU32; 8],
}

impl Group {
    fn empty() -> Self {
        Self {
            tags: AtomicU64::new(EMPTY_GROUP),
            slots: core::array::from_fn(|_| AtomicU32::new(0)),
        }
    }
}

#[inline]
fn tag(hash: u64) -> u64 {
    hash >> 57
}

/// A group's tag word, matched against one tag: on x86-64 with SSE2 (always present
/// there) one byte compare of the eight tags at once, one bit per slot, and no 64-bit
/// constants held in registers across a probe; elsewhere the SWAR bit trick.
#[derive(Clone, Copy)]
struct Probe {
    #[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
    want: core::arch::x86_64::__m128i,
    #[cfg(not(all(target_arch = "x86_64", target_feature = "sse2")))]
    want: u64,
}

impl Probe {
    #[inline(always)]
    fn new(tag: u64) -> Self {
        #[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
        {
            use core::arch::x86_64::_mm_set_epi64x;
            // The tag in the low eight bytes; 0xFF (never a tag, never the 0 of the upper
            // half of a loaded word) in the high eight.
            // SAFETY: this is compiled only with the `sse2` target feature enabled (it is
            // part of the x86-64 baseline), which is all the intrinsic requires.
            let want = unsafe { _mm_set_epi64x(-1, (LO_BITS * tag) as i64) };
            Self { want }
        }
        #[cfg(not(all(target_arch = "x86_64", target_feature = "sse2")))]
        Self {
            want: LO_BITS * tag,
        }
    }

    /// Slots of `tags` whose tag may equal this tag (the x86-64 compare is exact; the SWAR
    /// one may report false matches above the lowest; callers compare the text anyway),
    /// and whether `tags` has an empty slot. Empty slots never match: an empty byte is
    /// `0x80` and a tag is below `0x80`.
    #[inline(always)]
    fn matches(self, tags: u64) -> (Slots, bool) {
        #[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
        {
            use core::arch::x86_64::{_mm_cmpeq_epi8, _mm_cvtsi64_si128, _mm_movemask_epi8};
            // SAFETY: as in `new`: only compiled with `sse2` enabled.
            unsafe {
                let v = _mm_cvtsi64_si128(tags as i64);
                // Only the low eight bytes can match (the high ones are 0 against 0xFF).
                let hits = _mm_movemask_epi8(_mm_cmpeq_epi8(v, self.want)) as u8;
                // The high bit of each byte: set exactly in empty slots.
                (Slots(hits), _mm_movemask_epi8(v) != 0)
            }
        }
        #[cfg(not(all(target_arch = "x86_64", target_feature = "sse2")))]
        {
            // The byte of `x` of an empty slot has its high bit set, which `!x` clears
            // whatever the borrow from the byte below.
            let x = tags ^ self.want;
            let hits = x.wrapping_sub(LO_BITS) & !x & EMPTY_GROUP;
            (Slots(hits), tags & EMPTY_GROUP != 0)
        }
    }
}

/// Matching slots of a group, lowest first.
struct Slots(
    #[cfg(all(target_arch = "x86_64", target_feature = "sse2"))] u8,
    #[cfg(not(all(target_arch = "x86_64", target_feature = "sse2")))] u64,
);

impl Iterator for Slots {
    type Item = usize;

    #[inline(always)]
    fn next(&mut self) -> Option<usize> {
        if self.0 == 0 {
            return None;
        }
        let bit = self.0.trailing_zeros() as usize;
        self.0 &= self.0 - 1;
        // One bit per slot on x86-64, the high bit of the slot's byte elsewhere.
        Some(
            if cfg!(all(target_arch = "x86_64", target_feature = "sse2")) {
                bit
            } else {
                bit / 8
            },
        )
    }
}

/// The table segment of group `g`: its bit length (0 for group 0), computed as the highest
/// set bit of `2g + 1`, which is never zero (one `bsr`, no zero case).
#[inline(always)]
fn group_segment(g: usize) -> usize {
    // In 32 bits, so that the result is at most 31 and indexes `table_bases` without a
    // mask: a shard has fewer than 2^31 groups (at most 2^32 strings, 7 to a group), so
    // `2g + 1` fits.
    (u32::BITS - 1 - ((2 * g + 1) as u32).leading_zeros()) as usize
}

/// Groups in table segment `k`.
fn segment_groups(k: usize) -> usize {
    if k == 0 { 1 } else { 1 << (k - 1) }
}

/// The first group of table segment `k`.
fn segment_start(k: usize) -> usize {
    (1usize << k) >> 1
}

/// Span of a string stored at `addr`: the address above, the length (or `HEADER_LEN`) below.
fn pack(addr: usize, len: u64) -> u64 {
    (addr as u64) << 16 | len
}

/// The span of every empty string: length 0 at address 1, a non-null address that is never
/// dereferenced (a zero-length slice needs no provenance), so that every span is non-zero
/// and `span_text` needs no empty-string case.
pub(crate) const EMPTY_SPAN: u64 = 1 << 16;

/// True if the `n <= SHORT` bytes at `addr` are the string whose words are `words`
/// (`sync::short_words`). Up to 8 bytes: one word read that ends where the string ends,
/// shifted; 9 to 16: its first and last word.
///
/// # Safety
/// `addr` is the address, with exposed provenance, of `n` initialised bytes in a regular
/// chunk (so the 8 bytes before their end are initialised too, invariant 5) that are not
/// written while this runs; or `n` is 0 (then `addr` is never dereferenced, and 0 for a
/// span not stored yet).
#[inline(always)]
unsafe fn short_is(addr: u64, words: (u64, u64), n: usize) -> bool {
    debug_assert!(n <= SHORT);
    let at = ptr::with_exposed_provenance::<u8>(addr as usize);
    // SAFETY: every read is of initialised bytes by the caller's guarantee: `[n - 8, n)`
    // from `at` for `1 <= n <= 8` (invariant 5), `[0, 8)` and `[n - 8, n)` for
    // `9 <= n <= 16`.
    unsafe {
        if n > 8 {
            at.cast::<u64>().read_unaligned() == words.0
                && at.add(n - 8).cast::<u64>().read_unaligned() == words.1
        } else if n > 0 {
            // The word's top `n` bytes are the string's, in memory order; `words.0` holds
            // them in its low `n` bytes.
            u64::from_le(at.add(n).sub(8).cast::<u64>().read_unaligned()) >> (64 - 8 * n) == words.0
        } else {
            // An unstored span (0) has length 0 too: only `EMPTY_SPAN`'s non-zero address
            // is the empty string.
            addr != 0
        }
    }
}

/// True if the `s.len()` bytes at `at` equal `s`, for `17 <= s.len() <= 32`: four
/// overlapping word compares (the first and last 16 bytes) instead of a `memcmp` call.
///
/// # Safety
/// `at` is valid for reads of `s.len()` initialised bytes.
#[inline(always)]
unsafe fn words_equal(at: *const u8, s: &str) -> bool {
    let (n, b) = (s.len(), s.as_ptr());
    debug_assert!((SHORT + 1..=32).contains(&n));
    // SAFETY: `n >= 17`, so every read covers bytes of `[0, n)` of `at` (the caller's
    // guarantee) and of `s`.
    unsafe {
        let word = |p: *const u8, i: usize| p.add(i).cast::<u64>().read_unaligned();
        (word(at, 0) ^ word(b, 0))
            | (word(at, 8) ^ word(b, 8))
            | (word(at, n - 16) ^ word(b, n - 16))
            | (word(at, n - 8) ^ word(b, n - 8))
            == 0
    }
}

/// The mutex-protected half of a shard (see [`LiveShard::new_writer`]).
pub(crate) struct Writer {
    chunks: Vec<Chunk>,
    /// The regular chunk being filled (large strings' chunks are interleaved in `chunks`).
    open: Option<usize>,
    next_cap: usize,
    /// The span-table segments handed to this shard, in order: its `j`-th string's span is
    /// entry `j % SPAN_SEG` of `segs[j / SPAN_SEG]`.
    segs: Vec<Segment>,
    /// Sum of the lengths of the unique strings stored.
    pub(crate) string_bytes: u64,
}

// SAFETY: a `Segment` points into the span table, which outlives the shard and is shared by
// every thread anyway (its spans are atomics); only the lock holder stores through it.
// Everything else in `Writer` is `Send`.
unsafe impl Send for Writer {}

/// Bytes a shard holds, as allocated.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Held {
    pub(crate) arena: u64,
    pub(crate) index: u64,
}

impl Writer {
    /// Copies `s` into the arena and returns its span (see invariant 2 for why its bytes
    /// stay put).
    fn store(&mut self, s: &str) -> Result<u64, InternError> {
        let len = s.len();
        if len == 0 {
            return Ok(EMPTY_SPAN);
        }
        if len > MAX_SMALL {
            let header = len as u64 >= HEADER_LEN;
            let mut chunk = Chunk::with_capacity(len + if header { 8 } else { 0 });
            let addr = checked_base(&chunk)?;
            if header {
                chunk.push(&(len as u64).to_ne_bytes());
            }
            chunk.push(s.as_bytes());
            self.chunks.push(chunk);
            return Ok(pack(addr, if header { HEADER_LEN } else { len as u64 }));
        }
        let open = match self.open {
            Some(open) if self.chunks[open].remaining() >= len => open,
            _ => {
                // MAX_SMALL <= MAX_CHUNK, so this ends at most at MAX_CHUNK.
                let mut cap = self.next_cap;
                while cap < len + PAD {
                    cap *= 2;
                }
                let mut chunk = Chunk::with_capacity(cap);
                checked_base(&chunk)?;
                // Invariant 5: the eight bytes before any string of the chunk are
                // initialised.
                chunk.push(&[0; PAD]);
                self.next_cap = (cap * 2).min(MAX_CHUNK);
                self.chunks.push(chunk);
                self.open = Some(self.chunks.len() - 1);
                self.chunks.len() - 1
            }
        };
        let chunk = &mut self.chunks[open];
        let start = chunk.push(s.as_bytes());
        Ok(pack(
            chunk.base().as_ptr().expose_provenance() + start,
            len as u64,
        ))
    }
}

/// The chunk's address, exposed so that spans can carry it as an integer, if the whole
/// chunk lies below `ADDR_LIMIT`.
fn checked_base(chunk: &Chunk) -> Result<usize, InternError> {
    let addr = chunk.base().as_ptr().expose_provenance();
    if addr as u64 + chunk.cap as u64 > ADDR_LIMIT {
        return Err(InternError::AddressOutOfRange { addr: addr as u64 });
    }
    Ok(addr)
}

/// One shard of a live interner; see the module docs.
pub(crate) struct LiveShard {
    count: AtomicU32,
    groups: AtomicUsize,
    /// Segment `k`'s pointer minus `segment_start(k)` groups (a wrapping offset: it may
    /// point outside the segment, and is only dereferenced after adding a group number of
    /// that segment back).
    table_bases: [AtomicPtr<Group>; TABLE_SEGS],
}

impl LiveShard {
    /// An empty shard: allocates its table's first group (40 bytes), so that a probe
    /// never meets an empty table.
    pub(crate) fn new() -> Self {
        let first: Box<[Group]> = Box::new([Group::empty()]);
        let first = Box::into_raw(first).cast::<Group>();
        Self {
            count: AtomicU32::new(0),
            groups: AtomicUsize::new(1),
            // Segment 0 holds group 0 and starts at group 0: no bias.
            table_bases: core::array::from_fn(|k| {
                AtomicPtr::new(if k == 0 { first } else { ptr::null_mut() })
            }),
        }
    }

    /// The writer of a new shard, in its own cache line: inserts write the lock word,
    /// lookups never read it.
    pub(crate) fn new_writer() -> CachePadded<Mutex<Writer>> {
        CachePadded::new(Mutex::new(Writer {
            chunks: Vec::new(),
            open: None,
            next_cap: FIRST_CHUNK,
            segs: Vec::new(),
            string_bytes: 0,
        }))
    }

    /// Strings published so far.
    #[inline]
    pub(crate) fn len(&self) -> u32 {
        self.count.load(Ordering::Acquire)
    }

    /// The symbol of `s` (key `key`; never 0: the symbol of a stored string, whose span
    /// is not 0), if the lock-free probe finds it; else `Err(count)`,
    /// the published count the probe saw. A miss is not final while writers run (a table
    /// being rebuilt hides entries): the caller confirms it under the writer lock, where it
    /// is exact if `count` is unchanged (invariant 4) and a second probe is exact otherwise.
    #[inline(always)]
    pub(crate) fn find(&self, key: &Key, s: &str, spans: &SpanTable) -> Result<u32, u32> {
        if s.len() <= SHORT {
            self.find_short(key.hash, key.words, s.len(), spans)
        } else {
            self.find_long(key.hash, s, spans)
        }
    }

    /// `find` for a string of `n <= SHORT` bytes, known by its hash and words: each
    /// candidate costs a span load, a length test and one or two word compares.
    #[inline(always)]
    pub(crate) fn find_short(
        &self,
        hash: u64,
        words: (u64, u64),
        n: usize,
        spans: &SpanTable,
    ) -> Result<u32, u32> {
        self.probe(hash, spans, |span| {
            // A span of a short string holds its exact length; an unstored span (0) has
            // length 0, which `short_is` tells apart.
            span & 0xFFFF == n as u64
                // SAFETY: a non-zero span read with Acquire was made by `Writer::store`
                // for a string of `n` initialised, visible bytes at its address
                // (invariants 1 and 2), in a regular chunk since `n <= MAX_SMALL`
                // (invariant 5); a zero span has `n = 0`, for which nothing is read.
                && unsafe { short_is(span >> 16, words, n) }
        })
    }

    /// `find` for a string of more than `SHORT` bytes: a length-field test, then the text.
    #[inline(never)]
    pub(crate) fn find_long(&self, hash: u64, s: &str, spans: &SpanTable) -> Result<u32, u32> {
        // Strings of `HEADER_LEN` bytes or more keep `HEADER_LEN` in the span.
        let field = (s.len() as u64).min(HEADER_LEN);
        self.probe(hash, spans, |span| {
            // A span with a non-zero length field is not 0, so it was stored.
            span & 0xFFFF == field
                // SAFETY: a non-zero span read with Acquire names initialised, visible
                // bytes that stay put (invariants 1 and 2): `s.len()` of them, since the
                // length fields are equal and below `HEADER_LEN`, or a header span.
                && unsafe {
                    if s.len() <= 32 {
                        words_equal(ptr::with_exposed_provenance((span >> 16) as usize), s)
                    } else {
                        span_text(span) == s
                    }
                }
        })
    }

    /// The lock-free probe along `hash`'s sequence: the first slot whose symbol's span
    /// (read with Acquire, 0 if not stored) satisfies `is`, else `Err(count)` as in
    /// [`find`](Self::find).
    #[inline(always)]
    fn probe(&self, hash: u64, spans: &SpanTable, is: impl Fn(u64) -> bool) -> Result<u32, u32> {
        // Read before the table (invariant 4); the reads below need nothing from it.
        let count = self.count.load(Ordering::Acquire);
        // At least 1: the first group exists from the start.
        let groups = self.groups.load(Ordering::Acquire);
        let mask = groups - 1;
        let want = Probe::new(tag(hash));
        let mut pos = hash as usize & mask;
        let mut stride = 0;
        loop {
            let group = self.group(pos);
            let (hits, has_empty) = want.matches(group.tags.load(Ordering::Acquire));
            for slot in hits {
                let sym = group.slots[slot].load(Ordering::Relaxed);
                if is(spans.load(sym)) {
                    return Ok(sym);
                }
            }
            stride += 1;
            if has_empty || stride > mask {
                return Err(count);
            }
            pos = (pos + stride) & mask;
        }
    }

    /// Group `g`, which is below a `groups` value read with Acquire (or by the writer).
    #[inline(always)]
    fn group(&self, g: usize) -> &Group {
        let base = self.table_bases[group_segment(g)].load(Ordering::Acquire);
        // SAFETY: by invariant 3 the segment `k = group_segment(g)` of every group below
        // the `groups` value the caller read is published, with its base biased by
        // `segment_start(k)`; `g - segment_start(k)` is below `segment_groups(k)`, so
        // adding `g` lands inside that live segment (never freed while `self` lives,
        // invariant 2).
        unsafe { &*base.wrapping_add(g) }
    }

    /// Stores `s` (hash `hash`, not yet in the shard) as the shard's next string and
    /// publishes it; returns its symbol (never 0: segment 0 is never handed out). The caller
    /// holds the shard's writer `w` (through its lock, or through `&mut` of the interner,
    /// which excludes every other thread) and reserved the limits.
    pub(crate) fn insert(
        &self,
        w: &mut Writer,
        spans: &SpanTable,
        hash: u64,
        s: &str,
        hasher: &HashBuilder,
    ) -> Result<u32, InternError> {
        let j = self.count.load(Ordering::Relaxed) as usize;
        if j >> SPAN_SEG_BITS == w.segs.len() {
            w.segs.reserve(1);
            w.segs.push(spans.claim()?);
        }
        let seg = w.segs[j >> SPAN_SEG_BITS];
        let sym = seg.first + (j & (SPAN_SEG - 1)) as u32;
        let span = w.store(s)?;
        // Invariant 1: the bytes are in place; this segment is this shard's alone.
        seg.span(j & (SPAN_SEG - 1)).store(span, Ordering::Release);
        w.string_bytes += s.len() as u64;
        // Nothing from here to the publishing store can fail or unwind (invariant 4).
        self.index(w, j, sym, hash, hasher);
        self.count.store(j as u32 + 1, Ordering::Release);
        Ok(sym)
    }

    /// Adds the shard's string `j`, symbol `sym` (stored, not yet counted: see invariant
    /// 4), to the index table, growing it past `GROUP_FILL` strings per group (7/8 full).
    fn index(&self, w: &Writer, j: usize, sym: u32, hash: u64, hasher: &HashBuilder) {
        let groups = self.groups.load(Ordering::Relaxed);
        if j < groups * GROUP_FILL {
            self.place(groups, sym, hash);
            return;
        }
        // Grow: one new segment doubles the groups; then rebuild in place.
        let grown = groups * 2;
        let k = grown.trailing_zeros() as usize;
        let seg: Box<[Group]> = (0..segment_groups(k)).map(|_| Group::empty()).collect();
        // Invariant 3: the segment is published before `groups` covers it.
        let base = Box::into_raw(seg)
            .cast::<Group>()
            .wrapping_sub(segment_start(k));
        self.table_bases[k].store(base, Ordering::Release);
        for g in 0..groups {
            self.group(g).tags.store(EMPTY_GROUP, Ordering::Relaxed);
        }
        self.groups.store(grown, Ordering::Release);
        for (sym, text) in w.texts(j + 1) {
            self.place(grown, sym, hasher.hash_one(text));
        }
    }

    /// Writes `sym` into the first slot with an empty tag along `hash`'s probe sequence.
    /// The table is at most 7/8 full, so there is one.
    fn place(&self, groups: usize, sym: u32, hash: u64) {
        let mask = groups - 1;
        let mut pos = hash as usize & mask;
        let mut stride = 0;
        loop {
            let group = self.group(pos);
            let tags = group.tags.load(Ordering::Relaxed);
            let empty = tags & EMPTY_GROUP;
            if empty != 0 {
                let shift = empty.trailing_zeros() & !7;
                group.slots[(shift / 8) as usize].store(sym, Ordering::Relaxed);
                let tags = tags & !(0xFF << shift) | tag(hash) << shift;
                // Invariant 3: the symbol is visible to whoever sees the tag.
                group.tags.store(tags, Ordering::Release);
                return;
            }
            stride += 1;
            pos = (pos + stride) & mask;
        }
    }

    /// Bytes this shard has allocated (the caller holds `writer`, passed as `w`); its span
    /// segments are counted by the span table.
    pub(crate) fn held(&self, w: &Writer) -> Held {
        let arena: usize = w.chunks.iter().map(|c| c.cap).sum();
        let index = self.groups.load(Ordering::Relaxed) * size_of::<Group>()
            + w.chunks.capacity() * size_of::<Chunk>()
            + w.segs.capacity() * size_of::<Segment>();
        Held {
            arena: arena as u64,
            index: index as u64,
        }
    }
}

impl Writer {
    /// The symbols and texts of the shard's first `n` strings (`n` at most its published
    /// count), each stored by this writer or an earlier holder of the lock.
    pub(crate) fn texts(&self, n: usize) -> impl Iterator<Item = (u32, &str)> {
        (0..n).map(move |j| {
            let seg = self.segs[j >> SPAN_SEG_BITS];
            let k = j & (SPAN_SEG - 1);
            // Stores by earlier lock holders happen before this one holds the lock.
            let span = seg.span(k).load(Ordering::Relaxed);
            // SAFETY: the shard's string `j < n` was stored (bytes, then span) by a holder
            // of the lock that the caller holds now, or owns; its bytes stay put while the
            // shard lives (invariant 2).
            (seg.first + k as u32, unsafe { span_text(span) })
        })
    }
}

/// The text of a span made by `Writer::store`.
///
/// # Safety
/// The span's bytes are initialised, visible to the caller and stay put while the returned
/// borrow lives.
#[inline(always)]
pub(crate) unsafe fn span_text<'a>(span: u64) -> &'a str {
    let len = span & 0xFFFF;
    let addr = (span >> 16) as usize;
    // SAFETY: every span `store` makes has a non-zero address (a chunk's, or 1 for
    // `EMPTY_SPAN`); saying so lets `Option<&str>` use the pointer's niche without a test.
    unsafe { core::hint::assert_unchecked(addr != 0) };
    let at = ptr::with_exposed_provenance::<u8>(addr);
    if len == HEADER_LEN {
        // SAFETY: the caller's guarantee.
        return unsafe { header_text(at) };
    }
    // SAFETY: `store` exposed the chunk's provenance and packed an address inside it; the
    // caller guarantees the bytes: `len` of them at `at` (none for `EMPTY_SPAN`, whose
    // address is never read), a copy of a `&str`, so valid UTF-8.
    unsafe { str::from_utf8_unchecked(slice::from_raw_parts(at, len as usize)) }
}

/// The text of a `HEADER_LEN` span at `at`: an 8-byte length, then that many bytes.
///
/// # Safety
/// `at` points to an 8-byte native-endian length `n` followed by the `n` bytes of a `&str`
/// (the bytes of a `HEADER_LEN` span, live or frozen), initialised, visible to the caller
/// and never written while the returned borrow lives.
#[cold]
#[inline(never)]
pub(crate) unsafe fn header_text<'a>(at: *const u8) -> &'a str {
    // SAFETY: the caller's guarantee: a length and then that many bytes of a `&str`, so
    // valid UTF-8.
    unsafe {
        let n = at.cast::<u64>().read_unaligned() as usize;
        str::from_utf8_unchecked(slice::from_raw_parts(at.add(8), n))
    }
}

impl Drop for LiveShard {
    fn drop(&mut self) {
        // `&mut self`: no reader or writer is left, so Relaxed loads see every store.
        // Table segments are allocated in order 0, 1, 2, ...: stop at the first missing.
        // (Chunks free themselves; span segments belong to the span table.)
        for (k, base) in self.table_bases.iter().enumerate() {
            let base = base.load(Ordering::Relaxed);
            if base.is_null() {
                break;
            }
            let seg = base.wrapping_add(segment_start(k));
            // SAFETY: segment `k` was made by `Box::into_raw` of a boxed slice of
            // `segment_groups(k)` groups in `index` and is freed once, here.
            drop(unsafe { Box::from_raw(ptr::slice_from_raw_parts_mut(seg, segment_groups(k))) });
        }
    }
}
