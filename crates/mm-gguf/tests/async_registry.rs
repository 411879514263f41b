//! The registry in async code: concurrent first gets from threads and from tokio tasks load
//! a model once, a task awaits a load in progress, events arrive on a runtime-agnostic
//! channel, and a tensor's bytes keep the map alive after the model is unloaded.
#![cfg(not(loom))]

use std::sync::Arc;
use std::time::Duration;

use mm_gguf::{
    GgufWriter, MetaValue, ModelRegistry, RegistryConfig, RegistryEvent, types::GgmlType,
};

/// A model with many tensors, so that its parse takes long enough for other callers to
/// arrive while it runs (the assertions hold either way).
fn write_model(dir: &tempfile::TempDir, name: &str, tensors: usize) -> std::path::PathBuf {
    let data: Vec<u8> = (0..4 * 64).map(|i| i as u8).collect();
    let mut w = GgufWriter::new();
    w.add_metadata("general.name", MetaValue::String(name.into()))
        .unwrap();
    for i in 0..tensors {
        w.add_tensor(format!("blk.{i}.w"), GgmlType::F32, &[64], &data)
            .unwrap();
    }
    let p = dir.path().join(format!("{name}.gguf"));
    w.write_file(&p).unwrap();
    p
}

fn registry(dir: &tempfile::TempDir) -> ModelRegistry {
    let reg = ModelRegistry::new(RegistryConfig::new().with_idle_timeout(Duration::from_secs(60)));
    // SAFETY: the tests' model files are written before registration and never modified.
    unsafe {
        reg.register("a", write_model(dir, "a", 2000));
        reg.register("b", write_model(dir, "b", 10));
    }
    reg
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .expect("runtime")
}

#[test]
fn the_awaiting_future_is_send() {
    fn send<F: std::future::Future + Send>(f: F) -> F {
        f
    }
    let reg = ModelRegistry::default();
    drop(send(reg.get_async("m")));
}

#[test]
fn tasks_and_threads_racing_for_a_first_get_load_it_once() {
    let dir = tempfile::tempdir().unwrap();
    let reg = registry(&dir);
    let events = reg.subscribe();
    let rt = runtime();
    let from_tasks: Vec<_> = rt.block_on(async {
        let tasks: Vec<_> = (0..16)
            .map(|_| {
                let reg = reg.clone();
                tokio::spawn(async move { reg.get_async("a").await.unwrap() })
            })
            .collect();
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let reg = reg.clone();
                std::thread::spawn(move || reg.get("a").unwrap())
            })
            .collect();
        let mut all = Vec::new();
        for t in tasks {
            all.push(t.await.unwrap());
        }
        all.extend(threads.into_iter().map(|t| t.join().unwrap()));
        all
    });
    assert_eq!(from_tasks.len(), 20);
    assert!(from_tasks.windows(2).all(|w| Arc::ptr_eq(&w[0], &w[1])));
    assert_eq!(reg.stats().loads, 1, "single flight");
    assert!(
        matches!(events.try_recv(), Some(RegistryEvent::Loaded { ref name, .. }) if name == "a")
    );
    assert!(events.try_recv().is_none(), "one load event");
}

#[test]
fn a_task_awaits_the_events_of_a_load_on_another_thread() {
    let dir = tempfile::tempdir().unwrap();
    let reg = registry(&dir);
    let events = reg.subscribe();
    let rt = runtime();
    let loader = reg.clone();
    let ev = rt.block_on(async move {
        let waiting = tokio::spawn(async move { events.recv().await });
        std::thread::spawn(move || loader.get("b").unwrap())
            .join()
            .unwrap();
        waiting.await.unwrap()
    });
    assert!(matches!(ev, Some(RegistryEvent::Loaded { ref name, .. }) if name == "b"));
}

#[test]
fn a_failed_load_is_reported_to_every_caller_and_retried() {
    let dir = tempfile::tempdir().unwrap();
    let reg = ModelRegistry::default();
    let bad = dir.path().join("bad.gguf");
    std::fs::write(&bad, b"GGUF\x03\0\0\0").unwrap();
    // SAFETY: written once, never modified.
    unsafe { reg.register("bad", &bad) };
    let rt = runtime();
    let results = rt.block_on(async {
        let tasks: Vec<_> = (0..8)
            .map(|_| {
                let reg = reg.clone();
                tokio::spawn(async move { reg.get_async("bad").await.map(|_| ()) })
            })
            .collect();
        let mut out = Vec::new();
        for t in tasks {
            out.push(t.await.unwrap());
        }
        out
    });
    assert!(
        results
            .iter()
            .all(|r| r.as_ref().is_err_and(|e| e.is_truncated()))
    );
    assert!(!reg.is_loaded("bad"));
    assert_eq!(reg.stats().loads, 0);
}

#[test]
fn tensor_bytes_keep_the_map_alive_after_an_unload() {
    let dir = tempfile::tempdir().unwrap();
    let reg = registry(&dir);
    let model = reg.get("b").unwrap();
    let body = model.tensor_bytes("blk.3.w").unwrap();
    let expected: Vec<u8> = (0..4 * 64).map(|i| i as u8).collect();
    assert_eq!(&body[..], &expected[..]);
    assert_eq!(model.tensor_bytes("nope"), None);
    let whole = model.file_bytes();
    assert_eq!(whole.len() as u64, model.mapped_bytes());
    drop(model);
    assert!(reg.unload("b"));
    // The registry and the model are gone; the bytes still read the map, on any thread.
    drop(reg);
    let on_other = std::thread::spawn(move || body.slice(4..8)).join().unwrap();
    assert_eq!(&on_other[..], &expected[4..8]);
    assert_eq!(&whole[..4], b"GGUF");
}
