//! Pool acquire+return vs a fresh allocation (system allocator and mimalloc) vs the
//! `lockfree-object-pool` and `object-pool` crates, at 1 and 2 threads.
//!
//! One iteration is one acquire, a one-byte write, and the return (or alloc + free). At 2
//! threads both threads run the loop at once and the time is per iteration of one thread,
//! so contention shows up as a higher figure. Run: see docs/benchmarks.md, section mm-pool.

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use criterion::{Criterion, criterion_group, criterion_main};
use lockfree_object_pool::LinearObjectPool;
use mimalloc::MiMalloc;
use mm_benches::{Case, Loop};
use mm_pool::{BufferPool, BufferPoolConfig, ObjectPool};

const BUF: usize = 4096;

/// Runs `op` `iters` times on each of `threads` threads at once; wall time of the slowest.
/// One thread: the bench's own (long-lived) thread.
fn run_threads(threads: usize, iters: u64, op: &dyn Case) -> Duration {
    if threads == 1 {
        let start = Instant::now();
        op.run(iters);
        return start.elapsed();
    }
    let barrier = std::sync::Barrier::new(threads);
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                s.spawn(|| {
                    barrier.wait();
                    let start = Instant::now();
                    op.run(iters);
                    start.elapsed()
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap())
            .max()
            .unwrap_or_default()
    })
}

/// Allocates and frees `size` bytes with `alloc`, touching one byte.
fn raw_round_trip(alloc: &dyn GlobalAlloc, size: usize) {
    let layout = Layout::from_size_align(size, 8).unwrap();
    // SAFETY: `layout` has a non-zero size; the pointer is checked, written within bounds
    // and freed with the same allocator and layout.
    unsafe {
        let p = alloc.alloc(layout);
        assert!(!p.is_null());
        p.write(1);
        black_box(p);
        alloc.dealloc(p, layout);
    }
}

fn object_pools(c: &mut Criterion) {
    let mm = ObjectPool::with_reset(64, || Vec::<u8>::with_capacity(BUF), Vec::clear).unwrap();
    // The same hook as part of the pool's type: the guards' drop inlines it.
    let typed =
        ObjectPool::with_typed_reset(64, || Vec::<u8>::with_capacity(BUF), Vec::clear).unwrap();
    let lockfree = LinearObjectPool::new(|| Vec::<u8>::with_capacity(BUF), Vec::clear);
    let objpool = object_pool::Pool::new(64, || Vec::<u8>::with_capacity(BUF));
    for threads in [1, 2] {
        let mut group = c.benchmark_group(format!("pool/object_vec4k/{threads}t"));
        let cases: [(&str, &dyn Case); 8] = [
            (
                "mm_pool_object_typed_arc_guard",
                &Loop(|| {
                    let mut v = typed.acquire();
                    v.push(1);
                    black_box(&v);
                }),
            ),
            (
                "mm_pool_object_typed_ref_guard",
                &Loop(|| {
                    let mut v = typed.acquire_ref();
                    v.push(1);
                    black_box(&v);
                }),
            ),
            (
                "mm_pool_object_arc_guard",
                &Loop(|| {
                    let mut v = mm.acquire();
                    v.push(1);
                    black_box(&v);
                }),
            ),
            (
                "mm_pool_object_ref_guard",
                &Loop(|| {
                    let mut v = mm.acquire_ref();
                    v.push(1);
                    black_box(&v);
                }),
            ),
            (
                "lockfree_object_pool_linear",
                &Loop(|| {
                    let mut v = lockfree.pull();
                    v.push(1);
                    black_box(&v);
                }),
            ),
            (
                "object_pool_crate",
                &Loop(|| {
                    let mut v = objpool.pull(|| Vec::with_capacity(BUF));
                    v.clear();
                    v.push(1);
                    black_box(&v);
                }),
            ),
            (
                "fresh_vec_system",
                &Loop(|| {
                    let mut v = Vec::<u8>::with_capacity(BUF);
                    v.push(1);
                    black_box(&v);
                }),
            ),
            (
                "fresh_raw_mimalloc",
                &Loop(|| raw_round_trip(&MiMalloc, BUF)),
            ),
        ];
        for (name, op) in cases {
            group.bench_function(name, |b| {
                b.iter_custom(|iters| run_threads(threads, iters, op))
            });
        }
        group.finish();
    }
}

fn buffer_pools(c: &mut Criterion) {
    let cached = BufferPool::new(BufferPoolConfig::default()).unwrap();
    let fifo = BufferPool::new(BufferPoolConfig::default().with_thread_cache(false)).unwrap();
    for (size, label) in [(BUF, "4k"), (1 << 20, "1m")] {
        for threads in [1, 2] {
            let mut group = c.benchmark_group(format!("pool/buffer_{label}/{threads}t"));
            let cases: [(&str, &dyn Case); 6] = [
                (
                    "mm_buffer_pool_lifo_arc_guard",
                    &Loop(|| {
                        let mut b = cached.acquire(size);
                        b.extend_from_slice(&[1]);
                        black_box(&b);
                    }),
                ),
                (
                    "mm_buffer_pool_lifo_ref_guard",
                    &Loop(|| {
                        let mut b = cached.acquire_ref(size);
                        b.extend_from_slice(&[1]);
                        black_box(&b);
                    }),
                ),
                (
                    "mm_buffer_pool_fifo_only_ref_guard",
                    &Loop(|| {
                        let mut b = fifo.acquire_ref(size);
                        b.extend_from_slice(&[1]);
                        black_box(&b);
                    }),
                ),
                (
                    "fresh_bytesmut_system",
                    &Loop(|| {
                        let mut b = BytesMut::with_capacity(size);
                        b.extend_from_slice(&[1]);
                        black_box(&b);
                    }),
                ),
                ("fresh_raw_system", &Loop(|| raw_round_trip(&System, size))),
                (
                    "fresh_raw_mimalloc",
                    &Loop(|| raw_round_trip(&MiMalloc, size)),
                ),
            ];
            for (name, op) in cases {
                group.bench_function(name, |b| {
                    b.iter_custom(|iters| run_threads(threads, iters, op))
                });
            }
            group.finish();
        }
    }
}

/// Acquire a 1 MiB buffer and fill it, with 2 (the default tier) or 48 buffers idle (48 MiB,
/// more than this machine's 32 MiB L3): the FIFO queue hands out the buffer returned longest
/// ago, the per-thread slot the one just returned.
fn fill_hot_vs_cold(c: &mut Criterion) {
    for idle in [2, 48] {
        let mut group = c.benchmark_group(format!("pool/fill_1m/{idle}_idle"));
        for (name, cache) in [("lifo_slot", true), ("fifo_only", false)] {
            let config = BufferPoolConfig::with_tiers([(1 << 20, idle)]).with_thread_cache(cache);
            let pool = BufferPool::new(config).unwrap();
            drop((0..idle).map(|_| pool.acquire(1)).collect::<Vec<_>>());
            group.bench_function(name, |b| {
                b.iter(|| {
                    let mut buf = pool.acquire_ref(1 << 20);
                    buf.resize(1 << 20, 7);
                    black_box(&buf);
                })
            });
        }
        group.finish();
    }
}

criterion_group!(benches, object_pools, buffer_pools, fill_hot_vs_cold);
criterion_main!(benches);
