//! lasso issue #48: `ThreadedRodeo` over-allocates when many threads intern at once.
//!
//! Its lock-free arena reads the bucket capacity, doubles it and stores it back without
//! coordination, so threads that find the buckets full at the same moment each allocate a
//! new bucket, and each may double the capacity one of the others just doubled. With 64
//! cores the report saw attempts to map terabytes. On this 2-core machine fewer threads race
//! at once, but 256 threads are enough to see the same mechanism: an arena several times
//! larger than interning the same strings from one thread needs.
//!
//! The lasso experiment is `#[ignore]`d because whether the race shows up in a given run
//! depends on the scheduler; run it with
//! `cargo test --release -p mm-intern --test lasso_issue_48 -- --ignored --nocapture`.
//! The non-ignored test checks that `mm_intern::Interner` has no such dependence on the
//! thread count.

use std::sync::Barrier;

use mm_intern::{Interner, Symbol};

const THREADS: usize = 128;
const PER_THREAD: usize = 1_000;
/// Threads in the test of our interner (debug builds are slow).
const OUR_THREADS: usize = 64;

fn word(thread: usize, i: usize) -> String {
    format!("t{thread}-word-{i}-padding")
}

/// `ThreadedRodeo::current_memory_usage` (its arena's allocated bytes) after the whole
/// workload, interned from `THREADS` threads started together, or from this thread alone.
const TRIALS: usize = 100;

fn lasso_arena_bytes(concurrent: bool) -> (usize, usize) {
    let rodeo = lasso::ThreadedRodeo::<lasso::Spur>::new();
    let failures = std::sync::atomic::AtomicUsize::new(0);
    let work = |t: usize| {
        for i in 0..PER_THREAD {
            if rodeo.try_get_or_intern(word(t, i)).is_err() {
                failures.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
        }
    };
    if concurrent {
        let start = Barrier::new(THREADS);
        std::thread::scope(|s| {
            for t in 0..THREADS {
                let (start, work) = (&start, &work);
                s.spawn(move || {
                    start.wait();
                    work(t);
                });
            }
        });
    } else {
        (0..THREADS).for_each(work);
    }
    assert_eq!(rodeo.len(), THREADS * PER_THREAD);
    (rodeo.current_memory_usage(), failures.into_inner())
}

#[test]
#[ignore = "scheduler-dependent reproduction of a lasso bug; see the module docs"]
fn lasso_threaded_rodeo_over_allocates_under_contention() {
    let (sequential, _) = lasso_arena_bytes(false);
    let content: usize = (0..THREADS)
        .flat_map(|t| (0..PER_THREAD).map(move |i| word(t, i).len()))
        .sum();
    println!("content {content} B; one thread: arena {sequential} B");
    let mut worst = 0;
    for trial in 0..TRIALS {
        let (arena, failures) = lasso_arena_bytes(true);
        if arena > sequential {
            println!(
                "trial {trial}: {THREADS} threads: arena {arena} B ({:.1}x one thread), {failures} failed calls",
                arena as f64 / sequential as f64
            );
        }
        worst = worst.max(arena);
        if arena > 2 * sequential && std::env::var_os("MM_INTERN_ALL_TRIALS").is_none() {
            break;
        }
    }
    assert!(
        worst > 2 * sequential,
        "#48 did not reproduce in {TRIALS} trials: worst {worst} B vs {sequential} B from one thread"
    );
}

/// Held bytes and every thread's symbols for `threads` threads interning `PER_THREAD` own
/// strings each plus 200 strings that all threads share.
fn ours(threads: usize, concurrent: bool) -> (u64, Vec<Vec<Symbol>>) {
    let interner = Interner::new();
    let work = |t: usize| {
        let mut shared = Vec::new();
        for i in 0..PER_THREAD {
            interner.get_or_intern(&word(t, i));
            if i % 10 == 0 {
                shared.push(interner.get_or_intern(&format!("shared-{}", i / 10)));
            }
        }
        shared
    };
    let symbols = if concurrent {
        let start = Barrier::new(threads);
        std::thread::scope(|s| {
            let handles: Vec<_> = (0..threads)
                .map(|t| {
                    let (start, work) = (&start, &work);
                    s.spawn(move || {
                        start.wait();
                        work(t)
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        })
    } else {
        (0..threads).map(work).collect()
    };
    assert_eq!(interner.len(), threads * PER_THREAD + PER_THREAD / 10);
    (interner.stats().held_bytes(), symbols)
}

#[test]
fn interner_memory_does_not_depend_on_thread_count() {
    let threads = OUR_THREADS;
    let (sequential, _) = ours(threads, false);
    let (concurrent, symbols) = ours(threads, true);
    // Shard sizes vary a little with each interner's random hash seed (table capacities are
    // powers of two), hence the margin; a race like #48 would multiply the figure.
    assert!(
        concurrent * 4 <= sequential * 5,
        "{threads} threads: {concurrent} B held vs {sequential} B from one thread"
    );
    // Every thread got the same symbols for the shared strings.
    assert!(symbols.iter().all(|s| s == &symbols[0]));
}
