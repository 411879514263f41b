//! `--soak DURATION`: the whole-stack cycle ([`Stack::cycle`]) repeated on one long-lived
//! manager for the duration, with a `memory_manager::Sampler` snapshot after a cycle at
//! least every `duration / 2000`.
//!
//! # The trend test
//! The samples are `(t, live heap bytes)` taken between cycles, when no cycle thread is
//! running, so they see what the stack *holds*, not what a request has in flight. From each
//! the idle memory of the manager's pools and thread arenas is taken out (the sampler reports
//! it per component): those fill by chance, a 1 MiB buffer at a time when two threads
//! happened to need one together, up to a bound set by configuration, and such a step late
//! in a short soak would read as growth. That bound is checked on its own instead: the
//! buffer pool's idle bytes never above its `bound_bytes`. What is left (the interner,
//! conversations, caches, everything not pooled) is judged for a trend. The first
//! half of the soak is warm-up (caches fill, buffers reach their sizes). Over the samples of
//! the second half, fit `live = a + b * t` by least squares; the run fails when the fitted
//! growth across the second half, `b * (t_last - t_first)`, exceeds 1% of the live heap at
//! the first sample, or 64 KiB, whichever is larger. Fewer than 8 samples in the second
//! half fail as too short to judge. A second check requires the live heap back at its
//! pre-stack baseline once the stack is dropped.
//!
//! A steady leak of `r` bytes per second is caught once `r * duration / 2` passes the
//! threshold. The stack's non-pooled heap is about 1.1 MB, so the 64 KiB floor rules: a 30 s
//! soak catches leaks above ~4.4 KB/s, a 24 h soak above ~1.5 bytes per second.
//! `--inject-leak N` leaks N bytes per cycle on purpose to show the test firing.

use std::time::{Duration, Instant};

use memory_manager::{SAMPLED, Sampler};

use super::stack::{CycleSize, Stack};
use super::{live_bytes, mb};
use crate::Options;
use crate::check::{Check, Report, fmt_num};
use crate::progress::Progress;

const PART: &str = "soak";

/// Progress steps of a soak.
pub const STEPS: u64 = 3;

/// Most samples kept (the vector is allocated before the baseline, so it never grows).
const MAX_SAMPLES: usize = 4_096;

/// Samples over the soak's duration.
const TARGET_SAMPLES: u32 = 2_000;

/// The fewest second-half samples the trend is judged on.
const MIN_SAMPLES: usize = 8;

/// The growth allowed over the second half: this fraction of the live heap at the start...
const GROWTH_FRACTION: f64 = 0.01;
/// ... or this many bytes, whichever is larger.
const GROWTH_FLOOR: f64 = 64.0 * 1024.0;

/// The least-squares slope of `y` over `x` (`None` for fewer than 2 distinct `x`).
pub fn slope(points: &[(f64, f64)]) -> Option<f64> {
    let n = points.len() as f64;
    if points.len() < 2 {
        return None;
    }
    let mx = points.iter().map(|p| p.0).sum::<f64>() / n;
    let my = points.iter().map(|p| p.1).sum::<f64>() / n;
    let sxx: f64 = points.iter().map(|p| (p.0 - mx) * (p.0 - mx)).sum();
    let sxy: f64 = points.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
    (sxx > 0.0).then(|| sxy / sxx)
}

/// The trend verdict over samples `(seconds, live bytes)`: the fitted growth across the
/// second half, the threshold, and how many samples it used.
pub fn trend(samples: &[(f64, f64)]) -> (Option<f64>, f64, usize) {
    let baseline = samples.first().map_or(0.0, |s| s.1);
    let threshold = (baseline * GROWTH_FRACTION).max(GROWTH_FLOOR);
    let (Some(first), Some(last)) = (samples.first(), samples.last()) else {
        return (None, threshold, 0);
    };
    let mid = first.0 + (last.0 - first.0) / 2.0;
    let half: Vec<(f64, f64)> = samples.iter().copied().filter(|s| s.0 >= mid).collect();
    if half.len() < MIN_SAMPLES {
        return (None, threshold, half.len());
    }
    let span = half[half.len() - 1].0 - half[0].0;
    (slope(&half).map(|b| b * span), threshold, half.len())
}

/// Runs the soak.
pub fn run(opts: &Options, duration: Duration, progress: &mut Progress, report: &mut Report) {
    progress.step("soak: building the stack (files, model, conversations)");
    let size = CycleSize::for_run(opts);
    // A throwaway stack and cycle first, so one-time set-up lies in the baseline.
    let warm = Stack::new(opts).and_then(|mut s| s.cycle(size).map(|_| ()));
    if let Err(e) = warm {
        report.push(Check::holds(PART, "soak: the stack runs", false, "yes").detail(e));
        return;
    }
    let mut samples: Vec<(f64, f64)> = Vec::with_capacity(MAX_SAMPLES);
    let base = live_bytes();
    let progress_base = progress.kept_bytes();
    let mut stack = match Stack::new(opts) {
        Ok(s) => s,
        Err(e) => {
            report.push(Check::holds(PART, "soak: the stack builds", false, "yes").detail(e));
            return;
        }
    };
    let mut sampler = Sampler::new(stack.manager.clone());
    let interval = duration / TARGET_SAMPLES;
    progress.step(&format!("soak: cycles for {:.0} s", duration.as_secs_f64()));
    let start = Instant::now();
    let mut last_sample: Option<Instant> = None;
    let mut last_note = start;
    // About 100 progress notes over the soak, at most one every 5 s.
    let note_every = (duration / 100).max(Duration::from_secs(5));
    let mut cycles = 0u64;
    let mut requests = 0u64;
    let mut max_pool_held = 0u64;
    let mut last_heap = 0u64;
    let mut error = String::new();
    while start.elapsed() < duration {
        if opts.inject_leak > 0 {
            // A deliberate leak for the self-test: never freed, as a leak would be.
            std::hint::black_box(Box::leak(
                vec![0u8; opts.inject_leak as usize].into_boxed_slice(),
            ));
        }
        match stack.cycle(size) {
            Ok(t) => requests += t.requests.requests,
            Err(e) => {
                error = e;
                break;
            }
        }
        cycles += 1;
        if last_sample.is_none_or(|t| t.elapsed() >= interval) && samples.len() < MAX_SAMPLES {
            let s = sampler.sample();
            // held: heap, buffer-pool, object-pools, interner, mmap-cache, arenas.
            let idle = s.held[1] + s.held[2] + s.held[5];
            samples.push((
                start.elapsed().as_secs_f64(),
                s.held[0].saturating_sub(idle) as f64,
            ));
            max_pool_held = max_pool_held.max(s.held[1]);
            last_heap = s.held[0];
            last_sample = Some(Instant::now());
        }
        if last_note.elapsed() >= note_every {
            last_note = Instant::now();
            progress.note(&format!(
                "{:.0} s / {:.0} s: {cycles} cycles, live heap {}",
                start.elapsed().as_secs_f64(),
                duration.as_secs_f64(),
                mb(last_heap as f64)
            ));
        }
    }
    let elapsed = start.elapsed();
    // As flags, so no text is held when the live heap is compared with its baseline.
    let mut suspect = [false; SAMPLED.len()];
    for name in sampler.leak_suspects() {
        if let Some(i) = SAMPLED.iter().position(|n| *n == name) {
            suspect[i] = true;
        }
    }
    let pool_bound = stack.manager.buffer_pool().stats().bound_bytes;
    progress.step("soak: teardown");
    drop(sampler);
    drop(stack);
    // What the progress bar itself kept meanwhile is not the stack's.
    let after = live_bytes() as i64 - (progress.kept_bytes() - progress_base);
    let suspects: Vec<&str> = SAMPLED
        .iter()
        .zip(suspect)
        .filter_map(|(n, s)| s.then_some(*n))
        .collect();
    let suspects = suspects.join(", ");

    let (growth, threshold, used) = trend(&samples);
    let first = samples.first().map_or(0.0, |s| s.1);
    let last = samples.last().map_or(0.0, |s| s.1);
    report.push(
        Check::at_most(
            PART,
            "live heap growth over the second half (least squares, pools' idle memory out)",
            growth.map_or(f64::NAN, f64::round),
            "bytes",
            threshold,
        )
        .detail(format!(
            "{cycles} cycles ({} requests) in {:.1} s; {} samples, {used} in the second half; heap less pools' idle memory first {}, last {}; whole live heap at the end {}; sampler's leak suspects: {}",
            fmt_num(requests as f64),
            elapsed.as_secs_f64(),
            samples.len(),
            mb(first),
            mb(last),
            mb(last_heap as f64),
            if suspects.is_empty() { "none" } else { &suspects }
        ))
        .require(error.is_empty(), &error)
        .require(
            growth.is_some(),
            &format!("too short to judge: {used} samples in the second half, need {MIN_SAMPLES}"),
        ),
    );
    report.push(Check::at_most(
        PART,
        "buffer pool idle bytes within its bound (every sample)",
        max_pool_held as f64,
        "bytes",
        pool_bound as f64,
    ));
    report.push(
        Check::equals(
            PART,
            "live heap back to baseline after the soak (stack dropped)",
            after as f64 - base as f64,
            "bytes",
            0.0,
        )
        .detail(format!("baseline {base} B, after {after} B")),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slope_of_a_line_and_of_noise() {
        let line: Vec<(f64, f64)> = (0..10).map(|i| (i as f64, 5.0 + 2.0 * i as f64)).collect();
        assert!((slope(&line).unwrap() - 2.0).abs() < 1e-12);
        let flat: Vec<(f64, f64)> = (0..10)
            .map(|i| (i as f64, if i % 2 == 0 { 100.0 } else { 90.0 }))
            .collect();
        assert!(slope(&flat).unwrap().abs() < 1.5);
        assert_eq!(slope(&[(1.0, 1.0)]), None);
        assert_eq!(slope(&[(1.0, 1.0), (1.0, 2.0)]), None);
    }

    #[test]
    fn trend_judges_the_second_half_only() {
        // Grows fast in the first half (warm-up), flat in the second: passes.
        let warm: Vec<(f64, f64)> = (0..40)
            .map(|i| {
                let t = i as f64;
                (t, if t < 20.0 { 1e6 + t * 1e5 } else { 3e6 })
            })
            .collect();
        let (g, thr, used) = trend(&warm);
        assert_eq!(used, 20);
        assert!(
            g.unwrap().abs() < 1.0 && thr == 64.0 * 1024.0,
            "{g:?} {thr}"
        );
        // A steady leak of 10 KB per sample through the second half: 19 intervals, ~190 KB.
        let leak: Vec<(f64, f64)> = (0..40).map(|i| (i as f64, 1e6 + i as f64 * 1e4)).collect();
        let (g, thr, _) = trend(&leak);
        assert!((g.unwrap() - 1.9e5).abs() < 1.0 && g.unwrap() > thr);
        // Too few samples.
        assert_eq!(trend(&leak[..6]).0, None);
    }
}
