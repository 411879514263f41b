//! `mm-stress`: the project's main job. Runs every part's checks on real workloads and prints
//! a table (or JSON with `--json`); exits 1 when a check fails, 2 on bad arguments.

use std::process::ExitCode;

use mm_stress::Options;
use mm_stress::gate::Gate;

#[global_allocator]
static GLOBAL: Gate = Gate::new();

const USAGE: &str = "usage: mm-stress [--quick] [--json]
  --quick  short run (CI, sanitizers): smaller passes; timing targets only warn
  --json   print the report as JSON instead of a table";

fn main() -> ExitCode {
    let mut opts = Options::default();
    let mut json = false;
    for arg in std::env::args().skip(1) {
        match arg.as_str() {
            "--quick" => opts.quick = true,
            "--json" => json = true,
            "-h" | "--help" => {
                println!("{USAGE}");
                return ExitCode::SUCCESS;
            }
            other => {
                eprintln!("mm-stress: unknown argument `{other}`\n{USAGE}");
                return ExitCode::from(2);
            }
        }
    }
    if !json {
        println!(
            "mm-stress: {} run",
            if opts.quick { "quick" } else { "full" }
        );
    }
    let start = std::time::Instant::now();
    let report = mm_stress::run_all(&opts);
    if json {
        println!("{}", report.json());
    } else {
        print!("{}", report.table());
        println!("took {:.1} s", start.elapsed().as_secs_f64());
    }
    if report.passed {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
