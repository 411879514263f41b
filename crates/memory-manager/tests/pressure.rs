//! Pressure handlers run once per crossing, free memory charged to the same budget without
//! deadlocking, and the built-in ones trim and evict.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use memory_manager::{MemoryConfig, MemoryManager, PressureLevel};

#[test]
fn handler_frees_memory_of_the_same_budget_without_deadlock() {
    let m = MemoryManager::new(
        MemoryConfig::default()
            .with_max_memory(10 << 20)
            .with_mmap_cache(1 << 20),
    )
    .unwrap();
    let held = Arc::new(std::sync::Mutex::new(Vec::new()));
    let runs = Arc::new(AtomicU64::new(0));
    {
        let held = Arc::clone(&held);
        let runs = Arc::clone(&runs);
        m.on_pressure("drop-cache", PressureLevel::Warning, move |cx| {
            runs.fetch_add(1, Ordering::SeqCst);
            // Releasing reservations of the same budget from inside the handler, and reading
            // the manager, must not deadlock.
            let freed: u64 = held
                .lock()
                .unwrap()
                .drain(..)
                .map(|r: memory_manager::Reservation| r.bytes())
                .sum();
            let _ = cx.manager.report();
            freed
        });
    }
    for _ in 0..9 {
        let r = m.budget().try_reserve(1 << 20).unwrap();
        held.lock().unwrap().push(r);
    }
    // The 8th MiB crossed 80% once, inside its own try_reserve: the handler ran then and
    // dropped the 7 reservations already held; the 8th and 9th were pushed afterwards.
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    assert_eq!(held.lock().unwrap().len(), 2);
    let used = m.budget().used();
    assert!((2 << 20..3 << 20).contains(&used), "used {used}");
    assert_eq!(m.report().pressure.freed_bytes, 7 << 20);
}

#[test]
fn builtin_handlers_trim_pools_and_evict_the_cache() {
    let m = MemoryManager::new(
        MemoryConfig::default()
            .with_max_memory(8 << 20)
            .with_mmap_cache(4 << 20)
            .with_pool_tiers([(64 << 10, 16)]),
    )
    .unwrap();
    // Fill the pool with idle buffers, then charge them.
    let bufs: Vec<_> = (0..8).map(|_| m.buffer(1).unwrap()).collect();
    drop(bufs);
    m.sync();
    assert!(m.buffer_pool().stats().held_bytes > 0);
    let dir = tempfile::tempdir().unwrap();
    let mut maps = Vec::new();
    for i in 0..3 {
        let p = dir.path().join(format!("f{i}"));
        std::fs::write(&p, vec![1u8; 1 << 20]).unwrap();
        // SAFETY: the test's own temporary file, never modified while mapped.
        maps.push(unsafe { m.map(&p) }.unwrap());
    }
    drop(maps);
    assert_eq!(m.mmap_cache().stats().held_bytes, 3 << 20);
    // Take the budget to critical with a reservation of our own.
    let used = m.budget().used();
    let _r = m.budget().try_reserve((8 << 20) * 95 / 100 - used).unwrap();
    assert_eq!(
        m.buffer_pool().stats().held_bytes,
        0,
        "pools trimmed at warning"
    );
    assert!(
        m.mmap_cache().stats().held_bytes <= 2 << 20,
        "cache evicted to half its budget"
    );
    let report = m.report();
    assert!(report.pressure.handler_runs >= 3, "{:?}", report.pressure);
}

#[test]
fn thread_delivery_never_stalls_the_request_that_tripped_it() {
    use memory_manager::PressureDelivery;
    let m = MemoryManager::new(
        MemoryConfig::new()
            .with_max_memory(10 << 20)
            .with_pressure_delivery(PressureDelivery::Thread),
    )
    .unwrap();
    let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
    let release_rx = std::sync::Mutex::new(release_rx);
    let (ran_tx, ran_rx) = std::sync::mpsc::channel::<String>();
    let ran_tx = std::sync::Mutex::new(ran_tx);
    m.on_pressure("slow", PressureLevel::Warning, move |_| {
        // Blocks until the test thread, whose reservation tripped the threshold, has
        // returned from it: with inline delivery this would never return.
        release_rx.lock().unwrap().recv().unwrap();
        let name = std::thread::current().name().unwrap_or("").to_owned();
        ran_tx.lock().unwrap().send(name).unwrap();
        0
    });
    m.on_pressure("panics", PressureLevel::Warning, |_| panic!("on purpose"));
    let events = m.subscribe(4);
    let r = m.budget().try_reserve(9 << 20).unwrap();
    // Back on the request thread while the slow handler still waits.
    release_tx.send(()).unwrap();
    assert_eq!(ran_rx.recv().unwrap(), "mm-pressure");
    let ev = events.recv_blocking().unwrap();
    assert_eq!(ev.level, PressureLevel::Critical);
    drop(r);
    // The easing event, through the async side of the channel, on any executor.
    let eased = futures::executor::block_on(events.recv()).unwrap();
    assert!(!eased.is_rising());
    assert!(events.try_recv().is_none());
}

#[test]
fn a_full_subscriber_drops_events_and_says_so() {
    let m = MemoryManager::new(MemoryConfig::new().with_max_memory(10 << 20)).unwrap();
    let events = m.subscribe(1);
    for _ in 0..2 {
        let r = m.budget().try_reserve(9 << 20).unwrap();
        drop(r);
    }
    assert!(events.try_recv().is_some());
    assert!(events.try_recv().is_none());
    assert_eq!(m.report().pressure.dropped_events, 3);
}
