//! Without `TrackedAlloc` as the global allocator nothing is counted, and the API says so.

use std::hint::black_box;

#[test]
fn nothing_is_reported_when_not_installed() {
    assert!(!mm_track::is_active());
    assert!(mm_track::snapshot().is_none());
    let ((), s) = mm_track::count(|| drop(black_box(vec![1u8; 100])));
    assert!(s.is_empty(), "counted without being installed: {s:?}");
}

#[test]
fn direct_calls_count_but_do_not_make_it_active() {
    use std::alloc::{GlobalAlloc, Layout, System};
    let tracker = mm_track::TrackedAlloc::new(System);
    let layout = Layout::from_size_align(40, 8).unwrap();
    let ((), s) = mm_track::count(|| {
        // SAFETY: non-zero size; the block is freed with the same allocator and layout.
        unsafe {
            let p = tracker.alloc(layout);
            assert!(!p.is_null());
            tracker.dealloc(p, layout);
        }
    });
    assert_eq!((s.allocs, s.deallocs, s.alloc_bytes), (1, 1, 40));
    assert!(!mm_track::is_active(), "not the global allocator");
}
