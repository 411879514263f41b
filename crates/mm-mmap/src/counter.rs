//! A statistics counter with one cache line per thread, so that counting a hit is a plain
//! load and store on a line no other thread writes, instead of a contended atomic
//! read-modify-write.
//!
//! Threads claim one of [`OWNED`] process-wide slot numbers on first use and give it back
//! when they exit; a slot's stripe in every counter therefore has a single writer at a
//! time, and the claim (acquire) / release (release) pair orders one owner's last store
//! before the next owner's first load. Threads beyond [`OWNED`] share one stripe updated
//! with `fetch_add`. No increment is ever lost.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// Slots that threads can own exclusively.
const OWNED: usize = 16;
/// The stripe for threads without a slot.
const SHARED: usize = OWNED;

static CLAIMED: [AtomicBool; OWNED] = [const { AtomicBool::new(false) }; OWNED];

/// A thread's claim on a slot; released when the thread exits.
struct Slot(usize);

impl Slot {
    fn claim() -> Self {
        let free = CLAIMED.iter().position(|c| {
            c.compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
        });
        Slot(free.unwrap_or(SHARED))
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Some(claimed) = CLAIMED.get(self.0) {
            claimed.store(false, Ordering::Release);
        }
    }
}

thread_local! {
    static SLOT: Slot = Slot::claim();
}

#[repr(align(128))]
#[derive(Debug, Default)]
struct Padded(AtomicU64);

/// Event counter: `incr` touches this thread's stripe, `sum` adds all stripes.
#[derive(Debug, Default)]
pub(crate) struct StripedCounter {
    stripes: [Padded; OWNED + 1],
}

impl StripedCounter {
    pub(crate) fn incr(&self) {
        // During thread-local destruction the slot may be gone: use the shared stripe.
        let slot = SLOT.try_with(|s| s.0).unwrap_or(SHARED);
        let stripe = &self.stripes[slot].0;
        if slot == SHARED {
            stripe.fetch_add(1, Ordering::Relaxed);
        } else {
            // Single writer (this thread owns the slot), so load + store loses nothing.
            stripe.store(stripe.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
        }
    }

    pub(crate) fn sum(&self) -> u64 {
        self.stripes
            .iter()
            .map(|s| s.0.load(Ordering::Relaxed))
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_across_more_threads_than_slots() {
        let c = StripedCounter::default();
        // Under Miri (which interprets every instruction) fewer increments per thread.
        let per_thread = if cfg!(miri) { 100 } else { 1000 };
        // 40 threads, in waves: more than OWNED at once, and slots reused after exits.
        for _ in 0..2 {
            std::thread::scope(|s| {
                for _ in 0..20 {
                    s.spawn(|| (0..per_thread).for_each(|_| c.incr()));
                }
            });
        }
        assert_eq!(c.sum(), 40 * per_thread);
    }
}
