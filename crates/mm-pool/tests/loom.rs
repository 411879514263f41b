//! Loom models of the pools' acquire/return races (run by `.ci/loom.sh`).
//!
//! Under `--cfg loom` the pools keep their logic but use loom's `Arc`, atomics, mutex,
//! `UnsafeCell` and `thread_local!`, and a loom mutex queue (see `src/sync.rs`): the real
//! per-thread records, thread ids (given back by a loom thread-local destructor at thread
//! exit, and reused), caches and sweeps run under loom, which explores their interleavings
//! and fails on any unsynchronised access to a thread's cache. Loom's `join` returns
//! before the joined thread's thread-locals are destroyed, so every model also covers a
//! thread whose exit (and id hand-back) is still in progress.
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

/// Every object was freed exactly once and the pool's state is gone: nothing else holds the
/// counter that `tracked_pool`'s objects and factory share.
fn assert_all_freed(live: &Arc<AtomicUsize>) {
    assert_eq!(live.load(Ordering::SeqCst), 0, "an object was not freed");
    assert_eq!(Arc::strong_count(live), 1, "the pool's state was not freed");
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
/// bound, once quiet the held count matches the stats, and trim releases exactly what it
/// can reach.
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
        // What trim cannot reach now is in the other thread's cache (loom's `join` may
        // return before that thread's exit has given its id back).
        let released = pool.trim() as u64 / 64;
        assert_eq!(released + pool.stats().held, s.held);
    });
}

/// `trim` racing a return on another thread: the buffer is either trimmed or left held
/// (in that thread's cache until its next operation or exit), never both, never lost from
/// the count.
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
        let again = p2.trim() / 64;
        assert_eq!(again + pool.stats().held as usize, held);
    });
}

/// Returns racing through the cache-full path (newest kept in the cache, older moved to
/// the queue on a reserved place) never hold more than the tier's bound, and trim then
/// releases what the stats say is held, less what sits in the other thread's cache.
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
        let released = pool.trim() as u64 / 64;
        assert_eq!(released + pool.stats().held, s.held);
    });
}

/// A thread's cached object after the thread exits: a later thread may reuse its id and
/// inherit the record, while another thread's miss sweeps exited threads' caches. Either
/// way the claim and the sweep never touch the cache at once (loom checks the `UnsafeCell`),
/// the object is used by one thread at a time, the one-writer counters add up, and every
/// object is freed exactly once.
#[test]
fn exited_thread_cache_is_inherited_or_swept_never_both() {
    loom::model(|| {
        let live = Arc::new(AtomicUsize::new(0));
        let pool = tracked_pool(2, &live);
        let p1 = pool.clone();
        thread::spawn(move || drop(p1.acquire())).join().unwrap();
        let p2 = pool.clone();
        let b = thread::spawn(move || drop(p2.acquire()));
        drop(pool.acquire());
        b.join().unwrap();
        let s = pool.stats();
        assert_eq!(s.hits + s.misses, 3);
        assert_eq!(s.returns + s.discards, 3);
        assert!(s.held <= 2);
        assert_eq!(live.load(Ordering::SeqCst) as u64, s.held);
        drop(pool);
        assert_eq!(live.load(Ordering::SeqCst), 0);
    });
}

/// `trim` while another thread keeps an object in its cache and then uses the pool again:
/// the trimming thread releases what it can reach (the queue, its own cache, exited
/// threads' caches); the other thread drops its cached object at its next operation
/// instead of reusing it. Nothing is lost or counted twice.
#[test]
fn trim_reaches_live_caches_at_their_next_operation() {
    loom::model(|| {
        let live = Arc::new(AtomicUsize::new(0));
        let pool = tracked_pool(2, &live);
        let p = pool.clone();
        let t = thread::spawn(move || {
            drop(p.acquire());
            drop(p.acquire());
        });
        let released = pool.trim();
        t.join().unwrap();
        let s = pool.stats();
        assert_eq!(s.hits + s.misses, 2);
        assert_eq!(s.returns + s.discards, 2);
        assert!(released <= 1 && s.held <= 1);
        assert_eq!(live.load(Ordering::SeqCst) as u64, s.held);
        drop(pool);
        assert_eq!(live.load(Ordering::SeqCst), 0);
    });
}

/// Owned guards are counted on the per-thread record they came from, not on a shared
/// reference count. Here a guard lent on the main thread is given back on another thread
/// (a read-modify-write on the lender's record), that thread's own guard may be given back
/// after the last handle is gone (the drain path), and either thread may drop the last
/// handle (the close). Whatever the interleaving, the state is freed exactly once, after
/// the last guard, and every object with it.
#[test]
fn owned_guards_race_the_last_handle_drop() {
    loom::model(|| {
        let live = Arc::new(AtomicUsize::new(0));
        let pool = tracked_pool(2, &live);
        let mine = pool.acquire();
        let p2 = pool.clone();
        let t = thread::spawn(move || {
            let theirs = p2.acquire();
            drop(p2);
            drop(mine);
            drop(theirs);
        });
        drop(pool);
        t.join().unwrap();
        assert_all_freed(&live);
    });
}

/// The last handle dropped on another thread while two guards lent on one record are given
/// back, one on the lending thread and one on the closing thread: the close and the
/// give-backs race on that record's counter; exactly one of them releases the state.
#[test]
fn close_races_a_give_back_on_the_lending_thread() {
    loom::model(|| {
        let live = Arc::new(AtomicUsize::new(0));
        let pool = tracked_pool(1, &live);
        let (g, h) = (pool.acquire(), pool.acquire());
        let t = thread::spawn(move || {
            drop(pool);
            drop(h);
        });
        drop(g);
        t.join().unwrap();
        assert_all_freed(&live);
    });
}

/// The owner's give-back without a read-modify-write (plain stores around the light side of
/// an asymmetric fence) racing the close on another thread (the heavy side, then a read of
/// the owner's count): the owner gives back one guard before and one possibly after the
/// close; either the close sees a give-back or the owner sees the close and counts it the
/// shared way, never both, never neither. The state is freed exactly once, after both.
#[test]
fn owner_give_backs_race_the_close_on_another_thread() {
    loom::model(|| {
        let live = Arc::new(AtomicUsize::new(0));
        let pool = tracked_pool(2, &live);
        let (g, h) = (pool.acquire(), pool.acquire());
        let t = thread::spawn(move || drop(pool));
        drop(g);
        drop(h);
        t.join().unwrap();
        assert_all_freed(&live);
    });
}

/// A guard dropped on a thread other than the one it was lent on counts the shared way
/// (a read-modify-write of the lender's `foreign` counter), while the lending thread gives
/// its own guard back with plain stores and then drops the last handle: both counts meet
/// at the close, and the state is freed once, by whichever comes last.
#[test]
fn foreign_and_owner_give_backs_meet_at_the_close() {
    loom::model(|| {
        let live = Arc::new(AtomicUsize::new(0));
        let pool = tracked_pool(2, &live);
        let (mine, theirs) = (pool.acquire(), pool.acquire());
        let t = thread::spawn(move || drop(theirs));
        drop(mine);
        let s = pool.stats();
        assert_eq!(s.hits + s.misses, 2);
        drop(pool);
        t.join().unwrap();
        assert_all_freed(&live);
    });
}

/// `PooledBuffer` keeps its pool alive the same way (`src/lease.rs`): counted on the
/// lending thread's record, no `Arc` clone. The owner gives one buffer back before and one
/// possibly after the close on another thread (plain stores against the heavy fence), a
/// third buffer crosses to the closing thread and is given back there (the
/// read-modify-write path). Loom fails the model if the pool's state `Arc` is leaked or
/// released twice, so it is freed exactly once, after the last buffer.
#[test]
fn owned_buffers_race_the_close_on_both_paths() {
    loom::model(|| {
        let pool = one_tier(2);
        let (a, b, c) = (pool.acquire(1), pool.acquire(1), pool.acquire(1));
        let t = thread::spawn(move || {
            drop(pool);
            drop(c);
        });
        drop(a);
        drop(b);
        t.join().unwrap();
    });
}

/// A buffer lent on a thread that then exits, given back after the last handle is gone on
/// the main thread, while the main thread's own buffer was given back before the close:
/// the exited thread's record drains through the shared counter, and the state is freed
/// once (loom checks the `Arc`).
#[test]
fn an_owned_buffer_outlives_its_pool_and_its_lending_thread() {
    loom::model(|| {
        let pool = one_tier(1);
        let p2 = pool.clone();
        let theirs = thread::spawn(move || p2.acquire(1)).join().unwrap();
        let mine = pool.acquire(1);
        drop(mine);
        let t = thread::spawn(move || drop(pool));
        drop(theirs);
        t.join().unwrap();
    });
}
