//! One module per part of the project; each exposes `run(&Options, &mut Report)` and adds
//! its rows. To add a part: write `parts/<name>.rs` with such a `run`, declare it here and
//! list it in `PARTS` in `lib.rs`.

use std::time::Duration;

use crate::clock::cpu_timed;

pub mod budget;
pub mod chat;
pub mod gguf;
pub mod intern;
pub mod mmap;
pub mod overhead;
pub mod requests;
pub mod soak;
pub mod stack;
pub mod track;

/// Runs `work(worker)` on `threads` fresh threads; returns the results and the sum of the
/// threads' CPU times spent in `work`.
pub fn on_threads<R: Send>(threads: u64, work: impl Fn(u64) -> R + Sync) -> (Vec<R>, Duration) {
    let work = &work;
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|w| s.spawn(move || cpu_timed(|| work(w))))
            .collect();
        let mut out = Vec::with_capacity(handles.len());
        let mut total = Duration::ZERO;
        for h in handles {
            // A worker that panicked has already printed why; count its time as zero.
            if let Ok((r, t)) = h.join() {
                out.push(r);
                total += t;
            }
        }
        (out, total)
    })
}

/// Most threads any part runs at once (the budget part's 8), plus the main thread.
const MAX_PART_THREADS: usize = 9;

/// Creates, before any baseline is taken, the one process-wide table that `parking_lot_core`
/// (under `dashmap`'s shard locks, in the mmap cache) allocates the first time a thread
/// waits on a contended lock, and regrows (keeping the old one) when more threads have waited
/// at once than it was sized for: 1,024 bytes of buckets and a 32-byte header for up to 5
/// threads. Whether the workers of a pass ever contend is a matter of timing, so without this
/// the table could appear in the middle of a live-heap comparison, once per process (1,056
/// bytes in the "live heap back to baseline" row, on some runs only). It is sized here for
/// `MAX_PART_THREADS` (9) threads waiting at once, so no part can grow it.
pub fn prewarm_lock_table() {
    static KEY: u8 = 0;
    let key = &KEY as *const u8 as usize;
    let park_once = || {
        // SAFETY: `validate` returns false, so the thread is neither queued nor put to sleep
        // (`park` returns `Invalid` at once); the callbacks do not call into parking_lot.
        // Registering the thread is what sizes the table for the threads registered now.
        let _ = unsafe {
            parking_lot_core::park(
                key,
                || false,
                || {},
                |_, _| {},
                parking_lot_core::DEFAULT_PARK_TOKEN,
                None,
            )
        };
    };
    park_once();
    let all_parked = std::sync::Barrier::new(MAX_PART_THREADS - 1);
    std::thread::scope(|s| {
        for _ in 1..MAX_PART_THREADS {
            s.spawn(|| {
                park_once();
                // Registered threads stay counted until they exit: wait for the others.
                all_parked.wait();
            });
        }
    });
}

/// The tracked allocator's live bytes now (0 when it is not the global allocator).
pub fn live_bytes() -> u64 {
    mm_track::snapshot().map_or(0, |s| s.live_bytes)
}

/// A byte count for people: `1.23 MB` (decimal units, as the targets are written).
pub fn mb(bytes: f64) -> String {
    format!("{:.2} MB", bytes / 1e6)
}
