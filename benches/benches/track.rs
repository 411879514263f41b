//! mm-track: the cost of counting allocations, side by side with the bare allocator and the
//! peers, at 1 and 2 threads.
//!
//! - `track/churn`: free+alloc pairs over 64 live blocks of 16..=184 bytes, called directly
//!   through `GlobalAlloc` on `System`, `TrackedAlloc<System>`, `stats_alloc::StatsAlloc<System>`
//!   and a naive tracker (one shared relaxed atomic for live bytes). Time per pair and thread.
//! - `track/service`: the mm-stress service workload (strings, vectors, maps, a session
//!   cache), with the bench's global allocator switched to each of the four. Time per batch
//!   of 20 requests and thread.
//!
//! Times are thread CPU time (the mean over the threads), not wall time.
//!
//! cargo bench -p mm-benches --bench track -- --warm-up-time 1 --measurement-time 3

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::sync::Barrier;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use mm_stress::clock::cpu_timed;
use mm_stress::workload::{ServiceConfig, churn, serve};
use mm_track::TrackedAlloc;
use stats_alloc::StatsAlloc;

/// The reference point: every call hits one shared counter.
struct NaiveAtomic {
    live: AtomicU64,
}

// SAFETY: forwards every call unchanged to `System`.
unsafe impl GlobalAlloc for NaiveAtomic {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        self.live.fetch_add(layout.size() as u64, Relaxed);
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { System.alloc(layout) }
    }
    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        self.live.fetch_sub(layout.size() as u64, Relaxed);
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { System.dealloc(ptr, layout) }
    }
}

static TRACKED: TrackedAlloc = TrackedAlloc::new(System);
static STATS: StatsAlloc<System> = StatsAlloc::system();
static NAIVE: NaiveAtomic = NaiveAtomic {
    live: AtomicU64::new(0),
};

const SYSTEM: u8 = 0;
const TRACK: u8 = 1;
const STATS_ALLOC: u8 = 2;
const NAIVE_ATOMIC: u8 = 3;
const KINDS: [(u8, &str); 4] = [
    (SYSTEM, "System"),
    (TRACK, "TrackedAlloc"),
    (STATS_ALLOC, "stats_alloc"),
    (NAIVE_ATOMIC, "naive_atomic"),
];

/// The bench's global allocator: one of the four, chosen per benchmark. Every path ends in
/// `System`, so a block may be freed on another path than the one that allocated it.
struct Switch;
static MODE: AtomicU8 = AtomicU8::new(SYSTEM);

// SAFETY: every path forwards unchanged to `System` (directly or through a wrapper that
// forwards unchanged).
unsafe impl GlobalAlloc for Switch {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded with the caller's guarantees.
        unsafe {
            match MODE.load(Relaxed) {
                TRACK => TRACKED.alloc(layout),
                STATS_ALLOC => STATS.alloc(layout),
                NAIVE_ATOMIC => NAIVE.alloc(layout),
                _ => System.alloc(layout),
            }
        }
    }
    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the block came from `System` whichever path allocated it.
        unsafe {
            match MODE.load(Relaxed) {
                TRACK => TRACKED.dealloc(ptr, layout),
                STATS_ALLOC => STATS.dealloc(ptr, layout),
                NAIVE_ATOMIC => NAIVE.dealloc(ptr, layout),
                _ => System.dealloc(ptr, layout),
            }
        }
    }
    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: the block came from `System`; the rest is forwarded unchanged.
        unsafe {
            match MODE.load(Relaxed) {
                TRACK => TRACKED.realloc(ptr, layout, new_size),
                STATS_ALLOC => STATS.realloc(ptr, layout, new_size),
                NAIVE_ATOMIC => NAIVE.realloc(ptr, layout, new_size),
                _ => System.realloc(ptr, layout, new_size),
            }
        }
    }
}

#[global_allocator]
static GLOBAL: Switch = Switch;

/// Runs `work(worker)` on `threads` threads started together; returns the mean CPU time
/// the threads spent in it. CPU time rather than wall time: the bench machine is shared,
/// and wall time would count other processes' time slices.
fn on_threads(threads: u64, work: impl Fn(u64) + Sync) -> Duration {
    if threads == 1 {
        return cpu_timed(|| work(0)).1;
    }
    let barrier = Barrier::new(threads as usize);
    let total: Duration = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|w| {
                let (barrier, work) = (&barrier, &work);
                s.spawn(move || {
                    barrier.wait();
                    cpu_timed(|| work(w)).1
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_default())
            .sum()
    });
    total / threads as u32
}

fn churn_with(kind: u8, pairs: u64, seed: u64) -> u64 {
    match kind {
        TRACK => churn(&TRACKED, pairs, seed),
        STATS_ALLOC => churn(&STATS, pairs, seed),
        NAIVE_ATOMIC => churn(&NAIVE, pairs, seed),
        _ => churn(&System, pairs, seed),
    }
}

fn bench_churn(c: &mut Criterion) {
    let mut g = c.benchmark_group("track/churn");
    g.throughput(Throughput::Elements(1));
    for threads in [1u64, 2] {
        for (kind, name) in KINDS {
            g.bench_function(BenchmarkId::new(name, format!("{threads}t")), |b| {
                b.iter_custom(|iters| {
                    on_threads(threads, |w| {
                        black_box(churn_with(kind, iters, w + 1));
                    })
                })
            });
        }
    }
    g.finish();
}

fn bench_service(c: &mut Criterion) {
    let mut g = c.benchmark_group("track/service");
    let cfg = ServiceConfig {
        requests: 20,
        users: 16,
    };
    for threads in [1u64, 2] {
        for (kind, name) in KINDS {
            g.bench_function(BenchmarkId::new(name, format!("{threads}t")), |b| {
                b.iter_custom(|iters| {
                    MODE.store(kind, Relaxed);
                    let t = on_threads(threads, |w| {
                        for i in 0..iters {
                            black_box(serve(&cfg, w * 1_000_003 + i));
                        }
                    });
                    MODE.store(SYSTEM, Relaxed);
                    t
                })
            });
        }
    }
    g.finish();
}

criterion_group!(benches, bench_churn, bench_service);
criterion_main!(benches);
