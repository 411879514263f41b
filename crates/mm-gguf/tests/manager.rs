//! The registry as a component of a `MemoryManager`: models mapped through the manager's
//! cache, index heap charged to its budget, listed in its report, unloaded by its pressure,
//! preloaded in the background.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use memory_manager::{MemoryConfig, MemoryManager, ModelState, Residency};
use mm_gguf::{
    GgufWriter, MetaValue, ModelRegistry, ReadAhead, RegistryConfig, RegistryEvent, UnloadReason,
    types::GgmlType,
};

/// A model of `tensors` F32 tensors of 4096 values (16 KiB each, so the file spans pages).
fn write_model(dir: &Path, name: &str, tensors: usize) -> PathBuf {
    let data: Vec<u8> = (0..4 * 4096).map(|i| i as u8).collect();
    let mut w = GgufWriter::new();
    w.add_metadata("general.name", MetaValue::String(name.into()))
        .unwrap();
    for t in 0..tensors {
        w.add_tensor(format!("blk.{t}.w"), GgmlType::F32, &[4096], &data)
            .unwrap();
    }
    let p = dir.join(format!("{name}.gguf"));
    w.write_file(&p).unwrap();
    p
}

fn register(reg: &ModelRegistry, name: &str, path: &Path) {
    // SAFETY: the tests' model files are written before registration and never modified.
    unsafe { reg.register(name, path) }
}

fn manager() -> MemoryManager {
    MemoryManager::new(MemoryConfig::new().with_max_memory(64 << 20)).unwrap()
}

#[test]
fn models_use_the_managers_cache_and_budget_and_appear_in_its_report() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_model(dir.path(), "embedder", 8);
    let file_len = std::fs::metadata(&path).unwrap().len();
    let m = manager();
    let reg = ModelRegistry::from_manager(&m, RegistryConfig::new());
    register(&reg, "embedder", &path);

    let before = m.report();
    let row = &before.models[0];
    assert_eq!(
        (row.name.as_str(), row.state),
        ("embedder", ModelState::Registered)
    );
    assert_eq!((row.mapped_bytes, row.file_bytes), (0, Some(file_len)));
    let used_before = m.budget().used();

    let model = reg.get("embedder").unwrap();
    assert!(
        m.mmap_cache().contains(&path),
        "mapped through the manager's cache"
    );
    let heap = model.index_heap_bytes();
    assert!(heap > 0);
    // The index heap (models row) and the cached map (mmap-cache row) are charged.
    assert_eq!(m.budget().used(), used_before + heap + file_len);
    let report = m.report();
    let row = &report.models[0];
    assert_eq!(row.state, ModelState::Loaded);
    assert_eq!(row.mapped_bytes, file_len);
    assert_eq!(row.index_heap_bytes, heap);
    assert_eq!(row.tensors, Some(8));
    assert!(row.idle_seconds.is_some());
    let comp = report
        .components
        .iter()
        .find(|c| c.name == "models")
        .unwrap();
    assert_eq!(
        (comp.held_bytes, comp.items, comp.misses),
        (heap, 1, Some(1))
    );
    let v: serde_json::Value = serde_json::from_str(&report.to_json()).unwrap();
    assert_eq!(v["models"][0]["mapped_bytes"], file_len);
    assert_eq!(v["mmap"]["held_bytes"], file_len);

    drop(model);
    assert!(reg.unload("embedder"));
    assert_eq!(
        m.budget().used(),
        used_before + file_len,
        "the index heap is released on unload; the cache keeps the map"
    );
}

/// Reads `/proc/self/smaps` for the mappings of `path`: (Size, Rss) in bytes, summed.
fn smaps_of(path: &Path) -> Option<(u64, u64)> {
    let text = std::fs::read_to_string("/proc/self/smaps").ok()?;
    let want = path.to_str()?;
    let (mut size, mut rss, mut inside, mut found) = (0, 0, false, false);
    for line in text.lines() {
        let mut cols = line.split_whitespace();
        let first = cols.next().unwrap_or("");
        if first.contains('-') && !first.ends_with(':') {
            // A mapping header: "start-end perms offset dev inode path".
            inside = line.trim_end().ends_with(want);
            found |= inside;
        } else if inside {
            let kb = |c: &mut std::str::SplitWhitespace<'_>| -> u64 {
                c.next().and_then(|v| v.parse().ok()).unwrap_or(0) * 1024
            };
            match first {
                "Size:" => size += kb(&mut cols),
                "Rss:" => rss += kb(&mut cols),
                _ => {}
            }
        }
    }
    found.then_some((size, rss))
}

#[test]
fn mapped_and_resident_figures_match_smaps() {
    let Some(_) = std::fs::read_to_string("/proc/self/smaps").ok() else {
        eprintln!("skipped: no /proc/self/smaps on this system");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let path = write_model(dir.path(), "m", 16);
    let file_len = std::fs::metadata(&path).unwrap().len();
    let page = 4096u64;
    let m = manager();
    let reg = ModelRegistry::from_manager(&m, RegistryConfig::new());
    register(&reg, "m", &path);
    let model = reg.get("m").unwrap();
    // Touch every page so that the process maps all of them.
    let sum: u64 = model
        .file()
        .as_bytes()
        .iter()
        .step_by(page as usize)
        .map(|b| *b as u64)
        .sum();
    std::hint::black_box(sum);
    let report = m.report_with(Residency::Measure);
    let row = &report.models[0];
    let (size, rss) = smaps_of(&path).expect("the model's mapping is in smaps");
    assert_eq!(row.mapped_bytes, file_len);
    assert_eq!(
        size,
        file_len.div_ceil(page) * page,
        "mapped bytes vs smaps Size"
    );
    assert_eq!(row.resident_bytes, Some(rss), "resident bytes vs smaps Rss");
    assert_eq!(rss, size, "every page was touched");
    assert_eq!(
        m.report().models[0].resident_bytes,
        None,
        "measured on request only"
    );
}

#[test]
fn the_managers_pressure_unloads_unused_models_and_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let m = manager();
    let reg = ModelRegistry::from_manager(
        &m,
        RegistryConfig::new().with_idle_timeout(Duration::from_secs(3600)),
    );
    register(&reg, "a", &write_model(dir.path(), "a", 1));
    register(&reg, "b", &write_model(dir.path(), "b", 1));
    let held = reg.get("a").unwrap();
    drop(reg.get("b").unwrap());
    let events = reg.subscribe();
    // Critical pressure on the manager's budget reaches the registry, a component.
    let used = m.budget().used();
    let _r = m
        .budget()
        .try_reserve((64 << 20) * 95 / 100 - used)
        .unwrap();
    assert!(reg.is_loaded("a"), "a model in use is never taken away");
    assert!(!reg.is_loaded("b"));
    assert!(matches!(
        events.try_recv(),
        Some(RegistryEvent::Unloaded { ref name, reason: UnloadReason::Pressure(_), .. }) if name == "b"
    ));
    let report = m.report();
    let states: Vec<_> = report
        .models
        .iter()
        .map(|r| (r.name.as_str(), r.state))
        .collect();
    assert_eq!(
        states,
        [("a", ModelState::Loaded), ("b", ModelState::Registered)]
    );
    assert_eq!(
        report
            .components
            .iter()
            .find(|c| c.name == "models")
            .unwrap()
            .evictions,
        Some(1)
    );
    drop(held);
}

#[test]
fn a_configured_list_preloads_in_the_background() {
    let dir = tempfile::tempdir().unwrap();
    let m = manager();
    let reg = ModelRegistry::from_manager(
        &m,
        RegistryConfig::new()
            .with_preload(["a", "missing", "b"])
            .with_read_ahead(ReadAhead::WillNeed),
    );
    register(&reg, "a", &write_model(dir.path(), "a", 2));
    register(&reg, "b", &write_model(dir.path(), "b", 2));
    let outcome = reg.spawn_preload().join().unwrap();
    let ok: Vec<_> = outcome
        .iter()
        .map(|(n, r)| (n.as_str(), r.is_ok()))
        .collect();
    assert_eq!(ok, [("a", true), ("missing", false), ("b", true)]);
    assert!(reg.is_loaded("a") && reg.is_loaded("b"));
    // A later get is a hit: nothing left to load on the request path.
    let model = reg.get("a").unwrap();
    assert_eq!(reg.stats().loads, 2);
    assert!(Arc::strong_count(&model) >= 2);
}
