//! Behaviour of `MemoryBudget` and `Reservation` across threads and subscribers.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Barrier, Mutex};
use std::thread;

use mm_budget::{
    BudgetConfig, BudgetError, MemoryBudget, PressureEvent, PressureLevel, Reservation,
};

fn record(budget: &MemoryBudget) -> Arc<Mutex<Vec<PressureEvent>>> {
    let events = Arc::new(Mutex::new(Vec::new()));
    let e = Arc::clone(&events);
    budget.subscribe(move |ev| e.lock().unwrap().push(*ev));
    events
}

fn levels(events: &Mutex<Vec<PressureEvent>>) -> Vec<PressureLevel> {
    events.lock().unwrap().iter().map(|e| e.level).collect()
}

use PressureLevel::{Critical, Normal, Warning};

#[test]
fn reserve_release_and_errors() {
    let b = MemoryBudget::with_limit(1000).unwrap();
    let r = b.try_reserve(600).unwrap();
    assert_eq!((r.bytes(), b.used(), b.available()), (600, 600, 400));
    match b.try_reserve(401) {
        Err(BudgetError::Exhausted {
            requested,
            available,
            limit,
        }) => assert_eq!((requested, available, limit), (401, 400, 1000)),
        other => panic!("expected Exhausted, got {other:?}"),
    }
    assert!(matches!(
        b.try_reserve(1001),
        Err(BudgetError::RequestTooLarge {
            requested: 1001,
            limit: 1000
        })
    ));
    assert!(matches!(
        b.try_reserve(u64::MAX),
        Err(BudgetError::RequestTooLarge { .. })
    ));
    let zero = b.try_reserve(0).unwrap();
    assert_eq!(zero.bytes(), 0);
    let rest = b.try_reserve(400).unwrap();
    assert_eq!(b.used(), 1000);
    drop((r, rest, zero));
    assert_eq!(b.used(), 0);
    let s = b.stats();
    assert_eq!((s.peak, s.denied), (1000, 3));
}

#[test]
fn grow_shrink_resize_split_merge() {
    let b = MemoryBudget::with_limit(100).unwrap();
    let mut r = b.try_reserve(10).unwrap();
    r.try_grow(50).unwrap();
    assert_eq!((r.bytes(), b.used()), (60, 60));
    assert!(matches!(r.try_grow(41), Err(BudgetError::Exhausted { .. })));
    assert_eq!(
        (r.bytes(), b.used()),
        (60, 60),
        "failed grow changes nothing"
    );
    assert_eq!(r.shrink(15), 15);
    assert_eq!((r.bytes(), b.used()), (45, 45));
    assert_eq!(r.shrink(1000), 45, "shrink saturates");
    assert_eq!((r.bytes(), b.used()), (0, 0));
    r.resize(70).unwrap();
    assert_eq!(b.used(), 70);
    r.resize(30).unwrap();
    assert_eq!(b.used(), 30);

    let part = r.split(10).unwrap();
    assert_eq!((r.bytes(), part.bytes(), b.used()), (20, 10, 30));
    assert!(matches!(
        r.split(21),
        Err(BudgetError::SplitTooLarge {
            requested: 21,
            held: 20
        })
    ));
    drop(part);
    assert_eq!(b.used(), 20);

    let other = b.try_reserve(5).unwrap();
    r.merge(other).unwrap();
    assert_eq!((r.bytes(), b.used()), (25, 25));

    let foreign_budget = MemoryBudget::with_limit(100).unwrap();
    let foreign = foreign_budget.try_reserve(7).unwrap();
    let back = r.merge(foreign).unwrap_err();
    assert_eq!(back.bytes(), 7);
    assert_eq!(foreign_budget.used(), 7);
    drop(back);
    assert_eq!(foreign_budget.used(), 0);
    drop(r);
    assert_eq!(b.used(), 0);
}

#[test]
fn force_reserve_goes_over_and_blocks_try_reserve() {
    let b = MemoryBudget::with_limit(100).unwrap();
    let events = record(&b);
    let held = b.force_reserve(150).unwrap();
    assert_eq!(b.used(), 150);
    assert_eq!(b.available(), 0);
    assert_eq!(b.level(), Critical);
    assert!(matches!(
        b.try_reserve(1),
        Err(BudgetError::Exhausted { available: 0, .. })
    ));
    assert!(matches!(
        b.force_reserve(mm_budget::MAX_LIMIT + 1),
        Err(BudgetError::RequestTooLarge { .. })
    ));
    // 0 bytes change nothing, so they succeed even over the limit (found by the model test).
    let mut empty = b.try_reserve(0).unwrap();
    empty.try_grow(0).unwrap();
    assert!(empty.try_grow(1).is_err());
    assert_eq!((empty.bytes(), b.used()), (0, 150));
    drop(empty);
    drop(held);
    assert_eq!(b.used(), 0);
    assert_eq!(levels(&events), [Critical, Normal]);
}

#[test]
fn events_once_per_crossing_with_hysteresis() {
    // Warning at 80, Critical at 90, release at 75 / 85.
    let b = MemoryBudget::with_limit(100).unwrap();
    let events = record(&b);
    let mut rs: Vec<Reservation> = (0..79).map(|_| b.try_reserve(1).unwrap()).collect();
    assert!(levels(&events).is_empty(), "no event below 80%");
    for _ in 0..5 {
        rs.push(b.try_reserve(1).unwrap()); // 80: Warning once
    }
    assert_eq!(levels(&events), [Warning]);
    // Oscillating between 84 and 78: inside the hysteresis band, no event at all.
    for _ in 0..10 {
        let extra: Vec<_> = (0..6).map(|_| rs.pop().unwrap()).collect();
        drop(extra);
        for _ in 0..6 {
            rs.push(b.try_reserve(1).unwrap());
        }
    }
    assert_eq!(levels(&events), [Warning]);
    rs.extend((0..6).map(|_| b.try_reserve(1).unwrap())); // 90: Critical
    assert_eq!(levels(&events), [Warning, Critical]);
    rs.truncate(85); // 85: still Critical (release below 85)
    assert_eq!(b.level(), Critical);
    rs.truncate(84);
    assert_eq!(levels(&events), [Warning, Critical, Warning]);
    rs.truncate(10); // released one byte at a time: Normal once, at 74
    assert_eq!(levels(&events), [Warning, Critical, Warning, Normal]);
    let ev = events.lock().unwrap().clone();
    assert_eq!(ev[0].used, 80);
    assert_eq!(ev[1].used, 90);
    assert_eq!(ev[2].used, 84);
    assert_eq!(ev[3].used, 74);
    assert!(ev[1].is_rising() && !ev[3].is_rising());
    assert_eq!(b.stats().events, 4);
}

#[test]
fn a_jump_over_both_thresholds_is_one_event() {
    let b = MemoryBudget::with_limit(100).unwrap();
    let events = record(&b);
    let r = b.try_reserve(95).unwrap();
    let ev = events.lock().unwrap().clone();
    assert_eq!(ev.len(), 1);
    assert_eq!((ev[0].previous, ev[0].level), (Normal, Critical));
    drop(r);
    assert_eq!(levels(&events), [Critical, Normal]);
}

#[test]
fn handler_can_free_reserve_and_subscribe_reentrantly() {
    let b = MemoryBudget::with_limit(1000).unwrap();
    let cache: Arc<Mutex<Vec<Reservation>>> = Arc::default();
    let c = Arc::clone(&cache);
    let late_hits = Arc::new(AtomicU64::new(0));
    let (b2, hits) = (b.clone(), Arc::clone(&late_hits));
    // This subscriber owns a clone of the budget: a reference cycle, broken at the end by
    // unsubscribing (LeakSanitizer reports the cycle otherwise).
    let id = b.subscribe(move |ev| {
        if ev.level == Critical {
            // Free memory of the same budget, reserve some of it again, and subscribe: all
            // from inside a delivery.
            c.lock().unwrap().clear();
            let small = b2.try_reserve(10).unwrap();
            drop(small);
            let h = Arc::clone(&hits);
            b2.subscribe(move |_| {
                h.fetch_add(1, Ordering::Relaxed);
            });
        }
    });
    let events = record(&b);
    cache
        .lock()
        .unwrap()
        .extend((0..8).map(|_| b.try_reserve(100).unwrap()));
    let r = b.try_reserve(150).unwrap(); // 950: Critical, handler frees 800
    assert_eq!(b.used(), 150);
    assert_eq!(levels(&events), [Warning, Critical, Normal]);
    // The subscriber added during the Critical delivery saw the Normal event after it.
    assert_eq!(late_hits.load(Ordering::Relaxed), 1);
    drop(r);
    assert_eq!(b.used(), 0);
    assert!(
        b.unsubscribe(id),
        "the first subscriber is still registered"
    );
}

#[test]
fn panicking_subscriber_is_counted_and_others_still_run() {
    let b = MemoryBudget::with_limit(10).unwrap();
    b.subscribe(|_| panic!("subscriber bug (expected by this test)"));
    let events = record(&b);
    let r = b.try_reserve(9).unwrap();
    drop(r);
    assert_eq!(levels(&events), [Critical, Normal]);
    assert_eq!(b.stats().subscriber_panics, 2);
}

#[test]
fn unsubscribe_stops_delivery() {
    let b = MemoryBudget::with_limit(10).unwrap();
    let hits = Arc::new(AtomicU64::new(0));
    let h = Arc::clone(&hits);
    let id = b.subscribe(move |_| {
        h.fetch_add(1, Ordering::Relaxed);
    });
    drop(b.try_reserve(9).unwrap());
    assert_eq!(hits.load(Ordering::Relaxed), 2);
    assert!(b.unsubscribe(id));
    assert!(!b.unsubscribe(id));
    drop(b.try_reserve(9).unwrap());
    assert_eq!(hits.load(Ordering::Relaxed), 2);
    assert_eq!(b.stats().subscribers, 0);
}

/// Many OS threads hammer one budget; the sum of what they hold is checked against the
/// limit by every thread after every success, and usage returns to 0.
#[test]
fn threads_never_exceed_limit() {
    const LIMIT: u64 = 10_000;
    let b = MemoryBudget::new(BudgetConfig::new(LIMIT).with_hysteresis_percent(0)).unwrap();
    let events = record(&b);
    let held_total = Arc::new(AtomicU64::new(0));
    let threads = 8;
    let barrier = Arc::new(Barrier::new(threads));
    let handles: Vec<_> = (0..threads as u64)
        .map(|t| {
            let (b, held_total, barrier) =
                (b.clone(), Arc::clone(&held_total), Arc::clone(&barrier));
            thread::spawn(move || {
                barrier.wait();
                let mut mine: Vec<Reservation> = Vec::new();
                let mut granted = 0u64;
                for i in 0..20_000u64 {
                    let size = 1 + (i * 7 + t * 13) % 700;
                    if let Ok(r) = b.try_reserve(size) {
                        let now = held_total.fetch_add(size, Ordering::SeqCst) + size;
                        assert!(now <= LIMIT, "held {now} > limit");
                        assert!(b.used() <= LIMIT);
                        mine.push(r);
                        granted += 1;
                    }
                    if mine.len() > 4 || (i % 3 == 0 && !mine.is_empty()) {
                        let r = mine.swap_remove(0);
                        held_total.fetch_sub(r.bytes(), Ordering::SeqCst);
                        drop(r);
                    }
                }
                for r in mine.drain(..) {
                    held_total.fetch_sub(r.bytes(), Ordering::SeqCst);
                }
                granted
            })
        })
        .collect();
    let granted: u64 = handles.into_iter().map(|h| h.join().unwrap()).sum();
    assert!(granted > 0);
    assert_eq!(b.used(), 0);
    assert!(b.peak() <= LIMIT);
    assert_eq!(b.level(), Normal, "last event matches usage 0");
    let ev = events.lock().unwrap().clone();
    let mut level = Normal;
    for e in &ev {
        assert_eq!(e.previous, level, "events form a chain");
        assert_ne!(e.previous, e.level);
        level = e.level;
    }
    assert_eq!(b.stats().events, ev.len() as u64);
}

#[test]
fn reservation_is_static_send_and_outlives_the_budget_handle() {
    fn assert_send_sync<T: Send + Sync + 'static>() {}
    assert_send_sync::<MemoryBudget>();
    fn assert_send<T: Send + 'static>() {}
    assert_send::<Reservation>();
    let r = {
        let b = MemoryBudget::with_limit(64).unwrap();
        b.try_reserve(32).unwrap()
    };
    assert_eq!(r.budget().used(), 32);
    let b = r.budget().clone();
    drop(r);
    assert_eq!(b.used(), 0);
}
