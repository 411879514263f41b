//! A pooled `SseParser` kept in a thread-local and dropped by thread-local destruction,
//! after the pool's per-thread id is gone: its buffer goes back to the pool (or is counted
//! as a discard); the process does not abort.

use std::cell::RefCell;

use mm_llm::sse::{SseConfig, SseParser};
use mm_pool::{BufferPool, BufferPoolConfig};

thread_local! {
    static PARSER: RefCell<Option<SseParser>> = const { RefCell::new(None) };
}

#[test]
fn pooled_parser_dropped_during_thread_local_destruction() {
    let pool = BufferPool::new(BufferPoolConfig::default()).unwrap();
    let p = pool.clone();
    std::thread::spawn(move || {
        PARSER.with(|slot| {
            *slot.borrow_mut() = Some(SseParser::with_pool(SseConfig::default(), p).unwrap());
        });
    })
    .join()
    .expect("the thread exits cleanly");
    let s = pool.stats();
    assert!(s.hits + s.misses >= 1, "{s:?}");
    assert_eq!(s.hits + s.misses, s.returns + s.discards, "{s:?}");
}
