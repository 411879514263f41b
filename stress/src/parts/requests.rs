//! The whole stack serving requests through `memory_manager::MemoryManager` on 2 threads:
//! each request interns its model name, takes a response buffer from the pool (charged to
//! the budget), and in an arena scope picks its prompt's tokens, copies them into the arena,
//! interns them, builds a record per token, and writes the response into the buffer.
//!
//! That is about 100 allocations *through the stack* per request (arena allocations, pool
//! acquisitions, intern calls), so the default run makes over a million of them, and after
//! warm-up none of them reaches the heap: the check counts this thread's heap calls with
//! `mm_track::count` over the measured requests.

use std::sync::Barrier;

use memory_manager::{MemoryConfig, MemoryError, MemoryManager};

use super::{live_bytes, on_threads};
use crate::Options;
use crate::check::{Check, Report, fmt_num};
use crate::workload::{Rng, fnv, vocabulary};

const PART: &str = "whole stack";

/// Model names a request may name (interned once, then looked up).
const MODELS: [&str; 4] = [
    "gemma-3-270m",
    "qwen2.5-0.5b-instruct",
    "llama-3.2-1b",
    "nomic-embed-text-v1.5",
];

/// Response buffer sizes: 1 request in 200 takes the first, 19 the second, the rest the
/// third (in the default tiers: 1 MiB, 64 KiB and 4 KiB buffers).
const BUFFER_SIZES: [usize; 3] = [512 * 1024, 32 * 1024, 2048];

/// Words in the requests' vocabulary.
pub const VOCABULARY: usize = 4_000;

/// What one worker did.
#[derive(Debug, Clone, Copy, Default)]
pub struct Tally {
    /// Requests served.
    pub requests: u64,
    /// Allocations made from the arena.
    pub arena_allocs: u64,
    /// Buffers taken from the pool.
    pub buffers: u64,
    /// Intern calls.
    pub interns: u64,
    /// A checksum of every response.
    pub checksum: u64,
}

impl Tally {
    /// Allocations through the stack: arena allocations, buffers and intern calls.
    pub fn stack_allocs(&self) -> u64 {
        self.arena_allocs + self.buffers + self.interns
    }

    fn add(&mut self, o: &Tally) {
        self.requests += o.requests;
        self.arena_allocs += o.arena_allocs;
        self.buffers += o.buffers;
        self.interns += o.interns;
        self.checksum = self.checksum.wrapping_add(o.checksum);
    }
}

/// A per-token record built in the arena.
#[derive(Debug, Clone, Copy)]
struct TokenRecord {
    position: u32,
    length: u32,
    weight: f32,
}

/// Serves `requests` requests through `manager` (see the module docs), adding to `tally`.
///
/// # Errors
/// A budget, pool or arena error (none is expected with a sane configuration).
pub fn serve(
    manager: &MemoryManager,
    vocab: &[String],
    rng: &mut Rng,
    requests: u64,
    tally: &mut Tally,
) -> Result<(), MemoryError> {
    let interner = manager.interner();
    for _ in 0..requests {
        let n = 16 + rng.below(32) as usize;
        let model = interner.get_or_intern(MODELS[rng.below(MODELS.len() as u64) as usize]);
        let size = match rng.below(200) {
            0 => BUFFER_SIZES[0],
            1..=19 => BUFFER_SIZES[1],
            _ => BUFFER_SIZES[2],
        };
        let mut out = manager.buffer(size)?;
        let checksum = manager.scope(|arena| -> Result<u64, MemoryError> {
            let ids = arena.alloc_slice_fill_with(n, |_| rng.skewed(vocab.len()))?;
            let words: &mut [&str] = arena.alloc_slice_fill_with(n, |_| "")?;
            for (w, &id) in words.iter_mut().zip(ids.iter()) {
                *w = arena.alloc_str(&vocab[id])?;
            }
            let syms = arena.alloc_slice_fill_with(n, |i| interner.get_or_intern(words[i]))?;
            let mut weight = 0f32;
            for (i, w) in words.iter().enumerate() {
                let rec = arena.alloc(TokenRecord {
                    position: i as u32,
                    length: w.len() as u32,
                    weight: 1.0 / (1.0 + i as f32),
                })?;
                weight += rec.weight * rec.length as f32 + rec.position as f32 * 1e-3;
            }
            out.extend_from_slice(b"data: {\"model\":\"");
            out.extend_from_slice(interner.resolve(model).as_bytes());
            out.extend_from_slice(b"\",\"text\":\"");
            for &s in syms.iter() {
                let t = interner.resolve(s).as_bytes();
                if out.len() + t.len() + 8 > out.capacity() {
                    break;
                }
                out.extend_from_slice(t);
                out.extend_from_slice(b" ");
            }
            out.extend_from_slice(b"\"}\n\n");
            Ok(fnv(&out) ^ u64::from(weight.to_bits()))
        })?;
        tally.requests += 1;
        tally.arena_allocs += 3 + 2 * n as u64;
        tally.buffers += 1;
        tally.interns += 1 + n as u64;
        tally.checksum = tally.checksum.wrapping_add(checksum);
    }
    Ok(())
}

struct Plan {
    warm_up: u64,
    measured: u64,
    min_stack_allocs: f64,
}

impl Plan {
    fn new(opts: &Options) -> Self {
        if opts.quick {
            Plan {
                warm_up: 200,
                measured: 1_000,
                min_stack_allocs: 200_000.0,
            }
        } else {
            Plan {
                warm_up: 500,
                measured: 5_000,
                min_stack_allocs: 1_000_000.0,
            }
        }
    }
}

/// One worker: warm-up requests, then the measured ones inside a `count` scope.
fn worker(
    manager: &MemoryManager,
    vocab: &[String],
    w: u64,
    plan: &Plan,
    together: &Barrier,
) -> Result<(Tally, mm_track::ScopeStats), MemoryError> {
    let mut rng = Rng::new(0x5eed ^ (w + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15));
    let mut tally = Tally::default();
    // A service loads its vocabulary once; intern it all, so that the measured requests
    // meet no word for the first time.
    for word in vocab {
        manager.interner().get_or_intern(word);
    }
    // Warm the pool for the worst case of the steady state: both threads holding a buffer
    // of every size at once. Otherwise the first time the rare 512 KiB requests of both
    // threads overlap (which may be late in the run) the pool misses and allocates.
    let held: Result<Vec<_>, _> = BUFFER_SIZES.iter().map(|&s| manager.buffer(s)).collect();
    together.wait();
    drop(held?);
    serve(manager, vocab, &mut rng, plan.warm_up, &mut tally)?;
    let (r, stats) = mm_track::count(|| serve(manager, vocab, &mut rng, plan.measured, &mut tally));
    r?;
    Ok((tally, stats))
}

/// Runs the request checks.
pub fn run(opts: &Options, report: &mut Report) {
    let plan = Plan::new(opts);
    let vocab = vocabulary(VOCABULARY, 42);
    // A first small pass with a throwaway manager, so what is set up once per process is
    // in the baseline.
    if let Ok(m) = MemoryManager::new(MemoryConfig::default().with_max_memory(1 << 30)) {
        let small = Plan {
            warm_up: 10,
            measured: 10,
            min_stack_allocs: 0.0,
        };
        let together = Barrier::new(2);
        let _ = on_threads(2, |w| worker(&m, &vocab, w, &small, &together).map(|_| ()));
    }
    let base = live_bytes();
    let manager = match MemoryManager::new(MemoryConfig::default().with_max_memory(1 << 30)) {
        Ok(m) => m,
        Err(e) => {
            report.push(
                Check::holds(PART, "requests: manager builds", false, "yes").detail(e.to_string()),
            );
            return;
        }
    };
    let together = Barrier::new(2);
    let (results, cpu) = on_threads(2, |w| worker(&manager, &vocab, w, &plan, &together));
    let mut total = Tally::default();
    let mut heap = mm_track::ScopeStats::default();
    let mut errors = Vec::new();
    for r in results {
        match r {
            Ok((t, s)) => {
                total.add(&t);
                heap.allocs += s.allocs;
                heap.reallocs += s.reallocs;
                heap.deallocs += s.deallocs;
            }
            Err(e) => errors.push(e.to_string()),
        }
    }
    // Measure the live heap before any row is built (rows allocate their text).
    let pool = manager.buffer_pool().stats();
    drop(manager);
    let after = live_bytes();
    let ok = errors.is_empty();
    let stack = total.stack_allocs();
    report.push(
        Check::at_least(
            PART,
            "allocations through the stack, 2 threads",
            stack as f64,
            "allocs",
            plan.min_stack_allocs,
        )
        .detail(format!(
            "{} requests: {} arena allocations, {} pooled buffers, {} intern calls; {:.0} ns of CPU per allocation; checksum {:x}",
            fmt_num(total.requests as f64),
            fmt_num(total.arena_allocs as f64),
            fmt_num(total.buffers as f64),
            fmt_num(total.interns as f64),
            cpu.as_secs_f64() * 1e9 / stack.max(1) as f64,
            total.checksum
        ))
        .require(ok, &errors.join("; ")),
    );
    let measured = plan.measured * 2;
    report.push(
        Check::equals(
            PART,
            "heap allocations per request at steady state",
            (heap.allocs + heap.reallocs) as f64 / measured as f64,
            "allocs",
            0.0,
        )
        .detail(format!(
            "{} requests after {} warm-up requests per thread: {} allocs, {} reallocs, {} frees",
            fmt_num(measured as f64),
            plan.warm_up,
            heap.allocs,
            heap.reallocs,
            heap.deallocs
        ))
        .require(
            mm_track::is_active(),
            "the tracker is not the global allocator",
        )
        .require(ok, "a worker failed"),
    );
    let taken = pool.hits + pool.misses;
    report.push(
        Check::above(
            PART,
            "buffer pool reuse (hits / acquisitions)",
            pool.hits as f64 * 100.0 / taken.max(1) as f64,
            "%",
            95.0,
        )
        .detail(format!(
            "{} hits, {} misses, {} returns, {} discards, {} B held",
            pool.hits, pool.misses, pool.returns, pool.discards, pool.held_bytes
        ))
        .require(
            taken >= total.buffers,
            "the pool saw fewer acquisitions than made",
        ),
    );
    report.push(
        Check::equals(
            PART,
            "live heap back to baseline after requests (manager dropped)",
            after as f64 - base as f64,
            "bytes",
            0.0,
        )
        .detail(format!("baseline {base} B, after {after} B")),
    );
}
