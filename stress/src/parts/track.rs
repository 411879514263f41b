//! mm-track: is the tracker live and exact on a real workload, and what does it cost?
//!
//! - A *counted pass*: the service workload on 2 threads under `TrackedAlloc`, between two
//!   snapshots. Checks the allocation count, that live bytes return to their baseline once
//!   the threads have exited, that the peak saw what the workers held, and that the
//!   per-thread scope counts agree with the process-wide counts.
//! - *Overhead*: the same service workload timed with tracking on and off (see
//!   [`crate::gate`]), at 1 and 2 threads, and the pure churn called directly on `System`
//!   and on `TrackedAlloc<System>`. Each pass is timed in thread CPU time; passes alternate
//!   (off, on, on, off, ...) and the ratio is taken between the fastest pass of each kind,
//!   the one least disturbed by other work on the machine.

use std::alloc::System;
use std::time::{Duration, Instant};

use mm_track::{ScopeStats, TrackedAlloc};

use super::on_threads;
use crate::Options;
use crate::check::{Check, Report, Status, fmt_num};
use crate::gate::Gate;
use crate::median::{Verdict, decide, sample_median};
use crate::workload::{ServiceConfig, ServiceOutcome, churn, serve};

const PART: &str = "mm-track";

struct Plan {
    /// The counted pass: sized for at least `min_allocs` allocations on 2 threads.
    counted: ServiceConfig,
    min_allocs: f64,
    /// Each timed service pass (shorter: many alternating passes beat a few long ones).
    timed: ServiceConfig,
    rounds: RoundBudget,
    churn_pairs: u64,
}

impl Plan {
    fn new(opts: &Options) -> Self {
        let users = 1_024;
        if opts.quick {
            Plan {
                counted: ServiceConfig {
                    requests: 1_300,
                    users,
                },
                min_allocs: 100_000.0,
                timed: ServiceConfig {
                    requests: 300,
                    users,
                },
                rounds: RoundBudget {
                    max_rounds: 12,
                    time_cap: Duration::from_secs(3),
                },
                churn_pairs: 200_000,
            }
        } else {
            Plan {
                counted: ServiceConfig {
                    requests: 12_500,
                    users,
                },
                min_allocs: 1_000_000.0,
                timed: ServiceConfig {
                    requests: 2_500,
                    users,
                },
                rounds: RoundBudget {
                    max_rounds: 400,
                    time_cap: Duration::from_secs(60),
                },
                churn_pairs: 1_000_000,
            }
        }
    }
}

/// Runs the mm-track checks.
pub fn run(opts: &Options, report: &mut Report) {
    let plan = Plan::new(opts);
    Gate::set_tracking(true);
    let active = mm_track::is_active();
    report.push(Check::holds(
        PART,
        "TrackedAlloc is the global allocator",
        active,
        "yes",
    ));
    if !active {
        return;
    }
    counted_pass(&plan, report);
    for threads in [1, 2] {
        let timing = alternate(1.0, &plan.rounds, |tracking| {
            Gate::set_tracking(tracking);
            let t = service_pass(&plan.timed, threads).1;
            Gate::set_tracking(true);
            t
        });
        report.push(overhead(
            &format!("tracker overhead, service workload, {threads} thread(s)"),
            &timing,
            1.0,
            opts.quick,
        ));
    }
    for threads in [1, 2] {
        let tracker = TrackedAlloc::new(System);
        let timing = alternate(15.0, &plan.rounds, |tracking| {
            on_threads(threads, |w| {
                if tracking {
                    churn(&tracker, plan.churn_pairs, w)
                } else {
                    churn(&System, plan.churn_pairs, w)
                }
            })
            .1
        });
        report.push(overhead(
            &format!("tracker overhead, alloc/free churn, {threads} thread(s)"),
            &timing,
            15.0,
            opts.quick,
        ));
    }
}

/// The service workload on 2 threads between two snapshots.
fn counted_pass(plan: &Plan, report: &mut Report) {
    // A small pass first, so what std sets up once per process (the main thread's handle,
    // for one) is in the baseline rather than counted as a leak of this pass.
    service_pass(
        &ServiceConfig {
            requests: 10,
            users: 4,
        },
        2,
    );
    let (Some(base), ()) = (mm_track::snapshot(), mm_track::reset_peak()) else {
        return;
    };
    let (outcomes, cpu) = service_pass(&plan.counted, 2);
    let held = outcomes.iter().map(|o| o.0.held_bytes).max().unwrap_or(0);
    let scoped: u64 = outcomes.iter().map(|o| o.1.allocs).sum();
    drop(outcomes); // its 128 bytes would otherwise show as live
    let Some(after) = mm_track::snapshot() else {
        return;
    };
    let allocs = after.allocs - base.allocs;
    report.push(
        Check::at_least(
            PART,
            "allocations in the counted pass",
            allocs as f64,
            "allocs",
            plan.min_allocs,
        )
        .detail(format!(
            "{} reallocs, {} MB requested, {:.0} ns of CPU per allocation",
            fmt_num((after.reallocs - base.reallocs) as f64),
            fmt_num(((after.total_alloc_bytes - base.total_alloc_bytes) / 1_000_000) as f64),
            cpu.as_secs_f64() * 1e9 / allocs.max(1) as f64
        )),
    );
    let leaked = after.live_bytes as f64 - base.live_bytes as f64;
    report.push(
        Check::equals(
            PART,
            "live heap back to baseline after threads exit",
            leaked,
            "bytes",
            0.0,
        )
        .detail(format!(
            "baseline {} B, after {} B",
            base.live_bytes, after.live_bytes
        )),
    );
    let bound = after
        .live_error_bound_bytes()
        .max(base.live_error_bound_bytes());
    let peak_rise = after.peak_bytes.saturating_sub(base.live_bytes);
    report.push(
        Check::at_least(
            PART,
            "peak rise covers a worker's session cache",
            peak_rise as f64,
            "bytes",
            held.saturating_sub(bound) as f64,
        )
        .detail(format!("largest cache {held} B, error bound {bound} B")),
    );
    let agree = scoped <= allocs && allocs - scoped <= 1_000;
    report.push(
        Check::holds(
            PART,
            "per-thread scopes add up to the global count",
            agree,
            "sum <= global <= sum + 1,000",
        )
        .detail(format!("scopes {scoped}, global {allocs}")),
    );
}

/// The service workload on `threads` threads, each inside a `count` scope; returns each
/// worker's outcome and scope, and the sum of the workers' CPU times.
fn service_pass(
    cfg: &ServiceConfig,
    threads: u64,
) -> (Vec<(ServiceOutcome, ScopeStats)>, Duration) {
    on_threads(threads, |w| mm_track::count(|| serve(cfg, w)))
}

/// Paired timings of bare and tracked passes.
struct Timing {
    /// `(tracked / bare - 1) * 100` of each round: the overhead in percent.
    overheads: Vec<f64>,
    bare: Duration,
    tracked: Duration,
    /// Wall time the rounds took.
    spent: Duration,
}

/// How long the paired rounds of one overhead check may run before it gives up deciding.
struct RoundBudget {
    max_rounds: usize,
    time_cap: Duration,
}

/// Runs `pass(false)` and `pass(true)` once per round, alternating which goes first, and
/// keeps each round's overhead: the two passes of a round run seconds apart at most, so they
/// see the same load from the rest of the machine. Stops as soon as the confidence interval
/// of the median overhead lies on one side of `limit_pct` (see [`crate::median`]), or at
/// the budget's round or time cap.
fn alternate(
    limit_pct: f64,
    budget: &RoundBudget,
    mut pass: impl FnMut(bool) -> Duration,
) -> Timing {
    let started = Instant::now();
    let mut t = Timing {
        overheads: Vec::with_capacity(budget.max_rounds),
        bare: Duration::ZERO,
        tracked: Duration::ZERO,
        spent: Duration::ZERO,
    };
    for r in 0..budget.max_rounds {
        let order = if r % 2 == 0 {
            [false, true]
        } else {
            [true, false]
        };
        let (mut bare, mut tracked) = (Duration::ZERO, Duration::ZERO);
        for tracking in order {
            let spent = pass(tracking);
            *(if tracking { &mut tracked } else { &mut bare }) = spent;
        }
        t.bare += bare;
        t.tracked += tracked;
        t.overheads
            .push((tracked.as_secs_f64() / bare.as_secs_f64().max(1e-9) - 1.0) * 100.0);
        let decided = !matches!(decide(&t.overheads, limit_pct), Verdict::Undecided(_));
        if decided || started.elapsed() >= budget.time_cap {
            break;
        }
    }
    t.spent = started.elapsed();
    t
}

/// The overhead check: PASS when the 99 % interval of the median overhead is at or below
/// `limit_pct`, FAIL when it is above (the claim is false), WARN with the interval when the
/// rounds could not tell within their budget. A quick run only warns.
fn overhead(name: &str, timing: &Timing, limit_pct: f64, quick: bool) -> Check {
    let verdict = decide(&timing.overheads, limit_pct);
    let ci = match verdict {
        Verdict::Holds(ci) | Verdict::Broken(ci) | Verdict::Undecided(Some(ci)) => Some(ci),
        Verdict::Undecided(None) => None,
    };
    let median = sample_median(&timing.overheads).unwrap_or(f64::NAN);
    let interval = ci.map_or_else(
        || "too few rounds for an interval".to_owned(),
        |ci| format!("99 % interval {:+.2} % .. {:+.2} %", ci.lo, ci.hi),
    );
    let mut check = Check::at_most(
        PART,
        name,
        (median * 100.0).round() / 100.0,
        "%",
        limit_pct,
    )
    .detail(format!(
        "median of {} paired rounds in {:.1} s, {interval}{}; CPU time bare {:.0} ms, tracked {:.0} ms",
        timing.overheads.len(),
        timing.spent.as_secs_f64(),
        if matches!(verdict, Verdict::Undecided(_)) {
            ": too noisy here to decide"
        } else {
            ""
        },
        timing.bare.as_secs_f64() * 1e3,
        timing.tracked.as_secs_f64() * 1e3
    ));
    check.status = match verdict {
        Verdict::Holds(_) => Status::Pass,
        Verdict::Broken(_) => Status::Fail,
        Verdict::Undecided(_) => Status::Warn,
    };
    check.soft(quick)
}
