//! The fixed overhead of a default manager, in heap bytes measured by the tracked allocator:
//! tiny when built but unused, at most 3.5 MB with every component touched once (a
//! registered component and a pressure subscription included).

use std::io::Write;

use std::sync::Arc;

use memory_manager::{Component, ComponentReading, MemoryConfig, MemoryManager, TrackedAlloc};

/// A registered component holding nothing: the cost of registration itself.
#[derive(Debug)]
struct Idle;

impl Component for Idle {
    fn name(&self) -> &str {
        "idle"
    }
    fn reading(&self) -> ComponentReading {
        ComponentReading::new(0)
    }
}

#[global_allocator]
static GLOBAL: TrackedAlloc = TrackedAlloc::new(std::alloc::System);

/// 3.5 MB, the design's line.
const FIXED_LIMIT: i64 = 3_500_000;

#[test]
fn cold_and_warm_fixed_overhead() {
    let mut file = tempfile::NamedTempFile::new().unwrap();
    file.write_all(&[3u8; 4096]).unwrap();
    file.flush().unwrap();
    // Warm the thread-local machinery the test harness and std use, outside the measurement.
    let _ = mm_track::count(|| ());

    let (manager, cold) = mm_track::count(|| {
        MemoryManager::new(MemoryConfig::default().with_max_memory(1 << 30)).unwrap()
    });
    assert!(
        mm_track::is_active(),
        "the tracked allocator must be live for this test to mean anything"
    );
    assert!(cold.allocs > 0, "building a manager allocates something");
    let cold_bytes = cold.net_bytes();

    let part = Arc::new(Idle);
    let (map, warm) = mm_track::count(|| {
        let buf = manager.buffer(1).unwrap();
        drop(buf);
        manager.register(part.clone());
        let events = manager.subscribe(16);
        manager.interner().get_or_intern("model");
        manager
            .scope(|arena| arena.alloc(1u64).map(|_| ()))
            .unwrap();
        // SAFETY: the test's own temporary file, never modified while mapped.
        let map = unsafe { manager.map(file.path()) }.unwrap();
        let report = manager.report();
        drop(report);
        drop(events);
        map
    });
    let warm_bytes = warm.net_bytes();
    println!(
        "cold {cold_bytes} B net ({} B allocated in {} allocations), warm +{warm_bytes} B in {} allocations (fixed total {} B)",
        cold.alloc_bytes,
        cold.allocs,
        warm.allocs,
        cold_bytes + warm_bytes
    );
    assert!(cold_bytes < 16 * 1024, "cold manager costs {cold_bytes} B");
    assert!(
        warm_bytes > cold_bytes,
        "touching components allocates their state"
    );
    assert!(
        cold_bytes + warm_bytes <= FIXED_LIMIT,
        "fixed overhead {} B is over {FIXED_LIMIT} B",
        cold_bytes + warm_bytes
    );
    drop(map);
}
