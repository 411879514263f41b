//! A manager with something in every built-in part, for the report's tests.

use std::io::Write;

use memory_manager::{MemoryConfig, MemoryManager};

/// A manager whose buffer pool, interner, arenas and mmap cache have all been used: two
/// 1,000-byte buffers (one idle buffer left, one pool hit), four interned words (two
/// distinct), one arena scope, and one 8 KiB file mapped twice (one cache miss, one hit).
/// The file must outlive the manager's use of the map.
pub fn busy_manager() -> (MemoryManager, tempfile::NamedTempFile) {
    let m = MemoryManager::new(MemoryConfig::default().with_max_memory(256 << 20)).unwrap();
    drop(m.buffer(1000).unwrap());
    drop(m.buffer(1000).unwrap());
    for w in ["a", "b", "a", "a"] {
        m.interner().get_or_intern(w);
    }
    m.scope(|arena| arena.alloc_str("request").map(|_| ()))
        .unwrap();
    let mut f = tempfile::NamedTempFile::new().unwrap();
    f.write_all(&[7u8; 8192]).unwrap();
    f.flush().unwrap();
    // SAFETY: the test's own temporary file, never modified while mapped.
    let map = unsafe { m.map(f.path()) }.unwrap();
    assert_eq!(map.len(), 8192);
    drop(map);
    // SAFETY: as above.
    drop(unsafe { m.map(f.path()) }.unwrap());
    (m, f)
}
