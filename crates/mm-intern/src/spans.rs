//! The interner's one table of spans, indexed by symbol: fixed segments of spans behind a
//! directory, read with no lock; segments are handed to shards one at a time.
//!
//! ```text
//! SpanTable
//!   inline  -> [seg ptr; INLINE_DIR]   segments 0..INLINE_DIR (0 is never handed out); one
//!                                      not handed out yet points to `zero`; fixed, so its
//!                                      address is never re-read
//!   zero    -> [0; SPAN_SEG]           a segment of zero spans, never written
//!   shared  -> next      AtomicU32     segments handed out: 1..next
//!              overflow  AtomicPtr     copy-on-grow directory of segments INLINE_DIR..next
//!              alloc     Mutex         overflow capacity, retired directories
//!   seg -> [AtomicU64; SPAN_SEG]       span = address (48 bits) | len (16 bits); 0: none
//! ```
//!
//! Symbol `x` names span `x % SPAN_SEG` of segment `x / SPAN_SEG`: resolving it is a
//! segment-pointer load and a span load, and a test of the span (0: no string).
//!
//! # Invariants
//!
//! 1. **Ownership.** Each segment is handed to exactly one shard ([`SpanTable::claim`],
//!    under `alloc`); only that shard's writer, holding the shard's mutex, stores spans in
//!    it, each span once, with Release, after the string's bytes are in place. So a reader
//!    that loads a non-zero span with Acquire sees the bytes it names.
//! 2. **Entering.** A segment is allocated zeroed and its pointer stored with Release
//!    (inline, replacing the pointer to `zero`, or in the overflow directory, grown first
//!    if full) before `next` is raised past it with Release. A reader that loads an inline
//!    pointer with Acquire sees the zeroed segment it points to (`zero` was made before
//!    the table was shared); one that reads `next > n` with Acquire finds segment `n` entered
//!    in the overflow directory it loads after that (directories only grow, copying every
//!    entry, and a replaced one is *retired*: kept, entries and all, until the table is
//!    dropped).
//! 3. **Nothing readable is freed** while the table lives: segments and directories are
//!    freed only by `Drop`, which has `&mut self`.

use core::{mem::size_of, ptr};

use crate::{
    InternError,
    sync::{self, AtomicPtr, AtomicU32, AtomicU64, Mutex, Ordering},
};

/// Spans per segment: 2 KiB segments, so a shard leaves at most 2 KiB of its last segment
/// unused. Loom uses two-span segments so that its models cross segment boundaries.
pub(crate) const SPAN_SEG_BITS: u32 = if cfg!(loom) { 1 } else { 8 };
pub(crate) const SPAN_SEG: usize = 1 << SPAN_SEG_BITS;
/// Segments whose pointers sit in the fixed inline directory (16 KiB: the first 524,032
/// strings); the rest go through the overflow directory, out of line. Loom and Miri keep
/// one usable segment inline so that their small tests reach the overflow path.
const INLINE_DIR: usize = if cfg!(any(loom, miri)) { 2 } else { 2048 };
/// First capacity of the overflow directory (segment pointers).
const FIRST_OVERFLOW: usize = if cfg!(any(loom, miri)) { 1 } else { 256 };
/// Segment numbers are `1..MAX_SEGS`, so that every index fits a `u32`.
const MAX_SEGS: u64 = 1 << (32 - SPAN_SEG_BITS);

/// A segment handed to a shard: its first index and its spans.
#[derive(Clone, Copy)]
pub(crate) struct Segment {
    pub(crate) first: u32,
    pub(crate) spans: *const AtomicU64,
}

impl Segment {
    /// Span `k < SPAN_SEG` of this segment.
    #[inline(always)]
    pub(crate) fn span(&self, k: usize) -> &AtomicU64 {
        debug_assert!(k < SPAN_SEG);
        // SAFETY: `spans` points to a live segment of `SPAN_SEG` spans (invariant 3: it
        // lives as long as the table, which outlives every shard holding a `Segment`).
        unsafe { &*self.spans.add(k & (SPAN_SEG - 1)) }
    }
}

/// A retired overflow directory (invariant 2): freed when the table is dropped.
struct Retired {
    first: *mut AtomicPtr<AtomicU64>,
    cap: usize,
}

/// What `alloc` protects.
struct Alloc {
    overflow_cap: usize,
    retired: Vec<Retired>,
}

// SAFETY: the raw pointers in `retired` are owned allocations that only the table frees (in
// `Drop`), like `Box`es; moving them to another thread moves that ownership.
unsafe impl Send for Alloc {}

/// The table's atomics and lock, on the heap so that `Interner` holds no `UnsafeCell`.
struct Shared {
    next: AtomicU32,
    overflow: AtomicPtr<AtomicPtr<AtomicU64>>,
    alloc: Mutex<Alloc>,
}

/// The span table of one interner; see the module docs.
pub(crate) struct SpanTable {
    inline: Box<[AtomicPtr<AtomicU64>; INLINE_DIR]>,
    shared: Box<Shared>,
    /// `SPAN_SEG` zero spans, where every inline entry not handed out yet points.
    zero: *mut AtomicU64,
}

// SAFETY: `zero` is an owned allocation of atomics, freed only in `Drop`, like a
// `Box<[AtomicU64]>` (which is `Send` and `Sync`); everything else is `Send` and `Sync`.
unsafe impl Send for SpanTable {}
// SAFETY: as above.
unsafe impl Sync for SpanTable {}

/// A fresh segment of `SPAN_SEG` zero spans, as a raw pointer.
fn new_segment() -> *mut AtomicU64 {
    let seg: Box<[AtomicU64]> = (0..SPAN_SEG).map(|_| AtomicU64::new(0)).collect();
    Box::into_raw(seg).cast::<AtomicU64>()
}

/// Frees a segment made by [`new_segment`].
///
/// # Safety
/// `seg` came from `new_segment`, is freed once, and nothing reads it afterwards.
unsafe fn free_segment(seg: *mut AtomicU64) {
    // SAFETY: the caller's guarantee: a `SPAN_SEG`-span boxed slice made by `Box::into_raw`.
    drop(unsafe { Box::from_raw(ptr::slice_from_raw_parts_mut(seg, SPAN_SEG)) });
}

impl SpanTable {
    /// An empty table: the inline directory, the zero segment and the shared part.
    pub(crate) fn new() -> Self {
        let zero = new_segment();
        Self {
            zero,
            inline: Box::new(core::array::from_fn(|_| AtomicPtr::new(zero))),
            shared: Box::new(Shared {
                next: AtomicU32::new(1),
                overflow: AtomicPtr::new(ptr::null_mut()),
                alloc: Mutex::new(Alloc {
                    overflow_cap: 0,
                    retired: Vec::new(),
                }),
            }),
        }
    }

    /// The span of index `index`, or 0 if it names no stored string. No lock: for the
    /// first `INLINE_DIR` segments a segment-pointer load and a span load.
    #[inline(always)]
    pub(crate) fn load(&self, index: u32) -> u64 {
        let seg = (index >> SPAN_SEG_BITS) as usize;
        let Some(entry) = self.inline.get(seg) else {
            return self.load_overflow(index);
        };
        let spans = entry.load(Ordering::Acquire);
        // SAFETY: an inline entry points to `zero` or to a handed-out segment, each a live
        // segment of `SPAN_SEG` spans initialised before this Acquire load could read its
        // address (invariants 2, 3).
        unsafe { (*spans.add(index as usize & (SPAN_SEG - 1))).load(Ordering::Acquire) }
    }

    /// `load` past the inline directory.
    #[cold]
    #[inline(never)]
    fn load_overflow(&self, index: u32) -> u64 {
        let seg = index >> SPAN_SEG_BITS;
        if seg >= self.shared.next.load(Ordering::Acquire) {
            return 0;
        }
        let dir = self.shared.overflow.load(Ordering::Acquire);
        // SAFETY: `INLINE_DIR <= seg < next` (read with Acquire): segment `seg` was entered
        // in a directory no newer than `dir`, which holds it (invariant 2) and is live
        // (invariant 3), as is the segment.
        unsafe {
            let spans = (*dir.add(seg as usize - INLINE_DIR)).load(Ordering::Acquire);
            (*spans.add(index as usize & (SPAN_SEG - 1))).load(Ordering::Acquire)
        }
    }

    /// Hands the next segment to the caller, the writer of one shard, which alone stores
    /// spans in it (invariant 1).
    ///
    /// # Errors
    /// [`InternError::SymbolSpaceExhausted`] when every segment a `u32` symbol can name
    /// has been handed out.
    pub(crate) fn claim(&self) -> Result<Segment, InternError> {
        let mut alloc = sync::lock(&self.shared.alloc);
        // Only `alloc`'s holders store `next`.
        let n = self.shared.next.load(Ordering::Relaxed);
        if u64::from(n) >= MAX_SEGS {
            return Err(InternError::SymbolSpaceExhausted {
                capacity: (MAX_SEGS - 1) * SPAN_SEG as u64,
            });
        }
        let spans = new_segment();
        let at = n as usize;
        if at < INLINE_DIR {
            self.inline[at].store(spans, Ordering::Release);
        } else {
            let k = at - INLINE_DIR;
            if k == alloc.overflow_cap {
                self.grow(&mut alloc);
            }
            let dir = self.shared.overflow.load(Ordering::Relaxed);
            // SAFETY: `k < overflow_cap`, the capacity of `dir` (only `alloc`'s holders
            // store `overflow`).
            unsafe { (*dir.add(k)).store(spans, Ordering::Release) };
        }
        // Invariant 2: entered before `next` covers it.
        self.shared.next.store(n + 1, Ordering::Release);
        Ok(Segment {
            first: n << SPAN_SEG_BITS,
            spans,
        })
    }

    /// Replaces the overflow directory by one twice as large with the same entries,
    /// retiring the old one (invariant 2).
    fn grow(&self, alloc: &mut Alloc) {
        let cap = (alloc.overflow_cap * 2).max(FIRST_OVERFLOW);
        let used = alloc.overflow_cap;
        let old = self.shared.overflow.load(Ordering::Relaxed);
        let new: Box<[AtomicPtr<AtomicU64>]> = (0..cap)
            .map(|k| {
                let entry = if k < used {
                    // SAFETY: `old` has `overflow_cap = used > k` entries.
                    unsafe { (*old.add(k)).load(Ordering::Relaxed) }
                } else {
                    ptr::null_mut()
                };
                AtomicPtr::new(entry)
            })
            .collect();
        alloc.retired.reserve(1);
        let new = Box::into_raw(new).cast::<AtomicPtr<AtomicU64>>();
        self.shared.overflow.store(new, Ordering::Release);
        if !old.is_null() {
            alloc.retired.push(Retired {
                first: old,
                cap: used,
            });
        }
        alloc.overflow_cap = cap;
    }

    /// Heap bytes held: `(fixed, index)`: the inline directory, shared part and zero
    /// segment, and the handed-out segments and overflow directories.
    pub(crate) fn held(&self) -> (u64, u64) {
        let alloc = sync::lock(&self.shared.alloc);
        let segs = self.shared.next.load(Ordering::Relaxed) as usize - 1;
        let dirs = alloc.overflow_cap + alloc.retired.iter().map(|r| r.cap).sum::<usize>();
        let index = segs * SPAN_SEG * size_of::<AtomicU64>()
            + dirs * size_of::<AtomicPtr<AtomicU64>>()
            + alloc.retired.capacity() * size_of::<Retired>();
        let fixed = size_of::<[AtomicPtr<AtomicU64>; INLINE_DIR]>()
            + size_of::<Shared>()
            + SPAN_SEG * size_of::<AtomicU64>();
        (fixed as u64, index as u64)
    }
}

impl Drop for SpanTable {
    fn drop(&mut self) {
        // `&mut self`: no reader or writer is left, so Relaxed loads see every store.
        let next = self.shared.next.load(Ordering::Relaxed) as usize;
        let dir = self.shared.overflow.load(Ordering::Relaxed);
        for n in 1..next {
            let spans = match self.inline.get(n) {
                Some(entry) => entry.load(Ordering::Relaxed),
                // SAFETY: segment `n < next` is entered in the current directory.
                None => unsafe { (*dir.add(n - INLINE_DIR)).load(Ordering::Relaxed) },
            };
            // SAFETY: made by `new_segment` in `claim`, entered once and freed once, here.
            unsafe { free_segment(spans) };
        }
        // SAFETY: made by `new_segment` in `new`, freed once, here.
        unsafe { free_segment(self.zero) };
        let mut alloc = sync::lock(&self.shared.alloc);
        let free_dir = |first: *mut AtomicPtr<AtomicU64>, cap: usize| {
            // SAFETY: each directory was made by `Box::into_raw` of a `cap`-entry boxed
            // slice in `grow` and is freed once, here.
            drop(unsafe { Box::from_raw(ptr::slice_from_raw_parts_mut(first, cap)) });
        };
        if !dir.is_null() {
            free_dir(dir, alloc.overflow_cap);
        }
        for r in alloc.retired.drain(..) {
            free_dir(r.first, r.cap);
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    /// Segments are handed out in order from 1, past the inline directory into the
    /// overflow one (which grows), and every stored span reads back; unclaimed indices
    /// read 0.
    #[test]
    fn claims_cross_into_the_overflow_directory() {
        let table = SpanTable::new();
        let n = if cfg!(miri) {
            INLINE_DIR + 2
        } else {
            INLINE_DIR + FIRST_OVERFLOW + 3
        };
        for expect in 1..n as u32 {
            let seg = table.claim().unwrap();
            assert_eq!(seg.first, expect << SPAN_SEG_BITS);
            seg.span(3).store(u64::from(expect), Ordering::Release);
        }
        for n in 1..n as u32 {
            assert_eq!(table.load(n << SPAN_SEG_BITS | 3), u64::from(n));
            assert_eq!(table.load(n << SPAN_SEG_BITS | 4), 0);
        }
        assert_eq!(table.load(0), 0);
        assert_eq!(table.load((n as u32) << SPAN_SEG_BITS), 0);
        assert_eq!(table.load(u32::MAX), 0);
        let (fixed, index) = table.held();
        assert!(fixed >= (INLINE_DIR * 8) as u64);
        assert!(index >= ((n - 1) * SPAN_SEG * 8) as u64);
    }
}
