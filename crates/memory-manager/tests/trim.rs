//! Fragmentation figure and `release_heap` (malloc_trim on glibc), in a binary of its own
//! with the tracked allocator and one test, so no other test's allocations interfere.

use memory_manager::{MemoryConfig, MemoryManager, TrackedAlloc};

#[global_allocator]
static GLOBAL: TrackedAlloc = TrackedAlloc::new(std::alloc::System);

#[test]
fn freed_heap_is_handed_back_and_fragmentation_is_reported() {
    let m = MemoryManager::new(MemoryConfig::new().with_max_memory(1 << 30)).unwrap();
    // 2,000 blocks of 32 KiB (below glibc's mmap threshold, so they come from the heap),
    // touched; then all freed but the last, which pins the top so free() cannot trim.
    let mut blocks: Vec<Vec<u8>> = (0..2000).map(|i| vec![i as u8 | 1; 32 << 10]).collect();
    let pin = blocks.pop().unwrap();
    drop(blocks);
    let report = m.report();
    let fr = report
        .fragmentation
        .expect("tracked allocator and /proc present");
    assert!((0.0..=1.0).contains(&fr.fraction));
    let released = m.release_heap();
    // Under AddressSanitizer `malloc` is the sanitizer's (its quarantine keeps freed
    // blocks), so glibc's `malloc_trim` has nothing of ours to hand back: only its presence
    // and the report's figure are checked there.
    let sanitized = std::env::var_os("MM_UNDER_SANITIZER").is_some();
    if cfg!(all(target_os = "linux", target_env = "gnu")) {
        let released = released.expect("glibc has malloc_trim");
        assert!(
            sanitized || released > 16 << 20,
            "only {released} bytes released"
        );
        assert_eq!(m.report().pressure.heap_released_bytes, released);
    } else {
        assert!(released.is_none());
    }
    let json = m.report().to_json();
    assert!(json.contains("\"fragmentation\""), "{json}");
    drop(pin);
}
