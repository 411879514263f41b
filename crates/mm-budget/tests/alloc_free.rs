//! The hot paths allocate nothing: checked with `mm-track` as the global allocator.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use mm_budget::{BudgetError, MemoryBudget, sys};

#[global_allocator]
static GLOBAL: mm_track::TrackedAlloc = mm_track::TrackedAlloc::new(std::alloc::System);

fn budget_with_counting_subscriber() -> (MemoryBudget, Arc<AtomicU64>) {
    let budget = MemoryBudget::with_limit(1 << 20).unwrap();
    let events = Arc::new(AtomicU64::new(0));
    let e = Arc::clone(&events);
    budget.subscribe(move |_| {
        e.fetch_add(1, Ordering::Relaxed);
    });
    // Make sure the tracker has served a call, so the counts below cannot pass vacuously.
    drop(std::hint::black_box(Box::new(0u64)));
    assert!(
        mm_track::is_active(),
        "TrackedAlloc must be live for this test to mean anything"
    );
    (budget, events)
}

#[test]
fn reserve_grow_shrink_drop_do_not_allocate() {
    let (budget, _) = budget_with_counting_subscriber();
    let ((), stats) = mm_track::count(|| {
        for i in 0..1000u64 {
            let mut r = budget.try_reserve(100 + i).unwrap();
            r.try_grow(10).unwrap();
            r.shrink(5);
            let part = r.split(5).unwrap();
            r.merge(part).unwrap();
            drop(r);
        }
    });
    assert_eq!(stats.allocs, 0, "{stats:?}");
    assert_eq!(budget.used(), 0);
}

#[test]
fn refusals_and_event_delivery_do_not_allocate() {
    let (budget, events) = budget_with_counting_subscriber();
    let ((), stats) = mm_track::count(|| {
        for _ in 0..100 {
            let r = budget.try_reserve(1 << 20).unwrap(); // Normal -> Critical
            assert!(matches!(
                budget.try_reserve(1),
                Err(BudgetError::Exhausted { .. })
            ));
            drop(r); // Critical -> Normal
        }
    });
    assert_eq!(stats.allocs, 0, "{stats:?}");
    assert_eq!(events.load(Ordering::Relaxed), 200);
}

#[cfg(target_os = "linux")]
#[test]
fn rss_bytes_does_not_allocate() {
    let (_budget, _) = budget_with_counting_subscriber();
    let (rss, stats) = mm_track::count(sys::rss_bytes);
    assert!(rss.unwrap() > 0);
    assert_eq!(stats.allocs, 0, "{stats:?}");
    // Control: the /proc/self/status reader does allocate (it reads into a String), and the
    // scope counter sees it.
    let (status, stats) = mm_track::count(sys::status_memory);
    assert!(status.is_ok());
    assert!(stats.allocs > 0, "{stats:?}");
}
