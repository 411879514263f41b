//! The floor under a pool's cached round trip, beside the real one: what a one-object
//! cache costs with nothing else (load the cached pointer, mark the slot empty, use the
//! object, clear it, store the pointer back), then with the two per-thread counters, then
//! `ObjectPool` (typed reset) and `lockfree-object-pool`, in one thread, cases interleaved
//! in 31 rounds of 200,000 iterations, thread CPU time; each case's median time and its
//! ratio to the typed borrowing guard within each round (median [quartiles]).
//!
//! Run: `cargo run --release -p mm-benches --example pool_floor` (docs/benchmarks.md,
//! "where the bimodal times come from").

use std::hint::black_box;
use std::sync::atomic::{AtomicPtr, AtomicU64, Ordering::Relaxed};

use lockfree_object_pool::LinearObjectPool;
use mm_benches::{Case, Loop, thread_cpu_ns};
use mm_pool::ObjectPool;

/// A bare per-thread record: the cache slot and two counters, on one line.
#[repr(C, align(128))]
struct Record {
    hits: AtomicU64,
    returns: AtomicU64,
    slot: AtomicPtr<Vec<u8>>,
}

/// One round trip through the bare slot; `counted` adds the two counters.
fn bare(rec: &Record, counted: bool) {
    let p = rec.slot.load(Relaxed);
    rec.slot.store(std::ptr::null_mut(), Relaxed);
    if counted {
        rec.hits.store(rec.hits.load(Relaxed) + 1, Relaxed);
    }
    // SAFETY: the slot always holds the one `Vec` boxed in `main` between round trips, and
    // only this thread uses it: the reference is unique while the slot is empty.
    let v = unsafe { &mut *p };
    v.push(1);
    black_box(&v);
    v.clear();
    rec.slot.store(p, Relaxed);
    if counted {
        rec.returns.store(rec.returns.load(Relaxed) + 1, Relaxed);
    }
}

fn main() {
    let item = Box::into_raw(Box::new(Vec::<u8>::with_capacity(4096)));
    let rec = Record {
        hits: AtomicU64::new(0),
        returns: AtomicU64::new(0),
        slot: AtomicPtr::new(item),
    };
    let typed = ObjectPool::with_typed_reset(64, || Vec::<u8>::with_capacity(4096), Vec::clear)
        .expect("pool");
    let lockfree = LinearObjectPool::new(|| Vec::<u8>::with_capacity(4096), Vec::clear);
    let cases: [(&str, &dyn Case); 5] = [
        ("bare slot", &Loop(|| bare(&rec, false))),
        ("bare slot + 2 counters", &Loop(|| bare(&rec, true))),
        (
            "typed acquire_ref",
            &Loop(|| {
                let mut v = typed.acquire_ref();
                v.push(1);
                black_box(&v);
            }),
        ),
        (
            "typed acquire",
            &Loop(|| {
                let mut v = typed.acquire();
                v.push(1);
                black_box(&v);
            }),
        ),
        (
            "lockfree-object-pool",
            &Loop(|| {
                let mut v = lockfree.pull();
                v.push(1);
                black_box(&v);
            }),
        ),
    ];
    const BASE: usize = 2;
    for (_, case) in &cases {
        case.run(2_000);
    }
    let (iters, rounds) = (200_000, 31);
    let mut samples = vec![Vec::with_capacity(rounds); cases.len()];
    for _ in 0..rounds {
        for ((_, case), s) in cases.iter().zip(&mut samples) {
            let start = thread_cpu_ns();
            case.run(iters);
            s.push((thread_cpu_ns() - start) as f64 / iters as f64);
        }
    }
    println!("{rounds} rounds of {iters}, thread CPU time; ratio to typed acquire_ref per round");
    for ((name, _), s) in cases.iter().zip(&samples) {
        let mut ratios: Vec<f64> = s.iter().zip(&samples[BASE]).map(|(a, b)| a / b).collect();
        ratios.sort_by(f64::total_cmp);
        let mut times = s.clone();
        times.sort_by(f64::total_cmp);
        let q = |v: &[f64], f: f64| v[((v.len() - 1) as f64 * f).round() as usize];
        println!(
            "  {name:<24} {:>6.2} ns   {:.2} [{:.2}-{:.2}]",
            q(&times, 0.5),
            q(&ratios, 0.5),
            q(&ratios, 0.25),
            q(&ratios, 0.75)
        );
    }
    // SAFETY: `item` came from `Box::into_raw` above and the slot holds it again.
    drop(unsafe { Box::from_raw(rec.slot.load(Relaxed)) });
}
