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

/// The tracked allocator's live bytes now (0 when it is not the global allocator).
pub fn live_bytes() -> u64 {
    mm_track::snapshot().map_or(0, |s| s.live_bytes)
}

/// A byte count for people: `1.23 MB` (decimal units, as the targets are written).
pub fn mb(bytes: f64) -> String {
    format!("{:.2} MB", bytes / 1e6)
}
