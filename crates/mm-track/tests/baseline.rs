//! Process-wide figures under a real `#[global_allocator]`. This binary has no test harness
//! (`harness = false`): the check runs on the main thread, so no harness thread allocates or
//! folds its counters while it compares snapshots for exact equality.

use std::cell::RefCell;
use std::hint::black_box;
use std::sync::{Arc, Barrier, mpsc};

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

thread_local! {
    /// Holds a block until the thread's thread-locals are destroyed.
    static HELD_UNTIL_EXIT: RefCell<Option<Box<[u8]>>> = const { RefCell::new(None) };
}

/// A thread whose last free happens in a thread-local destructor.
fn free_in_tls_destructor() {
    std::thread::spawn(|| {
        HELD_UNTIL_EXIT.with(|_| ());
        let block = vec![1u8; 100_000].into_boxed_slice();
        HELD_UNTIL_EXIT.with(|h| *h.borrow_mut() = Some(black_box(block)));
    })
    .join()
    .unwrap();
}

/// Frees the 4 KiB block a thread left in a pthread key.
extern "C" fn free_block(block: *mut libc::c_void) {
    if !block.is_null() {
        // SAFETY: the only values stored under the key are `Box<[u8; 4096]>`s turned into
        // raw pointers, and pthread calls this once per value.
        drop(unsafe { Box::from_raw(block.cast::<[u8; 4096]>()) });
    }
}

/// A thread whose last free happens in a pthread-key destructor: glibc runs those after
/// every thread-local destructor, so after the tracker's exit hook has folded.
fn free_after_thread_locals_are_gone() {
    let mut key: libc::pthread_key_t = 0;
    // SAFETY: `key` is a valid out-pointer; `free_block` has the destructor's signature.
    let created = unsafe { libc::pthread_key_create(&mut key, Some(free_block)) };
    assert_eq!(created, 0);
    std::thread::spawn(move || {
        let block = Box::into_raw(black_box(Box::new([1u8; 4096])));
        // SAFETY: `key` was created above and is not deleted until this thread is joined.
        let stored = unsafe { libc::pthread_setspecific(key, block.cast()) };
        assert_eq!(stored, 0);
    })
    .join()
    .unwrap();
    // SAFETY: the only thread that stored a value under `key` has exited.
    unsafe { libc::pthread_key_delete(key) };
}

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

    // A free made from a thread-local destructor is not lost.
    free_in_tls_destructor();
    let tls = mm_track::snapshot().expect("active");
    assert_eq!(tls.live_bytes, base.live_bytes, "{base:?} -> {tls:?}");

    // ... nor one made after the thread's thread-locals are all destroyed.
    free_after_thread_locals_are_gone();
    let late = mm_track::snapshot().expect("active");
    assert_eq!(late.live_bytes, base.live_bytes, "{base:?} -> {late:?}");

    // A live thread that calls flush() is exact in a snapshot taken elsewhere.
    let (ready, done) = (Arc::new(Barrier::new(2)), Arc::new(Barrier::new(2)));
    let (r2, d2) = (Arc::clone(&ready), Arc::clone(&done));
    let holder = std::thread::spawn(move || {
        let small: Vec<Box<u64>> = (0..100).map(|i| black_box(Box::new(i))).collect();
        mm_track::flush();
        r2.wait();
        d2.wait();
        small.len()
    });
    ready.wait();
    let during = mm_track::snapshot().expect("active");
    assert!(during.threads > base.threads, "holder thread not counted");
    let expected = 100 * 8 + 100 * 8; // the boxes and the vector of pointers
    assert!(
        during.live_bytes >= base.live_bytes + expected,
        "flushed figures missing: {base:?} -> {during:?}"
    );
    done.wait();
    assert_eq!(holder.join().unwrap(), 100);
    drop((ready, done));
    let end = mm_track::snapshot().expect("active");
    assert_eq!(end.live_bytes, base.live_bytes);
}

fn main() {
    live_bytes_return_to_baseline_after_threads_exit();
    println!("test live_bytes_return_to_baseline_after_threads_exit ... ok");
    println!("1 passed, 0 failed");
}
