//! A `ManagedBuffer` kept in a thread-local and dropped by thread-local destruction, after
//! the pool's per-thread id is gone: the buffer goes back to the pool (or is counted as a
//! discard) and its budget charge is released; the process does not abort.

use std::cell::RefCell;

use memory_manager::{ManagedBuffer, MemoryConfig, MemoryManager};

thread_local! {
    static KEPT: RefCell<Option<ManagedBuffer>> = const { RefCell::new(None) };
}

#[test]
fn managed_buffer_dropped_during_thread_local_destruction() {
    let manager = MemoryManager::new(MemoryConfig::default().with_max_memory(1 << 30)).unwrap();
    let m = manager.clone();
    std::thread::spawn(move || {
        // Initialised before the thread first touches the pool, so destroyed after its id.
        KEPT.with(|slot| {
            let mut buf = m.buffer(1000).unwrap();
            buf.extend_from_slice(b"kept until exit");
            *slot.borrow_mut() = Some(buf);
        });
    })
    .join()
    .expect("the thread exits cleanly");
    let s = manager.buffer_pool().stats();
    assert_eq!((s.hits + s.misses, s.returns + s.discards), (1, 1), "{s:?}");
    assert_eq!(
        manager.budget().used(),
        0,
        "the charge went with the buffer"
    );
}
