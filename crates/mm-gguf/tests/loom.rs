//! Loom models of the model registry's locking. Each explores every interleaving of two
//! threads around the registry lock (LOOM_MAX_PREEMPTIONS=2 in CI). Files are really
//! mapped (loom does not model system calls; the registry lock is what is explored).
#![cfg(loom)]

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use mm_gguf::{
    GgufWriter, MmapCache, MmapCacheConfig, ModelRegistry, RegistryConfig, types::GgmlType,
};

fn model_file() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.gguf");
    let data = [0u8; 16];
    let mut w = GgufWriter::new();
    w.add_tensor("w", GgmlType::F32, &[4], &data).unwrap();
    w.write_file(&path).unwrap();
    (dir, path)
}

fn registry(path: &PathBuf, idle: Duration) -> ModelRegistry {
    let cache = Arc::new(MmapCache::new(MmapCacheConfig::default()));
    let reg = ModelRegistry::new(
        RegistryConfig::default()
            .with_idle_timeout(idle)
            .with_cache(cache),
    );
    // SAFETY: the model file is written once before the models run and never modified.
    unsafe { reg.register("m", path) };
    reg
}

/// Two first uses racing: the model is loaded exactly once and both get the same `Arc`.
#[test]
fn concurrent_first_gets_load_once() {
    let (_dir, path) = model_file();
    loom::model(move || {
        let reg = registry(&path, Duration::from_secs(60));
        let other = reg.clone();
        let t = loom::thread::spawn(move || other.get("m").unwrap());
        let a = reg.get("m").unwrap();
        let b = t.join().unwrap();
        assert!(Arc::ptr_eq(&a, &b));
        assert_eq!(reg.stats().loads, 1);
    });
}

/// An idle sweep racing a use never unloads the model that use holds: afterwards the
/// registry still serves the very `Arc` the user has.
#[test]
fn idle_sweep_never_takes_a_held_model() {
    let (_dir, path) = model_file();
    loom::model(move || {
        let reg = registry(&path, Duration::ZERO);
        drop(reg.get("m").unwrap());
        let user = reg.clone();
        let t = loom::thread::spawn(move || user.get("m").unwrap());
        reg.unload_idle();
        let held = t.join().unwrap();
        assert!(reg.is_loaded("m"));
        assert!(Arc::ptr_eq(&held, &reg.get("m").unwrap()));
    });
}

/// A task awaiting a model another thread is loading: the load is single flight (one
/// load, one `Arc`), and the waiting future is always woken (no lost wake-up between its
/// look under the lock and the loader's notification), or `block_on` would never return.
#[test]
fn an_awaiting_task_gets_the_model_another_thread_loads() {
    let (_dir, path) = model_file();
    loom::model(move || {
        let reg = registry(&path, Duration::from_secs(60));
        let other = reg.clone();
        let t = loom::thread::spawn(move || other.get("m").unwrap());
        let a = loom::future::block_on(reg.get_async("m")).unwrap();
        let b = t.join().unwrap();
        assert!(Arc::ptr_eq(&a, &b));
        assert_eq!(reg.stats().loads, 1);
    });
}
