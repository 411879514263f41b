//! Model registry behaviour: lazy load, sharing, idle and pressure unloads, events.

use std::sync::Arc;
use std::time::{Duration, Instant};

use mm_gguf::{
    GgufError, GgufWriter, MemoryBudget, MetaValue, ModelRegistry, PressureLevel, RegistryConfig,
    RegistryEvent, UnloadReason, types::GgmlType,
};

fn write_model(dir: &tempfile::TempDir, name: &str) -> std::path::PathBuf {
    let data = vec![0u8; 4 * 64];
    let mut w = GgufWriter::new();
    w.add_metadata("general.name", MetaValue::String(name.into()))
        .unwrap();
    w.add_tensor("w", GgmlType::F32, &[64], &data).unwrap();
    let p = dir.path().join(format!("{name}.gguf"));
    w.write_file(&p).unwrap();
    p
}

/// Registers a test model: its file is written once and never changed while mapped.
fn register(reg: &ModelRegistry, name: &str, path: impl AsRef<std::path::Path>) {
    // SAFETY: the tests' model files are written before registration and never modified.
    unsafe { reg.register(name, path) }
}

fn registry(timeout: Duration) -> ModelRegistry {
    ModelRegistry::new(RegistryConfig::default().with_idle_timeout(timeout))
}

#[test]
fn loads_lazily_and_shares_one_arc_across_threads() {
    let dir = tempfile::tempdir().unwrap();
    let reg = registry(Duration::from_secs(60));
    let events = reg.subscribe();
    register(&reg, "a", write_model(&dir, "a"));
    assert!(!reg.is_loaded("a"));
    assert!(events.try_recv().is_none(), "registering loads nothing");
    let models: Vec<_> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..4).map(|_| s.spawn(|| reg.get("a").unwrap())).collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert!(
        models.windows(2).all(|w| Arc::ptr_eq(&w[0], &w[1])),
        "one model shared"
    );
    assert_eq!(models[0].gguf().get_str("general.name").unwrap(), "a");
    assert_eq!(reg.stats().loads, 1);
    assert!(
        matches!(events.try_recv(), Some(RegistryEvent::Loaded { ref name, .. }) if name == "a")
    );
    assert!(events.try_recv().is_none(), "loaded once");
}

#[test]
fn idle_models_unload_after_the_timeout_unless_held() {
    let dir = tempfile::tempdir().unwrap();
    let reg = registry(Duration::from_secs(60));
    register(&reg, "a", write_model(&dir, "a"));
    register(&reg, "b", write_model(&dir, "b"));
    let held = reg.get("a").unwrap();
    drop(reg.get("b").unwrap());
    let now = Instant::now();
    assert_eq!(reg.unload_idle_at(now), 0, "nothing is idle yet");
    let later = now + Duration::from_secs(61);
    assert_eq!(reg.unload_idle_at(later), 1, "only the unheld model goes");
    assert!(reg.is_loaded("a") && !reg.is_loaded("b"));
    drop(held);
    assert_eq!(reg.unload_idle_at(later), 1);
    assert_eq!(reg.stats().loaded, 0);
    // Reloads on next use.
    reg.get("b").unwrap();
    assert_eq!(reg.stats().loads, 3);
}

#[test]
fn pressure_unloads_through_a_budget_subscription() {
    let dir = tempfile::tempdir().unwrap();
    let reg = registry(Duration::from_secs(3600));
    register(&reg, "a", write_model(&dir, "a"));
    reg.get("a").unwrap();
    let events = reg.subscribe();
    let budget = MemoryBudget::with_limit(1000).unwrap();
    reg.attach_budget(&budget);
    let _warn = budget.try_reserve(850).unwrap();
    assert!(reg.is_loaded("a"), "warning spares a recently used model");
    let _crit = budget.try_reserve(100).unwrap();
    assert!(!reg.is_loaded("a"), "critical pressure unloads it");
    assert!(matches!(
        events.try_recv(),
        Some(RegistryEvent::Unloaded {
            reason: UnloadReason::Pressure(PressureLevel::Critical),
            ..
        })
    ));
    let hook = reg.pressure_hook();
    assert_eq!(hook(PressureLevel::Critical), 0, "nothing left to unload");
}

#[test]
fn errors_are_typed_and_reported() {
    let dir = tempfile::tempdir().unwrap();
    let reg = registry(Duration::from_secs(60));
    assert!(matches!(reg.get("nope"), Err(GgufError::NotFound { .. })));
    let bad = dir.path().join("bad.gguf");
    std::fs::write(&bad, b"GGUF\x03\0\0\0").unwrap();
    register(&reg, "bad", &bad);
    let events = reg.subscribe();
    assert!(reg.get("bad").unwrap_err().is_truncated());
    assert!(matches!(
        events.try_recv(),
        Some(RegistryEvent::LoadFailed { .. })
    ));
}

#[test]
fn the_reaper_thread_stops_when_dropped() {
    let reg = registry(Duration::ZERO);
    let dir = tempfile::tempdir().unwrap();
    register(&reg, "a", write_model(&dir, "a"));
    drop(reg.get("a").unwrap());
    let events = reg.subscribe();
    let reaper = reg.spawn_reaper(Duration::from_millis(5));
    // Waits for the event itself, not for a time.
    let ev = events.recv_blocking().unwrap();
    assert!(matches!(
        ev,
        RegistryEvent::Unloaded {
            reason: UnloadReason::Idle,
            ..
        }
    ));
    drop(reaper);
    assert!(!reg.is_loaded("a"));
}

#[test]
fn the_facade_pressure_hook_unloads_models() {
    use memory_manager::{MemoryConfig, MemoryManager};
    let dir = tempfile::tempdir().unwrap();
    let reg = registry(Duration::from_secs(3600));
    register(&reg, "a", write_model(&dir, "a"));
    let mapped = reg.get("a").unwrap().mapped_bytes();
    let mm = MemoryManager::new(
        MemoryConfig::default()
            .with_max_memory(64 << 20)
            .with_mmap_cache(1 << 20),
    )
    .unwrap();
    let hook = reg.pressure_hook();
    mm.on_pressure("gguf-models", PressureLevel::Warning, move |ctx| {
        hook(ctx.level)
    });
    let _r = mm.budget().try_reserve(62 << 20).unwrap();
    mm.sync();
    assert!(
        !reg.is_loaded("a"),
        "critical pressure through the facade unloads the model"
    );
    assert_eq!(reg.stats().unloads, 1);
    assert!(mapped > 0);
}
