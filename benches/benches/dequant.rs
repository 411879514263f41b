//! Dequantization throughput (GB/s of quantized input) for the types of the Gemma 3 270M
//! model: scalar reference vs fast (AVX2 where available), side by side, each walking an
//! 8 MiB tensor through one reused output buffer in 64 KiB input chunks.
//!
//! Run: `cargo bench -p mm-benches --bench dequant -- --warm-up-time 1 --measurement-time 3`

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use mm_gguf::quant::{DequantChunks, Kernel, fast_kernel_name};
use mm_gguf::types::GgmlType;

/// Bytes of quantized input per benchmarked tensor.
const TENSOR_BYTES: usize = 8 << 20;

/// Byte offsets of f16 scales in a block, overwritten with small finite values so the
/// output is ordinary numbers (NaN or infinite scales could take slow paths on some CPUs).
fn scale_offsets(ty: GgmlType) -> &'static [usize] {
    match ty {
        GgmlType::Q4_K => &[0, 2],
        GgmlType::Q6_K => &[208],
        _ => &[0],
    }
}

fn tensor(ty: GgmlType) -> Vec<u8> {
    let ts = ty.type_size() as usize;
    let mut s = 0x2545_F491_4F6C_DD1Du64;
    let mut data: Vec<u8> = (0..TENSOR_BYTES / ts * ts)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            s as u8
        })
        .collect();
    for (i, block) in data.chunks_exact_mut(ts).enumerate() {
        for &off in scale_offsets(ty) {
            // f16 values between 2^-10 and 2^-3, either sign.
            let sign: u16 = if i % 3 == 0 { 0x8000 } else { 0 };
            let h = (0x1400 + (i as u16 % 0x1C00)) | sign;
            block[off..off + 2].copy_from_slice(&h.to_le_bytes());
        }
    }
    data
}

fn walk(kernel: Kernel, ty: GgmlType, data: &[u8], buf: &mut Vec<f32>) -> f32 {
    let mut chunks = DequantChunks::new(ty, data)
        .expect("whole blocks")
        .with_kernel(kernel);
    let mut acc = 0.0;
    while let Some(c) = chunks.next_into(buf) {
        acc += c.values[c.values.len() - 1];
    }
    acc
}

fn bench(c: &mut Criterion) {
    for ty in [
        GgmlType::Q8_0,
        GgmlType::Q4_K,
        GgmlType::Q5_0,
        GgmlType::Q6_K,
    ] {
        let data = tensor(ty);
        let mut g = c.benchmark_group(format!("dequant/{ty}"));
        g.throughput(Throughput::Bytes(data.len() as u64));
        let mut buf = Vec::new();
        g.bench_function("scalar", |b| {
            b.iter(|| walk(Kernel::Scalar, ty, black_box(&data), &mut buf))
        });
        let fast = format!("fast-{}", fast_kernel_name(ty));
        g.bench_function(fast, |b| {
            b.iter(|| walk(Kernel::Fast, ty, black_box(&data), &mut buf))
        });
        g.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
