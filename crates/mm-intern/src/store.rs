//! The byte arena's building block: a [`Chunk`], a fixed-capacity buffer that never moves.
//! The live shards (`live.rs`) keep their strings in chunks, the frozen form (`frozen.rs`)
//! in one exactly sized chunk.
//!
//! Its one guarantee that other modules rely on (the *pinning guarantee*):
//!
//! > The initialised bytes of a chunk stay at the same address and are never written again
//! > until the chunk is dropped, even while more bytes are pushed through `&mut`.
//!
//! It holds because a [`Chunk`] is a raw allocation that is never reallocated, `push` only
//! writes past the initialised prefix through a raw pointer, and the allocation is freed
//! only in `Drop`.

use core::ptr::NonNull;
use std::alloc::{self, Layout};

/// Strings longer than this get a chunk of their own, exactly their size.
pub(crate) const MAX_SMALL: usize = 1024;

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
// SAFETY: through `&Chunk` nothing is written: `base` hands out the address, through which
// the owners (`live.rs`, `frozen.rs`) read only the initialised prefix; writing needs
// `&mut Chunk`. Shared reads from several threads are therefore race-free.
unsafe impl Sync for Chunk {}

impl Chunk {
    fn layout(cap: usize) -> Layout {
        // `cap` is a chunk size of `live.rs` or the total length of existing `&str`s
        // (plus 8 bytes per string of 64 KiB or more) held in memory at once, which is at
        // most `isize::MAX`, so the layout always exists.
        match Layout::array::<u8>(cap) {
            Ok(layout) => layout,
            Err(_) => unreachable!("chunk capacity {cap} exceeds isize::MAX"),
        }
    }

    /// A chunk of capacity 0, which allocates nothing.
    pub(crate) fn empty() -> Self {
        Self {
            ptr: NonNull::dangling(),
            cap: 0,
            len: 0,
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
}

impl Drop for Chunk {
    fn drop(&mut self) {
        if self.cap == 0 {
            return;
        }
        // SAFETY: a chunk with a non-zero capacity was allocated by the global allocator
        // with `layout(self.cap)` in `with_capacity`, and is freed only here.
        unsafe { alloc::dealloc(self.ptr.as_ptr(), Self::layout(self.cap)) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Pushed bytes stay where they were written while the chunk fills up, and an empty
    /// chunk allocates and frees nothing.
    #[test]
    fn pushes_append_in_place() {
        let mut chunk = Chunk::with_capacity(16);
        let base = chunk.base();
        assert_eq!(chunk.push(b"hello"), 0);
        assert_eq!(chunk.push(b" world"), 5);
        assert_eq!(chunk.remaining(), 5);
        assert_eq!(chunk.base(), base);
        // SAFETY: the first 11 bytes were pushed just above.
        let bytes = unsafe { core::slice::from_raw_parts(base.as_ptr(), 11) };
        assert_eq!(bytes, b"hello world");
        let empty = Chunk::empty();
        assert_eq!((empty.cap, empty.remaining()), (0, 0));
    }

    #[test]
    #[should_panic(expected = "chunk overflow")]
    fn overflowing_push_panics_before_writing() {
        Chunk::with_capacity(2).push(b"abc");
    }
}
