//! The embedding cache's `tracing` events reach a subscriber: each removed entry at trace
//! level with its cause, and each trim (a fraction evicted, the pressure hook) at info.

use memory_manager::{MemoryConfig, MemoryManager};
use mm_llm::{EmbeddingCache, EmbeddingCacheConfig, Interner};
use tracing::Level;

#[path = "../../../support/tracing_capture.rs"]
mod tracing_capture;
use tracing_capture::{Capture, events};

#[test]
fn evictions_and_trims_are_traced() {
    let manager = MemoryManager::new(MemoryConfig::default().with_max_memory(64 << 20)).unwrap();
    let config = EmbeddingCacheConfig::new()
        .with_max_entries(8)
        .with_shards(1);
    let cache = EmbeddingCache::from_manager(&manager, config).unwrap();
    let model = Interner::new().get_or_intern("m");
    let records = Capture::run(|| {
        // 12 inserts into 8 entries: 4 leave for size.
        for i in 0..12 {
            cache
                .insert(cache.key(model, &i.to_string()), &[1.0; 16])
                .unwrap();
        }
        assert_eq!(cache.evict_fraction(0.5), 4);
        // Past 90% of the manager's limit: its pressure path calls the cache's hook.
        drop(manager.budget().try_reserve(60 << 20).unwrap());
    });
    let removed = events(&records, "embedding cache removed an entry");
    assert!(removed.iter().all(|r| r.level == Level::TRACE));
    let causes = |cause: &str| {
        removed
            .iter()
            .filter(|r| r.fields["cause"] == cause)
            .count()
    };
    assert_eq!(causes("size"), 4, "{records:#?}");
    assert_eq!(
        causes("pressure"),
        4 + 2,
        "half of 8, then half of the 4 left"
    );
    let fraction = events(
        &records,
        "embedding cache evicted a fraction of its entries",
    );
    assert_eq!(fraction.len(), 1);
    assert_eq!(fraction[0].level, Level::INFO);
    assert_eq!(fraction[0].fields["evicted"], "4");
    let pressure = events(&records, "embedding cache trimmed under pressure");
    assert_eq!(pressure.len(), 1);
    assert_eq!(pressure[0].level, Level::INFO);
    assert!(pressure[0].fields["freed_bytes"].parse::<u64>().unwrap() > 0);
    assert_eq!(pressure[0].spans, ["memory_pressure"]);
}
