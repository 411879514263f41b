//! Per-thread scope counting under a real `#[global_allocator]`.

use std::hint::black_box;
use std::sync::{Arc, Barrier};

use mm_track::{ScopeStats, TrackedAlloc};

#[global_allocator]
static GLOBAL: TrackedAlloc = TrackedAlloc::new(std::alloc::System);

#[test]
fn tracking_is_live() {
    assert!(mm_track::is_active());
    assert!(mm_track::snapshot().is_some());
}

#[test]
fn exact_counts_for_a_known_pattern() {
    assert!(mm_track::is_active());
    let ((), s) = mm_track::count(|| {
        let mut boxes = Vec::with_capacity(10); // 1 alloc of 10 pointers, 80 bytes
        for i in 0..10u8 {
            boxes.push(black_box(Box::new([i + 1; 24]))); // 10 allocs of 24 bytes
        }
        drop(black_box(boxes)); // 11 deallocs
    });
    assert_eq!(
        s,
        ScopeStats {
            allocs: 11,
            deallocs: 11,
            reallocs: 0,
            alloc_bytes: 80 + 240,
            dealloc_bytes: 80 + 240,
        }
    );
    assert_eq!(s.net_bytes(), 0);
}

#[test]
fn realloc_and_alloc_zeroed_are_counted() {
    assert!(mm_track::is_active());
    let (v, s) = mm_track::count(|| {
        let mut v: Vec<u8> = Vec::with_capacity(16);
        v.reserve_exact(64); // realloc 16 -> 64
        black_box(v)
    });
    assert_eq!(v.capacity(), 64);
    assert_eq!((s.allocs, s.reallocs, s.deallocs), (1, 1, 0));
    assert_eq!((s.alloc_bytes, s.dealloc_bytes), (16 + 64, 16));
    assert_eq!(s.net_bytes(), 64);
    let ((), s) = mm_track::count(|| drop(black_box(v)));
    assert_eq!((s.deallocs, s.dealloc_bytes), (1, 64));

    let (z, s) = mm_track::count(|| black_box(vec![0u8; 4096])); // alloc_zeroed
    assert!(z.iter().all(|&b| b == 0));
    assert_eq!((s.allocs, s.alloc_bytes), (1, 4096));
    drop(z);
}

#[test]
fn nested_scopes_each_see_their_own_calls() {
    assert!(mm_track::is_active());
    let ((inner, middle), outer) = mm_track::count(|| {
        let a = black_box(Box::new(1u64));
        let (inner_and_b, middle) = mm_track::count(|| {
            let b = black_box(Box::new([2u32; 4]));
            let ((), inner) = mm_track::count(|| drop(black_box(Box::new(3u16))));
            (inner, b)
        });
        drop(a);
        drop(inner_and_b.1);
        (inner_and_b.0, middle)
    });
    assert_eq!((inner.allocs, inner.deallocs, inner.alloc_bytes), (1, 1, 2));
    assert_eq!(
        (middle.allocs, middle.deallocs, middle.alloc_bytes),
        (2, 1, 18)
    );
    assert_eq!((outer.allocs, outer.deallocs), (3, 3));
    assert_eq!(
        (outer.alloc_bytes, outer.dealloc_bytes),
        (8 + 16 + 2, 8 + 16 + 2)
    );
}

#[test]
fn a_scope_does_not_see_other_threads() {
    assert!(mm_track::is_active());
    let start = Arc::new(Barrier::new(2));
    let end = Arc::new(Barrier::new(2));
    let (s2, e2) = (Arc::clone(&start), Arc::clone(&end));
    // Under Miri (which interprets every instruction) a tenth of the noise is still 100 times
    // the quiet thread's bound.
    let noise: usize = if cfg!(miri) { 1_000 } else { 10_000 };
    let noisy = std::thread::spawn(move || {
        s2.wait();
        let mut keep = Vec::new();
        for i in 0..noise {
            keep.push(black_box(vec![1u8; 1 + i % 100]));
        }
        e2.wait();
        keep.len()
    });
    let ((), quiet) = mm_track::count(|| {
        start.wait();
        end.wait();
    });
    assert_eq!(noisy.join().unwrap(), noise);
    assert!(quiet.allocs < 10, "quiet thread saw {quiet:?}");
    // The noisy thread's work, counted in its own scope, is all there.
    let (n, s) = mm_track::count(|| {
        std::thread::scope(|sc| {
            sc.spawn(|| mm_track::count(|| black_box(vec![7u8; 3]).len()).1)
                .join()
                .unwrap()
        })
    });
    assert_eq!((n.allocs, n.alloc_bytes, n.deallocs), (1, 3, 1));
    assert!(s.allocs >= 1, "spawning a thread allocates on the caller");
}

#[test]
fn is_active_is_invisible_to_scopes() {
    let (active, s) = mm_track::count(mm_track::is_active);
    assert!(active);
    assert!(s.is_empty(), "the probe leaked into the scope: {s:?}");
}

/// Pending once, then ready.
struct YieldOnce(bool);
impl std::future::Future for YieldOnce {
    type Output = ();
    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<()> {
        if std::mem::replace(&mut self.0, true) {
            std::task::Poll::Ready(())
        } else {
            std::task::Poll::Pending
        }
    }
}

#[test]
fn count_future_sums_its_polls_and_counts_the_final_drop() {
    use std::task::{Context, Poll, Waker};
    assert!(mm_track::is_active());
    let mut cx = Context::from_waker(Waker::noop());
    let fut = mm_track::count_future(async {
        let a = black_box(vec![1u8; 10]);
        YieldOnce(false).await;
        let b = black_box(vec![2u8; 20]);
        // `a` and `b` are dropped when the block completes, inside the last poll.
        a.len() + b.len()
    });
    let mut fut = std::pin::pin!(fut);
    assert!(fut.as_mut().poll(&mut cx).is_pending());
    let first = fut.stats();
    assert_eq!(
        (first.allocs, first.alloc_bytes, first.deallocs),
        (1, 10, 0)
    );
    // Calls made between polls are not the future's.
    drop(black_box(vec![0u8; 1000]));
    let Poll::Ready((len, stats)) = fut.as_mut().poll(&mut cx) else {
        panic!("ready on the second poll")
    };
    assert_eq!(len, 30);
    assert_eq!(
        stats,
        ScopeStats {
            allocs: 2,
            deallocs: 2,
            reallocs: 0,
            alloc_bytes: 30,
            dealloc_bytes: 30,
        }
    );
    assert_eq!(fut.stats(), stats);
}

#[test]
#[should_panic(expected = "polled after it completed")]
fn count_future_polled_after_completion_panics() {
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    let mut fut = std::pin::pin!(mm_track::count_future(async { 1 }));
    assert!(fut.as_mut().poll(&mut cx).is_ready());
    let _ = fut.as_mut().poll(&mut cx);
}
