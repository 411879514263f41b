//! The `metrics` bridge, read back through metrics-util's debugging recorder: counters as
//! counters, gauges as gauges, units, labels and values as in the report.

use std::collections::HashMap;

use memory_manager::{MemoryConfig, MemoryManager, MetricKind, MetricsConfig, metric_families};
use metrics_util::debugging::{DebugValue, DebuggingRecorder};

#[test]
fn families_reach_the_recorder_with_their_kinds_units_and_labels() {
    let m = MemoryManager::new(MemoryConfig::default().with_max_memory(128 << 20)).unwrap();
    drop(m.buffer(1000).unwrap());
    drop(m.buffer(1000).unwrap());
    for w in ["x", "y", "x"] {
        m.interner().get_or_intern(w);
    }
    let report = m.report();
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let config = MetricsConfig::new().with_label("service", "test");
    metrics::with_local_recorder(&recorder, || report.publish_metrics(&config)).unwrap();

    let mut seen = HashMap::new();
    for (key, unit, help, value) in snapshotter.snapshot().into_vec() {
        let (kind, key) = key.into_parts();
        let labels: HashMap<String, String> = key
            .labels()
            .map(|l| (l.key().to_owned(), l.value().to_owned()))
            .collect();
        assert_eq!(labels.get("service").map(String::as_str), Some("test"));
        let name = key.name().to_owned();
        let family = metric_families()
            .iter()
            .find(|f| format!("mm_{}", f.name()) == name)
            .unwrap_or_else(|| panic!("{name} is no family"));
        assert!(help.is_some_and(|h| &*h == family.help()), "{name}");
        match (family.kind(), &value) {
            (MetricKind::Counter, DebugValue::Counter(_)) => {
                assert_eq!(kind, metrics_util::MetricKind::Counter)
            }
            (MetricKind::Gauge, DebugValue::Gauge(_)) => {
                assert_eq!(kind, metrics_util::MetricKind::Gauge)
            }
            other => panic!("{name}: {other:?}"),
        }
        if name.ends_with("_bytes") || name.ends_with("_bytes_total") {
            assert_eq!(unit, Some(metrics::Unit::Bytes), "{name}");
        }
        seen.insert((name, labels.get("component").cloned()), value);
    }
    let get = |name: &str, component: Option<&str>| {
        seen.get(&(name.to_owned(), component.map(str::to_owned)))
            .unwrap_or_else(|| panic!("{name} {component:?} not published"))
    };
    assert_eq!(
        get("mm_budget_limit_bytes", None),
        &DebugValue::Gauge(((128u64 << 20) as f64).into())
    );
    assert_eq!(
        get("mm_budget_used_bytes", None),
        &DebugValue::Gauge((report.budget.used_bytes as f64).into())
    );
    assert_eq!(
        get("mm_interner_calls_total", None),
        &DebugValue::Counter(3)
    );
    assert_eq!(
        get("mm_component_hits_total", Some("buffer-pool")),
        &DebugValue::Counter(1)
    );
    assert_eq!(
        get("mm_component_misses_total", Some("buffer-pool")),
        &DebugValue::Counter(1)
    );
    // The families the Prometheus text carries are the ones published.
    let text = report.to_prometheus();
    let text_families = text.lines().filter(|l| l.starts_with("# TYPE")).count();
    let published: std::collections::HashSet<_> = seen.keys().map(|(n, _)| n.clone()).collect();
    assert_eq!(published.len(), text_families);

    let bad = MetricsConfig::new().with_prefix("9");
    assert!(report.publish_metrics(&bad).is_err());
}
