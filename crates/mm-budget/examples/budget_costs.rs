//! Prints what the budget's operations and the kernel reads cost on this machine, and the
//! figures themselves. Run with `cargo run --release -p mm-budget --example budget_costs`.
//!
//! A rough timing loop, not a statistical benchmark: it reports the mean over many calls.

use std::hint::black_box;
use std::sync::{Arc, Barrier};
use std::time::Instant;

use mm_budget::{MemoryBudget, sys};

fn mean_ns(iters: u32, mut f: impl FnMut()) -> f64 {
    for _ in 0..iters / 10 {
        f();
    }
    let t = Instant::now();
    for _ in 0..iters {
        f();
    }
    t.elapsed().as_nanos() as f64 / f64::from(iters)
}

fn reserve_drop_ns(threads: usize, iters: u32) -> f64 {
    let budget = MemoryBudget::with_limit(1 << 40).expect("valid limit");
    let barrier = Arc::new(Barrier::new(threads));
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let (b, barrier) = (budget.clone(), Arc::clone(&barrier));
            std::thread::spawn(move || {
                barrier.wait();
                mean_ns(iters, || {
                    drop(black_box(b.try_reserve(4096).expect("fits")))
                })
            })
        })
        .collect();
    let per_thread: Vec<f64> = handles
        .into_iter()
        .map(|h| h.join().expect("thread"))
        .collect();
    per_thread.iter().sum::<f64>() / per_thread.len() as f64
}

fn main() {
    println!("figures:");
    println!("  rss_bytes      = {:?}", sys::rss_bytes());
    println!("  status_memory  = {:?}", sys::status_memory());
    println!("  meminfo        = {:?}", sys::meminfo());
    println!("  cgroup_memory  = {:?}", sys::cgroup_memory());
    println!("  default_limit  = {:?}", sys::default_limit());
    println!("mean cost per call:");
    let ns = mean_ns(20_000, || drop(black_box(sys::rss_bytes())));
    println!("  rss_bytes()            {:>9.0} ns", ns);
    let ns = mean_ns(5_000, || drop(black_box(sys::status_memory())));
    println!("  status_memory()        {:>9.0} ns", ns);
    let ns = mean_ns(5_000, || drop(black_box(sys::meminfo())));
    println!("  meminfo()              {:>9.0} ns", ns);
    let ns = mean_ns(2_000, || drop(black_box(sys::cgroup_memory())));
    println!("  cgroup_memory()        {:>9.0} ns", ns);
    for threads in [1, 2] {
        let ns = reserve_drop_ns(threads, 2_000_000);
        println!("  try_reserve+drop, {threads} thread(s) {ns:>6.1} ns");
    }
}
