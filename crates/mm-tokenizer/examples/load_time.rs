//! Prints how long building Gemma's index takes (MM_GGUF_TEST_MODEL): best and median of
//! 41 builds, with the thread's CPU time per build beside the wall time (on a shared
//! machine the wall clock also counts time other processes ran), and the first build
//! alone (the one a service pays: it also faults in the mapped vocabulary and the fresh
//! heap).
use mm_gguf::MappedGguf;

fn cpu_now() -> std::time::Duration {
    let mut ts = Timespec::default();
    // SAFETY: clock_gettime writes one timespec into the valid, exclusively borrowed `ts`.
    unsafe { clock_gettime(CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    std::time::Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

#[repr(C)]
#[derive(Default)]
struct Timespec {
    tv_sec: i64,
    tv_nsec: i64,
}
const CLOCK_THREAD_CPUTIME_ID: i32 = 3;
unsafe extern "C" {
    fn clock_gettime(clk: i32, ts: *mut Timespec) -> i32;
}

fn main() {
    let path = std::env::var_os("MM_GGUF_TEST_MODEL").expect("MM_GGUF_TEST_MODEL");
    // SAFETY: the model file is not modified while this runs.
    let m = unsafe { MappedGguf::open(&path) }.unwrap();
    let (mut wall, mut cpu) = (Vec::new(), Vec::new());
    let mut first = None;
    for _ in 0..41 {
        let (t, c) = (std::time::Instant::now(), cpu_now());
        let v = mm_tokenizer::Vocab::from_gguf(m.gguf()).unwrap();
        wall.push(t.elapsed());
        cpu.push(cpu_now() - c);
        first = first.or(Some((wall[0], cpu[0])));
        std::hint::black_box(v);
    }
    let first = first.unwrap();
    wall.sort();
    cpu.sort();
    let v = mm_tokenizer::Vocab::from_gguf(m.gguf()).unwrap();
    println!(
        "load: wall best {:?} median {:?}; thread CPU best {:?} median {:?}; index heap {} bytes; first build: wall {:?}, thread CPU {:?}",
        wall[0],
        wall[20],
        cpu[0],
        cpu[20],
        v.heap_bytes(),
        first.0,
        first.1
    );
}
