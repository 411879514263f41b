//! Dequantization throughput (GB/s of quantized input, 1 GB = 10^9 bytes) for the quantized
//! types of the Gemma 3 270M model: scalar reference vs fast (AVX2 where available), side by
//! side, each walking an 8 MiB tensor through one reused output buffer in 64 KiB input
//! chunks (`DequantChunks::new`).
//!
//! Two passes: `dequant/*` measures wall-clock time, as criterion does by default;
//! `dequant-cpu/*` measures this thread's CPU time (`CLOCK_THREAD_CPUTIME_ID`), which leaves
//! out the time the thread waits for a core: on a shared, loaded machine it is the figure to
//! compare with the floors (Q8_0 5.4, Q4_K 2.9, Q5_0 2.2, Q6_K 2.0 GB/s).
//!
//! With `--features candle`, candle-core 0.11's dequantizers run next to them on the same
//! bytes, chunks and buffer.
//!
//! Run: `cargo bench -p mm-benches --bench dequant [--features candle] -- --warm-up-time 1
//! --measurement-time 3`

use std::hint::black_box;

use criterion::measurement::{Measurement, ValueFormatter};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use mm_benches::thread_cpu_ns;
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

fn run<M: Measurement>(c: &mut Criterion<M>, prefix: &str) {
    for ty in [
        GgmlType::Q8_0,
        GgmlType::Q4_K,
        GgmlType::Q5_0,
        GgmlType::Q6_K,
    ] {
        let data = tensor(ty);
        let mut g = c.benchmark_group(format!("{prefix}/{ty}"));
        g.throughput(Throughput::BytesDecimal(data.len() as u64));
        let mut buf = Vec::new();
        g.bench_function("scalar", |b| {
            b.iter(|| walk(Kernel::Scalar, ty, black_box(&data), &mut buf))
        });
        let fast = format!("fast-{}", fast_kernel_name(ty));
        g.bench_function(fast, |b| {
            b.iter(|| walk(Kernel::Fast, ty, black_box(&data), &mut buf))
        });
        #[cfg(feature = "candle")]
        {
            let blocks = candle_side::Blocks::new(&data);
            g.bench_function("candle-0.11", |b| {
                b.iter(|| candle_side::walk(ty, black_box(&blocks), &mut buf))
            });
        }
        g.finish();
    }
}

fn wall(c: &mut Criterion) {
    run(c, "dequant");
}

fn cpu(c: &mut Criterion<ThreadCpuTime>) {
    run(c, "dequant-cpu");
}

/// candle-core's CPU dequantizers (`k_quants::GgmlType::to_float`) over the same bytes, in
/// the same 64 KiB chunks into the same reused buffer (`--features candle`).
#[cfg(feature = "candle")]
mod candle_side {
    use candle_core::quantized::k_quants::{
        BlockQ4K, BlockQ5_0, BlockQ6K, BlockQ8_0, GgmlType as CandleType,
    };
    use mm_gguf::types::GgmlType;

    /// The tensor's bytes copied once into 2-byte-aligned storage (candle's blocks hold
    /// `f16` fields, so they need that alignment).
    pub struct Blocks {
        words: Vec<u16>,
        len: usize,
    }

    impl Blocks {
        pub fn new(bytes: &[u8]) -> Self {
            let words = bytes
                .chunks(2)
                .map(|c| u16::from_le_bytes([c[0], *c.get(1).unwrap_or(&0)]))
                .collect();
            Self {
                words,
                len: bytes.len(),
            }
        }

        fn as_blocks<T: CandleType>(&self) -> &[T] {
            let size = std::mem::size_of::<T>();
            assert!(std::mem::align_of::<T>() <= 2 && self.len.is_multiple_of(size));
            // SAFETY: `words` holds `len` initialized bytes (little-endian, the layout of the
            // file on this x86_64 host), 2-byte aligned, which covers `T`'s alignment
            // (asserted); `len` is a whole number of `T`s (asserted). The candle block types
            // are `repr(C)` structs of `f16`, `u8` and `i8` fields with no padding (candle
            // asserts their sizes), so every bit pattern is a valid value. The slice borrows
            // `self`, so the storage outlives it.
            unsafe { std::slice::from_raw_parts(self.words.as_ptr().cast::<T>(), self.len / size) }
        }
    }

    fn chunks<T: CandleType>(blocks: &[T], buf: &mut Vec<f32>) -> f32 {
        let per_chunk = (65536 / std::mem::size_of::<T>()).max(1);
        let mut acc = 0.0;
        for chunk in blocks.chunks(per_chunk) {
            buf.resize(chunk.len() * T::BLCK_SIZE, 0.0);
            T::to_float(chunk, buf);
            acc += buf[buf.len() - 1];
        }
        acc
    }

    pub fn walk(ty: GgmlType, blocks: &Blocks, buf: &mut Vec<f32>) -> f32 {
        match ty {
            GgmlType::Q8_0 => chunks(blocks.as_blocks::<BlockQ8_0>(), buf),
            GgmlType::Q4_K => chunks(blocks.as_blocks::<BlockQ4K>(), buf),
            GgmlType::Q5_0 => chunks(blocks.as_blocks::<BlockQ5_0>(), buf),
            GgmlType::Q6_K => chunks(blocks.as_blocks::<BlockQ6K>(), buf),
            _ => unreachable!("no candle comparison for {ty}"),
        }
    }
}

/// Criterion measurement of the calling thread's CPU time, in nanoseconds.
struct ThreadCpuTime;

impl Measurement for ThreadCpuTime {
    type Intermediate = u64;
    type Value = u64;

    fn start(&self) -> u64 {
        thread_cpu_ns()
    }
    fn end(&self, start: u64) -> u64 {
        thread_cpu_ns().saturating_sub(start)
    }
    fn add(&self, a: &u64, b: &u64) -> u64 {
        a + b
    }
    fn zero(&self) -> u64 {
        0
    }
    fn to_f64(&self, v: &u64) -> f64 {
        *v as f64
    }
    fn formatter(&self) -> &dyn ValueFormatter {
        &CpuFormatter
    }
}

/// Formats CPU nanoseconds as milliseconds and byte throughput as GB/s.
struct CpuFormatter;

impl ValueFormatter for CpuFormatter {
    fn scale_values(&self, _typical: f64, values: &mut [f64]) -> &'static str {
        values.iter_mut().for_each(|v| *v /= 1e6);
        "ms (cpu)"
    }

    fn scale_throughputs(&self, _typical: f64, t: &Throughput, values: &mut [f64]) -> &'static str {
        let per = match *t {
            Throughput::Bytes(b) | Throughput::BytesDecimal(b) => b as f64,
            Throughput::Elements(e) | Throughput::ElementsAndBytes { elements: e, .. } => e as f64,
            Throughput::Bits(b) => b as f64,
        };
        // ns per iteration -> units per second, in 10^9.
        values.iter_mut().for_each(|v| *v = per / *v);
        "G/s (cpu)"
    }

    fn scale_for_machines(&self, _values: &mut [f64]) -> &'static str {
        "ns"
    }
}

criterion_group!(wall_clock, wall);
criterion_group! {
    name = cpu_time;
    config = Criterion::default().with_measurement(ThreadCpuTime);
    targets = cpu
}
criterion_main!(wall_clock, cpu_time);
