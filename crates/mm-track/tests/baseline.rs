//! Process-wide figures under a real `#[global_allocator]`. One test in this binary, so no
//! other test thread allocates while it compares snapshots.

use std::hint::black_box;
use std::sync::mpsc;

use mm_track::TrackedAlloc;

#[global_allocator]
static GLOBAL: TrackedAlloc = TrackedAlloc::new(std::alloc::System);

/// Allocations of mixed sizes (some far above the fold slack), some freed on another
/// thread, in threads that then exit.
fn workload(threads: usize) {
    let (tx, rx) = mpsc::channel::<Vec<Box<[u8]>>>();
    let freer = std::thread::spawn(move || {
        let mut n = 0;
        for batch in rx {
            n += batch.len();
            drop(batch);
        }
        n
    });
    let workers: Vec<_> = (0..threads)
        .map(|t| {
            let tx = tx.clone();
            std::thread::spawn(move || {
                let mut kept = Vec::new();
                let mut batch = Vec::new();
                for i in 0..5_000usize {
                    let len = match i % 50 {
                        0 => 200_000,
                        n => 1 + (n * 37 + t) % 500,
                    };
                    let mut b = vec![0u8; len].into_boxed_slice(); // alloc_zeroed
                    b[0] = i as u8;
                    if i % 3 == 0 {
                        batch.push(b);
                        if batch.len() == 64 {
                            tx.send(std::mem::take(&mut batch)).unwrap();
                        }
                    } else if i % 3 == 1 {
                        kept.push(b);
                    }
                    let mut s = String::new();
                    for w in 0..(i % 7) {
                        s.push_str(&w.to_string());
                    }
                    black_box(s);
                }
                tx.send(batch).unwrap();
                kept.iter().map(|b| b.len()).sum::<usize>()
            })
        })
        .collect();
    drop(tx);
    for w in workers {
        assert!(w.join().unwrap() > 0);
    }
    assert!(freer.join().unwrap() > 0);
}

#[test]
fn live_bytes_return_to_baseline_after_threads_exit() {
    assert!(mm_track::is_active());
    workload(1); // warm up whatever std allocates once per process
    let base = mm_track::snapshot().expect("active");

    // A known pattern first: the global counts move by exactly these calls.
    let mut held: [Option<Box<[u8; 24]>>; 10] = Default::default();
    for (i, slot) in held.iter_mut().enumerate() {
        *slot = Some(black_box(Box::new([i as u8 + 1; 24])));
    }
    let mid = mm_track::snapshot().expect("active");
    assert_eq!(mid.allocs - base.allocs, 10);
    assert_eq!(mid.total_alloc_bytes - base.total_alloc_bytes, 240);
    assert_eq!(mid.live_bytes - base.live_bytes, 240);
    for slot in &mut held {
        drop(black_box(slot.take()));
    }
    let back = mm_track::snapshot().expect("active");
    assert_eq!(back.deallocs - base.deallocs, 10);
    assert_eq!(back.live_bytes, base.live_bytes);

    mm_track::reset_peak();
    workload(3);
    let after = mm_track::snapshot().expect("active");
    assert_eq!(
        after.live_bytes, base.live_bytes,
        "live bytes did not return to baseline: {base:?} -> {after:?}"
    );
    assert_eq!(
        after.threads, base.threads,
        "exited threads still registered"
    );
    assert!(after.allocs - base.allocs >= 3 * 5_000);
    assert_eq!(after.allocs - base.allocs, after.deallocs - base.deallocs);
    assert!(after.zeroed_allocs - base.zeroed_allocs >= 3 * 5_000);
    // Each worker holds 33 buffers of 200 kB (and more) before it returns; the workers
    // may not overlap, so one worker's share is the lower bound.
    assert!(
        after.peak_bytes >= base.live_bytes + 33 * 200_000,
        "peak too low: {after:?}"
    );
}
