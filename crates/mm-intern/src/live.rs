//! One shard of the live interner: published strings are found and resolved without a lock;
//! new strings are added by one thread at a time, the holder of the shard's mutex.
//!
//! ```text
//! LiveShard
//!   count        AtomicU32       strings published; local index i < count is readable
//!   inline_count AtomicU32       min(count, 8192), stored after count: resolve's one test
//!   inline_segs  [seg ptr; 32]   the first 32 span segments (8192 strings)
//!   span_dir  -> [seg ptr; cap]  copy-on-grow directory of the span segments after them
//!                   seg -> [AtomicU64; SPAN_SEG]   span = address (48 bits) | len (16 bits)
//!   groups       AtomicUsize     group count of the index table (a power of two, or 0)
//!   table_bases  [ptr; 32]       segment k holds groups [2^k / 2, 2^k) (segment 0: group 0),
//!                                kept biased by its first group: group g = base[k] + g
//!                   Group { tags: AtomicU64 (8 one-byte tags), slots: [AtomicU32; 8] }
//!   writer       Mutex<Writer>   arena chunks, retired directories, byte counts
//! ```
//!
//! # Invariants (argued where each `unsafe` block relies on them)
//!
//! 1. **Publication.** A writer stores a string's bytes into a chunk, its span into its
//!    segment and, if needed, the segment pointer into `inline_segs` or the directory and
//!    the directory into `span_dir`, then indexes it, all before
//!    `count.store(i + 1, Release)`. A reader that loads `count` with
//!    Acquire and sees `c > i` therefore sees all of them (writers follow each other through
//!    the mutex, so this holds across writers too).
//! 2. **Nothing readable moves or is freed while the shard lives.** Chunks are raw
//!    allocations written only past their initialised prefix; span segments and the table's
//!    group segments are never reallocated; a replaced directory is *retired* (kept, still
//!    holding every pointer it had) until the shard is dropped. Only `Drop` frees anything,
//!    and it has `&mut self`.
//! 3. **Index table.** Group segments are published (Release) before `groups` is raised
//!    (Release), so a reader that read `groups = G` with Acquire finds every segment of the
//!    groups `0..G` non-null. A slot's index is stored before its tag byte (Release on the
//!    tag word). A reader may still read a stale or newer index (the writer rebuilds the
//!    table in place when it grows); it uses an index only after checking it against
//!    the `count` the probe read first (Acquire) and then compares the text, so a stale slot can only cause a
//!    missed hit, never a wrong symbol or an unpublished read. A miss is always confirmed
//!    under the mutex by the caller.
//! 4. **The count closes every table change.** A writer changes the table (places its new
//!    index, or grows and rebuilds it) after the string's bytes and span are stored and
//!    before `count.store(i + 1, Release)`, and nothing between its first table write and
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
    store::{Chunk, MAX_SMALL},
    sync::{AtomicPtr, AtomicU32, AtomicU64, AtomicUsize, HashBuilder, Key, Ordering},
};

/// Spans per segment: 2 KiB segments, so the unused tail of a shard's span table is at most
/// 2 KiB. Loom uses two-span segments so that its small models cross segment and directory
/// boundaries.
const SPAN_SEG_BITS: u32 = if cfg!(loom) { 1 } else { 8 };
const SPAN_SEG: usize = 1 << SPAN_SEG_BITS;
/// Span segments whose pointers live in the shard itself (one dependent load less on every
/// lookup and resolve of the shard's first `INLINE_SEGS * SPAN_SEG` strings); the rest go
/// through `span_dir`. Loom keeps one inline, so its models reach the directory.
const INLINE_SEGS: usize = if cfg!(loom) { 1 } else { 32 };
/// Strings whose spans are in the inline segments.
const INLINE_STRINGS: u32 = (INLINE_SEGS * SPAN_SEG) as u32;
/// First capacity of the span directory (segment pointers).
const FIRST_DIR: usize = if cfg!(loom) { 1 } else { 4 };
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
const HEADER_LEN: u64 = 0xFFFF;
/// Spans keep a byte address in their top 48 bits.
const ADDR_LIMIT: u64 = 1 << 48;
/// Index-table segments: enough for `2^31` groups, more than a shard can hold strings (a
/// power of two, so that masking the segment number needs no bounds check).
const TABLE_SEGS: usize = 32;
/// Tag byte of an empty slot; a full slot's tag is the hash's top 7 bits (high bit clear).
const EMPTY_GROUP: u64 = 0x8080_8080_8080_8080;
const LO_BITS: u64 = 0x0101_0101_0101_0101;

/// Eight slots of the index table: a tag byte and a local index each.
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

/// Bytes of `tags` whose tag may equal `tag` (exact for the lowest, possibly false for
/// higher ones; callers compare the text anyway). Empty slots are never reported: an empty
/// byte is `0x80` and `tag < 0x80`, so its byte of `x` has the high bit set, which `!x`
/// clears whatever the borrow from the byte below.
#[inline(always)]
fn matches(tags: u64, tag: u64) -> u64 {
    let x = tags ^ (LO_BITS * tag);
    x.wrapping_sub(LO_BITS) & !x & EMPTY_GROUP
}

/// The table segment of group `g`: its bit length (0 for group 0), computed as the highest
/// set bit of `2g + 1`, which is never zero (one `bsr`, no zero case).
#[inline(always)]
fn group_segment(g: usize) -> usize {
    (usize::BITS - 1 - (2 * g + 1).leading_zeros()) as usize & (TABLE_SEGS - 1)
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
const EMPTY_SPAN: u64 = 1 << 16;

/// True if the `s.len()` bytes at `addr` are `s` (`key` is `s`'s key). Up to 8 bytes: one
/// word read that ends where the string ends, shifted; 9 to 16: its first and last word;
/// longer: `memcmp`.
///
/// # Safety
/// `addr` is the address, with exposed provenance, of `s.len() < HEADER_LEN` initialised
/// bytes that are not written while this runs, in a regular chunk if `s.len() <= 16` (so
/// the 8 bytes before their end are initialised too, invariant 5).
#[inline(always)]
unsafe fn span_is(addr: u64, key: &Key, s: &str) -> bool {
    let n = s.len();
    let at = ptr::with_exposed_provenance::<u8>(addr as usize);
    // SAFETY: every read is of initialised bytes by the caller's guarantee: `[n - 8, n)`
    // from `at` for `1 <= n <= 8` (invariant 5), `[0, 8)` and `[n - 8, n)` for
    // `9 <= n <= 16`, `[0, n)` otherwise.
    unsafe {
        if n <= 8 {
            // The word's top `n` bytes are the string's, in memory order; `key.words.0`
            // holds them in its low `n` bytes.
            n == 0
                || u64::from_le(at.add(n).sub(8).cast::<u64>().read_unaligned()) >> (64 - 8 * n)
                    == key.words.0
        } else if n <= 16 {
            at.cast::<u64>().read_unaligned() == key.words.0
                && at.add(n - 8).cast::<u64>().read_unaligned() == key.words.1
        } else {
            slice::from_raw_parts(at, n) == s.as_bytes()
        }
    }
}

/// A retired span directory (see invariant 2): freed when the shard is dropped.
struct Retired {
    first: *mut AtomicPtr<AtomicU64>,
    cap: usize,
}

/// The mutex-protected half of a shard.
pub(crate) struct Writer {
    chunks: Vec<Chunk>,
    /// The regular chunk being filled (large strings' chunks are interleaved in `chunks`).
    open: Option<usize>,
    next_cap: usize,
    /// Span segments allocated, and the capacity of the current directory.
    span_segs: usize,
    dir_cap: usize,
    retired: Vec<Retired>,
    /// Sum of the lengths of the unique strings stored.
    pub(crate) string_bytes: u64,
}

// SAFETY: the raw pointers in `retired` are owned allocations that only this shard frees (in
// `LiveShard::drop`), like `Box`es; moving the writer to another thread moves that
// ownership. Everything else in `Writer` is `Send`.
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
    /// `min(count, INLINE_STRINGS)`, stored after `count`: one test tells `resolve` that a
    /// string is both published and in an inline segment.
    inline_count: AtomicU32,
    inline_segs: [AtomicPtr<AtomicU64>; INLINE_SEGS],
    span_dir: AtomicPtr<AtomicPtr<AtomicU64>>,
    groups: AtomicUsize,
    /// Segment `k`'s pointer minus `segment_start(k)` groups (a wrapping offset: it may
    /// point outside the segment, and is only dereferenced after adding a group number of
    /// that segment back).
    table_bases: [AtomicPtr<Group>; TABLE_SEGS],
    /// In its own cache line: inserts write the lock word, lookups never read it.
    pub(crate) writer: CachePadded<crate::sync::Mutex<Writer>>,
}

impl LiveShard {
    /// An empty shard; allocates nothing.
    pub(crate) fn new() -> Self {
        Self {
            count: AtomicU32::new(0),
            inline_count: AtomicU32::new(0),
            inline_segs: core::array::from_fn(|_| AtomicPtr::new(ptr::null_mut())),
            span_dir: AtomicPtr::new(ptr::null_mut()),
            groups: AtomicUsize::new(0),
            table_bases: core::array::from_fn(|_| AtomicPtr::new(ptr::null_mut())),
            writer: CachePadded::new(crate::sync::Mutex::new(Writer {
                chunks: Vec::new(),
                open: None,
                next_cap: FIRST_CHUNK,
                span_segs: 0,
                dir_cap: 0,
                retired: Vec::new(),
                string_bytes: 0,
            })),
        }
    }

    /// Strings published so far.
    #[inline]
    pub(crate) fn len(&self) -> u32 {
        self.count.load(Ordering::Acquire)
    }

    /// The string with local index `i`, if it is published. No lock. For the shard's first
    /// `INLINE_STRINGS` strings one test and two dependent loads (inline segment pointer,
    /// span).
    #[inline(always)]
    pub(crate) fn resolve(&self, i: u32) -> Option<&str> {
        if i >= self.inline_count.load(Ordering::Acquire) {
            return self.resolve_past_inline(i);
        }
        let at = i as usize;
        debug_assert!(at >> SPAN_SEG_BITS < INLINE_SEGS);
        // SAFETY: `i < inline_count <= INLINE_STRINGS`, so `i >> SPAN_SEG_BITS` is an inline
        // segment; `inline_count` was read with Acquire after the writer stored it (after
        // everything for `i`, invariant 1), so the segment pointer is set and the span
        // stored. The span was made by `Writer::store` for a string whose bytes are
        // initialised, visible (invariant 1) and never written or freed while `self` lives
        // (invariant 2).
        unsafe {
            let seg = self
                .inline_segs
                .get_unchecked(at >> SPAN_SEG_BITS)
                .load(Ordering::Acquire);
            Some(span_text(
                (*seg.add(at & (SPAN_SEG - 1))).load(Ordering::Relaxed),
            ))
        }
    }

    /// `resolve` of a string past the inline segments, or not published.
    #[cold]
    #[inline(never)]
    fn resolve_past_inline(&self, i: u32) -> Option<&str> {
        if i >= self.count.load(Ordering::Acquire) {
            return None;
        }
        // SAFETY: `i` is below a `count` read with Acquire, as `published_text` requires.
        Some(unsafe { self.published_text(i) })
    }

    /// The text of published string `i`.
    ///
    /// # Safety
    /// As [`published_span`](Self::published_span).
    #[inline(always)]
    unsafe fn published_text(&self, i: u32) -> &str {
        // SAFETY: the caller's guarantee; the span's bytes as in `resolve`.
        unsafe { span_text(self.published_span(i)) }
    }

    /// The span of published string `i`: for the shard's first `INLINE_SEGS * SPAN_SEG`
    /// strings two dependent loads (inline segment pointer, span), past them one more
    /// through the directory, out of line.
    ///
    /// # Safety
    /// The caller has read `count > i` with Acquire (or holds the writer lock and `i` is
    /// below `count`, or is the string it has just stored).
    #[inline(always)]
    unsafe fn published_span(&self, i: u32) -> u64 {
        let i = i as usize;
        let seg = i >> SPAN_SEG_BITS;
        let seg = match self.inline_segs.get(seg) {
            Some(entry) => entry.load(Ordering::Acquire),
            // SAFETY: the caller's guarantee, passed on.
            None => unsafe { self.directory_segment(seg) },
        };
        // SAFETY: by invariant 1 segment `i >> SPAN_SEG_BITS` was entered (inline, or in a
        // directory at least as new as the one read here: directories only grow, and a
        // retired one stays allocated with its entries, invariant 2) before the `count`
        // the caller read, so the entry is non-null and points to a live segment of
        // `SPAN_SEG` spans whose entry `i % SPAN_SEG` holds `i`'s span.
        unsafe { (*seg.add(i & (SPAN_SEG - 1))).load(Ordering::Relaxed) }
    }

    /// The pointer of span segment `seg >= INLINE_SEGS`, read through the directory (the
    /// uncommon case: a shard's strings past the first `INLINE_SEGS * SPAN_SEG`).
    ///
    /// # Safety
    /// As [`published_span`](Self::published_span), for a string of segment `seg`.
    #[cold]
    #[inline(never)]
    unsafe fn directory_segment(&self, seg: usize) -> *mut AtomicU64 {
        // SAFETY: a string of segment `seg` is published (the caller's guarantee), so the
        // directory read with Acquire after that has more than `seg - INLINE_SEGS` entries
        // (invariant 1).
        unsafe { self.seg_entry(seg, Ordering::Acquire) }.load(Ordering::Acquire)
    }

    /// Where the pointer of span segment `seg` is kept.
    ///
    /// # Safety
    /// Segment `seg` is inline, or the span directory read with `order` has more than
    /// `seg - INLINE_SEGS` entries: a reader made sure a string of that segment is
    /// published (invariant 1); the writer, that `seg - INLINE_SEGS < dir_cap`.
    #[inline(always)]
    unsafe fn seg_entry(&self, seg: usize, order: Ordering) -> &AtomicPtr<AtomicU64> {
        match self.inline_segs.get(seg) {
            Some(entry) => entry,
            // SAFETY: in bounds of a live directory, by the caller's guarantee.
            None => unsafe { &*self.span_dir.load(order).add(seg - INLINE_SEGS) },
        }
    }

    /// The local index of `s` (hash `hash`), if the lock-free probe finds it; else
    /// `Err(count)`, the published count the probe saw. A miss is not final while writers
    /// run (a table being rebuilt hides entries): the caller confirms it under the writer
    /// lock, where it is exact if `count` is unchanged (invariant 4) and a second probe is
    /// exact otherwise.
    #[inline(always)]
    pub(crate) fn find(&self, key: &Key, s: &str) -> Result<u32, u32> {
        let n = s.len();
        if n >= HEADER_LEN as usize {
            return self.find_long(key.hash, s);
        }
        let hash = key.hash;
        // Read once, before the table: an index below it is published (invariant 1); one
        // published during the probe can only be missed, which callers confirm.
        let count = self.count.load(Ordering::Acquire);
        let groups = self.groups.load(Ordering::Acquire);
        if groups == 0 {
            return Err(count);
        }
        let mask = groups - 1;
        let want = tag(hash);
        let mut pos = hash as usize & mask;
        let mut stride = 0;
        loop {
            let group = self.group(pos);
            let tags = group.tags.load(Ordering::Acquire);
            let mut hits = matches(tags, want);
            while hits != 0 {
                let slot = (hits.trailing_zeros() / 8) as usize;
                hits &= hits - 1;
                let i = group.slots[slot].load(Ordering::Relaxed);
                if i >= count {
                    continue;
                }
                // SAFETY: `i` is below a `count` read with Acquire.
                let span = unsafe { self.published_span(i) };
                // `n < HEADER_LEN`, so a span of `s`'s text holds its exact length.
                if span & 0xFFFF != n as u64 {
                    continue;
                }
                // SAFETY: `span` was made by `Writer::store` for a string of `n` initialised,
                // visible bytes at its address (invariants 1 and 2), stored in a regular
                // chunk if `n <= MAX_SMALL` (invariant 5).
                if unsafe { span_is(span >> 16, key, s) } {
                    return Ok(i);
                }
            }
            stride += 1;
            if tags & EMPTY_GROUP != 0 || stride > mask {
                return Err(count);
            }
            pos = (pos + stride) & mask;
        }
    }

    /// `find` for strings of `HEADER_LEN` bytes or more (their spans hold `HEADER_LEN`, the
    /// length is in the chunk): the plain probe, out of line.
    #[cold]
    #[inline(never)]
    fn find_long(&self, hash: u64, s: &str) -> Result<u32, u32> {
        let count = self.count.load(Ordering::Acquire);
        let groups = self.groups.load(Ordering::Acquire);
        let mask = groups.wrapping_sub(1);
        let mut pos = hash as usize & mask;
        for stride in 1..=groups {
            let group = self.group(pos);
            let tags = group.tags.load(Ordering::Acquire);
            let mut hits = matches(tags, tag(hash));
            while hits != 0 {
                let slot = (hits.trailing_zeros() / 8) as usize;
                hits &= hits - 1;
                let i = group.slots[slot].load(Ordering::Relaxed);
                // SAFETY: `i` is below a `count` read with Acquire.
                if i < count && unsafe { self.published_text(i) } == s {
                    return Ok(i);
                }
            }
            if tags & EMPTY_GROUP != 0 {
                return Err(count);
            }
            pos = (pos + stride) & mask;
        }
        Err(count)
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

    /// Stores `s` (hash `hash`, not yet in the shard) as local index `len()` and publishes
    /// it. The caller holds `writer` (passed as `w`), checked that the index fits a symbol,
    /// and reserved the limits.
    pub(crate) fn insert(
        &self,
        w: &mut Writer,
        hash: u64,
        s: &str,
        hasher: &HashBuilder,
    ) -> Result<u32, InternError> {
        let i = self.count.load(Ordering::Relaxed);
        let span = w.store(s)?;
        self.push_span(w, i as usize, span);
        w.string_bytes += s.len() as u64;
        // Nothing from here to the publishing store can fail or unwind (invariant 4).
        self.index(w, i, hash, hasher);
        // Invariants 1 and 4: everything above happens before this.
        self.count.store(i + 1, Ordering::Release);
        if i < INLINE_STRINGS {
            // Invariant 1 again, for readers of `inline_count`.
            self.inline_count.store(i + 1, Ordering::Release);
        }
        Ok(i)
    }

    fn push_span(&self, w: &mut Writer, i: usize, span: u64) {
        let seg_index = i >> SPAN_SEG_BITS;
        if seg_index == w.span_segs {
            if seg_index >= INLINE_SEGS && seg_index - INLINE_SEGS == w.dir_cap {
                self.grow_dir(w);
            }
            let seg: Box<[AtomicU64]> = (0..SPAN_SEG).map(|_| AtomicU64::new(0)).collect();
            let seg = Box::into_raw(seg).cast::<AtomicU64>();
            // SAFETY: the segment is inline or below the `dir_cap` ensured just above;
            // only lock holders store `span_dir`, so a Relaxed load reads the current one.
            unsafe { self.seg_entry(seg_index, Ordering::Relaxed) }.store(seg, Ordering::Release);
            w.span_segs += 1;
        }
        // SAFETY: as above; entry `seg_index < span_segs` is set and points to a live
        // segment of `SPAN_SEG` spans.
        unsafe {
            let seg = self
                .seg_entry(seg_index, Ordering::Relaxed)
                .load(Ordering::Relaxed);
            (*seg.add(i & (SPAN_SEG - 1))).store(span, Ordering::Relaxed);
        }
    }

    /// Replaces the span directory by one twice as large with the same entries, retiring
    /// the old one (invariant 2).
    fn grow_dir(&self, w: &mut Writer) {
        let cap = (w.dir_cap * 2).max(FIRST_DIR);
        let used = w.span_segs.saturating_sub(INLINE_SEGS);
        let old = self.span_dir.load(Ordering::Relaxed);
        let new: Box<[AtomicPtr<AtomicU64>]> = (0..cap)
            .map(|k| {
                let entry = if k < used {
                    // SAFETY: `old` has `dir_cap >= used > k` entries.
                    unsafe { (*old.add(k)).load(Ordering::Relaxed) }
                } else {
                    ptr::null_mut()
                };
                AtomicPtr::new(entry)
            })
            .collect();
        w.retired.reserve(1);
        let new = Box::into_raw(new).cast::<AtomicPtr<AtomicU64>>();
        self.span_dir.store(new, Ordering::Release);
        if !old.is_null() {
            w.retired.push(Retired {
                first: old,
                cap: w.dir_cap,
            });
        }
        w.dir_cap = cap;
    }

    /// Adds string `i` (stored, not yet published: see invariant 4) to the index table, growing it past `GROUP_FILL` strings
    /// per group (7/8 full).
    fn index(&self, _w: &mut Writer, i: u32, hash: u64, hasher: &HashBuilder) {
        let groups = self.groups.load(Ordering::Relaxed);
        if (i as usize) < groups * GROUP_FILL {
            self.place(groups, i, hash);
            return;
        }
        // Grow: one new segment doubles the groups; then rebuild in place.
        let grown = (groups * 2).max(1);
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
        for j in 0..=i {
            // SAFETY: the lock holder published `j < i` (`count = i`) and stored `i`'s
            // span itself.
            let h = hasher.hash_one(unsafe { self.published_text(j) });
            self.place(grown, j, h);
        }
    }

    /// Writes index `i` into the first slot with an empty tag along `hash`'s probe sequence.
    /// The table is at most 7/8 full, so there is one.
    fn place(&self, groups: usize, i: u32, hash: u64) {
        let mask = groups - 1;
        let mut pos = hash as usize & mask;
        let mut stride = 0;
        loop {
            let group = self.group(pos);
            let tags = group.tags.load(Ordering::Relaxed);
            let empty = tags & EMPTY_GROUP;
            if empty != 0 {
                let shift = empty.trailing_zeros() & !7;
                group.slots[(shift / 8) as usize].store(i, Ordering::Relaxed);
                let tags = tags & !(0xFF << shift) | tag(hash) << shift;
                // Invariant 3: the index is visible to whoever sees the tag.
                group.tags.store(tags, Ordering::Release);
                return;
            }
            stride += 1;
            pos = (pos + stride) & mask;
        }
    }

    /// Bytes this shard has allocated (the caller holds `writer`, passed as `w`).
    pub(crate) fn held(&self, w: &Writer) -> Held {
        let arena: usize = w.chunks.iter().map(|c| c.cap).sum();
        let dirs = w.dir_cap + w.retired.iter().map(|r| r.cap).sum::<usize>();
        let index = w.span_segs * SPAN_SEG * size_of::<AtomicU64>()
            + dirs * size_of::<AtomicPtr<AtomicU64>>()
            + self.groups.load(Ordering::Relaxed) * size_of::<Group>()
            + w.chunks.capacity() * size_of::<Chunk>()
            + w.retired.capacity() * size_of::<Retired>();
        Held {
            arena: arena as u64,
            index: index as u64,
        }
    }

    /// Every string in local-index order (the caller owns the shard).
    pub(crate) fn texts(&mut self) -> impl Iterator<Item = &str> {
        let n = self.count.load(Ordering::Relaxed);
        let this: &Self = self;
        // SAFETY: `&mut self` excludes writers, so every store is visible; `j < count`.
        (0..n).map(move |j| unsafe { this.published_text(j) })
    }
}

/// The text of a span made by `Writer::store`.
///
/// # Safety
/// The span's bytes are initialised, visible to the caller and stay put while the returned
/// borrow lives.
#[inline(always)]
unsafe fn span_text<'a>(span: u64) -> &'a str {
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
/// As [`span_text`], for a span whose length field is `HEADER_LEN`.
#[cold]
#[inline(never)]
unsafe fn header_text<'a>(at: *const u8) -> &'a str {
    // SAFETY: `store` wrote the length and then the bytes of a `&str` there (the caller's
    // guarantee), so this is valid UTF-8.
    unsafe {
        let n = at.cast::<u64>().read_unaligned() as usize;
        str::from_utf8_unchecked(slice::from_raw_parts(at.add(8), n))
    }
}

impl Drop for LiveShard {
    fn drop(&mut self) {
        // `&mut self`: no reader or writer is left, so Relaxed loads see every store.
        let mut w = crate::sync::lock(&self.writer);
        let dir = self.span_dir.load(Ordering::Relaxed);
        let free_dir = |first: *mut AtomicPtr<AtomicU64>, cap: usize| {
            // SAFETY: each directory was made by `Box::into_raw` of a `cap`-entry boxed
            // slice in `grow_dir` and is freed once, here.
            drop(unsafe { Box::from_raw(ptr::slice_from_raw_parts_mut(first, cap)) });
        };
        for k in 0..w.span_segs {
            // SAFETY: segment `k < span_segs` is inline or in `dir` (`dir_cap > k -
            // INLINE_SEGS`), set to a segment made by `Box::into_raw` of a `SPAN_SEG`-span
            // boxed slice in `push_span`, freed once, here.
            unsafe {
                let seg = self.seg_entry(k, Ordering::Relaxed).load(Ordering::Relaxed);
                drop(Box::from_raw(ptr::slice_from_raw_parts_mut(seg, SPAN_SEG)));
            }
        }
        if !dir.is_null() {
            free_dir(dir, w.dir_cap);
        }
        for r in w.retired.drain(..) {
            free_dir(r.first, r.cap);
        }
        // Table segments are allocated in order 0, 1, 2, ...: stop at the first missing.
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
