//! One frozen shard's storage: an append-only byte arena, a span per string and a hash index.
//! The live interner's shards (`live.rs`) reuse its [`Chunk`].
//!
//! Its one guarantee that other modules rely on (the *pinning guarantee*):
//!
//! > The bytes of a string returned by [`ShardStore::resolve`] stay at the same address and
//! > are never written again until the `ShardStore` is dropped or [`ShardStore::compact`]
//! > is called, even while the store is mutated through `&mut` in the meantime.
//!
//! It holds because a [`Chunk`] is a raw allocation that is never reallocated while in use,
//! `push` only writes past the initialised prefix, reads only cover the initialised prefix,
//! and the allocation is freed only in `Drop`. `compact` (used by `freeze`, which owns the
//! store) is the one place that may move bytes, and it takes `&mut self`, so no borrow can be
//! outstanding.

use core::{mem::size_of, ptr::NonNull, slice, str};
use std::alloc::{self, Layout};

use hashbrown::{HashTable, hash_table::Entry};

use crate::sync::HashBuilder;

/// Capacity of a shard's first regular chunk.
const FIRST_CHUNK: usize = 256;
/// Regular chunks double up to this capacity, so an offset in one fits in 16 bits.
const MAX_CHUNK: usize = 1 << 13;
/// Strings longer than this get a chunk of their own, exactly their size.
pub(crate) const MAX_SMALL: usize = 1024;
/// The `len` field of a [`Span`] for a string that fills its own chunk.
const LARGE: u64 = 0xFFFF;

/// A fixed-capacity byte buffer whose first `len` bytes are initialised and immutable.
/// Also the arena chunk of the live interner (`live.rs`), which reads the initialised prefix
/// through [`Chunk::base`] from other threads.
pub(crate) struct Chunk {
    ptr: NonNull<u8>,
    pub(crate) cap: usize,
    len: usize,
}

// SAFETY: a `Chunk` owns its allocation exclusively, like a `Box<[u8]>`: moving it to another
// thread moves that ownership, and nothing else points into the allocation except `&str`s
// whose lifetimes are tied to the owner (see the module's pinning guarantee).
unsafe impl Send for Chunk {}
// SAFETY: through `&Chunk` only the initialised prefix can be read (`bytes`); writing needs
// `&mut Chunk`. Shared reads from several threads are therefore race-free.
unsafe impl Sync for Chunk {}

impl Chunk {
    fn layout(cap: usize) -> Layout {
        // `cap` is at most `MAX_CHUNK` or the length of an existing `&str`, which is at most
        // `isize::MAX`, so the layout always exists.
        match Layout::array::<u8>(cap) {
            Ok(layout) => layout,
            Err(_) => unreachable!("chunk capacity {cap} exceeds isize::MAX"),
        }
    }

    /// Allocates `cap > 0` uninitialised bytes; aborts through `handle_alloc_error` if the
    /// allocator fails, as `Vec` does.
    pub(crate) fn with_capacity(cap: usize) -> Self {
        assert!(cap > 0, "chunks are never empty");
        let layout = Self::layout(cap);
        // SAFETY: `layout` has a non-zero size (asserted above).
        let raw = unsafe { alloc::alloc(layout) };
        let Some(ptr) = NonNull::new(raw) else {
            alloc::handle_alloc_error(layout)
        };
        Self { ptr, cap, len: 0 }
    }

    #[inline]
    pub(crate) fn remaining(&self) -> usize {
        self.cap - self.len
    }

    /// Appends `bytes` and returns the offset they start at. Panics if they do not fit
    /// (callers check `remaining` first).
    pub(crate) fn push(&mut self, bytes: &[u8]) -> usize {
        assert!(bytes.len() <= self.remaining(), "chunk overflow");
        let start = self.len;
        // SAFETY: the destination `[start, start + bytes.len())` lies inside our allocation
        // (checked above) and in its uninitialised tail, to which nobody holds a pointer; the
        // source is a live `&[u8]`, which may point into this chunk's initialised prefix
        // (interning a resolved string) but never into the tail, so the ranges do not
        // overlap. Writing through the raw pointer creates no reference to the whole
        // buffer, so `&str`s into the prefix stay valid.
        unsafe {
            self.ptr
                .as_ptr()
                .add(start)
                .copy_from_nonoverlapping(bytes.as_ptr(), bytes.len());
        }
        self.len += bytes.len();
        start
    }

    /// The start of the allocation. Bytes below `len` are initialised and never written
    /// again; bytes past it are written only by `push`.
    #[inline]
    pub(crate) fn base(&self) -> NonNull<u8> {
        self.ptr
    }

    /// The initialised bytes `[start, start + len)`. Panics if the range is not initialised.
    #[inline]
    fn bytes(&self, start: usize, len: usize) -> &[u8] {
        assert!(
            start <= self.len && len <= self.len - start,
            "span outside chunk"
        );
        // SAFETY: the range lies in the initialised prefix (checked above) of an allocation
        // that lives as long as `self`; those bytes are never written again (`push` writes
        // only past `self.len`), so the shared slice is never aliased by a write.
        unsafe { slice::from_raw_parts(self.ptr.as_ptr().add(start), len) }
    }

    /// Gives back the unused tail to the allocator. May move the bytes, hence `&mut self`.
    fn shrink_to_len(&mut self) {
        if self.len == 0 || self.len == self.cap {
            return;
        }
        // SAFETY: `ptr` was allocated by the global allocator with `layout(self.cap)`, and
        // the new size `self.len` is non-zero and at most `isize::MAX`. `&mut self` proves
        // no `&str` into the chunk is alive, so moving the bytes is fine.
        let raw = unsafe { alloc::realloc(self.ptr.as_ptr(), Self::layout(self.cap), self.len) };
        // On failure the old block is untouched and still ours: keep it.
        if let Some(ptr) = NonNull::new(raw) {
            self.ptr = ptr;
            self.cap = self.len;
        }
    }
}

impl Drop for Chunk {
    fn drop(&mut self) {
        // SAFETY: `ptr` was allocated by the global allocator with `layout(self.cap)` (in
        // `with_capacity`, or by `realloc` to `self.cap` in `shrink_to_len`) and is freed
        // only here.
        unsafe { alloc::dealloc(self.ptr.as_ptr(), Self::layout(self.cap)) };
    }
}

/// Where a string lives: chunk index (32 bits), start (16 bits), length (16 bits, or
/// `LARGE` for a string that fills its own chunk). Eight bytes per unique string.
#[derive(Clone, Copy)]
struct Span(u64);

impl Span {
    const EMPTY: Span = Span(0);

    fn small(chunk: u32, start: usize, len: usize) -> Span {
        debug_assert!(start < MAX_CHUNK && len <= MAX_SMALL);
        Span(u64::from(chunk) << 32 | (start as u64) << 16 | len as u64)
    }

    fn large(chunk: u32) -> Span {
        Span(u64::from(chunk) << 32 | LARGE)
    }

    /// False if the string of this span cannot be `len` bytes long.
    #[inline]
    fn may_have_len(self, len: usize) -> bool {
        let field = self.0 & 0xFFFF;
        if field == LARGE {
            len > MAX_SMALL
        } else {
            field == len as u64
        }
    }
}

/// The text of `span`. Only spans made by [`ShardStore::store`] for these `chunks` exist.
#[inline]
fn text(chunks: &[Chunk], span: Span) -> &str {
    let len = span.0 & 0xFFFF;
    if len == 0 {
        return "";
    }
    let chunk = &chunks[(span.0 >> 32) as usize];
    let bytes = if len == LARGE {
        chunk.bytes(0, chunk.len)
    } else {
        chunk.bytes(((span.0 >> 16) & 0xFFFF) as usize, len as usize)
    };
    // SAFETY: spans are private to this module and made only in `ShardStore::store`, which
    // copied exactly the bytes of a `&str` to exactly this range, so they are valid UTF-8.
    unsafe { str::from_utf8_unchecked(bytes) }
}

/// True if `span` holds exactly `s`. Compares lengths first, so a hash-tag collision
/// costs no chunk or byte load.
#[inline]
fn is_text(chunks: &[Chunk], span: Span, s: &str) -> bool {
    span.may_have_len(s.len()) && text(chunks, span) == s
}

/// A shard's strings: chunks that never move while the store lives.
struct Arena {
    chunks: Vec<Chunk>,
    /// The regular chunk being filled (large strings' chunks are interleaved in `chunks`).
    open: Option<usize>,
    /// Capacity of the next regular chunk.
    next_cap: usize,
}

impl Arena {
    /// False if storing `len` bytes might need a chunk index past `u32::MAX`.
    fn has_room(&self, len: usize) -> bool {
        len == 0 || self.chunks.len() < u32::MAX as usize
    }

    /// Copies `bytes` (valid UTF-8) in and returns where they went. Callers check
    /// [`has_room`](Self::has_room) first.
    fn store(&mut self, bytes: &[u8]) -> Span {
        if bytes.is_empty() {
            return Span::EMPTY;
        }
        if bytes.len() > MAX_SMALL {
            let index = self.new_chunk(bytes.len());
            self.chunks[index as usize].push(bytes);
            return Span::large(index);
        }
        let open = match self.open {
            Some(open) if self.chunks[open].remaining() >= bytes.len() => open,
            _ => {
                // MAX_SMALL <= MAX_CHUNK, so this ends at most at MAX_CHUNK.
                let mut cap = self.next_cap;
                while cap < bytes.len() {
                    cap *= 2;
                }
                let index = self.new_chunk(cap);
                self.next_cap = (cap * 2).min(MAX_CHUNK);
                self.open = Some(index as usize);
                index as usize
            }
        };
        let start = self.chunks[open].push(bytes);
        // `open` fits in u32: `new_chunk` returned it as one.
        Span::small(open as u32, start, bytes.len())
    }

    fn new_chunk(&mut self, cap: usize) -> u32 {
        let index = u32::try_from(self.chunks.len());
        debug_assert!(index.is_ok(), "has_room was not checked");
        self.chunks.push(Chunk::with_capacity(cap));
        index.unwrap_or(u32::MAX)
    }
}

/// Why a shard could not take another string.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StoreFull {
    /// The shard already holds `max_local` strings.
    Strings,
    /// The shard has `u32::MAX` chunks.
    Chunks,
}

/// Bytes a shard holds, as allocated: the arena's chunks, and the index (span list, chunk
/// list and hash table).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Held {
    pub(crate) arena: u64,
    pub(crate) index: u64,
}

/// One shard: strings, their spans (the local index of a string is its span's position) and
/// a hash table of local indices.
pub(crate) struct ShardStore {
    arena: Arena,
    spans: Vec<Span>,
    table: HashTable<u32>,
    /// Sum of the lengths of the unique strings stored.
    pub(crate) string_bytes: u64,
}

impl ShardStore {
    /// An empty shard; allocates nothing.
    #[cfg(test)]
    pub(crate) fn new() -> Self {
        Self::with_capacity(0, 0)
    }

    /// An empty shard with room for `strings` strings of `bytes` bytes in total in its
    /// first chunk, span list and table.
    pub(crate) fn with_capacity(strings: usize, bytes: usize) -> Self {
        Self {
            arena: Arena {
                chunks: Vec::new(),
                open: None,
                next_cap: bytes.clamp(FIRST_CHUNK, MAX_CHUNK),
            },
            spans: Vec::with_capacity(strings),
            table: HashTable::with_capacity(strings),
            string_bytes: 0,
        }
    }

    /// Number of unique strings.
    pub(crate) fn len(&self) -> usize {
        self.spans.len()
    }

    /// The local index of `s`, whose hash is `hash`, if it is stored.
    #[inline]
    pub(crate) fn find(&self, hash: u64, s: &str) -> Option<u32> {
        let (chunks, spans) = (&self.arena.chunks, &self.spans);
        self.table
            .find(hash, |&i| is_text(chunks, spans[i as usize], s))
            .copied()
    }

    /// The string with local index `local`, if there is one. See the module's pinning
    /// guarantee for how long its bytes stay put.
    #[inline]
    pub(crate) fn resolve(&self, local: u32) -> Option<&str> {
        let span = *self.spans.get(local as usize)?;
        Some(text(&self.arena.chunks, span))
    }

    /// The local index of `s` (hash `hash`), storing it first if it is new. One probe of
    /// the table either way. For a new string, `reserve` runs first (the caller's limits)
    /// and nothing is stored if it fails; a full shard gives `full(..)`.
    #[inline]
    pub(crate) fn get_or_insert<E>(
        &mut self,
        hash: u64,
        s: &str,
        hasher: &HashBuilder,
        max_local: u32,
        reserve: impl FnOnce() -> Result<(), E>,
        full: impl FnOnce(StoreFull) -> E,
    ) -> Result<u32, E> {
        let Self {
            arena,
            spans,
            table,
            string_bytes,
            ..
        } = self;
        let chunks = &arena.chunks;
        let entry = table.entry(
            hash,
            |&i| is_text(chunks, spans[i as usize], s),
            |&i| hasher.hash_one(text(chunks, spans[i as usize])),
        );
        let vacant = match entry {
            Entry::Occupied(known) => return Ok(*known.get()),
            Entry::Vacant(vacant) => vacant,
        };
        let local = match u32::try_from(spans.len()) {
            Ok(local) if local < max_local => local,
            _ => return Err(full(StoreFull::Strings)),
        };
        if !arena.has_room(s.len()) {
            return Err(full(StoreFull::Chunks));
        }
        reserve()?;
        spans.push(arena.store(s.as_bytes()));
        *string_bytes += s.len() as u64;
        vacant.insert(local);
        Ok(local)
    }

    /// Bytes allocated by this shard right now.
    pub(crate) fn held(&self) -> Held {
        let arena: usize = self.arena.chunks.iter().map(|c| c.cap).sum();
        let index = self.spans.capacity() * size_of::<Span>()
            + self.arena.chunks.capacity() * size_of::<Chunk>()
            + self.table.allocation_size();
        Held {
            arena: arena as u64,
            index: index as u64,
        }
    }

    /// Gives back every unused byte: chunk tails, spare span, chunk and table capacity.
    /// Strings may move, which `&mut self` makes safe; their local indices do not change.
    pub(crate) fn compact(&mut self, hasher: &HashBuilder) {
        for chunk in &mut self.arena.chunks {
            chunk.shrink_to_len();
        }
        // A shrunk chunk is full: the next small string opens a new one.
        self.arena.open = None;
        self.arena.chunks.shrink_to_fit();
        self.spans.shrink_to_fit();
        let (chunks, spans) = (&self.arena.chunks, &self.spans);
        self.table
            .shrink_to_fit(|&i| hasher.hash_one(text(chunks, spans[i as usize])));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    impl ShardStore {
        fn insert(
            &mut self,
            hash: u64,
            s: &str,
            hasher: &HashBuilder,
            max_local: u32,
        ) -> Result<u32, StoreFull> {
            let before = self.len();
            let local = self.get_or_insert(hash, s, hasher, max_local, || Ok(()), |f| f)?;
            assert_eq!(self.len(), before + 1, "{s:?} was already stored");
            Ok(local)
        }
    }

    fn store_all(words: &[&str]) -> (ShardStore, Vec<u32>, HashBuilder) {
        let hasher = HashBuilder::default();
        let mut store = ShardStore::new();
        let mut ids = Vec::new();
        for w in words {
            let h = hasher.hash_one(w);
            let id = store
                .get_or_insert(h, w, &hasher, u32::MAX, || Ok(()), |f| f)
                .unwrap();
            ids.push(id);
        }
        (store, ids, hasher)
    }

    #[test]
    fn round_trips_small_large_empty_and_unicode() {
        let big = "x".repeat(MAX_SMALL + 1);
        let exact = "y".repeat(MAX_SMALL);
        let words = [
            "",
            "a",
            "héllo",
            big.as_str(),
            exact.as_str(),
            "a",
            "",
            "日本語",
        ];
        let (store, ids, _) = store_all(&words);
        assert_eq!(store.len(), 6);
        for (w, id) in words.iter().zip(&ids) {
            assert_eq!(store.resolve(*id), Some(*w));
        }
        assert_eq!(ids[1], ids[5]);
        assert_eq!(ids[0], ids[6]);
        assert_eq!(store.resolve(99), None);
    }

    #[test]
    fn resolved_bytes_do_not_move_while_the_store_grows() {
        let hasher = HashBuilder::default();
        let mut store = ShardStore::new();
        let first = "pinned-string";
        let id = store
            .insert(hasher.hash_one(first), first, &hasher, u32::MAX)
            .unwrap();
        let before = store.resolve(id).unwrap().as_ptr();
        // Miri is slow; 500 strings still force five chunks.
        let n = if cfg!(miri) { 500 } else { 50_000 };
        for i in 0..n {
            let w = format!("filler-{i}");
            store
                .insert(hasher.hash_one(&w), &w, &hasher, u32::MAX)
                .unwrap();
        }
        assert!(
            store.arena.chunks.len() > 3,
            "the test must force new chunks"
        );
        assert_eq!(store.resolve(id).unwrap().as_ptr(), before);
        assert_eq!(store.resolve(id), Some(first));
    }

    #[test]
    fn chunks_grow_geometrically_up_to_the_cap() {
        let n = if cfg!(miri) { 2_000 } else { 20_000 };
        let words: Vec<String> = (0..n).map(|i| format!("w{i:06}")).collect();
        let refs: Vec<&str> = words.iter().map(String::as_str).collect();
        let (store, _, _) = store_all(&refs);
        let caps: Vec<usize> = store.arena.chunks.iter().map(|c| c.cap).collect();
        assert_eq!(caps[0], FIRST_CHUNK);
        assert!(caps.windows(2).all(|w| w[1] == (w[0] * 2).min(MAX_CHUNK)));
        let held = store.held();
        // 7 bytes each, stored contiguously: the arena wastes less than the last chunk.
        assert!(held.arena < 7 * n as u64 + MAX_CHUNK as u64, "{held:?}");
    }

    #[test]
    fn compact_keeps_indices_and_gives_back_tails() {
        let words: Vec<String> = (0..3000).map(|i| format!("word{i}")).collect();
        let refs: Vec<&str> = words.iter().map(String::as_str).collect();
        let (mut store, ids, hasher) = store_all(&refs);
        let before = store.held();
        store.compact(&hasher);
        let after = store.held();
        assert!(after.arena < before.arena, "{before:?} -> {after:?}");
        assert_eq!(after.arena, store.string_bytes);
        for (w, id) in refs.iter().zip(&ids) {
            assert_eq!(store.resolve(*id), Some(*w));
            assert_eq!(store.find(hasher.hash_one(w), w), Some(*id));
        }
        // Still usable after compaction.
        let h = hasher.hash_one("fresh");
        let id = store.insert(h, "fresh", &hasher, u32::MAX).unwrap();
        assert_eq!(store.resolve(id), Some("fresh"));
    }

    #[test]
    fn full_shard_is_reported_not_panicked() {
        let hasher = HashBuilder::default();
        let mut store = ShardStore::new();
        store.insert(hasher.hash_one("a"), "a", &hasher, 1).unwrap();
        assert_eq!(
            store.insert(hasher.hash_one("b"), "b", &hasher, 1),
            Err(StoreFull::Strings)
        );
        assert_eq!(store.len(), 1);
    }
}
