//! The outside-probe shape for pools: one process, the cases interleaved round by round
//! (so a slow phase of the machine hits every case alike), a fixed number of iterations per
//! case and round, the median over rounds printed per case, at 1 and 2 threads.
//!
//! One iteration = acquire a 4 KiB `Vec<u8>` (or allocate 4 KiB), write one byte, return
//! (or free). At 2 threads both threads run the same case at once; the figure is the time
//! per iteration of one thread.
//!
//! Run: `cargo bench -p mm-benches --bench pool_probe` (`PROBE_ITERS`, default 2,000,000,
//! and `PROBE_ROUNDS`, default 7, change the shape; `PROBE_CASE=text` runs only the cases
//! whose name contains `text`, and `PROBE_THREADS=1` only one thread count).

use std::alloc::{GlobalAlloc, Layout};
use std::hint::black_box;
use std::time::Instant;

use lockfree_object_pool::LinearObjectPool;
use mimalloc::MiMalloc;
use mm_pool::{BufferPool, BufferPoolConfig, ObjectPool};

const BUF: usize = 4096;

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Nanoseconds per iteration of `op` on each of `threads` threads at once (the slowest).
fn time(threads: usize, iters: u64, op: &(dyn Fn() + Sync)) -> f64 {
    let barrier = std::sync::Barrier::new(threads);
    let worst = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                s.spawn(|| {
                    // Warm this thread's caches (the pools' per-thread records included).
                    for _ in 0..iters / 100 {
                        op();
                    }
                    barrier.wait();
                    let start = Instant::now();
                    for _ in 0..iters {
                        op();
                    }
                    start.elapsed()
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("probe thread"))
            .max()
            .unwrap_or_default()
    });
    worst.as_nanos() as f64 / iters as f64
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

fn main() {
    // `cargo bench` passes `--bench`; a filter argument is not supported here.
    let iters = env("PROBE_ITERS", 2_000_000);
    let rounds = env("PROBE_ROUNDS", 7) as usize;
    let mm =
        ObjectPool::with_reset(64, || Vec::<u8>::with_capacity(BUF), Vec::clear).expect("pool");
    // The same hook with its type in the pool's type, so the guards' drop inlines it.
    let typed = ObjectPool::with_typed_reset(64, || Vec::<u8>::with_capacity(BUF), Vec::clear)
        .expect("pool");
    let buffers = BufferPool::new(BufferPoolConfig::default()).expect("pool");
    let lockfree = LinearObjectPool::new(|| Vec::<u8>::with_capacity(BUF), Vec::clear);
    let cases: [(&str, &(dyn Fn() + Sync)); 8] = [
        ("mm_pool ObjectPool acquire_ref", &|| {
            let mut v = mm.acquire_ref();
            v.push(1);
            black_box(&v);
        }),
        ("mm_pool ObjectPool acquire (owned guard)", &|| {
            let mut v = mm.acquire();
            v.push(1);
            black_box(&v);
        }),
        ("mm_pool ObjectPool typed-reset acquire_ref", &|| {
            let mut v = typed.acquire_ref();
            v.push(1);
            black_box(&v);
        }),
        ("mm_pool ObjectPool typed-reset acquire (owned)", &|| {
            let mut v = typed.acquire();
            v.push(1);
            black_box(&v);
        }),
        ("mm_pool BufferPool acquire_ref 4 KiB", &|| {
            let mut b = buffers.acquire_ref(BUF);
            b.extend_from_slice(&[1]);
            black_box(&b);
        }),
        ("mm_pool BufferPool acquire 4 KiB (owned)", &|| {
            let mut b = buffers.acquire(BUF);
            b.extend_from_slice(&[1]);
            black_box(&b);
        }),
        ("lockfree-object-pool LinearObjectPool", &|| {
            let mut v = lockfree.pull();
            v.push(1);
            black_box(&v);
        }),
        ("mimalloc 4 KiB alloc+free", &mimalloc_round_trip),
    ];
    let filter = std::env::var("PROBE_CASE").unwrap_or_default();
    let cases: Vec<_> = cases
        .into_iter()
        .filter(|(name, _)| name.contains(filter.as_str()))
        .collect();
    let only = env("PROBE_THREADS", 0) as usize;
    println!("pool probe: {iters} iterations per case and round, {rounds} rounds, median ns/iter");
    for threads in [1, 2].into_iter().filter(|&t| only == 0 || t == only) {
        let mut samples = vec![Vec::with_capacity(rounds); cases.len()];
        for _ in 0..rounds {
            for (i, (_, op)) in cases.iter().enumerate() {
                samples[i].push(time(threads, iters, *op));
            }
        }
        println!("{threads} thread(s):");
        for ((name, _), s) in cases.iter().zip(&mut samples) {
            s.sort_by(f64::total_cmp);
            let (lo, med, hi) = (s[0], s[s.len() / 2], s[s.len() - 1]);
            println!("  {name:<48} {med:>7.2} ns   (min {lo:.2}, max {hi:.2})");
        }
    }
}
