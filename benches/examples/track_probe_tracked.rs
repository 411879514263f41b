//! The churn probe (`track_probe/common.rs`) under `TrackedAlloc<System>`; it checks
//! that the tracker really counted the loop.
//!
//! cargo run --release -p mm-benches --example track_probe_tracked -- 1 10000000

#[path = "track_probe/common.rs"]
mod common;

#[global_allocator]
static GLOBAL: mm_track::TrackedAlloc = mm_track::TrackedAlloc::new(std::alloc::System);

fn main() {
    let (_, main_thread) = mm_track::count(common::main);
    assert!(
        mm_track::is_active(),
        "TrackedAlloc is not the global allocator"
    );
    let snap = mm_track::snapshot().expect("active");
    assert!(
        snap.allocs > 1_000,
        "the probe's allocations were not counted: {snap:?}"
    );
    std::hint::black_box(main_thread);
}
