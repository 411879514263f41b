//! The quick run end to end, under the same global allocator as the binary: every
//! correctness check passes (timing checks only warn in a quick run, so they cannot fail it).

use mm_stress::Options;
use mm_stress::check::Status;
use mm_stress::gate::Gate;

#[global_allocator]
static GLOBAL: Gate = Gate::new();

#[test]
fn quick_run_passes_its_correctness_checks() {
    let report = mm_stress::run_all(&Options {
        quick: true,
        ..Options::default()
    });
    assert!(report.checks.len() >= 9, "{}", report.table());
    for c in &report.checks {
        assert_ne!(c.status, Status::Fail, "{}", report.table());
    }
    assert!(report.passed);
    let names: Vec<&str> = report.checks.iter().map(|c| c.name.as_str()).collect();
    assert!(names.contains(&"live heap back to baseline after threads exit"));
    let json: serde_json::Value = serde_json::from_str(&report.json()).expect("valid JSON");
    assert_eq!(
        json["checks"].as_array().map(Vec::len),
        Some(report.checks.len())
    );
}
