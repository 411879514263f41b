//! Loom models of `MemoryBudget`: every interleaving (up to `LOOM_MAX_PREEMPTIONS`) of a few
//! threads is explored. Run with
//! `RUSTFLAGS="--cfg loom" LOOM_MAX_PREEMPTIONS=2 cargo test --release -p mm-budget --test loom`.
#![cfg(loom)]

use loom::sync::Mutex;
use loom::sync::atomic::{AtomicBool, Ordering};
use loom::thread;
use std::sync::Arc;

use mm_budget::{BudgetConfig, MemoryBudget, PressureEvent, PressureLevel, Reservation};

/// Thresholds out of the way (98% / 99%), so a model exercises only the counter.
fn quiet_budget(limit: u64) -> MemoryBudget {
    MemoryBudget::new(
        BudgetConfig::new(limit)
            .with_warning_percent(98)
            .with_critical_percent(99),
    )
    .unwrap()
}

/// Warning at 50%, Critical at 90% of 100 bytes, no hysteresis.
fn eventful_budget() -> MemoryBudget {
    MemoryBudget::new(
        BudgetConfig::new(100)
            .with_warning_percent(50)
            .with_critical_percent(90)
            .with_hysteresis_percent(0),
    )
    .unwrap()
}

/// Records events and checks that no two subscriber calls ever overlap.
fn recorder(budget: &MemoryBudget) -> Arc<Mutex<Vec<PressureEvent>>> {
    let events = Arc::new(Mutex::new(Vec::new()));
    let inside = Arc::new(AtomicBool::new(false));
    let e = Arc::clone(&events);
    budget.subscribe(move |ev| {
        assert!(
            !inside.swap(true, Ordering::SeqCst),
            "overlapping deliveries"
        );
        e.lock().unwrap().push(*ev);
        inside.store(false, Ordering::SeqCst);
    });
    events
}

/// Checks the event chain: starts at Normal, each `previous` is the last `level`, no no-ops.
fn assert_chain(events: &[PressureEvent]) {
    let mut level = PressureLevel::Normal;
    for ev in events {
        assert_eq!(ev.previous, level, "broken chain: {events:?}");
        assert_ne!(ev.previous, ev.level, "no-op event: {events:?}");
        level = ev.level;
    }
}

/// Proves the hard limit: three threads race `try_reserve(45)` on a 100-byte budget; in every
/// interleaving exactly two succeed (none over the limit, none refused spuriously), usage
/// never reads above the limit, and it returns to 0 once all reservations drop.
#[test]
fn racing_reserves_never_exceed_limit() {
    loom::model(|| {
        let budget = quiet_budget(100);
        let handles: Vec<_> = (0..3)
            .map(|_| {
                let b = budget.clone();
                thread::spawn(move || {
                    let r = b.try_reserve(45).ok();
                    assert!(b.used() <= 100);
                    r
                })
            })
            .collect();
        let held: Vec<Reservation> = handles
            .into_iter()
            .filter_map(|h| h.join().unwrap())
            .collect();
        assert_eq!(held.len(), 2);
        assert_eq!(budget.used(), 90);
        drop(held);
        assert_eq!(budget.used(), 0);
        assert_eq!(budget.stats().denied, 1);
    });
}

/// Proves `try_grow` and `try_reserve` share the limit: a 40-byte reservation growing by 40
/// races a fresh reservation of 40 on a 100-byte budget; exactly one of them wins.
#[test]
fn grow_races_reserve() {
    loom::model(|| {
        let budget = quiet_budget(100);
        let mut r = budget.try_reserve(40).unwrap();
        let b = budget.clone();
        let other = thread::spawn(move || b.try_reserve(40).ok());
        let grew = r.try_grow(40).is_ok();
        let other = other.join().unwrap();
        assert!(grew != other.is_some(), "exactly one of grow/reserve wins");
        assert_eq!(budget.used(), 80);
        assert_eq!(r.bytes(), if grew { 80 } else { 40 });
        drop(other);
        drop(r);
        assert_eq!(budget.used(), 0);
    });
}

/// Proves "one event per crossing": two threads each reserve 30 of 100 bytes (Warning at 50);
/// whatever the interleaving, subscribers see exactly one event, Normal -> Warning at 60.
#[test]
fn one_event_per_crossing() {
    loom::model(|| {
        let budget = eventful_budget();
        let events = recorder(&budget);
        let handles: Vec<_> = (0..2)
            .map(|_| {
                let b = budget.clone();
                thread::spawn(move || b.try_reserve(30).unwrap())
            })
            .collect();
        let held: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        let seen = events.lock().unwrap().clone();
        assert_eq!(
            seen,
            [PressureEvent {
                previous: PressureLevel::Normal,
                level: PressureLevel::Warning,
                used: 60,
                limit: 100
            }]
        );
        assert_eq!(budget.level(), PressureLevel::Warning);
        drop(held);
        assert_eq!(budget.stats().subscriber_panics, 0);
    });
}

/// Proves events stay a consistent chain under oscillation: two threads each reserve 30 and
/// release it; events never overlap, form a chain, and the last one leaves the level at
/// Normal, matching usage 0.
#[test]
fn oscillation_settles_to_a_consistent_chain() {
    loom::model(|| {
        let budget = eventful_budget();
        let events = recorder(&budget);
        let handles: Vec<_> = (0..2)
            .map(|_| {
                let b = budget.clone();
                thread::spawn(move || drop(b.try_reserve(30).unwrap()))
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        let seen = events.lock().unwrap().clone();
        assert_chain(&seen);
        assert!(seen.is_empty() || seen.len() == 2, "{seen:?}");
        assert_eq!(budget.used(), 0);
        assert_eq!(budget.level(), PressureLevel::Normal);
    });
}

/// Proves a pressure handler can free memory charged to the same budget without deadlock
/// (loom reports any deadlock): on Warning it drops a cached 40-byte reservation while two
/// threads reserve 20 each; the budget ends at Normal with exactly Warning then Normal seen.
#[test]
fn handler_frees_same_budget_without_deadlock() {
    loom::model(|| {
        let budget = eventful_budget();
        let cache = Arc::new(Mutex::new(Some(budget.try_reserve(40).unwrap())));
        let c = Arc::clone(&cache);
        budget.subscribe(move |ev| {
            if ev.level == PressureLevel::Warning {
                drop(c.lock().unwrap().take());
            }
        });
        let events = recorder(&budget);
        let handles: Vec<_> = (0..2)
            .map(|_| {
                let b = budget.clone();
                thread::spawn(move || b.try_reserve(20).unwrap())
            })
            .collect();
        let held: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        assert!(cache.lock().unwrap().is_none());
        assert_eq!(budget.used(), 40);
        assert_eq!(budget.level(), PressureLevel::Normal);
        let seen = events.lock().unwrap().clone();
        assert_chain(&seen);
        let levels: Vec<_> = seen.iter().map(|e| e.level).collect();
        assert_eq!(levels, [PressureLevel::Warning, PressureLevel::Normal]);
        drop(held);
        assert_eq!(budget.stats().subscriber_panics, 0);
    });
}

/// A task waiting in `reserve_wait` while another thread releases: the release always
/// wakes it (no lost wake-up between the waiter's last check and its listener), in every
/// interleaving of the check, the listen and the release; a lost one leaves `block_on`
/// parked forever, which loom reports as a deadlock.
#[test]
fn a_release_always_wakes_a_waiting_reserve() {
    loom::model(|| {
        let budget = quiet_budget(100);
        let held = budget.try_reserve(80).unwrap();
        let t = thread::spawn(move || drop(held));
        let r = loom::future::block_on(budget.reserve_wait(50)).unwrap();
        assert_eq!(r.bytes(), 50);
        t.join().unwrap();
        assert_eq!(budget.used(), 50);
    });
}

/// Two waiters and one release that makes room for both: both are woken and both get
/// their bytes (every release wakes every waiter; the one that loses a race retries).
#[test]
fn one_release_wakes_every_waiter_that_now_fits() {
    loom::model(|| {
        let budget = quiet_budget(100);
        let held = budget.try_reserve(100).unwrap();
        let other = budget.clone();
        let waiter = thread::spawn(move || loom::future::block_on(other.reserve_wait(40)).unwrap());
        let releaser = thread::spawn(move || drop(held));
        let mine = loom::future::block_on(budget.reserve_wait(60)).unwrap();
        let theirs = waiter.join().unwrap();
        assert_eq!(theirs.bytes(), 40);
        releaser.join().unwrap();
        assert_eq!(mine.bytes(), 60);
        assert_eq!(budget.used(), 100);
    });
}
