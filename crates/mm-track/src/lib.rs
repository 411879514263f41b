#![doc = include_str!("../README.md")]

mod counters;
mod future;
mod global;
mod sync;

use std::alloc::{GlobalAlloc, Layout, System};

pub use counters::{LIVE_SLACK_BYTES, OP_BATCH, ScopeStats, Snapshot};
pub use future::{CountFuture, count_future};

/// A [`GlobalAlloc`] that forwards every call to `A` and counts it.
///
/// Install it with `#[global_allocator]`. All `TrackedAlloc` values count into the same
/// process-wide figures (read with [`snapshot`]) and the same per-thread counters (read with
/// [`count`]); normally there is exactly one, the global allocator.
///
/// Cost per call: one add to a packed thread-local word (calls and bytes together) and two
/// compares, about ten instructions; every 32 KiB of calls in one direction, a local roll of
/// that word into the thread's cumulative counters; now and then (see [`OP_BATCH`] and
/// [`LIVE_SLACK_BYTES`]) a fold of about seven relaxed atomic adds. It never allocates,
/// panics or locks; the inner allocator's failures (null) are passed on and not counted.
///
/// Sizes counted are the [`Layout`] sizes callers ask for, not what `A` rounds them up to.
#[derive(Debug, Default, Clone, Copy)]
pub struct TrackedAlloc<A: GlobalAlloc = System> {
    inner: A,
}

impl<A: GlobalAlloc> TrackedAlloc<A> {
    /// Wraps `inner`. `const`, so it can initialise a `static`.
    pub const fn new(inner: A) -> Self {
        Self { inner }
    }

    /// The wrapped allocator.
    pub const fn inner(&self) -> &A {
        &self.inner
    }
}

// SAFETY: every method forwards to `inner` with the caller's arguments unchanged and returns
// its result unchanged, so `inner`'s guarantees are ours. The counting around the calls does
// not allocate, unwind or touch the returned memory.
unsafe impl<A: GlobalAlloc> GlobalAlloc for TrackedAlloc<A> {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded with the caller's own guarantees about `layout`.
        let ptr = unsafe { self.inner.alloc(layout) };
        if !ptr.is_null() && global::on_alloc(layout.size()) {
            global::settle();
        }
        ptr
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded with the caller's own guarantees about `layout`.
        let ptr = unsafe { self.inner.alloc_zeroed(layout) };
        if !ptr.is_null() && global::on_alloc_zeroed(layout.size()) {
            global::settle();
        }
        ptr
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller's guarantees, passed on unchanged.
        unsafe { dealloc_counted(ptr, layout.size(), layout.align(), &self.inner) }
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: forwarded unchanged; the caller's guarantees about `ptr`, `layout` and
        // `new_size` are the ones `inner.realloc` needs.
        let new = unsafe { self.inner.realloc(ptr, layout, new_size) };
        if !new.is_null() && global::on_realloc(layout.size(), new_size) {
            global::settle();
        }
        new
    }
}

/// `dealloc`, out of line: callers that may free (`Vec::into_boxed_slice`, every drop)
/// inline the allocator shim, and a larger inlined body makes them too big to be inlined
/// themselves. The arguments come in the shim's own order (pointer, size, alignment), so it
/// jumps here moving nothing. Counted first so that the forwarding call is a tail call, on
/// the slow path too (it forwards itself).
///
/// # Safety
///
/// The caller's guarantees for [`GlobalAlloc::dealloc`] on `inner`, with `size` and `align`
/// those of a valid [`Layout`].
#[inline(never)]
unsafe fn dealloc_counted<A: GlobalAlloc>(ptr: *mut u8, size: usize, align: usize, inner: &A) {
    // SAFETY: `size` and `align` come from a `Layout`, by this function's contract.
    let layout = unsafe { Layout::from_size_align_unchecked(size, align) };
    if global::on_dealloc(size) {
        // SAFETY: the caller's guarantees, passed on unchanged.
        return unsafe { dealloc_slow(ptr, layout, inner) };
    }
    // SAFETY: the caller guarantees `ptr` came from `inner` with `layout`.
    unsafe { inner.dealloc(ptr, layout) }
}

/// `dealloc`'s slow path: settles this thread's counters, then forwards. The arguments come
/// in `dealloc`'s own order, so the hot path jumps here without moving them.
///
/// # Safety
///
/// The caller's guarantees for [`GlobalAlloc::dealloc`] on `inner`.
#[cold]
#[inline(never)]
unsafe fn dealloc_slow<A: GlobalAlloc>(ptr: *mut u8, layout: Layout, inner: &A) {
    global::settle();
    // SAFETY: `ptr` and `layout` are what `inner` needs, by this function's contract.
    unsafe { inner.dealloc(ptr, layout) }
}

/// Runs `f` and returns its result with the allocator calls *this thread* made inside it.
///
/// Scopes nest freely (each is a difference of this thread's cumulative counters, taken
/// before and after), cost two reads of a few thread-local cells, and never allocate.
/// Allocations made by other threads on `f`'s behalf are not included. When no
/// [`TrackedAlloc`] is the global allocator every figure is 0: assert [`is_active`] too, or
/// a "makes no allocation" test passes for the wrong reason.
///
/// ```
/// let ((), stats) = mm_track::count(|| {
///     let x = 1 + 1;
///     assert_eq!(x, 2);
/// });
/// assert_eq!(stats.allocs, 0);
/// ```
pub fn count<R>(f: impl FnOnce() -> R) -> (R, ScopeStats) {
    let before = global::thread_totals();
    let result = f();
    let stats = global::thread_totals().since(before);
    (result, stats)
}

/// True when a [`TrackedAlloc`] is the global allocator (and so has served a call).
///
/// It checks by making one 8-byte allocation through the global allocator and watching this
/// thread's counters move; the probe is then taken back out of every figure, so calling it
/// inside a [`count`] scope does not change the scope's result. Cost: one malloc/free pair.
pub fn is_active() -> bool {
    let layout = Layout::new::<u64>();
    let before = global::thread_totals().allocs;
    // SAFETY: `layout` has a non-zero size.
    let ptr = unsafe { std::alloc::alloc(layout) };
    if ptr.is_null() {
        return false;
    }
    // Keeps the optimiser from removing the allocation pair.
    let ptr = std::hint::black_box(ptr);
    let after = global::thread_totals().allocs;
    // SAFETY: `ptr` was allocated just above by the global allocator with `layout`.
    unsafe { std::alloc::dealloc(ptr, layout) };
    let active = after != before;
    if active {
        global::forget_probe(layout.size());
    }
    active
}

/// The process-wide figures, or `None` when no [`TrackedAlloc`] is the global allocator.
///
/// Folds the calling thread's pending deltas first, so after every other thread has exited
/// (or called [`flush`]) the figures are exact; see [`Snapshot`] for the error bound while
/// threads run. Cost: one [`is_active`] probe and about a dozen relaxed atomic loads.
pub fn snapshot() -> Option<Snapshot> {
    is_active().then(global::snapshot)
}

/// Folds the calling thread's pending deltas into the process-wide figures now.
///
/// A thread folds by itself before it holds [`OP_BATCH`] unfolded calls of one kind or
/// [`LIVE_SLACK_BYTES`] of unfolded live bytes, and when it exits; a long-lived thread that
/// goes idle can call this so that [`snapshot`] taken elsewhere is exact for it. Cost: up to
/// seven atomic adds.
pub fn flush() {
    global::flush();
}

/// Sets the peak to the current live bytes (after folding this thread), to measure the peak
/// of one phase of a program.
///
/// It is a plain store: a fold by another thread racing with it may land just before the
/// reset and be forgotten, so reset between phases, not in the middle of one.
pub fn reset_peak() {
    global::reset_peak();
}

/// The counting core, exposed for the loom models in `tests/loom.rs` only.
#[cfg(loom)]
#[doc(hidden)]
pub mod model {
    pub use crate::counters::{FOLD_SLACK, Local, ROLL_BYTES, Shared};
    pub use crate::sync::Atom;
}
