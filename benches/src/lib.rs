//! Shared helpers for the criterion benches and probe examples in `benches/`.

/// This thread's CPU time (`CLOCK_THREAD_CPUTIME_ID`) in nanoseconds: it leaves out the time
/// the thread waits for a core, which on a shared machine belongs to other processes.
///
/// # Panics
/// If the clock cannot be read (it always can on Linux).
pub fn thread_cpu_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable `timespec` for the duration of the call; the clock id
    // is a constant Linux knows.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime(CLOCK_THREAD_CPUTIME_ID)");
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// One benchmarked operation, run in a loop compiled for it.
pub trait Case: Sync {
    /// Runs the case `iters` times on this thread.
    fn run(&self, iters: u64);
}

/// A [`Case`] made of a closure: `run` is one function per closure type, so the operation is
/// inlined into its loop as into a caller's code (no indirect call per iteration).
pub struct Loop<F>(pub F);

impl<F> std::fmt::Debug for Loop<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Loop(..)")
    }
}

impl<F: Fn() + Sync> Case for Loop<F> {
    #[inline(never)]
    fn run(&self, iters: u64) {
        for _ in 0..iters {
            (self.0)();
        }
    }
}

/// The churn loop of the `track_probe_*` examples, compiled in this library crate so that the
/// global allocator is reached through the `__rust_alloc` symbol (as from std and every other
/// crate) rather than inlined into the loop.
pub fn churn_extern(iters: usize) -> usize {
    const SLOTS: usize = 64;
    let mut slots: [Box<[u8]>; SLOTS] = std::array::from_fn(|_| Box::default());
    for i in 0..iters {
        let x = std::hint::black_box(i as u8);
        slots[i % SLOTS] = vec![x; 16 + (i % 8) * 24].into_boxed_slice();
    }
    std::hint::black_box(&slots);
    slots.iter().map(|s| s.len()).sum()
}
