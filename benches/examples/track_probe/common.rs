//! The allocator churn probe behind `benches/track-probe.sh`, shared by the
//! `track_probe_*` examples: each thread replaces boxed
//! slices of 16..=184 bytes in 64 slots, so every iteration is one alloc and (after the
//! first 64) one free. The example binaries `track_probe_system`, `track_probe_floor` and
//! `track_probe_tracked` run this same loop with `System`, `System` plus one thread-local
//! add per call, and `TrackedAlloc<System>` as the global allocator, so the figure includes everything a real program pays (the
//! `#[global_allocator]` shim, inlining, the thread-local access) and nothing else.

use std::hint::black_box;
use std::sync::{Arc, Barrier};
use std::time::Instant;

use mm_benches::thread_cpu_ns;

/// Slots each thread keeps; a slot's old box is freed when it is replaced.
pub(crate) const SLOTS: usize = 64;

/// Where the churn loop is compiled.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Shape {
    /// In the example binary, next to the `#[global_allocator]`: the allocator's code is
    /// inlined into the loop, so its size also changes how the loop itself is compiled.
    Inline,
    /// In the `mm_benches` library: the loop reaches the allocator through the
    /// `__rust_alloc` symbol, as allocations made in std and in other crates do.
    Extern,
}

/// One thread's loop: `iters` allocations, `iters - SLOTS` frees.
pub(crate) fn churn(iters: usize) -> usize {
    let mut slots: [Box<[u8]>; SLOTS] = std::array::from_fn(|_| Box::default());
    for i in 0..iters {
        let x = black_box(i as u8);
        slots[i % SLOTS] = vec![x; 16 + (i % 8) * 24].into_boxed_slice();
    }
    black_box(&slots);
    slots.iter().map(|s| s.len()).sum()
}

/// Runs `threads` threads of `iters` iterations each, started together, and returns the wall
/// time per iteration in nanoseconds (from the start signal to the last join, divided by
/// `iters`: the threads run side by side) and the mean thread CPU time per iteration.
pub(crate) fn run(threads: usize, iters: usize, shape: Shape) -> (f64, f64) {
    let start = Arc::new(Barrier::new(threads + 1));
    let workers: Vec<_> = (0..threads)
        .map(|_| {
            let start = Arc::clone(&start);
            std::thread::spawn(move || {
                start.wait();
                let c0 = thread_cpu_ns();
                black_box(match shape {
                    Shape::Inline => churn(iters),
                    Shape::Extern => mm_benches::churn_extern(iters),
                });
                thread_cpu_ns() - c0
            })
        })
        .collect();
    start.wait();
    let t0 = Instant::now();
    let cpu: u64 = workers
        .into_iter()
        .map(|w| w.join().expect("probe thread"))
        .sum();
    let wall = t0.elapsed().as_nanos() as f64 / iters as f64;
    (wall, cpu as f64 / (threads * iters) as f64)
}

/// The examples' `main`: `track_probe_X [THREADS] [ITERS] [inline|extern]` (defaults 1,
/// 10,000,000 and inline) prints one line: `wall_ns_per_iter=N.NNN cpu_ns_per_iter=N.NNN`.
pub(crate) fn main() {
    let mut args = std::env::args().skip(1);
    let threads = args.next().and_then(|a| a.parse().ok()).unwrap_or(1);
    let iters = args
        .next()
        .and_then(|a| a.parse().ok())
        .unwrap_or(10_000_000);
    let shape = match args.next().as_deref() {
        Some("extern") => Shape::Extern,
        _ => Shape::Inline,
    };
    let (wall, cpu) = run(threads, iters, shape);
    println!("wall_ns_per_iter={wall:.3} cpu_ns_per_iter={cpu:.3}");
}
