//! Probe: the rate of reading every tensor of a model through the streaming reader against
//! reading it through a map, in interleaved rounds in one process (median of each), with
//! the streaming reader's heap peak (mm-track). The page cache is warm after the first
//! round, so this measures the readers, not the disk. Times are the thread's CPU time
//! (user + system, which includes the kernel's copy for `read(2)` and page faults for the
//! map), so a busy machine's waits for a core do not count.
//!
//! ```text
//! cargo run --release -p mm-gguf --example stream_rate -- MODEL.gguf [ROUNDS]
//! ```

/// This thread's CPU time (user + system) in seconds: on a machine shared with other work,
/// wall time counts the time this thread waited for a core; CPU time does not.
fn cpu_now() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid out-pointer; CLOCK_THREAD_CPUTIME_ID is supported on Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9
}

use mm_gguf::{MappedGguf, StreamingGguf};

#[global_allocator]
static GLOBAL: mm_track::TrackedAlloc = mm_track::TrackedAlloc::new(std::alloc::System);

/// What both readers do with each byte range: touch one byte per cache line, as the
/// criterion bench `gguf_read_all_tensors` does.
fn touch(acc: &mut u64, chunk: &[u8]) {
    *acc = acc.wrapping_add(chunk.iter().step_by(64).map(|&x| u64::from(x)).sum::<u64>());
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let mut args = std::env::args().skip(1);
    let path = args.next().expect("usage: stream_rate MODEL.gguf [ROUNDS]");
    let rounds: usize = args.next().map_or(7, |r| r.parse().expect("rounds"));
    // SAFETY: the probe's model file is not modified while it runs.
    let mapped = unsafe { MappedGguf::open(&path) }.expect("open");
    let bytes = mapped.gguf().tensor_bytes();
    let (mut map_rates, mut stream_rates, mut peak) = (Vec::new(), Vec::new(), 0u64);
    for _ in 0..rounds {
        let t0 = cpu_now();
        let mut acc = 0u64;
        for t in mapped.gguf().tensors() {
            touch(&mut acc, t.data);
        }
        std::hint::black_box(acc);
        map_rates.push(bytes as f64 / (cpu_now() - t0));

        mm_track::reset_peak();
        let base = mm_track::snapshot().map_or(0, |s| s.live_bytes);
        let t0 = cpu_now();
        let file = std::fs::File::open(&path).expect("file");
        if std::env::var_os("MM_EXP_FADVISE").is_some() {
            use std::os::fd::AsRawFd;
            // SAFETY: a valid descriptor; advice has no memory-safety preconditions.
            unsafe { libc::posix_fadvise(file.as_raw_fd(), 0, 0, libc::POSIX_FADV_SEQUENTIAL) };
        }
        let mut s = StreamingGguf::open(file).expect("open");
        let mut acc = 0u64;
        s.for_each_tensor(|_, _, chunk| {
            touch(&mut acc, chunk);
            Ok(())
        })
        .expect("stream");
        std::hint::black_box(acc);
        stream_rates.push(bytes as f64 / (cpu_now() - t0));
        drop(s);
        peak = peak.max(mm_track::snapshot().map_or(0, |s| s.peak_bytes) - base);
    }
    let (m, s) = (median(&mut map_rates), median(&mut stream_rates));
    let gib = (1u64 << 30) as f64;
    println!(
        "{bytes} B of tensors, {rounds} rounds, CPU time: mapped {:.2} GiB/s, streamed {:.2} GiB/s ({:.0} % of mapped), streaming heap peak {peak} B",
        m / gib,
        s / gib,
        100.0 * s / m
    );
}
