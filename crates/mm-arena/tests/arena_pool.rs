//! `ArenaPool`: guards are `Send + 'static`, come back warm, reset on drop, and a request
//! through a warm guard makes no heap allocation.

use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use mm_arena::{ArenaConfig, ArenaError, ArenaPool, PooledArena};
use mm_track::TrackedAlloc;

#[global_allocator]
static GLOBAL: TrackedAlloc = TrackedAlloc::new(std::alloc::System);

fn assert_send_static<T: Send + 'static>(_: &T) {}

/// Yields once, so the handler below really suspends between its allocations.
struct YieldOnce(bool);

impl Future for YieldOnce {
    type Output = ();
    fn poll(mut self: std::pin::Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.0 {
            Poll::Ready(())
        } else {
            self.0 = true;
            cx.waker().wake_by_ref();
            Poll::Pending
        }
    }
}

/// An async handler that allocates, awaits with an arena reference alive, and allocates
/// again: its future must be `Send` (what axum and `tokio::spawn` require).
async fn handler(arena: PooledArena, user: u32) -> Result<usize, ArenaError> {
    let name = arena.alloc_str("user-")?;
    YieldOnce(false).await;
    let ids = arena.alloc_slice_fill_copy(16, user)?;
    YieldOnce(false).await;
    let total = arena.alloc(name.len() + ids.len())?;
    Ok(*total)
}

fn run<F: Future>(f: F) -> F::Output {
    let mut f = pin!(f);
    let mut cx = Context::from_waker(Waker::noop());
    loop {
        if let Poll::Ready(out) = f.as_mut().poll(&mut cx) {
            return out;
        }
    }
}

#[test]
fn handler_future_holding_a_guard_across_awaits_is_send() {
    let pool = ArenaPool::new(ArenaConfig::new(), 2).unwrap();
    let guard = pool.get().unwrap();
    assert_send_static(&guard);
    let fut = handler(guard, 7);
    assert_send_static(&fut);
    assert_eq!(run(fut), Ok(21));
    // The future can also run on another thread.
    let guard = pool.get().unwrap();
    let out = std::thread::spawn(move || run(handler(guard, 1)))
        .join()
        .unwrap();
    assert_eq!(out, Ok(21));
    assert_eq!(pool.stats().warm_gets, 1);
}

#[test]
fn guards_come_back_warm_and_reset() {
    let pool = ArenaPool::new(ArenaConfig::new().with_initial_capacity(16 * 1024), 2).unwrap();
    let a = pool.get().unwrap();
    a.alloc_slice_fill_copy(1000, 0u64).unwrap();
    assert!(a.stats().in_use_bytes >= 8000);
    drop(a);
    let s = pool.stats();
    assert_eq!((s.gets, s.warm_gets, s.returns, s.idle), (1, 0, 1, 1));
    assert!(s.idle_bytes >= 16 * 1024);
    let b = pool.get().unwrap();
    assert_eq!(b.stats().in_use_bytes, 0, "a returned arena is reset");
    assert_eq!(pool.stats().warm_gets, 1);
    // More guards out than max_idle: the extra arena is freed on return.
    let c = pool.get().unwrap();
    let d = pool.get().unwrap();
    drop((b, c, d));
    let s = pool.stats();
    assert_eq!((s.returns, s.discards, s.idle), (3, 1, 2));
    assert!(pool.trim() >= 2 * 16 * 1024);
    assert_eq!(pool.stats().idle_bytes, 0);
    assert_eq!(
        ArenaPool::new(ArenaConfig::new(), 0).unwrap_err(),
        ArenaError::ZeroMaxIdle
    );
}

#[test]
fn limits_apply_to_pooled_arenas() {
    let pool = ArenaPool::new(ArenaConfig::new().with_allocation_limit(Some(8 * 1024)), 1).unwrap();
    let g = pool.get().unwrap();
    assert!(matches!(
        g.alloc_slice_fill_copy(1 << 20, 0u8),
        Err(ArenaError::LimitExceeded { .. })
    ));
    let mut s = g.string_with_capacity(16).unwrap();
    s.push_str("fits");
    assert_eq!(s.as_str(), "fits");
    assert_eq!(g.vec_with_capacity::<u32>(4).unwrap().capacity(), 4);
}

#[test]
fn a_warm_request_through_a_guard_makes_no_heap_allocation() {
    assert!(mm_track::is_active());
    let pool = ArenaPool::new(ArenaConfig::new().with_initial_capacity(64 * 1024), 4).unwrap();
    let request = |user: u32| {
        let guard = pool.get().unwrap();
        run(handler(guard, user)).unwrap()
    };
    for user in 0..10 {
        request(user);
    }
    let (sum, stats) = mm_track::count(|| (0..1_000).map(request).sum::<usize>());
    assert_eq!(sum, 21 * 1_000);
    assert_eq!(stats.allocs + stats.reallocs, 0, "{stats:?}");
}

#[test]
fn concurrent_gets_and_returns_keep_the_counts_consistent() {
    let pool = ArenaPool::new(ArenaConfig::new().with_initial_capacity(4096), 3).unwrap();
    std::thread::scope(|s| {
        for t in 0..4u32 {
            let pool = pool.clone();
            s.spawn(move || {
                for i in 0..500 {
                    let g = pool.get().unwrap();
                    let v = g.alloc(t * 1000 + i).unwrap();
                    assert_eq!(*v, t * 1000 + i);
                }
            });
        }
    });
    let s = pool.stats();
    assert_eq!(s.gets, 2_000);
    assert_eq!(s.returns + s.discards, 2_000);
    assert!(s.idle <= 3 && s.idle as u64 <= s.returns);
    assert!(s.idle_bytes >= s.idle as u64 * 4096, "{s:?}");
    // The running figure agrees with what the idle arenas really hold.
    assert_eq!(pool.trim(), s.idle_bytes);
    assert_eq!(pool.stats().idle_bytes, 0);
}
