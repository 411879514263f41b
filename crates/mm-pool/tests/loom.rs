//! Loom models of the pools' acquire/return races (run by `.ci/loom.sh`).
//!
//! Under `--cfg loom` the pools keep their logic but use loom's `Arc`, atomics and a loom
//! mutex queue (see `src/sync.rs`), so loom explores every interleaving of that logic.
#![cfg(loom)]

use loom::sync::Arc;
use loom::sync::atomic::{AtomicUsize, Ordering};
use loom::thread;
use mm_pool::{BufferPool, BufferPoolConfig, ObjectPool};

/// Counts live instances to prove nothing leaks or is freed twice.
struct Tracked(Arc<AtomicUsize>);
impl Drop for Tracked {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

fn tracked_pool(max_idle: usize, live: &Arc<AtomicUsize>) -> ObjectPool<Tracked> {
    let live = Arc::clone(live);
    ObjectPool::new(max_idle, move || {
        live.fetch_add(1, Ordering::SeqCst);
        Tracked(Arc::clone(&live))
    })
    .unwrap()
}

/// Two threads acquiring and returning concurrently into a one-slot ObjectPool: every
/// acquire is a hit or a miss, every return a return or a discard, the pool holds at most
/// one object, and every object is freed exactly once when the pool goes.
#[test]
fn object_pool_acquire_return_race_keeps_bound_and_loses_nothing() {
    loom::model(|| {
        let live = Arc::new(AtomicUsize::new(0));
        let pool = tracked_pool(1, &live);
        let p2 = pool.clone();
        let t = thread::spawn(move || drop(p2.acquire()));
        drop(pool.acquire());
        t.join().unwrap();
        let s = pool.stats();
        assert_eq!(s.hits + s.misses, 2);
        assert_eq!(s.returns + s.discards, 2);
        assert!(s.held <= 1);
        assert_eq!(live.load(Ordering::SeqCst) as u64, s.held);
        drop(pool);
        assert_eq!(live.load(Ordering::SeqCst), 0);
    });
}

/// The last handle to a pool dropped on one thread while a guard is dropped on another:
/// whichever runs last frees the shared state, and the object is freed exactly once.
#[test]
fn object_pool_dropped_while_a_guard_returns_on_another_thread() {
    loom::model(|| {
        let live = Arc::new(AtomicUsize::new(0));
        let pool = tracked_pool(2, &live);
        let guard = pool.acquire();
        let t = thread::spawn(move || drop(guard));
        drop(pool);
        t.join().unwrap();
        assert_eq!(live.load(Ordering::SeqCst), 0);
    });
}

fn one_tier(max_idle: usize) -> BufferPool {
    BufferPool::new(BufferPoolConfig::with_tiers([(64, max_idle)])).unwrap()
}

/// Two threads racing acquire/return on a one-buffer tier: the held count never passes the
/// bound, and once quiet the held count matches the stats.
#[test]
fn buffer_pool_acquire_return_race_keeps_bound() {
    loom::model(|| {
        let pool = one_tier(1);
        let p2 = pool.clone();
        let t = thread::spawn(move || {
            drop(p2.acquire(10));
            p2.stats().held
        });
        drop(pool.acquire(10));
        let seen = t.join().unwrap();
        assert!(seen <= 1);
        let s = pool.stats();
        assert_eq!(s.hits + s.misses, 2);
        assert_eq!(s.returns + s.discards, 2);
        assert!(s.held <= 1);
        // Returns minus hits is what stayed in the pool.
        assert_eq!(s.returns - s.hits, s.held);
        assert_eq!(pool.trim(), s.held as usize * 64);
        assert_eq!(pool.stats().held, 0);
    });
}

/// `trim` racing a return: the buffer is either trimmed or left held, never both, never
/// lost from the count.
#[test]
fn buffer_pool_trim_races_a_return() {
    loom::model(|| {
        let pool = one_tier(2);
        let guard = pool.acquire(1);
        let p2 = pool.clone();
        let t = thread::spawn(move || drop(guard));
        let released = pool.trim();
        t.join().unwrap();
        let held = pool.stats().held as usize;
        assert_eq!(released / 64 + held, 1);
        assert_eq!(p2.trim() / 64, held);
        assert_eq!(pool.stats().held, 0);
    });
}

/// Returns racing through the slot-full path (newest kept in the slot, older moved to the
/// queue on a reserved place) never hold more than the tier's bound, and trim then finds
/// exactly what the stats say is held.
#[test]
fn buffer_pool_slot_swap_race_keeps_bound() {
    loom::model(|| {
        let pool = one_tier(2);
        let p2 = pool.clone();
        let t = thread::spawn(move || {
            let a = p2.acquire(1);
            let b = p2.acquire(1);
            drop(a);
            drop(b);
        });
        let c = pool.acquire(1);
        drop(c);
        t.join().unwrap();
        let s = pool.stats();
        assert!(s.held <= 2);
        assert_eq!(s.returns + s.discards, 3);
        assert_eq!(pool.trim(), s.held as usize * 64);
    });
}
