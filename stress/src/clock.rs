//! Per-thread CPU time: less disturbed than wall time by other processes on a shared machine.

use std::time::Duration;

/// CPU time the calling thread has used, or `None` where the clock is unavailable.
pub fn thread_cpu_time() -> Option<Duration> {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec and the clock id is a constant libc defines.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    (rc == 0).then(|| Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32))
}

/// Runs `f` and returns its result and the CPU time this thread spent in it (wall time when
/// the CPU clock is unavailable).
pub fn cpu_timed<R>(f: impl FnOnce() -> R) -> (R, Duration) {
    let wall = std::time::Instant::now();
    let start = thread_cpu_time();
    let r = f();
    let spent = match (start, thread_cpu_time()) {
        (Some(a), Some(b)) => b.saturating_sub(a),
        _ => wall.elapsed(),
    };
    (r, spent)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cpu_clock_moves_with_work() {
        let (x, t) = cpu_timed(|| {
            (0..2_000_000u64).fold(0u64, |a, b| a.wrapping_mul(31) ^ std::hint::black_box(b))
        });
        std::hint::black_box(x);
        assert!(t > Duration::ZERO);
    }
}
