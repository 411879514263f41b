//! The outside-probe shape for pools: one process, the cases interleaved round by round
//! (so a slow phase of the machine hits every case alike), a fixed number of iterations per
//! case and round, at 1 and 2 threads; per case the median time over rounds, and per pair
//! of cases the median and range of the ratio *within each round*.
//!
//! One iteration = acquire a 4 KiB `Vec<u8>` (or allocate 4 KiB), write one byte, return
//! (or free). At 2 threads both threads run the same case at once; the figure is the time
//! per iteration of the slower thread.
//!
//! The steady state of a long-lived thread, measured honestly on a shared machine:
//! - the threads are spawned once per thread count and run every round (a service's worker
//!   threads live long; a thread spawned per round would measure its first uses of the
//!   pools and a fresh stack each time);
//! - each case's loop is compiled for that case (a generic loop, so the round trip is
//!   inlined into it as into a caller's code; a call through `dyn Fn` per iteration would
//!   add the same fixed cost to every case and pull every ratio towards 1);
//! - time is the thread's CPU time (`CLOCK_THREAD_CPUTIME_ID`), so a slice given to another
//!   process on these shared cores is not counted (`PROBE_CLOCK=wall` for wall time);
//! - rounds are short (200,000 iterations, about 1 ms) and many, and each ratio is taken
//!   within one round, between cases run a few milliseconds apart: on this VM the speed of a
//!   core changes from one stretch of milliseconds to the next (docs/benchmarks.md), and a
//!   ratio of two medians taken over different stretches mixes those speeds.
//!
//! Run: `cargo bench -p mm-benches --bench pool_probe` (`PROBE_ITERS`, default 200,000 per
//! case and round, and `PROBE_ROUNDS`, default 31, change the shape; `PROBE_CASE=text` runs
//! only the cases whose name contains `text`, and `PROBE_THREADS=1` only one thread count).
//! Each thread first runs `PROBE_ITERS / 100` warm-up iterations of every case
//! (`benches/pool-cachegrind.sh` relies on that).

use std::alloc::{GlobalAlloc, Layout};
use std::hint::black_box;
use std::sync::Barrier;
use std::time::Instant;

use lockfree_object_pool::LinearObjectPool;
use mimalloc::MiMalloc;
use mm_benches::{Case, Loop, thread_cpu_ns};
use mm_pool::{BufferPool, BufferPoolConfig, ObjectPool};

const BUF: usize = 4096;

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// This thread's CPU time (or the wall clock), in nanoseconds.
fn now_ns(wall: bool, origin: Instant) -> u64 {
    if wall {
        return origin.elapsed().as_nanos() as u64;
    }
    thread_cpu_ns()
}

/// `samples[case][round]`: ns per iteration of the slowest of `threads` long-lived threads.
fn measure(threads: usize, iters: u64, rounds: usize, cases: &[&dyn Case]) -> Vec<Vec<f64>> {
    let wall = std::env::var("PROBE_CLOCK").is_ok_and(|c| c == "wall");
    let barrier = Barrier::new(threads);
    let origin = Instant::now();
    let worker = || {
        for case in cases {
            // Warm this thread's caches (the pools' per-thread records included).
            case.run(iters / 100);
        }
        let mut mine = vec![Vec::with_capacity(rounds); cases.len()];
        for round in 0..rounds {
            // A different case first in each round, so no case always follows the same one.
            for k in 0..cases.len() {
                let i = (k + round) % cases.len();
                barrier.wait();
                let start = now_ns(wall, origin);
                cases[i].run(iters);
                mine[i].push((now_ns(wall, origin) - start) as f64 / iters as f64);
            }
        }
        mine
    };
    std::thread::scope(|s| {
        let helpers: Vec<_> = (1..threads).map(|_| s.spawn(worker)).collect();
        let mut worst = worker();
        for h in helpers {
            let theirs = h.join().expect("probe thread");
            for (w, t) in worst.iter_mut().flatten().zip(theirs.iter().flatten()) {
                *w = w.max(*t);
            }
        }
        worst
    })
}

fn mimalloc_round_trip() {
    let layout = Layout::from_size_align(BUF, 8).expect("layout");
    // SAFETY: `layout` has a non-zero size; the pointer is checked, written within bounds
    // and freed with the same allocator and layout.
    unsafe {
        let p = MiMalloc.alloc(layout);
        assert!(!p.is_null());
        p.write(1);
        black_box(p);
        MiMalloc.dealloc(p, layout);
    }
}

fn sorted(mut v: Vec<f64>) -> Vec<f64> {
    v.sort_by(f64::total_cmp);
    v
}

fn main() {
    // `cargo bench` passes `--bench`; a filter argument is not supported here.
    let iters = env("PROBE_ITERS", 200_000);
    let rounds = env("PROBE_ROUNDS", 31).max(1) as usize;
    let mm =
        ObjectPool::with_reset(64, || Vec::<u8>::with_capacity(BUF), Vec::clear).expect("pool");
    // The same hook with its type in the pool's type, so the guards' drop inlines it.
    let typed = ObjectPool::with_typed_reset(64, || Vec::<u8>::with_capacity(BUF), Vec::clear)
        .expect("pool");
    let buffers = BufferPool::new(BufferPoolConfig::default()).expect("pool");
    let lockfree = LinearObjectPool::new(|| Vec::<u8>::with_capacity(BUF), Vec::clear);
    let all: [(&str, &dyn Case); 8] = [
        (
            "mm_pool ObjectPool acquire_ref",
            &Loop(|| {
                let mut v = mm.acquire_ref();
                v.push(1);
                black_box(&v);
            }),
        ),
        (
            "mm_pool ObjectPool acquire (owned guard)",
            &Loop(|| {
                let mut v = mm.acquire();
                v.push(1);
                black_box(&v);
            }),
        ),
        (
            "mm_pool ObjectPool typed-reset acquire_ref",
            &Loop(|| {
                let mut v = typed.acquire_ref();
                v.push(1);
                black_box(&v);
            }),
        ),
        (
            "mm_pool ObjectPool typed-reset acquire (owned)",
            &Loop(|| {
                let mut v = typed.acquire();
                v.push(1);
                black_box(&v);
            }),
        ),
        (
            "mm_pool BufferPool acquire_ref 4 KiB",
            &Loop(|| {
                let mut b = buffers.acquire_ref(BUF);
                b.extend_from_slice(&[1]);
                black_box(&b);
            }),
        ),
        (
            "mm_pool BufferPool acquire 4 KiB (owned)",
            &Loop(|| {
                let mut b = buffers.acquire(BUF);
                b.extend_from_slice(&[1]);
                black_box(&b);
            }),
        ),
        (
            "lockfree-object-pool LinearObjectPool",
            &Loop(|| {
                let mut v = lockfree.pull();
                v.push(1);
                black_box(&v);
            }),
        ),
        ("mimalloc 4 KiB alloc+free", &Loop(mimalloc_round_trip)),
    ];
    let filter = std::env::var("PROBE_CASE").unwrap_or_default();
    let (names, cases): (Vec<&str>, Vec<&dyn Case>) = all
        .into_iter()
        .filter(|(name, _)| name.contains(filter.as_str()))
        .unzip();
    // (numerator, denominator, target: at most this): ratios within each round.
    let pairs: [(&str, &str, Option<f64>); 7] = [
        ("typed-reset acquire_ref", "lockfree", Some(0.5)),
        ("ObjectPool acquire_ref", "lockfree", Some(0.5)),
        (
            "typed-reset acquire (owned)",
            "typed-reset acquire_ref",
            Some(1.5),
        ),
        (
            "ObjectPool acquire (owned",
            "ObjectPool acquire_ref",
            Some(1.5),
        ),
        ("typed-reset acquire_ref", "mimalloc", Some(1.0)),
        ("typed-reset acquire (owned)", "mimalloc", Some(1.0)),
        ("BufferPool acquire 4 KiB", "BufferPool acquire_ref", None),
    ];
    let find = |part: &str| names.iter().position(|n| n.contains(part));
    let only = env("PROBE_THREADS", 0) as usize;
    let clock = if std::env::var("PROBE_CLOCK").is_ok_and(|c| c == "wall") {
        "wall time"
    } else {
        "thread CPU time"
    };
    println!(
        "pool probe: {iters} iterations per case and round, {rounds} rounds, {clock}, \
         long-lived threads"
    );
    for threads in [1, 2].into_iter().filter(|&t| only == 0 || t == only) {
        let samples = measure(threads, iters, rounds, &cases);
        println!("{threads} thread(s): ns per iteration, median (min, max) over rounds");
        for (name, s) in names.iter().zip(&samples) {
            let s = sorted(s.clone());
            let (lo, med, hi) = (s[0], s[s.len() / 2], s[s.len() - 1]);
            println!("  {name:<48} {med:>7.2} ns   (min {lo:.2}, max {hi:.2})");
        }
        println!("{threads} thread(s): ratio within a round, median [quartiles] (min-max)");
        for (a, b, target) in pairs {
            let (Some(i), Some(j)) = (find(a), find(b)) else {
                continue;
            };
            let r = sorted(
                samples[i]
                    .iter()
                    .zip(&samples[j])
                    .map(|(x, y)| x / y)
                    .collect(),
            );
            let q = |f: f64| r[((r.len() - 1) as f64 * f).round() as usize];
            let met = target.map_or(String::new(), |t| {
                let n = r.iter().filter(|&&x| x <= t).count();
                format!("   {n}/{} rounds at most {t}", r.len())
            });
            println!(
                "  {:<60} {:.2} [{:.2}-{:.2}] ({:.2}-{:.2}){met}",
                format!("{a} / {b}"),
                q(0.5),
                q(0.25),
                q(0.75),
                r[0],
                r[r.len() - 1],
            );
        }
    }
}
