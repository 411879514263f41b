//! ObjectPool behaviour: bound, reset hook, detach, cross-thread drops, pool dropped first.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use mm_pool::{ObjectPool, PoolError};

/// Counts live instances, to prove nothing leaks.
struct Tracked(Arc<AtomicUsize>);
impl Tracked {
    fn new(live: &Arc<AtomicUsize>) -> Self {
        live.fetch_add(1, Ordering::SeqCst);
        Self(Arc::clone(live))
    }
}
impl Drop for Tracked {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

fn assert_send_sync<T: Send + Sync>() {}
fn assert_send<T: Send>() {}

#[test]
fn pool_and_guard_are_thread_safe_types() {
    assert_send_sync::<ObjectPool<Vec<u8>>>();
    assert_send::<mm_pool::Pooled<Vec<u8>>>();
}

#[test]
fn zero_capacity_is_a_typed_error() {
    assert_eq!(
        ObjectPool::new(0, || 0u8).unwrap_err(),
        PoolError::ZeroCapacity { index: 0 }
    );
}

#[test]
fn reset_hook_runs_on_return_and_objects_are_reused() {
    let pool = ObjectPool::with_reset(2, || Vec::<u8>::with_capacity(64), Vec::clear).unwrap();
    let ptr = {
        let mut v = pool.acquire();
        v.extend_from_slice(b"abc");
        v.as_ptr()
    };
    let v = pool.acquire();
    assert!(v.is_empty(), "reset hook cleared it");
    assert_eq!(v.as_ptr(), ptr, "same allocation reused");
    let s = pool.stats();
    assert_eq!((s.hits, s.misses, s.returns), (1, 1, 1));
}

#[test]
fn bound_is_kept_and_excess_is_dropped() {
    let live = Arc::new(AtomicUsize::new(0));
    let l = Arc::clone(&live);
    let pool = ObjectPool::new(3, move || Tracked::new(&l)).unwrap();
    let guards: Vec<_> = (0..10).map(|_| pool.acquire()).collect();
    assert_eq!(live.load(Ordering::SeqCst), 10);
    drop(guards);
    let s = pool.stats();
    assert_eq!(s.held, 3);
    assert_eq!((s.returns, s.discards), (3, 7));
    assert_eq!(
        live.load(Ordering::SeqCst),
        3,
        "only the bound is kept alive"
    );
    assert!(s.held_bytes <= s.bound_bytes);
    assert_eq!(pool.trim(), 3);
    assert_eq!(live.load(Ordering::SeqCst), 0);
}

#[test]
fn detach_keeps_the_object_out_of_the_pool() {
    let pool = ObjectPool::new(4, || String::from("x")).unwrap();
    let s: String = pool.acquire().detach();
    assert_eq!(s, "x");
    let st = pool.stats();
    assert_eq!((st.returns, st.discards, st.held), (0, 0, 0));
}

#[test]
fn guard_dropped_on_another_thread_returns_to_the_pool() {
    let pool = ObjectPool::new(4, || vec![0u8; 16]).unwrap();
    let g = pool.acquire();
    std::thread::spawn(move || drop(g)).join().unwrap();
    assert_eq!(pool.stats().returns, 1);
    assert_eq!(pool.stats().held, 1);
}

#[test]
fn pool_dropped_while_guards_are_alive() {
    let live = Arc::new(AtomicUsize::new(0));
    let l = Arc::clone(&live);
    let pool = ObjectPool::new(4, move || Tracked::new(&l)).unwrap();
    let a = pool.acquire();
    let b = pool.acquire();
    drop(pool);
    assert_eq!(live.load(Ordering::SeqCst), 2);
    std::thread::spawn(move || drop(a)).join().unwrap();
    // `a` went back into the (now handle-less) pool's queue: still alive until `b` drops.
    assert_eq!(live.load(Ordering::SeqCst), 2);
    drop(b);
    assert_eq!(
        live.load(Ordering::SeqCst),
        0,
        "last guard freed the shared state"
    );
}

#[test]
fn a_panicking_reset_hook_drops_the_object_without_leaking() {
    let live = Arc::new(AtomicUsize::new(0));
    let l = Arc::clone(&live);
    let pool =
        ObjectPool::with_reset(4, move || Tracked::new(&l), |_| panic!("bad reset")).unwrap();
    let g = pool.acquire();
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| drop(g)));
    assert!(r.is_err());
    assert_eq!(live.load(Ordering::SeqCst), 0);
    assert_eq!(pool.stats().held, 0);
}

#[test]
fn steady_state_reuse_is_above_95_percent() {
    let pool = ObjectPool::with_reset(8, || Vec::<u64>::with_capacity(128), Vec::clear).unwrap();
    std::thread::scope(|s| {
        for _ in 0..2 {
            s.spawn(|| {
                for i in 0..5_000u64 {
                    let mut v = pool.acquire();
                    v.push(i);
                }
            });
        }
    });
    let st = pool.stats();
    assert_eq!(st.hits + st.misses, 10_000);
    let rate = st.hit_rate().unwrap();
    assert!(rate > 0.95, "hit rate {rate}");
    assert!(st.held <= 8);
}

#[test]
fn borrowed_guards_return_from_scoped_threads() {
    let pool = ObjectPool::with_reset(4, || Vec::<u8>::with_capacity(32), Vec::clear).unwrap();
    let g = pool.acquire_ref();
    std::thread::scope(|s| {
        // Joined, so the thread has exited and its cache is up for the next miss.
        s.spawn(move || drop(g)).join().unwrap();
    });
    let mut again = pool.acquire_ref();
    again.push(1);
    assert_eq!(again.len(), 1);
    let kept = again.detach();
    assert_eq!(kept, vec![1]);
    let s = pool.stats();
    assert_eq!((s.hits, s.misses, s.returns, s.held), (1, 1, 1, 0));
}

/// Owned guards are counted on the per-thread record they were acquired on; the pool's
/// state must live until the last of them is back, wherever it is dropped, and then be
/// freed (the factory closure, which holds `live`, goes with it).
#[test]
fn owned_guards_keep_the_pool_alive_across_threads_and_free_it_last() {
    let live = Arc::new(AtomicUsize::new(0));
    let l = Arc::clone(&live);
    let pool = ObjectPool::new(4, move || Tracked::new(&l)).unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::scope(|s| {
        for _ in 0..2 {
            let (p, tx) = (pool.clone(), tx.clone());
            s.spawn(move || {
                // Round trips on this thread's record, then two guards that leave it.
                for _ in 0..100 {
                    drop(p.acquire());
                }
                tx.send((p.acquire(), p.acquire())).unwrap();
            });
        }
    });
    drop(tx);
    let mut guards: Vec<_> = rx.iter().flat_map(|(a, b)| [a, b]).collect();
    drop(pool);
    assert_eq!(
        Arc::strong_count(&live),
        1 + live.load(Ordering::SeqCst) + 1
    );
    // One back on this thread, one on a new thread, the rest here; the pool is freed with
    // the last one.
    drop(guards.pop());
    let g = guards.pop().unwrap();
    std::thread::spawn(move || drop(g)).join().unwrap();
    assert!(Arc::strong_count(&live) > 1, "two guards still out");
    drop(guards);
    assert_eq!(live.load(Ordering::SeqCst), 0);
    assert_eq!(Arc::strong_count(&live), 1, "the pool's state was freed");
}

#[test]
fn a_pool_whose_owned_guards_are_all_back_is_freed_with_its_last_handle() {
    let live = Arc::new(AtomicUsize::new(0));
    let l = Arc::clone(&live);
    let pool = ObjectPool::new(4, move || Tracked::new(&l)).unwrap();
    let other = pool.clone();
    std::thread::spawn(move || drop(other.acquire()))
        .join()
        .unwrap();
    drop(pool.acquire());
    drop(pool);
    assert_eq!(live.load(Ordering::SeqCst), 0);
    assert_eq!(Arc::strong_count(&live), 1, "the pool's state was freed");
}

#[test]
fn detached_and_panicking_owned_guards_after_close_free_the_pool() {
    let live = Arc::new(AtomicUsize::new(0));
    let l = Arc::clone(&live);
    let pool =
        ObjectPool::with_reset(4, move || Tracked::new(&l), |_| panic!("bad reset")).unwrap();
    let (a, b) = (pool.acquire(), pool.acquire());
    drop(pool);
    let kept = a.detach();
    assert_eq!(
        Arc::strong_count(&live),
        4,
        "the state, the kept object and `b` hold it"
    );
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| drop(b)));
    assert!(r.is_err());
    assert_eq!(live.load(Ordering::SeqCst), 1);
    drop(kept);
    assert_eq!(Arc::strong_count(&live), 1, "the pool's state was freed");
}

/// Owned guards given back on their own threads (the owner's plain-store path) while
/// another thread drops the last handle (the close, with its process-wide barrier), and
/// guards moved to other threads (the read-modify-write path), over many rounds: every
/// round's state is freed exactly once, after its last guard, whatever the interleaving.
#[test]
fn owner_give_backs_racing_the_close_free_every_pool_once() {
    // Miri interprets every instruction: a few rounds there (it explores interleavings of
    // its own), many natively.
    let rounds = if cfg!(miri) { 3 } else { 200 };
    for _ in 0..rounds {
        let live = Arc::new(AtomicUsize::new(0));
        let l = Arc::clone(&live);
        let pool = ObjectPool::new(4, move || Tracked::new(&l)).unwrap();
        let (a, b) = (pool.acquire(), pool.acquire());
        std::thread::scope(|s| {
            let p = pool.clone();
            s.spawn(move || {
                // This thread's own guards, given back here; then one moved away.
                let (c, d) = (p.acquire(), p.acquire());
                drop(c);
                s.spawn(move || drop(d));
                drop(p);
            });
            s.spawn(move || drop(pool));
            drop(a);
            drop(b);
        });
        assert_eq!(live.load(Ordering::SeqCst), 0);
        assert_eq!(Arc::strong_count(&live), 1, "the pool's state was freed");
    }
}

/// A zero-sized object's `Box` may have the address a cache slot uses as a marker, so such
/// pools keep no thread cache: they still reuse through the queue, keep the bound, and
/// drop every object once.
#[test]
fn zero_sized_objects_are_pooled_and_dropped_once() {
    static LIVE: AtomicUsize = AtomicUsize::new(0);
    struct Unit;
    impl Drop for Unit {
        fn drop(&mut self) {
            LIVE.fetch_sub(1, Ordering::SeqCst);
        }
    }
    let pool = ObjectPool::new(2, || {
        LIVE.fetch_add(1, Ordering::SeqCst);
        Unit
    })
    .unwrap();
    for _ in 0..10 {
        drop(pool.acquire_ref());
        drop(pool.acquire());
    }
    let (a, b, c) = (pool.acquire(), pool.acquire(), pool.acquire());
    drop((a, b, c));
    let s = pool.stats();
    assert_eq!((s.hits + s.misses, s.returns + s.discards), (23, 23));
    assert!(s.hits >= 19 && s.held <= 2);
    assert_eq!(LIVE.load(Ordering::SeqCst) as u64, s.held);
    drop(pool);
    assert_eq!(LIVE.load(Ordering::SeqCst), 0);
}

#[test]
fn a_typed_reset_runs_on_every_return_path_like_a_boxed_one() {
    let pool =
        ObjectPool::with_typed_reset(2, || Vec::<u8>::with_capacity(64), Vec::clear).unwrap();
    assert_send_sync::<ObjectPool<Vec<u8>, fn(&mut Vec<u8>)>>();
    let ptr = {
        let mut v = pool.acquire_ref();
        v.extend_from_slice(b"abc");
        v.as_ptr()
    };
    let mut v = pool.acquire();
    assert!(v.is_empty(), "cleared on the borrowing guard's return");
    assert_eq!(v.as_ptr(), ptr, "same allocation reused");
    v.push(7);
    // Returned on another thread: the slow path runs the same hook. (`join` waits for
    // the thread's exit, so the next miss sweeps its cache.)
    std::thread::spawn(move || drop(v)).join().unwrap();
    let v = pool.acquire_ref();
    assert!(
        v.is_empty(),
        "cleared on the owned guard's return elsewhere"
    );
    drop(v);
    let s = pool.stats();
    assert_eq!((s.hits, s.misses, s.returns), (2, 1, 3));
}

#[test]
fn a_panicking_typed_reset_drops_the_object_without_leaking() {
    let live = Arc::new(AtomicUsize::new(0));
    let l = Arc::clone(&live);
    let pool = ObjectPool::with_typed_reset(
        4,
        move || Tracked::new(&l),
        |_: &mut Tracked| panic!("bad reset"),
    )
    .unwrap();
    let (g, r) = (pool.acquire(), pool.acquire_ref());
    for drop_it in [
        Box::new(move || drop(g)) as Box<dyn FnOnce()>,
        Box::new(move || drop(r)),
    ] {
        let res = std::panic::catch_unwind(std::panic::AssertUnwindSafe(drop_it));
        assert!(res.is_err());
    }
    assert_eq!(live.load(Ordering::SeqCst), 0);
    assert_eq!(pool.stats().held, 0);
    drop(pool);
}

/// The fast path counts hits only; returns into a thread's cache are worked out from the
/// slots on read. Every other way in or out of a slot (the slow put, a replaced older item,
/// a trim, a sweep of an exited thread's cache, a slow take) must keep the figures exact.
#[test]
fn counts_stay_exact_across_every_way_in_and_out_of_a_cache() {
    let pool =
        ObjectPool::with_typed_reset(4, || Vec::<u8>::with_capacity(16), Vec::clear).expect("pool");
    let (mut acquires, mut drops) = (0u64, 0u64);
    let check = |acquires: u64, drops: u64, when: &str| {
        let s = pool.stats();
        assert_eq!(s.hits + s.misses, acquires, "acquires, {when}");
        assert_eq!(s.returns + s.discards, drops, "returns, {when}");
        assert!(s.held <= 4 && s.returns >= s.held, "{s:?}, {when}");
    };
    for round in 0..50u64 {
        // Fast round trips, with both guards.
        for _ in 0..3 {
            drop(pool.acquire_ref());
            drop(pool.acquire());
        }
        acquires += 6;
        drops += 6;
        check(acquires, drops, "after fast round trips");
        // Several held at once: the later returns take the slow put (the cache is full, an
        // older item is replaced and queued, or the tier is full and one is discarded).
        let held: Vec<_> = (0..6).map(|_| pool.acquire_ref()).collect();
        acquires += 6;
        drop(held);
        drops += 6;
        check(acquires, drops, "after a burst");
        if round % 5 == 0 {
            pool.trim();
            check(acquires, drops, "after a trim");
        }
        if round % 7 == 0 {
            // A thread that caches an object and exits: the next miss or trim sweeps it.
            std::thread::scope(|s| {
                s.spawn(|| drop(pool.acquire()));
            });
            acquires += 1;
            drops += 1;
            check(acquires, drops, "after a thread exit");
            let v = pool.acquire_ref();
            acquires += 1;
            let w = pool.acquire();
            acquires += 1;
            drop((v, w));
            drops += 2;
            check(acquires, drops, "after a sweep");
        }
        let kept = pool.acquire_ref().detach();
        acquires += 1;
        drop(kept);
        check(acquires, drops, "after a detach");
    }
    let s = pool.stats();
    assert!(s.hits > s.misses, "mostly reused: {s:?}");
}
