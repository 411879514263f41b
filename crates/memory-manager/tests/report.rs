//! The report's three renderings, checked by real parsers.

mod common;
use common::busy_manager;

#[test]
fn json_has_every_section_and_real_figures() {
    let (m, _f) = busy_manager();
    let report = m.report();
    let v: serde_json::Value = serde_json::from_str(&report.to_json()).unwrap();
    assert_eq!(v["budget"]["limit_bytes"], 256u64 << 20);
    // Idle buffers (4 KiB + 128 KiB tier... whatever the tiers gave back) and the cached map
    // are charged to the budget after the report's sync.
    let held: u64 = report.components.iter().map(|c| c.held_bytes).sum();
    assert!(held >= 8192 + 4096, "held {held}");
    assert!(v["budget"]["used_bytes"].as_u64().unwrap() >= 8192 + 4096);
    assert_eq!(v["interner"]["strings"], 2);
    assert_eq!(v["interner"]["calls"], 4);
    assert_eq!(v["mmap"]["held_bytes"], 8192);
    assert!(v["arenas"]["resets"].as_u64().unwrap() >= 1);
    // Not tracked in this test binary: said plainly, not reported as 0.
    assert_eq!(v["allocator"]["tracked"], false);
    assert!(v["allocator"]["live_bytes"].is_null());
    let names: Vec<&str> = report.components.iter().map(|c| c.name.as_str()).collect();
    for name in ["buffer-pool", "interner", "mmap-cache", "arenas"] {
        assert!(names.contains(&name), "{names:?}");
    }
}

#[test]
fn prometheus_text_parses() {
    let (m, _f) = busy_manager();
    let text = m.report().to_prometheus();
    let lines = text.lines().map(|l| Ok(l.to_owned()));
    let scrape = prometheus_parse::Scrape::parse(lines).expect("valid exposition format");
    let find = |name: &'static str| scrape.samples.iter().filter(move |s| s.metric == name);
    let limit = find("mm_budget_limit_bytes").next().expect("limit present");
    assert!(matches!(limit.value, prometheus_parse::Value::Gauge(v) if v == (256u64 << 20) as f64));
    let held: Vec<_> = find("mm_component_held_bytes").collect();
    assert!(
        held.iter()
            .any(|s| s.labels.get("component") == Some("mmap-cache"))
    );
    assert!(
        find("mm_allocator_live_bytes").next().is_none(),
        "untracked figures are left out"
    );
}

#[test]
fn table_is_readable() {
    let (m, _f) = busy_manager();
    let table = m.report().to_string();
    assert!(table.contains("heap       not tracked"), "{table}");
    assert!(
        table.contains("budget") && table.contains("mmap-cache"),
        "{table}"
    );
}
