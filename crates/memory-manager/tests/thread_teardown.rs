//! `MemoryManager::scope` called from a thread-local destructor, after the thread's arena
//! was destroyed, runs on a temporary arena instead of panicking (a panic there aborts the
//! process: "thread local panicked on drop").

use std::cell::RefCell;
use std::sync::Mutex;

use memory_manager::{MemoryConfig, MemoryManager};

/// What the destructor's scope returned, read by the test after the thread is joined.
static OUTCOME: Mutex<Option<u64>> = Mutex::new(None);

/// Holds a manager and uses it when the thread's locals are destroyed.
struct ScopeOnDrop(RefCell<Option<MemoryManager>>);

impl Drop for ScopeOnDrop {
    fn drop(&mut self) {
        if let Some(manager) = self.0.borrow_mut().take() {
            let value = manager.scope(|arena| arena.alloc(41u64).map(|v| *v + 1).ok());
            *OUTCOME.lock().unwrap_or_else(|e| e.into_inner()) = value;
        }
    }
}

thread_local! {
    static LATE: ScopeOnDrop = const { ScopeOnDrop(RefCell::new(None)) };
}

#[test]
fn scope_in_a_thread_local_destructor_after_the_arena_is_gone() {
    let manager = MemoryManager::new(MemoryConfig::default()).expect("default config is valid");
    let worker = manager.clone();
    std::thread::spawn(move || {
        // Registered first, so destroyed after the thread arena (destructors run in reverse
        // order of registration).
        LATE.with(|late| *late.0.borrow_mut() = Some(worker));
        // Creates this thread's arena without configuring it for `manager`, so the
        // destructor's scope must configure it, after it is gone.
        mm_arena::scope(|arena| arena.alloc(1u8).map(|_| ()))
            .expect("a scope on a live thread works");
    })
    .join()
    .expect("the thread exits without panicking");
    assert_eq!(*OUTCOME.lock().unwrap_or_else(|e| e.into_inner()), Some(42));
    drop(manager);
}

#[test]
fn configure_and_trim_after_the_arena_is_gone_do_not_panic() {
    struct Probe;
    impl Drop for Probe {
        fn drop(&mut self) {
            let configured = mm_arena::configure_thread(&mm_arena::ArenaConfig::new());
            let trimmed = mm_arena::trim_thread();
            *RESULTS.lock().unwrap_or_else(|e| e.into_inner()) = Some((configured, trimmed));
        }
    }
    thread_local! {
        static PROBE: Probe = const { Probe };
    }
    type Results = Option<(
        Result<(), mm_arena::ArenaError>,
        Result<(), mm_arena::ArenaError>,
    )>;
    static RESULTS: Mutex<Results> = Mutex::new(None);
    std::thread::spawn(|| {
        PROBE.with(|_| ());
        mm_arena::scope(|_| ());
    })
    .join()
    .expect("the thread exits without panicking");
    assert_eq!(
        *RESULTS.lock().unwrap_or_else(|e| e.into_inner()),
        Some((Err(mm_arena::ArenaError::ThreadExiting), Ok(())))
    );
}
