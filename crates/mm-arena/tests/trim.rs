//! Trimming, in its own test binary: `request_trim` is process-wide and would make the
//! chunk counts of concurrently running tests jump.

#[test]
fn trim_releases_the_retained_chunk() {
    // Under Miri (which writes each byte in the interpreter) a smaller slice.
    const LEN: usize = if cfg!(miri) { 10_000 } else { 100_000 };
    std::thread::spawn(|| {
        mm_arena::scope(|a| {
            a.alloc_slice_fill_copy(LEN, 0u8).unwrap();
        });
        assert!(mm_arena::thread_stats().retained_bytes >= LEN as u64);
        mm_arena::trim_thread().unwrap();
        assert_eq!(mm_arena::thread_stats().retained_bytes, 0);

        mm_arena::scope(|a| {
            a.alloc_slice_fill_copy(LEN, 0u8).unwrap();
        });
        mm_arena::request_trim();
        mm_arena::scope(|a| {
            a.alloc(1u8).unwrap();
        });
        assert_eq!(mm_arena::thread_stats().retained_bytes, 0);
    })
    .join()
    .unwrap();
}
