//! The Prometheus exposition, read back by a real parser: types, names, labels, every figure
//! of the JSON report, and the schema doc listing every family.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use memory_manager::{
    Component, ComponentReading, MemoryManager, MetricKind, MetricsConfig, ModelReading,
    ModelState, Residency, metric_families,
};
use prometheus_parse::{Scrape, Value};

mod common;

// Tracked, so the allocator and fragmentation families have figures too.
#[global_allocator]
static GLOBAL: memory_manager::TrackedAlloc = memory_manager::TrackedAlloc::new(std::alloc::System);

/// A component with every optional figure set, and one model, so every family has samples.
#[derive(Debug)]
struct Models;

impl Component for Models {
    fn name(&self) -> &str {
        "models"
    }
    fn reading(&self) -> ComponentReading {
        let mut r = ComponentReading::new(4096);
        r.bound_bytes = Some(1 << 20);
        r.items = 1;
        r.hits = Some(3);
        r.misses = Some(1);
        r.evictions = Some(2);
        r.high_water_bytes = Some(8192);
        r
    }
    fn models(&self, _residency: Residency) -> Vec<ModelReading> {
        let mut m = ModelReading::new("gemma-small", "/models/g.gguf");
        m.file_bytes = Some(1000);
        m.mapped_bytes = 1000;
        m.resident_bytes = Some(512);
        m.index_heap_bytes = 64;
        m.tensors = Some(7);
        m.state = ModelState::Loaded;
        m.idle_seconds = Some(1.5);
        vec![m]
    }
}

fn busy_manager() -> (MemoryManager, Arc<Models>, tempfile::NamedTempFile) {
    let (m, f) = common::busy_manager();
    let models = Arc::new(Models);
    m.register(models.clone());
    (m, models, f)
}

fn parse(text: &str) -> Scrape {
    Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).expect("valid exposition format")
}

/// `# TYPE name type` lines, by name.
fn types(text: &str) -> HashMap<&str, &str> {
    text.lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .map(|l| l.split_once(' ').unwrap())
        .collect()
}

#[test]
fn counters_are_counters_and_gauges_gauges() {
    let (m, _models, _f) = busy_manager();
    let text = m.report().to_prometheus();
    let scrape = parse(&text);
    let types = types(&text);
    let helps: BTreeSet<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("# HELP "))
        .map(|l| l.split_once(' ').unwrap().0)
        .collect();
    assert_eq!(
        helps,
        types.keys().copied().collect(),
        "HELP and TYPE for every family"
    );
    for s in &scrape.samples {
        let ty = types.get(s.metric.as_str()).copied();
        match &s.value {
            Value::Counter(v) => {
                assert_eq!(ty, Some("counter"), "{}", s.metric);
                assert!(s.metric.ends_with("_total"), "{}", s.metric);
                assert!(*v >= 0.0, "{}", s.metric);
            }
            Value::Gauge(_) => {
                assert_eq!(ty, Some("gauge"), "{}", s.metric);
                assert!(!s.metric.ends_with("_total"), "{}", s.metric);
            }
            other => panic!("{} parsed as {other:?}", s.metric),
        }
        assert!(s.metric.starts_with("mm_"), "{}", s.metric);
    }
    // The counters the old exposition typed as gauges.
    for name in [
        "mm_allocator_allocations_total",
        "mm_budget_denied_total",
        "mm_pressure_handler_runs_total",
    ] {
        let family = &name[3..];
        let f = metric_families()
            .iter()
            .find(|f| f.name() == family)
            .unwrap();
        assert_eq!(f.kind(), MetricKind::Counter, "{name}");
    }
    let value = |name: &str, label: Option<(&str, &str)>| {
        scrape
            .samples
            .iter()
            .find(|s| s.metric == name && label.is_none_or(|(k, v)| s.labels.get(k) == Some(v)))
            .map(|s| match s.value {
                Value::Counter(v) | Value::Gauge(v) => v,
                _ => f64::NAN,
            })
    };
    assert_eq!(
        value("mm_budget_limit_bytes", None),
        Some((256u64 << 20) as f64)
    );
    let pool = Some(("component", "buffer-pool"));
    assert_eq!(value("mm_component_hits_total", pool), Some(1.0));
    assert_eq!(value("mm_component_misses_total", pool), Some(1.0));
    let models = Some(("component", "models"));
    assert_eq!(value("mm_component_evictions_total", models), Some(2.0));
    assert_eq!(value("mm_component_hit_ratio", models), Some(0.75));
    assert_eq!(value("mm_mmap_hits_total", None), Some(1.0));
    assert_eq!(value("mm_mmap_misses_total", None), Some(1.0));
    assert_eq!(value("mm_interner_calls_total", None), Some(4.0));
    assert!(value("mm_arena_resets_total", None).unwrap() >= 1.0);
    let model = Some(("model", "gemma-small"));
    assert_eq!(value("mm_model_idle_seconds", model), Some(1.5));
    assert_eq!(value("mm_model_tensors", model), Some(7.0));
    let loaded = scrape
        .samples
        .iter()
        .filter(|s| s.metric == "mm_model_state")
        .map(|s| (s.labels.get("state").unwrap().to_owned(), s.value.clone()))
        .collect::<Vec<_>>();
    assert_eq!(loaded.len(), 3);
    assert!(loaded.contains(&("loaded".into(), Value::Gauge(1.0))));
    assert!(loaded.contains(&("failed".into(), Value::Gauge(0.0))));
    assert_eq!(value("mm_allocator_tracked", None), Some(1.0));
    assert!(value("mm_allocator_allocations_total", None).unwrap() > 0.0);
}

#[test]
fn prefix_and_constant_labels_reach_every_sample() {
    let (m, _models, _f) = busy_manager();
    let config = MetricsConfig::new()
        .with_prefix("svc_")
        .with_label("service", "embed one")
        .with_label("instance", "a:1");
    let text = m.report().to_prometheus_with(&config).unwrap();
    let scrape = parse(&text);
    assert!(!scrape.samples.is_empty());
    for s in &scrape.samples {
        assert!(s.metric.starts_with("svc_budget") || s.metric.starts_with("svc_"));
        assert_eq!(s.labels.get("service"), Some("embed one"), "{}", s.metric);
        assert_eq!(s.labels.get("instance"), Some("a:1"), "{}", s.metric);
    }
    let held = scrape
        .samples
        .iter()
        .find(|s| s.metric == "svc_component_held_bytes")
        .unwrap();
    assert!(held.labels.get("component").is_some());
    let bad = MetricsConfig::new().with_label("model", "x");
    assert!(m.report().to_prometheus_with(&bad).is_err());
}

/// Leaf paths of a JSON value (`budget.used_bytes`, `components[].hits`).
fn leaves(prefix: &str, v: &serde_json::Value, out: &mut BTreeSet<String>) {
    match v {
        serde_json::Value::Object(map) => {
            for (k, v) in map {
                let p = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                leaves(&p, v, out);
            }
        }
        serde_json::Value::Array(items) if items.iter().all(|i| i.is_object()) => {
            for item in items {
                leaves(&format!("{prefix}[]"), item, out);
            }
        }
        _ => {
            out.insert(prefix.to_owned());
        }
    }
}

#[test]
fn every_json_figure_is_a_metric_family() {
    let (m, _models, _f) = busy_manager();
    let report = m.report();
    let json: serde_json::Value = serde_json::from_str(&report.to_json()).unwrap();
    let mut paths = BTreeSet::new();
    leaves("", &json, &mut paths);
    let sources: BTreeSet<&str> = metric_families().iter().map(|f| f.source()).collect();
    // Names and paths are labels (`component`, `model`), not figures.
    let labels = ["components[].name", "models[].name", "models[].path"];
    let missing: Vec<_> = paths
        .iter()
        .filter(|p| !labels.contains(&p.as_str()) && !sources.contains(p.as_str()))
        .collect();
    assert!(
        missing.is_empty(),
        "JSON figures without a family: {missing:?}"
    );
    assert!(
        paths.len() > 50,
        "the busy report fills every section: {paths:?}"
    );
    // And every family of this busy report has samples, except the cgroup's (absent on some
    // machines).
    let text = report.to_prometheus();
    for f in metric_families() {
        let optional = f.name().starts_with("cgroup_");
        assert!(
            optional || text.contains(&format!("# TYPE mm_{} ", f.name())),
            "{} has no samples",
            f.name()
        );
    }
}

const DOC: &str = "../../docs/report-schema.md";
const START: &str =
    "<!-- metric-families: generated by tests/prometheus.rs, MM_REGEN_DOCS=1 rewrites -->";
const END: &str = "<!-- metric-families end -->";

fn families_table() -> String {
    let mut t = String::from(
        "| family (prefix `mm_` by default) | type | unit | labels | JSON field | meaning |\n|---|---|---|---|---|---|\n",
    );
    for f in metric_families() {
        let labels = if f.labels().is_empty() {
            "-".to_owned()
        } else {
            f.labels()
                .iter()
                .map(|l| format!("`{l}`"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        t.push_str(&format!(
            "| `{}` | {} | {} | {} | `{}` | {} |\n",
            f.name(),
            f.kind().as_str(),
            f.unit().as_str(),
            labels,
            f.source(),
            f.help()
        ));
    }
    t
}

#[test]
fn schema_doc_lists_every_family() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(DOC);
    let doc = std::fs::read_to_string(&path).unwrap();
    let (head, rest) = doc.split_once(START).expect("the doc has the start marker");
    let (_, tail) = rest.split_once(END).expect("the doc has the end marker");
    let fresh = format!("{head}{START}\n{}{END}{tail}", families_table());
    if std::env::var_os("MM_REGEN_DOCS").is_some() {
        std::fs::write(&path, &fresh).unwrap();
    } else {
        assert!(
            doc == fresh,
            "docs/report-schema.md's metric table is stale; rerun with MM_REGEN_DOCS=1"
        );
    }
}
