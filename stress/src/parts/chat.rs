//! mm-llm's chat-turn simulation (`mm_llm::simulate::ChatTurnSim`) on the manager's buffer
//! pool and budget, on 2 threads: each turn appends a user message (every fourth turn also
//! a tool call and its long result), fits the conversation into a 16,000-token window,
//! assembles the prompt into a pooled buffer, parses a 50-event SSE response fed in uneven
//! chunks, appends the reply and looks up or caches one embedding (charged to the budget).
//!
//! After warm-up (once the fit has started cutting history and every buffer has reached
//! its size) a turn must make no heap allocation: `mm_track::count` over the measured turns.

use memory_manager::{MemoryConfig, MemoryManager};
use mm_llm::LlmError;
use mm_llm::simulate::ChatTurnSim;
pub use mm_llm::simulate::STREAM_EVENTS;

use super::on_threads;
use crate::Options;
use crate::check::{Check, Report, fmt_num};

const PART: &str = "mm-llm";

/// The model window, in tokens (the simulation's smallest: turns cut history sooner).
const WINDOW: u32 = 16_000;

/// One conversation: mm-llm's [`ChatTurnSim`] on the manager's pool and budget.
#[derive(Debug)]
pub struct ChatWorker {
    sim: ChatTurnSim,
}

/// What a batch of turns did.
#[derive(Debug, Clone, Copy, Default)]
pub struct TurnTally {
    /// Turns run.
    pub turns: u64,
    /// SSE events parsed.
    pub events: u64,
    /// History items the fits dropped.
    pub dropped: u64,
    /// Embedding cache hits.
    pub hits: u64,
    /// Prompt bytes assembled.
    pub prompt_bytes: u64,
}

impl ChatWorker {
    /// A conversation on `manager`'s buffer pool with an embedding cache charged to its
    /// budget; `seed` varies the messages between workers.
    ///
    /// # Errors
    /// A component refusing its configuration (not expected).
    pub fn new(manager: &MemoryManager, seed: usize) -> Result<Self, LlmError> {
        let sim = ChatTurnSim::on(
            manager.buffer_pool().clone(),
            manager.budget().clone(),
            WINDOW,
            seed,
        )?;
        Ok(Self { sim })
    }

    /// Runs `turns` turns, adding to `tally`.
    ///
    /// # Errors
    /// Whatever a component returns (none is expected).
    pub fn turns(&mut self, turns: u64, tally: &mut TurnTally) -> Result<(), LlmError> {
        for _ in 0..turns {
            let t = self.sim.turn()?;
            tally.turns += 1;
            tally.events += t.events as u64;
            tally.dropped += u64::from(t.dropped);
            tally.hits += u64::from(t.embedding_hit);
            tally.prompt_bytes += t.prompt_bytes as u64;
        }
        Ok(())
    }
}

/// Runs the chat-turn check.
pub fn run(opts: &Options, report: &mut Report) {
    let (warm_up, measured) = if opts.quick {
        (1_000, 500)
    } else {
        (2_000, 3_000)
    };
    let manager = match MemoryManager::new(MemoryConfig::default().with_max_memory(1 << 30)) {
        Ok(m) => m,
        Err(e) => {
            report.push(
                Check::holds(PART, "chat: manager builds", false, "yes").detail(e.to_string()),
            );
            return;
        }
    };
    let (results, cpu) = on_threads(2, |w| {
        let mut worker = ChatWorker::new(&manager, w as usize)?;
        let mut warm = TurnTally::default();
        worker.turns(warm_up, &mut warm)?;
        let mut tally = TurnTally::default();
        let (r, stats) = mm_track::count(|| worker.turns(measured, &mut tally));
        r?;
        Ok::<_, LlmError>((warm, tally, stats))
    });
    let mut warm = TurnTally::default();
    let mut tally = TurnTally::default();
    let mut heap = mm_track::ScopeStats::default();
    let mut errors = Vec::new();
    for r in results {
        match r {
            Ok((w, t, s)) => {
                warm.dropped += w.dropped;
                tally.turns += t.turns;
                tally.events += t.events;
                tally.dropped += t.dropped;
                tally.hits += t.hits;
                tally.prompt_bytes += t.prompt_bytes;
                heap.allocs += s.allocs;
                heap.reallocs += s.reallocs;
                heap.deallocs += s.deallocs;
            }
            Err(e) => errors.push(e.to_string()),
        }
    }
    let turns = measured * 2;
    report.push(
        Check::equals(
            PART,
            "heap allocations per chat turn at steady state",
            (heap.allocs + heap.reallocs) as f64 / turns as f64,
            "allocs",
            0.0,
        )
        .detail(format!(
            "{} turns after {} warm-up turns per thread ({:.0} us of CPU per turn): {} allocs, {} reallocs, {} frees; {} SSE events, {} history items cut, {} embedding hits, {} of prompts",
            fmt_num(turns as f64),
            fmt_num(warm_up as f64),
            cpu.as_secs_f64() * 1e6 / ((warm_up + measured) * 2) as f64,
            heap.allocs,
            heap.reallocs,
            heap.deallocs,
            fmt_num(tally.events as f64),
            fmt_num(tally.dropped as f64),
            fmt_num(tally.hits as f64),
            super::mb(tally.prompt_bytes as f64)
        ))
        .require(errors.is_empty(), &errors.join("; "))
        .require(mm_track::is_active(), "the tracker is not the global allocator")
        .require(
            tally.events == turns * STREAM_EVENTS as u64,
            "not every streamed event was parsed",
        )
        .require(
            warm.dropped > 0 && tally.dropped > 0,
            "the fit never cut history: not a steady state",
        )
        .require(
            tally.hits > 0 && tally.hits < turns,
            "the embedding cache did not both hit and miss",
        ),
    );
}
