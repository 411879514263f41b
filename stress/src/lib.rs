#![doc = include_str!("../README.md")]

pub mod check;
pub mod clock;
pub mod gate;
pub mod median;
pub mod parts;
pub mod progress;
pub mod workload;

use std::path::PathBuf;
use std::time::Duration;

use check::Report;
use progress::Progress;

/// How the run is sized.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// A short run (CI, sanitizers): smaller passes, and timing targets only warn.
    pub quick: bool,
    /// Instead of the checks, repeat the whole-stack cycle for this long and judge the live
    /// heap's trend (see [`parts::soak`]).
    pub soak: Option<Duration>,
    /// A real GGUF file for the GGUF part, instead of the synthetic model.
    pub model: Option<PathBuf>,
    /// Self-test of the soak's trend test: leak this many heap bytes per soak cycle on
    /// purpose (0, the default, leaks nothing).
    pub inject_leak: u64,
}

/// A part of the run: its progress label and its checks.
type Part = (&'static str, fn(&Options, &mut Report));

/// The parts of the default run, in order. The fixed-overhead part goes first, while the
/// process's heap and RSS are still small, so its RSS growth is the manager's own.
const PARTS: [Part; 9] = [
    ("fixed overhead of a default manager", parts::overhead::run),
    ("tracker: counted pass and overhead", parts::track::run),
    (
        "requests: arenas, pooled buffers, interned tokens",
        parts::requests::run,
    ),
    ("interner savings", parts::intern::run),
    ("mmap cache under its budget", parts::mmap::run),
    ("budget under many reserving threads", parts::budget::run),
    (
        "GGUF model: write, map, dequantize, stream",
        parts::gguf::run,
    ),
    ("chat turns with SSE parsing", parts::chat::run),
    ("whole-stack cycle back to baseline", parts::stack::run),
];

/// Runs every part's checks and returns the report (no progress output).
pub fn run_all(opts: &Options) -> Report {
    run_with(opts, &mut Progress::hidden())
}

/// Runs every part's checks (or the soak, with [`Options::soak`]), reporting progress.
pub fn run_with(opts: &Options, progress: &mut Progress) -> Report {
    let mut report = Report::new();
    parts::prewarm_lock_table();
    if let Some(duration) = opts.soak {
        parts::soak::run(opts, duration, progress, &mut report);
    } else {
        for (label, run) in PARTS {
            progress.step(label);
            run(opts, &mut report);
        }
    }
    progress.finish();
    report
}

/// Number of progress steps [`run_with`] announces for `opts`.
pub fn steps(opts: &Options) -> u64 {
    if opts.soak.is_some() {
        parts::soak::STEPS
    } else {
        PARTS.len() as u64
    }
}

/// Parses a duration such as `30s`, `10m`, `24h`, `1d`, `500ms` or a bare number of seconds.
///
/// # Errors
/// A message naming the input when it is not a positive number with one of those units.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let value: f64 = num
        .parse()
        .map_err(|_| format!("`{text}` is not a duration (try 30s, 10m, 24h)"))?;
    let scale = match unit.trim() {
        "" | "s" | "sec" => 1.0,
        "ms" => 1e-3,
        "m" | "min" => 60.0,
        "h" => 3600.0,
        "d" => 86_400.0,
        other => {
            return Err(format!(
                "unknown unit `{other}` in `{text}` (use ms, s, m, h or d)"
            ));
        }
    };
    let secs = value * scale;
    if !(secs.is_finite() && secs > 0.0 && secs < 1e9) {
        return Err(format!("`{text}` is not a positive duration"));
    }
    Ok(Duration::from_secs_f64(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_with_units() {
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("10m"), Ok(Duration::from_secs(600)));
        assert_eq!(parse_duration("24h"), Ok(Duration::from_secs(86_400)));
        assert_eq!(parse_duration("1.5h"), Ok(Duration::from_secs(5_400)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("7"), Ok(Duration::from_secs(7)));
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("10 parsecs").is_err());
        assert!(parse_duration("s").is_err());
        assert!(parse_duration("").is_err());
    }
}
