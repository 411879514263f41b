//! Registered components: charged to the one budget, listed in the report, told about
//! pressure, forgotten when dropped.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use memory_manager::{
    Charging, Component, ComponentReading, MemoryConfig, MemoryManager, ModelReading, ModelState,
    PressureLevel, Residency,
};

#[derive(Debug)]
struct Part {
    name: &'static str,
    held: AtomicU64,
    pressure_calls: AtomicU64,
    charging: Charging,
    panics: bool,
}

impl Part {
    fn new(name: &'static str, held: u64) -> Arc<Self> {
        Arc::new(Part {
            name,
            held: AtomicU64::new(held),
            pressure_calls: AtomicU64::new(0),
            charging: Charging::ByManager,
            panics: false,
        })
    }
}

impl Component for Part {
    fn name(&self) -> &str {
        self.name
    }
    fn reading(&self) -> ComponentReading {
        let mut r = ComponentReading::new(self.held.load(Ordering::SeqCst));
        r.items = 1;
        r.hits = Some(3);
        r.misses = Some(1);
        r.evictions = Some(2);
        r
    }
    fn charging(&self) -> Charging {
        self.charging
    }
    fn on_pressure(&self, _level: PressureLevel) -> u64 {
        self.pressure_calls.fetch_add(1, Ordering::SeqCst);
        assert!(!self.panics, "this part's pressure hook panics on purpose");
        self.held.swap(0, Ordering::SeqCst)
    }
    fn models(&self, residency: Residency) -> Vec<ModelReading> {
        let mut m = ModelReading::new(self.name, "/models/x.gguf");
        m.state = ModelState::Loaded;
        m.resident_bytes = (residency == Residency::Measure).then_some(7);
        vec![m]
    }
}

fn manager(limit: u64) -> MemoryManager {
    MemoryManager::new(
        MemoryConfig::default()
            .with_max_memory(limit)
            .with_mmap_cache(1 << 20),
    )
    .unwrap()
}

#[test]
fn a_registered_part_is_charged_reported_and_released_when_dropped() {
    let m = manager(64 << 20);
    let base = m.budget().used();
    let part = Part::new("cache", 10_000);
    m.register(part.clone());
    assert_eq!(m.budget().used(), base + 10_000, "charged at registration");
    part.held.store(30_000, Ordering::SeqCst);
    let report = m.report();
    assert_eq!(report.budget.used_bytes, base + 30_000);
    let row = report
        .components
        .iter()
        .find(|c| c.name == "cache")
        .expect("row");
    assert_eq!(
        (row.held_bytes, row.items, row.evictions),
        (30_000, 1, Some(2))
    );
    assert_eq!(row.hit_rate, Some(0.75));
    assert_eq!(report.models.len(), 1);
    assert_eq!(report.models[0].resident_bytes, None);
    assert_eq!(
        m.report_with(Residency::Measure).models[0].resident_bytes,
        Some(7)
    );
    let v: serde_json::Value = serde_json::from_str(&report.to_json()).unwrap();
    assert_eq!(v["models"][0]["state"], "loaded");
    assert!(m.report().to_prometheus().contains("component=\"cache\""));
    drop(part);
    m.sync();
    assert_eq!(
        m.budget().used(),
        base,
        "a dropped part's charge is released"
    );
    assert!(m.report().components.iter().all(|c| c.name != "cache"));
}

#[test]
fn unregister_and_self_charging_parts() {
    let m = manager(64 << 20);
    let base = m.budget().used();
    let part = Part::new("a", 5_000);
    let id = m.register(part.clone());
    assert_eq!(m.budget().used(), base + 5_000);
    assert!(m.unregister(id));
    assert!(!m.unregister(id));
    assert_eq!(m.budget().used(), base);
    let own = Arc::new(Part {
        charging: Charging::BySelf,
        ..Arc::into_inner(Part::new("own", 9_000)).unwrap()
    });
    m.register(own.clone());
    assert_eq!(
        m.budget().used(),
        base,
        "a self-charging part is only reported"
    );
    assert!(m.report().components.iter().any(|c| c.name == "own"));
}

#[test]
fn pressure_reaches_every_part_and_a_panicking_one_stops_nothing() {
    let m = manager(10 << 20);
    let bad = Arc::new(Part {
        panics: true,
        ..Arc::into_inner(Part::new("bad", 0)).unwrap()
    });
    let good = Part::new("good", 1 << 20);
    m.register(bad.clone());
    m.register(good.clone());
    let ran_after = Arc::new(AtomicU64::new(0));
    let r2 = Arc::clone(&ran_after);
    m.on_pressure("panics", PressureLevel::Warning, |_| panic!("on purpose"));
    m.on_pressure("counts", PressureLevel::Warning, move |_| {
        r2.fetch_add(1, Ordering::SeqCst);
        0
    });
    // 1 MiB charged for `good`; 7.5 MiB more crosses 80 % of 10 MiB.
    let _r = m.budget().try_reserve(7 << 20 | 512 << 10).unwrap();
    assert_eq!(
        ran_after.load(Ordering::SeqCst),
        1,
        "ran after a panicking handler"
    );
    assert_eq!(bad.pressure_calls.load(Ordering::SeqCst), 1);
    assert_eq!(good.pressure_calls.load(Ordering::SeqCst), 1);
    assert_eq!(good.held.load(Ordering::SeqCst), 0, "the good part freed");
    let report = m.report();
    assert_eq!(report.pressure.handler_panics, 2);
    assert!(report.pressure.freed_bytes >= 1 << 20);
}

#[test]
fn pooled_request_arenas_are_send_charged_reported_and_warm() {
    fn is_send_static<T: Send + 'static>(_: &T) {}
    let m = manager(64 << 20);
    let base = m.budget().used();
    let mut a = m.request_arena().unwrap();
    is_send_static(&a);
    let s = a.alloc_str("a prompt").unwrap().len();
    assert_eq!(s, 8);
    assert_eq!(a.arena().alloc(7u64).map(|v| *v), Ok(7));
    assert_eq!(a.guard().stats().resets, 0, "a new arena");
    assert!(format!("{a:?}").starts_with("ManagedArena"));
    a.reset();
    let held = a.stats().retained_bytes;
    assert!(held > 0);
    let report = m.report();
    let row = report
        .components
        .iter()
        .find(|c| c.name == "request-arenas")
        .unwrap();
    assert_eq!((row.held_bytes, row.items), (held, 1));
    assert_eq!((row.hits, row.misses), (Some(0), Some(1)));
    assert!(m.budget().used() >= base + held);
    // Dropped on another thread: back to the pool, still charged (held idle), warm next time.
    std::thread::spawn(move || drop(a)).join().unwrap();
    let row = m
        .report()
        .components
        .into_iter()
        .find(|c| c.name == "request-arenas")
        .unwrap();
    assert_eq!((row.held_bytes, row.items), (held, 0));
    let b = m.request_arena().unwrap();
    assert!(b.stats().resets >= 1, "the returned arena came back");
    drop(b);
    let row = m
        .report()
        .components
        .into_iter()
        .find(|c| c.name == "request-arenas")
        .unwrap();
    assert_eq!((row.hits, row.misses), (Some(1), Some(1)));
    // A trim frees the idle arenas and their charge.
    let used = m.budget().used();
    assert!(m.trim(1.0) >= held);
    let row = m
        .report()
        .components
        .into_iter()
        .find(|c| c.name == "request-arenas")
        .unwrap();
    assert_eq!((row.held_bytes, row.items), (0, 0));
    assert!(m.budget().used() <= used - held);
}

#[test]
fn an_arena_that_grew_is_charged_when_it_returns() {
    let m = manager(64 << 20);
    let a = m.request_arena().unwrap();
    let before = a.stats().retained_bytes;
    // Far past the 64 KiB initial chunk: the arena takes a larger one.
    a.alloc_slice_fill_copy(256 << 10, 0u8).unwrap();
    drop(a);
    // The reset keeps only the largest chunk, which holds the 256 KiB.
    let used = m.budget().used();
    assert!(
        used > before && used >= 256 << 10,
        "charged {used} after growing from {before}"
    );
}
