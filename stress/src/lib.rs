#![doc = include_str!("../README.md")]

pub mod check;
pub mod clock;
pub mod gate;
pub mod parts;
pub mod workload;

use check::Report;

/// How the run is sized.
#[derive(Debug, Clone, Copy, Default)]
pub struct Options {
    /// A short run (CI, sanitizers): smaller passes, and timing targets only warn.
    pub quick: bool,
}

/// Runs every part's checks and returns the report.
pub fn run_all(opts: &Options) -> Report {
    let mut report = Report::new();
    parts::track::run(opts, &mut report);
    report
}
