//! The whole stack in one cycle, on one long-lived manager: on each of 2 threads, requests
//! (arena scopes, pooled buffers, interned tokens), mmap cache lookups and chat turns; then
//! on the main thread the GGUF model loaded through the mmap cache and dequantized, and
//! streamed and dequantized again. [`Stack`] is what `--soak` repeats; the default run's
//! check here runs a few cycles and requires the live heap back at its baseline once the
//! stack is dropped (no leak anywhere in the composition).

use std::time::Instant;

use memory_manager::{MemoryConfig, MemoryManager};

use super::chat::{ChatWorker, TurnTally};
use super::gguf::{Model, mapped_pass, streamed_pass};
use super::mmap::{Files, touch};
use super::requests::{Tally, VOCABULARY, serve};
use super::{live_bytes, mb};
use crate::Options;
use crate::check::{Check, Report, fmt_num};
use crate::workload::{Rng, vocabulary};

const PART: &str = "whole stack";

/// Work per thread in one cycle.
#[derive(Debug, Clone, Copy)]
pub struct CycleSize {
    /// Requests per thread.
    pub requests: u64,
    /// mmap cache lookups per thread.
    pub maps: u64,
    /// Chat turns per thread.
    pub turns: u64,
}

impl CycleSize {
    /// The size for a run.
    pub fn for_run(opts: &Options) -> Self {
        if opts.quick {
            CycleSize {
                requests: 500,
                maps: 200,
                turns: 100,
            }
        } else {
            CycleSize {
                requests: 2_000,
                maps: 500,
                turns: 300,
            }
        }
    }
}

/// What one cycle did.
#[derive(Debug, Clone, Default)]
pub struct CycleTally {
    /// Requests served, over both threads.
    pub requests: Tally,
    /// Chat turns, over both threads.
    pub chat: TurnTally,
    /// mmap lookups.
    pub maps: u64,
    /// Values dequantized (mapped and streamed passes).
    pub values: u64,
}

/// A long-lived manager with everything a cycle needs.
#[derive(Debug)]
pub struct Stack {
    /// The manager every part goes through.
    pub manager: MemoryManager,
    vocab: Vec<String>,
    files: Files,
    model: Model,
    workers: Vec<(ChatWorker, Rng)>,
}

impl Stack {
    /// Builds the manager (1 GiB budget, 8 MiB mmap cache), writes the files and the model
    /// (or takes `--model`), and sets up one chat conversation per thread.
    ///
    /// # Errors
    /// Any setup failure, as text.
    pub fn new(opts: &Options) -> Result<Self, String> {
        let manager = MemoryManager::new(
            MemoryConfig::default()
                .with_max_memory(1 << 30)
                .with_mmap_cache(8 << 20),
        )
        .map_err(|e| e.to_string())?;
        let files = Files::create(96).map_err(|e| e.to_string())?;
        let model = Model::for_run(opts)?;
        let workers = (0..2)
            .map(|w| {
                ChatWorker::new(&manager, w)
                    .map(|c| (c, Rng::new(0xc7c1e ^ (w as u64 + 1))))
                    .map_err(|e| e.to_string())
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Stack {
            manager,
            vocab: vocabulary(VOCABULARY, 42),
            files,
            model,
            workers,
        })
    }

    /// Runs one cycle.
    ///
    /// # Errors
    /// The first failure of any part, as text.
    pub fn cycle(&mut self, size: CycleSize) -> Result<CycleTally, String> {
        let (manager, vocab, files) = (&self.manager, &self.vocab, &self.files);
        let results: Vec<Result<(Tally, TurnTally, u64), String>> = std::thread::scope(|s| {
            let handles: Vec<_> = self
                .workers
                .iter_mut()
                .map(|(chat, rng)| {
                    s.spawn(move || {
                        let mut t = Tally::default();
                        serve(manager, vocab, rng, size.requests, &mut t)
                            .map_err(|e| e.to_string())?;
                        let maps =
                            touch(manager, files, rng, size.maps).map_err(|e| e.to_string())?;
                        let mut c = TurnTally::default();
                        chat.turns(size.turns, &mut c).map_err(|e| e.to_string())?;
                        Ok((t, c, maps.gets))
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join()
                        .unwrap_or_else(|_| Err("a cycle thread panicked".to_owned()))
                })
                .collect()
        });
        let mut tally = CycleTally::default();
        for r in results {
            let (t, c, maps) = r?;
            tally.requests.requests += t.requests;
            tally.requests.arena_allocs += t.arena_allocs;
            tally.requests.buffers += t.buffers;
            tally.requests.interns += t.interns;
            tally.chat.turns += c.turns;
            tally.chat.events += c.events;
            tally.maps += maps;
        }
        let (mapped, model) = mapped_pass(&self.manager, &self.model.path)?;
        drop(model);
        let streamed = streamed_pass(&self.model.path, self.manager.budget())?;
        if streamed != mapped {
            return Err("streamed and mapped dequantization differ".to_owned());
        }
        tally.values = mapped.values + streamed.values;
        Ok(tally)
    }
}

/// Threads the tracker counts as alive (including this one). The live-heap figures are
/// exact only when this is 1: another live thread may hold up to `LIVE_SLACK_BYTES` of
/// unfolded deltas and fold them at any time (why `tests/quick_run.rs` has no libtest
/// harness thread).
fn live_threads() -> u64 {
    mm_track::snapshot().map_or(0, |s| s.threads)
}

/// Builds a stack, runs `cycles` cycles and drops it.
fn stack_cycles(opts: &Options, cycles: u32) -> Result<CycleTally, String> {
    let mut stack = Stack::new(opts)?;
    let size = CycleSize::for_run(opts);
    let mut total = CycleTally::default();
    for _ in 0..cycles {
        let t = stack.cycle(size)?;
        total.requests.requests += t.requests.requests;
        total.requests.arena_allocs += t.requests.arena_allocs;
        total.requests.buffers += t.requests.buffers;
        total.requests.interns += t.requests.interns;
        total.chat.turns += t.chat.turns;
        total.chat.events += t.chat.events;
        total.maps += t.maps;
        total.values += t.values;
    }
    Ok(total)
}

/// Runs the whole-stack leak check.
pub fn run(opts: &Options, report: &mut Report) {
    // One small cycle on a throwaway stack first: what is set up once per process (thread
    // registries, lazily built tables) then lies in the baseline.
    let warm = stack_cycles(opts, 1);
    let threads_at_base = live_threads();
    let base = live_bytes();
    let started = Instant::now();
    let cycles = if opts.quick { 2 } else { 3 };
    let result = warm.and_then(|_| stack_cycles(opts, cycles));
    let after = live_bytes();
    let threads_after = live_threads();
    let (tally, err) = match result {
        Ok(t) => (t, String::new()),
        Err(e) => (CycleTally::default(), e),
    };
    report.push(
        Check::equals(
            PART,
            "live heap back to baseline after whole-stack cycles",
            after as f64 - base as f64,
            "bytes",
            0.0,
        )
        .detail(format!(
            "{cycles} cycles in {:.1} s: {} requests ({} stack allocations), {} map lookups, {} chat turns, {} values dequantized; baseline {}, after {}; threads alive (exact only at 1) {threads_at_base} then {threads_after}",
            started.elapsed().as_secs_f64(),
            fmt_num(tally.requests.requests as f64),
            fmt_num(tally.requests.stack_allocs() as f64),
            fmt_num(tally.maps as f64),
            fmt_num(tally.chat.turns as f64),
            fmt_num(tally.values as f64),
            mb(base as f64),
            mb(after as f64)
        ))
        .require(err.is_empty(), &err),
    );
}
