//! `mm-stress`: the project's main job. Runs every part's checks on real workloads and prints
//! a table (or JSON with `--json`); exits 1 when a check fails, 2 on bad arguments.

use std::process::ExitCode;

use mm_stress::Options;
use mm_stress::gate::Gate;
use mm_stress::progress::Progress;

#[global_allocator]
static GLOBAL: Gate = Gate::new();

const USAGE: &str = "usage: mm-stress [--quick] [--json] [--soak DURATION] [--model PATH]
  --quick           short run (CI, sanitizers): smaller passes; timing targets only warn
  --json            print the report as JSON instead of a table
  --soak DURATION   repeat the whole-stack cycle for DURATION (30s, 10m, 24h) with periodic
                    heap snapshots; fail if the live heap keeps growing
  --model PATH      run the GGUF part on a real GGUF file instead of the synthetic model
                    (mapped: it must not be modified or truncated while the run reads it)
  --inject-leak N   with --soak: leak N bytes per cycle on purpose (self-test of the trend test)";

fn main() -> ExitCode {
    let mut opts = Options::default();
    let mut json = false;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_owned(), Some(v.to_owned())),
            _ => (arg.clone(), None),
        };
        match flag.as_str() {
            "--quick" => opts.quick = true,
            "--json" => json = true,
            "--soak" | "--model" | "--inject-leak" => {
                let Some(value) = inline.or_else(|| args.next()) else {
                    eprintln!("mm-stress: `{flag}` needs a value\n{USAGE}");
                    return ExitCode::from(2);
                };
                if flag == "--inject-leak" {
                    match value.parse() {
                        Ok(n) => opts.inject_leak = n,
                        Err(_) => {
                            eprintln!("mm-stress: --inject-leak {value}: not a byte count");
                            return ExitCode::from(2);
                        }
                    }
                } else if flag == "--soak" {
                    match mm_stress::parse_duration(&value) {
                        Ok(d) => opts.soak = Some(d),
                        Err(e) => {
                            eprintln!("mm-stress: {e}");
                            return ExitCode::from(2);
                        }
                    }
                } else {
                    let path = std::path::PathBuf::from(value);
                    if !path.is_file() {
                        eprintln!("mm-stress: --model {}: no such file", path.display());
                        return ExitCode::from(2);
                    }
                    opts.model = Some(path);
                }
            }
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
        let kind = match (opts.soak, opts.quick) {
            (Some(d), _) => format!("soak ({:.0} s)", d.as_secs_f64()),
            (None, true) => "quick".to_owned(),
            (None, false) => "full".to_owned(),
        };
        let model = opts
            .model
            .as_ref()
            .map_or(String::from("synthetic GGUF model"), |p| {
                format!("model {}", p.display())
            });
        println!("mm-stress: {kind} run, {model}");
    }
    let start = std::time::Instant::now();
    let mut progress = Progress::auto(mm_stress::steps(&opts));
    let report = mm_stress::run_with(&opts, &mut progress);
    drop(progress);
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
