//! A global allocator that is [`TrackedAlloc`] or bare [`System`], switched at run time, so
//! one binary can time the same workload with and without tracking.
//!
//! Both paths pay the same switch (one relaxed load of a flag that is only written between
//! passes, and a well-predicted branch), so the difference between a tracked pass and a bare
//! pass is the tracking alone. Both paths end in `System`, so a block may be freed on either
//! path whatever path allocated it; only the *counts* need a block to be allocated and freed
//! within one tracked pass, which the passes in [`crate::parts`] arrange.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};

use mm_track::TrackedAlloc;

static TRACKING: AtomicBool = AtomicBool::new(true);

/// `TrackedAlloc<System>` when tracking is on (the default), `System` when off.
#[derive(Debug, Default)]
pub struct Gate {
    tracked: TrackedAlloc<System>,
}

impl Gate {
    /// A gate, tracking by default.
    pub const fn new() -> Self {
        Self {
            tracked: TrackedAlloc::new(System),
        }
    }

    /// Turns tracking on or off for every thread. Call between passes, when no thread
    /// holds memory whose counts should balance.
    pub fn set_tracking(on: bool) {
        TRACKING.store(on, Relaxed);
    }

    /// Whether calls are tracked now.
    pub fn tracking() -> bool {
        TRACKING.load(Relaxed)
    }
}

// SAFETY: both paths forward the caller's arguments unchanged to `System` (directly or
// through `TrackedAlloc`, which forwards unchanged), so every block comes from and returns
// to `System` whichever path a call takes.
unsafe impl GlobalAlloc for Gate {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded with the caller's guarantees.
        unsafe {
            if TRACKING.load(Relaxed) {
                self.tracked.alloc(layout)
            } else {
                System.alloc(layout)
            }
        }
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded with the caller's guarantees.
        unsafe {
            if TRACKING.load(Relaxed) {
                self.tracked.alloc_zeroed(layout)
            } else {
                System.alloc_zeroed(layout)
            }
        }
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `System` on either path (see the impl's SAFETY note).
        unsafe {
            if TRACKING.load(Relaxed) {
                self.tracked.dealloc(ptr, layout)
            } else {
                System.dealloc(ptr, layout)
            }
        }
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: `ptr` came from `System` on either path; the rest is forwarded unchanged.
        unsafe {
            if TRACKING.load(Relaxed) {
                self.tracked.realloc(ptr, layout, new_size)
            } else {
                System.realloc(ptr, layout, new_size)
            }
        }
    }
}
