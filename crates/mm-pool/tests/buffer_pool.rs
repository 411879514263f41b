//! BufferPool behaviour: tiers, discards, oversize, bound, trim, threads, bad configs.

use mm_pool::{BufferPool, BufferPoolConfig, PoolError};

const KB: usize = 1024;

#[test]
fn bad_tier_lists_are_typed_errors() {
    let cfg =
        |t: &[(usize, usize)]| BufferPool::new(BufferPoolConfig::with_tiers(t.iter().copied()));
    assert_eq!(cfg(&[]).unwrap_err(), PoolError::NoTiers);
    assert_eq!(
        cfg(&[(0, 4)]).unwrap_err(),
        PoolError::ZeroSizedTier { index: 0 }
    );
    assert_eq!(
        cfg(&[(4096, 0)]).unwrap_err(),
        PoolError::ZeroCapacity { index: 0 }
    );
    assert_eq!(
        cfg(&[(4096, 1), (1024, 1)]).unwrap_err(),
        PoolError::TiersNotIncreasing {
            index: 1,
            previous: 4096,
            size: 1024
        }
    );
    assert_eq!(
        cfg(&[(usize::MAX / 2, 3)]).unwrap_err(),
        PoolError::BoundOverflow
    );
    let msg = cfg(&[(4096, 1), (4096, 1)]).unwrap_err().to_string();
    assert!(msg.contains("smallest to largest"), "{msg}");
}

#[test]
fn smallest_fitting_tier_is_used() {
    let pool = BufferPool::new(BufferPoolConfig::default()).unwrap();
    assert_eq!(pool.acquire(0).capacity(), 4 * KB);
    assert_eq!(pool.acquire(4 * KB).capacity(), 4 * KB);
    assert_eq!(pool.acquire(4 * KB + 1).capacity(), 64 * KB);
    assert_eq!(pool.acquire(1024 * KB).capacity(), 1024 * KB);
    let big = pool.acquire(1024 * KB + 1);
    assert!(!big.is_pooled());
    assert_eq!(big.capacity(), 1024 * KB + 1);
    drop(big);
    let s = pool.stats();
    assert_eq!(s.oversize, 1);
    assert_eq!(s.held_bytes as usize, 4 * KB + 64 * KB + 1024 * KB);
}

#[test]
fn returned_buffers_are_cleared_and_hot_one_comes_back_first() {
    let pool = BufferPool::new(BufferPoolConfig::default()).unwrap();
    let a = pool.acquire(100);
    let b = pool.acquire(100);
    let (pa, pb) = (a.as_ptr(), b.as_ptr());
    drop(a);
    drop(b);
    // LIFO in front of the FIFO queue: the last returned buffer is handed out first.
    let mut c = pool.acquire(100);
    assert_eq!(c.as_ptr(), pb);
    assert!(c.is_empty());
    c.extend_from_slice(b"x");
    let d = pool.acquire(100);
    assert_eq!(d.as_ptr(), pa);
}

#[test]
fn grown_buffers_and_full_tiers_are_discarded() {
    let pool = BufferPool::new(BufferPoolConfig::with_tiers([(4 * KB, 2)])).unwrap();
    let mut grown = pool.acquire(10);
    grown.extend_from_slice(&[0u8; 5000]);
    drop(grown);
    let mut split = pool.acquire(10);
    let _head = split.split_to(0);
    let _tail = split.split_off(100);
    drop(split);
    assert_eq!(pool.stats().discards, 2);
    assert_eq!(pool.stats().held, 0);

    let bufs: Vec<_> = (0..5).map(|_| pool.acquire(10)).collect();
    drop(bufs);
    let s = pool.stats();
    assert_eq!(s.held, 2);
    assert_eq!(s.returns, 2);
    assert_eq!(s.discards, 2 + 3);
    assert_eq!(s.held_bytes, s.bound_bytes);
}

#[test]
fn try_acquire_refuses_sizes_above_max_request() {
    let pool =
        BufferPool::new(BufferPoolConfig::default().with_max_request(8 * 1024 * 1024)).unwrap();
    assert_eq!(
        pool.try_acquire(usize::MAX).unwrap_err(),
        PoolError::TooLarge {
            requested: usize::MAX,
            max: 8 * 1024 * 1024
        }
    );
    assert_eq!(
        pool.try_acquire(2 * 1024 * 1024).unwrap().capacity(),
        2 * 1024 * 1024
    );
}

#[test]
fn trim_releases_queues_and_thread_caches() {
    let pool = BufferPool::new(BufferPoolConfig::default()).unwrap();
    let many: Vec<_> = (0..10).map(|_| pool.acquire(1)).collect();
    drop(many);
    let other = pool.clone();
    std::thread::spawn(move || drop(other.acquire(60 * KB)))
        .join()
        .unwrap();
    assert_eq!(pool.held_per_tier(), vec![10, 1, 0]);
    assert_eq!(pool.trim(), 10 * 4 * KB + 64 * KB);
    assert_eq!(pool.stats().held_bytes, 0);
    assert_eq!(pool.held_per_tier(), vec![0, 0, 0]);
}

#[test]
fn buffer_cached_by_an_exited_thread_is_reused_not_lost() {
    let pool = BufferPool::new(BufferPoolConfig::with_tiers([(64 * KB, 1)])).unwrap();
    let p = pool.clone();
    let ptr = std::thread::spawn(move || p.acquire(1).as_ptr() as usize)
        .join()
        .unwrap();
    assert_eq!(pool.stats().held, 1);
    // This thread's cache and the queue are empty: the miss path takes the stranded buffer.
    let again = pool.acquire(1);
    assert_eq!(again.as_ptr() as usize, ptr);
    assert_eq!(pool.stats().hits, 1);
}

#[test]
fn guards_survive_the_pool_and_cross_threads() {
    let pool = BufferPool::new(BufferPoolConfig::default()).unwrap();
    let mut g = pool.acquire(10);
    g.extend_from_slice(b"kept");
    drop(pool);
    let len = std::thread::spawn(move || {
        let n = g.len();
        drop(g);
        n
    })
    .join()
    .unwrap();
    assert_eq!(len, 4);
}

#[test]
fn detach_keeps_the_buffer() {
    let pool = BufferPool::new(BufferPoolConfig::default()).unwrap();
    let mut g = pool.acquire(10);
    g.extend_from_slice(b"frozen");
    let bytes = g.detach().freeze();
    assert_eq!(&bytes[..], b"frozen");
    assert_eq!(pool.stats().held, 0);
    assert_eq!(pool.stats().returns, 0);
}

#[test]
fn steady_state_reuse_is_above_95_percent_at_two_threads() {
    for cache in [true, false] {
        let pool = BufferPool::new(BufferPoolConfig::default().with_thread_cache(cache)).unwrap();
        std::thread::scope(|s| {
            for t in 0..2 {
                let pool = &pool;
                s.spawn(move || {
                    for i in 0..5_000usize {
                        let sizes = [512, 3000, 20_000, 900_000];
                        let mut b = pool.acquire(sizes[(i + t) % sizes.len()]);
                        b.extend_from_slice(&[1u8; 64]);
                    }
                });
            }
        });
        let s = pool.stats();
        assert_eq!(s.hits + s.misses, 10_000);
        assert_eq!(s.returns + s.discards, 10_000);
        let rate = s.hit_rate().unwrap();
        assert!(rate > 0.95, "thread_cache={cache}: hit rate {rate}");
        assert!(s.held_bytes <= s.bound_bytes);
    }
}

#[test]
fn borrowed_buffers_share_tiers_and_stats_with_owned_ones() {
    let pool = BufferPool::new(BufferPoolConfig::default()).unwrap();
    let p = {
        let mut b = pool.acquire_ref(100);
        b.extend_from_slice(b"abc");
        b.as_ptr()
    };
    let owned = pool.acquire(100);
    assert_eq!(
        owned.as_ptr(),
        p,
        "the owned guard got the buffer the borrowed one returned"
    );
    assert!(owned.is_empty());
    drop(owned);
    std::thread::scope(|s| {
        let b = pool.acquire_ref(2_000_000);
        assert!(!b.is_pooled());
        s.spawn(move || drop(b));
    });
    let st = pool.stats();
    assert_eq!((st.hits, st.misses, st.returns, st.oversize), (1, 1, 2, 1));
}

#[test]
fn bound_holds_with_more_threads_than_places() {
    let pool = BufferPool::new(BufferPoolConfig::with_tiers([(1024, 4)])).unwrap();
    std::thread::scope(|s| {
        let threads: Vec<_> = (0..8)
            .map(|_| {
                s.spawn(|| {
                    for _ in 0..200 {
                        let held: Vec<_> = (0..3).map(|_| pool.acquire_ref(100)).collect();
                        assert!(pool.stats().held <= 4);
                        drop(held);
                    }
                })
            })
            .collect();
        // A join (unlike the end of the scope) waits for the threads' thread-local
        // destructors, which give their ids back: `trim` below then reaches their caches.
        for t in threads {
            t.join().unwrap();
        }
    });
    let s = pool.stats();
    assert!(s.held <= 4, "{s:?}");
    assert_eq!(s.hits + s.misses, 8 * 200 * 3);
    assert_eq!(s.returns + s.discards, 8 * 200 * 3);
    assert!(s.held_bytes <= s.bound_bytes);
    assert_eq!(pool.trim(), s.held as usize * 1024);
    assert_eq!(pool.stats().held, 0);
}

#[test]
fn owned_buffers_given_back_on_either_thread_before_and_after_the_close() {
    let pool = BufferPool::new(BufferPoolConfig::with_tiers([(64, 4)])).unwrap();
    let handle = pool.clone();
    let (mine, theirs, late, oversize) = (
        pool.acquire(1),
        pool.acquire(1),
        pool.acquire(1),
        pool.acquire(1000),
    );
    // Given back on the lending thread (plain stores) and on another one (the shared
    // counter), while a handle is still alive: both are counted as returns.
    drop(mine);
    std::thread::spawn(move || drop(theirs)).join().unwrap();
    let s = handle.stats();
    assert_eq!((s.misses, s.oversize, s.returns), (3, 1, 2));
    assert_eq!(s.held, 2);
    // After the last handle: the oversize guard, a frozen body and a detached buffer still
    // hold the state, each released once, on either thread.
    let frozen = late.into_bytes();
    drop((pool, handle));
    let detached = oversize.detach();
    assert_eq!(detached.capacity(), 1000);
    let part = frozen.slice(0..0);
    drop(frozen);
    std::thread::spawn(move || drop(part)).join().unwrap();
}
