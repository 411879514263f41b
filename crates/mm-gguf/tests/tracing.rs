//! The registry's `tracing` events reach a subscriber: each load inside a `model_load` span
//! with its bytes and duration, failed loads as warnings, and each unload with its reason,
//! bytes and idle time.

use std::time::{Duration, Instant};

use mm_gguf::{
    GgufWriter, MetaValue, ModelRegistry, PressureLevel, RegistryConfig, types::GgmlType,
};
use tracing::Level;

#[path = "../../../support/tracing_capture.rs"]
mod tracing_capture;
use tracing_capture::{Capture, events};

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

#[test]
fn loads_and_unloads_are_traced() {
    let dir = tempfile::tempdir().unwrap();
    let reg = ModelRegistry::new(RegistryConfig::new().with_idle_timeout(Duration::from_secs(60)));
    let (a, b, c) = (
        write_model(&dir, "a"),
        write_model(&dir, "b"),
        write_model(&dir, "c"),
    );
    // SAFETY: the test's model files are written above and never modified.
    unsafe {
        reg.register("a", &a);
        reg.register("b", &b);
        reg.register("c", &c);
        reg.register("missing", dir.path().join("missing.gguf"));
    }
    let mapped = std::fs::metadata(&a).unwrap().len().to_string();
    let records = Capture::run(|| {
        for name in ["a", "b", "c"] {
            drop(reg.get(name).unwrap());
        }
        assert!(reg.get("missing").is_err());
        assert!(reg.unload("a"));
        assert_eq!(
            reg.unload_idle_at(Instant::now() + Duration::from_secs(3600)),
            2
        );
        drop(reg.get("c").unwrap());
        assert_eq!(reg.handle_pressure(PressureLevel::Critical), 1);
    });

    let loaded = events(&records, "model loaded");
    assert_eq!(loaded.len(), 4, "{records:#?}");
    for event in &loaded {
        assert_eq!(event.level, Level::INFO);
        assert_eq!(event.spans, ["model_load"]);
        assert_eq!(event.fields["mapped_bytes"], mapped);
        assert!(event.fields["index_heap_bytes"].parse::<u64>().unwrap() > 0);
        assert!(event.fields["took_ms"].parse::<f64>().unwrap() >= 0.0);
    }
    let failed = events(&records, "model load failed");
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0].level, Level::WARN);
    assert_eq!(failed[0].fields["model"], "missing");
    assert!(
        failed[0].fields["error"].contains("missing.gguf"),
        "{failed:#?}"
    );

    let unloaded = events(&records, "model unloaded");
    let reasons: Vec<(&str, &str)> = unloaded
        .iter()
        .map(|r| (r.fields["model"].as_str(), r.fields["reason"].as_str()))
        .collect();
    assert_eq!(reasons.len(), 4, "{records:#?}");
    assert_eq!(reasons[0], ("a", "explicit"));
    let mut idle = reasons[1..3].to_vec();
    idle.sort();
    assert_eq!(idle, [("b", "idle"), ("c", "idle")]);
    assert_eq!(reasons[3], ("c", "critical pressure"));
    for event in &unloaded {
        assert_eq!(event.level, Level::INFO);
        assert_eq!(event.fields["mapped_bytes"], mapped);
        assert!(event.fields["idle_s"].parse::<f64>().unwrap() >= 0.0);
    }
}
