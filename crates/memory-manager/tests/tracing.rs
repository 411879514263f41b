//! The manager's `tracing` events reach a subscriber: pressure level changes (with the
//! handlers' events inside a `memory_pressure` span), mmap cache evictions and trims, and
//! the manager's own trim.

use std::io::Write;

use memory_manager::{MemoryConfig, MemoryManager};
use tracing::Level;

#[path = "../../../support/tracing_capture.rs"]
mod tracing_capture;
use tracing_capture::{Capture, events};

fn file(len: usize) -> tempfile::NamedTempFile {
    let mut f = tempfile::NamedTempFile::new().unwrap();
    f.write_all(&vec![1u8; len]).unwrap();
    f.flush().unwrap();
    f
}

#[test]
fn pressure_changes_evictions_and_trims_are_traced() {
    let m = MemoryManager::new(
        MemoryConfig::default()
            .with_max_memory(8 << 20)
            .with_mmap_cache(1 << 20),
    )
    .unwrap();
    let (a, b) = (file(600 << 10), file(600 << 10));
    let records = Capture::run(|| {
        // SAFETY: the test's own temporary files, never modified while mapped.
        unsafe {
            drop(m.map(a.path()).unwrap());
            // Does not fit next to `a` within the 1 MiB cache: `a` is evicted.
            drop(m.map(b.path()).unwrap());
        }
        // With the cached 600 KiB map: past 80%, below 90% of the limit, a warning.
        let r = m.budget().try_reserve(6 << 20).unwrap();
        drop(r); // back to normal
        m.trim(0.0);
    });

    // `a` to make room for `b`, then `b` by the trim.
    let evicted = events(&records, "mmap cache evicted a map");
    assert_eq!(evicted.len(), 2, "{records:#?}");
    for (event, file) in evicted.iter().zip([&a, &b]) {
        assert_eq!(event.level, Level::DEBUG);
        assert_eq!(event.fields["bytes"], (600u64 << 10).to_string());
        assert_eq!(event.fields["path"], file.path().display().to_string());
    }

    let rose = events(&records, "memory pressure rose");
    assert_eq!(rose.len(), 1, "{records:#?}");
    assert_eq!(rose[0].level, Level::WARN);
    assert_eq!(rose[0].fields["level"], "warning");
    assert_eq!(rose[0].fields["previous"], "normal");
    let ran = events(&records, "pressure handler ran");
    assert!(!ran.is_empty(), "{records:#?}");
    assert!(
        ran.iter().all(|r| r.spans == ["memory_pressure"]),
        "{ran:#?}"
    );
    let eased = events(&records, "memory pressure eased");
    assert_eq!(eased.len(), 1);
    assert_eq!(eased[0].level, Level::INFO);
    assert_eq!(eased[0].fields["level"], "normal");

    // The manager's trim empties the cache (`b`), and says so twice: the cache, the manager.
    let cache_trim = events(&records, "mmap cache trimmed");
    assert_eq!(cache_trim.len(), 1, "{records:#?}");
    assert_eq!(
        cache_trim[0].fields["released_bytes"],
        (600u64 << 10).to_string()
    );
    assert_eq!(cache_trim[0].fields["held_bytes"], "0");
    let trim = events(&records, "trimmed idle memory");
    assert_eq!(trim.len(), 1);
    assert_eq!(trim[0].level, Level::INFO);
    let freed: u64 = trim[0].fields["freed_bytes"].parse().unwrap();
    assert!(freed >= 600 << 10, "{trim:#?}");
}
