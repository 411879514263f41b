//! mm-budget through the facade: 8 threads reserve, grow, shrink and release against one
//! manager's 64 MiB budget, asking for more than fits so that refusals happen. The budget's
//! own peak and the largest `used()` any thread observed must stay within the limit, and
//! everything is given back at the end.

use memory_manager::{MemoryConfig, MemoryManager, Reservation};

use super::{mb, on_threads};
use crate::Options;
use crate::check::{Check, Report, fmt_num};
use crate::workload::Rng;

const PART: &str = "mm-budget";

/// The budget of this part: 64 MiB.
pub const LIMIT: u64 = 64 << 20;

/// Reserving threads.
pub const THREADS: u64 = 8;

#[derive(Debug, Default, Clone, Copy)]
struct Tally {
    granted: u64,
    refused: u64,
    max_used: u64,
}

fn reserver(manager: &MemoryManager, w: u64, ops: u64) -> Tally {
    let budget = manager.budget();
    let mut rng = Rng::new(1_000 + w);
    let mut held: [Option<Reservation>; 8] = Default::default();
    let mut t = Tally::default();
    for _ in 0..ops {
        let slot = &mut held[rng.below(8) as usize];
        let size = (1 << 20) + rng.below(15 << 20);
        match slot {
            Some(r) => match rng.below(4) {
                0 => {
                    if r.try_grow(size / 4).is_ok() {
                        t.granted += 1;
                    } else {
                        t.refused += 1;
                    }
                }
                1 => {
                    r.shrink(r.bytes() / 2);
                }
                _ => *slot = None,
            },
            None => match budget.try_reserve(size) {
                Ok(r) => {
                    *slot = Some(r);
                    t.granted += 1;
                }
                Err(_) => t.refused += 1,
            },
        }
        t.max_used = t.max_used.max(budget.used());
    }
    t
}

/// Runs the budget check.
pub fn run(opts: &Options, report: &mut Report) {
    let ops = if opts.quick { 20_000 } else { 100_000 };
    let manager = match MemoryManager::new(
        MemoryConfig::default()
            .with_max_memory(LIMIT)
            .with_mmap_cache(LIMIT / 4),
    ) {
        Ok(m) => m,
        Err(e) => {
            report.push(
                Check::holds(PART, "budget: manager builds", false, "yes").detail(e.to_string()),
            );
            return;
        }
    };
    // Memory the process already holds (thread arenas are process-wide) is charged past the
    // limit whenever a sync finds it (held memory is counted, never refused). Charging it
    // now, before anything is reserved, keeps the threads' refusals the only bound on `used`:
    // a first charge made by a pressure handler's sync while the reservations fill the
    // budget would push it over the limit by that amount.
    manager.sync();
    let charged_before = manager.budget().used();
    let (tallies, _) = on_threads(THREADS, |w| reserver(&manager, w, ops));
    let budget = manager.budget();
    let stats = budget.stats();
    let max_seen = tallies.iter().map(|t| t.max_used).max().unwrap_or(0);
    let granted: u64 = tallies.iter().map(|t| t.granted).sum();
    let refused: u64 = tallies.iter().map(|t| t.refused).sum();
    let peak = budget.peak().max(max_seen);
    // Every reservation of the threads is gone; what the budget still counts must be the
    // manager's own charges for memory its components hold (synced by the report).
    let snapshot = manager.report();
    let held: u64 = snapshot.components.iter().map(|c| c.held_bytes).sum();
    let left = snapshot.budget.used_bytes;
    report.push(
        Check::at_most(
            PART,
            "budget never exceeded (peak used, 8 threads)",
            peak as f64,
            "bytes",
            LIMIT as f64,
        )
        .detail(format!(
            "{} operations: {} granted, {} refused (budget counts {} denied); peak {} of {}; {} B charged for held memory before the threads; after them {} B, of which components hold {} B; {} pressure handler runs",
            fmt_num((ops * THREADS) as f64),
            fmt_num(granted as f64),
            fmt_num(refused as f64),
            fmt_num(stats.denied as f64),
            mb(peak as f64),
            mb(LIMIT as f64),
            charged_before,
            left,
            held,
            snapshot.pressure.handler_runs
        ))
        .require(
            tallies.len() == THREADS as usize,
            "a reserving thread panicked",
        )
        .require(
            refused > 0 && stats.denied > 0,
            "no request was refused: the limit was never reached, so the check proves nothing",
        )
        .require(left == held, "reservations were not all given back"),
    );
}
