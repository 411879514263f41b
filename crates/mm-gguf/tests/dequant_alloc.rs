//! Dequantization allocates nothing: not the kernels, not the chunk walker once its buffer
//! has reached a chunk's size. Counted with mm-track as this binary's global allocator.

use mm_gguf::quant::{DequantChunks, Kernel, dequantize_with};
use mm_gguf::types::GgmlType;

#[global_allocator]
static GLOBAL: mm_track::TrackedAlloc = mm_track::TrackedAlloc::new(std::alloc::System);

fn input(ty: GgmlType, blocks: usize) -> Vec<u8> {
    // Byte pattern with an f16 1.0 (0x3C00) wherever it lands; values do not matter here.
    (0..blocks * ty.type_size() as usize)
        .map(|i| if i % 2 == 0 { 0x00 } else { 0x3C })
        .collect()
}

#[test]
fn kernels_do_not_allocate() {
    assert!(
        mm_track::is_active(),
        "mm-track must be the global allocator"
    );
    for ty in GgmlType::ALL {
        let src = input(ty, 9);
        let mut out = vec![0f32; 9 * ty.block_size() as usize];
        for kernel in [Kernel::Scalar, Kernel::Fast] {
            let (r, stats) = mm_track::count(|| dequantize_with(kernel, ty, &src, &mut out));
            assert_eq!(r, Ok(out.len()));
            assert_eq!(
                stats.allocs + stats.reallocs,
                0,
                "{ty} {kernel:?}: {stats:?}"
            );
        }
        // Errors are built without allocating too.
        let (r, stats) = mm_track::count(|| dequantize_with(Kernel::Fast, ty, &src, &mut out[..1]));
        assert!(r.is_err() || ty.block_size() == 1);
        assert_eq!(stats.allocs, 0, "{ty} error path");
    }
}

#[test]
fn chunk_walk_reuses_the_buffer() {
    assert!(
        mm_track::is_active(),
        "mm-track must be the global allocator"
    );
    let ty = GgmlType::Q4_K;
    // 2 MiB of input: 32 chunks of 64 KiB (455 blocks each) and a short last one.
    let src = input(ty, (2 << 20) / 144);
    let mut buf: Vec<f32> = Vec::with_capacity(DequantChunks::new(ty, &src).unwrap().chunk_len());
    let (n, stats) = mm_track::count(|| {
        let mut chunks = DequantChunks::new(ty, &src).unwrap();
        let mut n = 0usize;
        while let Some(c) = chunks.next_into(&mut buf) {
            n += c.values.len();
        }
        n
    });
    assert_eq!(n, src.len() / 144 * 256);
    assert_eq!(stats.allocs + stats.reallocs, 0, "{stats:?}");

    // Without pre-sizing, the buffer grows once and is then reused.
    let mut fresh = Vec::new();
    let ((), stats) = mm_track::count(|| {
        let mut chunks = DequantChunks::new(ty, &src).unwrap();
        while chunks.next_into(&mut fresh).is_some() {}
    });
    assert_eq!(stats.allocs + stats.reallocs, 1, "{stats:?}");
}

#[test]
fn pooled_buffers_work_unchanged() {
    assert!(
        mm_track::is_active(),
        "mm-track must be the global allocator"
    );
    let ty = GgmlType::Q6_K;
    let src = input(ty, 1000);
    let chunk_len = DequantChunks::new(ty, &src).unwrap().chunk_len();
    let pool =
        memory_manager::ObjectPool::new(2, move || Vec::<f32>::with_capacity(chunk_len)).unwrap();
    // First use builds the buffer; later uses take it back from the pool.
    drop(pool.acquire_ref());
    let (n, stats) = mm_track::count(|| {
        let mut buf = pool.acquire_ref();
        let mut chunks = DequantChunks::new(ty, &src).unwrap();
        let mut n = 0;
        while let Some(c) = chunks.next_into(&mut buf) {
            n += c.values.len();
        }
        n
    });
    assert_eq!(n, 1000 * 256);
    assert_eq!(stats.allocs + stats.reallocs, 0, "{stats:?}");
    assert!(pool.stats().hits >= 1);
}
