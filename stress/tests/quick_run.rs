//! The quick run end to end, under the same global allocator as the binary: every
//! correctness check passes (timing checks only warn in a quick run, so they cannot fail it).
//!
//! A `harness = false` test: the run compares process-wide live-heap figures, which are exact
//! only while no thread outside the run allocates. Under libtest the harness's main thread
//! stays alive next to the test (and allocates, for one, when a test passes 60 s on a loaded
//! machine); here `main` is the only thread besides the ones the run spawns and joins.

use mm_stress::Options;
use mm_stress::check::Status;
use mm_stress::gate::Gate;

#[global_allocator]
static GLOBAL: Gate = Gate::new();

fn main() {
    quick_run_passes_its_correctness_checks();
    println!("quick_run: quick run passed its correctness checks");
}

fn quick_run_passes_its_correctness_checks() {
    let report = mm_stress::run_all(&Options {
        quick: true,
        ..Options::default()
    });
    assert!(report.checks.len() >= 24, "{}", report.table());
    for c in &report.checks {
        assert_ne!(c.status, Status::Fail, "{}", report.table());
    }
    assert!(report.passed);
    let names: Vec<&str> = report.checks.iter().map(|c| c.name.as_str()).collect();
    for expected in [
        "live heap back to baseline after threads exit",
        "fixed overhead, heap (every component touched once)",
        "heap allocations per request at steady state",
        "buffer pool reuse (hits / acquisitions)",
        "interned tokens save heap vs owned Strings",
        "mmap cache held bytes never above its budget",
        "budget never exceeded (peak used, 8 threads)",
        "streaming-load working memory (peak heap)",
        "streamed values bit-identical to mapped values",
        "heap allocations per chat turn at steady state",
        "live heap back to baseline after whole-stack cycles",
    ] {
        assert!(names.contains(&expected), "no row `{expected}`: {names:?}");
    }
    let json: serde_json::Value = serde_json::from_str(&report.json()).expect("valid JSON");
    assert_eq!(
        json["checks"].as_array().map(Vec::len),
        Some(report.checks.len())
    );
}
