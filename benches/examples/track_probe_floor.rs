//! The churn probe (`track_probe/common.rs`) under `System` plus one thread-local add
//! per call and nothing else: the floor a per-thread tracker can reach.
//!
//! cargo run --release -p mm-benches --example track_probe_floor -- 1 10000000

#[path = "track_probe/common.rs"]
mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

thread_local! {
    static CALLS: Cell<u64> = const { Cell::new(0) };
}

/// Adds the size to a thread-local cell on every call, then forwards to `System`.
struct TlsAdd;

// SAFETY: every call is forwarded unchanged to `System`; the thread-local add does not
// allocate, unwind or touch the memory.
unsafe impl GlobalAlloc for TlsAdd {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded with the caller's guarantees.
        let p = unsafe { System.alloc(layout) };
        CALLS.with(|c| c.set(c.get().wrapping_add(layout.size() as u64)));
        p
    }
    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        CALLS.with(|c| c.set(c.get().wrapping_add(layout.size() as u64)));
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: TlsAdd = TlsAdd;

fn main() {
    common::main();
    std::hint::black_box(CALLS.with(Cell::get));
}
