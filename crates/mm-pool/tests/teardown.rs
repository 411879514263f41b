//! Guards dropped during thread-local destruction: the return path never panics (a panic
//! there aborts the process). Each test runs the hazard in a spawned thread, joins it,
//! and checks that the item was returned to the pool or counted as a discard.
//!
//! A `thread_local!` initialised *before* the thread first uses a pool is destroyed after
//! the pool's per-thread id (thread-local destructors run in reverse order of
//! registration), so its guard is dropped once the id is gone.

use std::cell::RefCell;
use std::sync::OnceLock;

use mm_pool::{
    BufferPool, BufferPoolConfig, BufferRef, ObjectPool, PoolStats, Pooled, PooledBuffer, PooledRef,
};

thread_local! {
    static BUFFER: RefCell<Option<PooledBuffer>> = const { RefCell::new(None) };
    static BUFFER_REF: RefCell<Option<BufferRef<'static>>> = const { RefCell::new(None) };
    static OBJECT: RefCell<Option<Pooled<Vec<u8>>>> = const { RefCell::new(None) };
    static OBJECT_REF: RefCell<Option<PooledRef<'static, Vec<u8>>>> = const { RefCell::new(None) };
    static MANY: RefCell<Vec<PooledBuffer>> = const { RefCell::new(Vec::new()) };
}

/// The item came back (queued or cached) or was counted as dropped: nothing vanished.
fn accounted(s: PoolStats, handed_out: u64) {
    assert_eq!(s.hits + s.misses, handed_out, "{s:?}");
    assert_eq!(s.returns + s.discards, handed_out, "{s:?}");
    assert!(s.held <= s.returns, "{s:?}");
}

#[test]
fn buffer_in_a_thread_local_dropped_after_the_pool_id_is_gone() {
    let pool = BufferPool::new(BufferPoolConfig::default()).unwrap();
    let p = pool.clone();
    std::thread::spawn(move || {
        BUFFER.with(|slot| {
            let mut buf = p.acquire(100);
            buf.extend_from_slice(b"kept until thread exit");
            *slot.borrow_mut() = Some(buf);
        });
    })
    .join()
    .expect("the thread exits cleanly");
    let s = pool.stats();
    accounted(s, 1);
    assert_eq!(s.returns, 1, "returned through the shared queue: {s:?}");
    assert_eq!(s.held, 1);
    // And it is reused, cleared.
    let again = pool.acquire(100);
    assert!(again.is_empty());
    assert_eq!(pool.stats().hits, 1);
}

#[test]
fn buffer_in_a_thread_local_dropped_before_the_pool_id_is_gone() {
    let pool = BufferPool::new(BufferPoolConfig::default()).unwrap();
    let p = pool.clone();
    std::thread::spawn(move || {
        // The pool is used first, so its id outlives this thread-local.
        drop(p.acquire(1));
        BUFFER.with(|slot| *slot.borrow_mut() = Some(p.acquire(100)));
    })
    .join()
    .expect("the thread exits cleanly");
    accounted(pool.stats(), 2);
}

fn static_buffer_pool() -> &'static BufferPool {
    static POOL: OnceLock<BufferPool> = OnceLock::new();
    POOL.get_or_init(|| BufferPool::new(BufferPoolConfig::with_tiers([(4096, 4)])).unwrap())
}

fn static_object_pool() -> &'static ObjectPool<Vec<u8>> {
    static POOL: OnceLock<ObjectPool<Vec<u8>>> = OnceLock::new();
    POOL.get_or_init(|| ObjectPool::with_reset(4, || Vec::with_capacity(64), Vec::clear).unwrap())
}

#[test]
fn borrowed_buffer_in_a_thread_local() {
    let pool = static_buffer_pool();
    std::thread::spawn(|| {
        BUFFER_REF.with(|slot| *slot.borrow_mut() = Some(static_buffer_pool().acquire_ref(10)));
    })
    .join()
    .expect("the thread exits cleanly");
    accounted(pool.stats(), 1);
}

#[test]
fn objects_in_thread_locals_owned_and_borrowed() {
    let owned = ObjectPool::with_reset(4, || Vec::<u8>::with_capacity(64), Vec::clear).unwrap();
    let o = owned.clone();
    std::thread::spawn(move || {
        OBJECT.with(|slot| {
            let mut v = o.acquire();
            v.push(1);
            *slot.borrow_mut() = Some(v);
        });
        OBJECT_REF.with(|slot| *slot.borrow_mut() = Some(static_object_pool().acquire_ref()));
    })
    .join()
    .expect("the thread exits cleanly");
    accounted(owned.stats(), 1);
    accounted(static_object_pool().stats(), 1);
    assert!(
        owned.acquire().is_empty(),
        "the reset hook ran on the way back"
    );
}

#[test]
fn a_thread_that_never_used_the_pool_drops_a_guard_at_exit() {
    let pool = BufferPool::new(BufferPoolConfig::default()).unwrap();
    let guard = pool.acquire(100);
    std::thread::spawn(move || {
        // This thread has no pool id yet; the guard is dropped by thread-local destruction.
        BUFFER.with(|slot| *slot.borrow_mut() = Some(guard));
    })
    .join()
    .expect("the thread exits cleanly");
    accounted(pool.stats(), 1);
}

#[test]
fn more_guards_than_places_during_teardown_are_counted_as_discards() {
    let pool = BufferPool::new(BufferPoolConfig::with_tiers([(1024, 2)])).unwrap();
    let p = pool.clone();
    std::thread::spawn(move || {
        MANY.with(|slot| slot.borrow_mut().extend((0..5).map(|_| p.acquire(1))));
    })
    .join()
    .expect("the thread exits cleanly");
    let s = pool.stats();
    accounted(s, 5);
    assert_eq!((s.returns, s.discards, s.held), (2, 3, 2), "{s:?}");
}

/// Acquires an owned guard from its pool while the thread's thread-locals are destroyed
/// (after the pool's per-thread id is gone), drops the last pool handle, then the guard.
struct AcquireAtExit(Option<ObjectPool<Counted>>);
impl Drop for AcquireAtExit {
    fn drop(&mut self) {
        if let Some(pool) = self.0.take() {
            let guard = pool.acquire();
            drop(pool);
            drop(guard);
        }
    }
}

thread_local! {
    static AT_EXIT: RefCell<AcquireAtExit> = const { RefCell::new(AcquireAtExit(None)) };
}

/// Counts live instances through a shared counter.
struct Counted(std::sync::Arc<std::sync::atomic::AtomicUsize>);
impl Drop for Counted {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    }
}

/// Without a record, an owned guard keeps the pool alive with a strong count of its own:
/// the pool outlives its last handle until the guard is back, and is then freed.
#[test]
fn an_owned_guard_acquired_after_the_pool_id_is_gone_keeps_and_frees_the_pool() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    let live = Arc::new(AtomicUsize::new(0));
    let l = Arc::clone(&live);
    let pool = ObjectPool::new(2, move || {
        l.fetch_add(1, Ordering::SeqCst);
        Counted(Arc::clone(&l))
    })
    .unwrap();
    std::thread::spawn(move || {
        // Registered before the pool's id, so destroyed after it.
        AT_EXIT.with(|slot| slot.borrow_mut().0 = Some(pool.clone()));
        drop(pool.acquire());
        drop(pool);
    })
    .join()
    .expect("the thread exits cleanly");
    assert_eq!(live.load(Ordering::SeqCst), 0);
    assert_eq!(Arc::strong_count(&live), 1, "the pool's state was freed");
}
