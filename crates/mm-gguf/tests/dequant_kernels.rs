//! Fast kernels against the scalar reference on random input, hand-checked values for the
//! types gguf-py cannot dequantize, and the chunk walker's edge cases.

use mm_gguf::quant::{
    DequantChunks, DequantError, Kernel, dequantize, dequantize_reference, dequantize_with,
    fast_kernel_name, output_len,
};
use mm_gguf::types::GgmlType;

/// splitmix64: a small deterministic generator, so failures reproduce.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

fn same_bits(a: f32, b: f32) -> bool {
    a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan())
}

#[test]
fn fast_equals_scalar_on_random_blocks() {
    let mut rng = Rng(7);
    for ty in GgmlType::ALL {
        // Random bytes, scales included (NaN and infinite scales too: both paths must agree
        // on those as well, up to the NaN payload). Odd block counts and a misaligned start.
        for n_blocks in [1usize, 2, 7, 33] {
            let len = n_blocks * ty.type_size() as usize;
            let buf = rng.bytes(len + 1);
            let src = &buf[1..];
            let n = output_len(ty, len).unwrap();
            let mut slow = vec![0f32; n];
            let mut fast = vec![1f32; n + 3];
            dequantize_reference(ty, src, &mut slow).unwrap();
            assert_eq!(dequantize(ty, src, &mut fast), Ok(n));
            for i in 0..n {
                assert!(
                    same_bits(slow[i], fast[i]),
                    "{ty} ({}): value {i} of {n_blocks} blocks: scalar {:#010x}, fast {:#010x}",
                    fast_kernel_name(ty),
                    slow[i].to_bits(),
                    fast[i].to_bits()
                );
            }
            assert_eq!(&fast[n..], &[1.0; 3], "{ty}: wrote past the output");
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[test]
fn hot_types_have_a_fast_kernel_on_avx2() {
    if !std::arch::is_x86_feature_detected!("avx2") {
        return;
    }
    use GgmlType as T;
    for ty in [
        T::Q4_0,
        T::Q4_1,
        T::Q5_0,
        T::Q5_1,
        T::Q8_0,
        T::Q2_K,
        T::Q3_K,
        T::Q4_K,
        T::Q5_K,
        T::Q6_K,
        T::IQ4_NL,
        T::IQ4_XS,
        T::MXFP4,
    ] {
        assert_eq!(fast_kernel_name(ty), "avx2", "{ty}");
    }
    assert_eq!(fast_kernel_name(GgmlType::IQ2_S), "scalar");
}

fn run(ty: GgmlType, block: &[u8]) -> Vec<f32> {
    let mut out = vec![0f32; ty.block_size() as usize];
    for kernel in [Kernel::Scalar, Kernel::Fast] {
        dequantize_with(kernel, ty, block, &mut out).unwrap();
    }
    out
}

#[test]
fn q8_k_is_f32_scale_times_q() {
    let mut b = 0.75f32.to_le_bytes().to_vec();
    b.extend((0..256).map(|i| (i as i8).wrapping_sub(100) as u8));
    b.extend([0xAB; 32]); // block sums: not used by the value
    let out = run(GgmlType::Q8_K, &b);
    for (i, v) in out.iter().enumerate() {
        assert_eq!(*v, 0.75 * f32::from((i as i8).wrapping_sub(100)));
    }
}

#[test]
fn q8_1_is_f16_scale_times_q() {
    let mut b = vec![0x00, 0x3C, 0x12, 0x34]; // d = 1.0, s (ignored); 36-byte block
    b.extend((0..32).map(|i| (i * 7) as u8));
    let out = run(GgmlType::Q8_1, &b);
    for (i, v) in out.iter().enumerate() {
        assert_eq!(*v, f32::from(((i * 7) as u8) as i8));
    }
}

#[test]
fn q1_0_is_plus_or_minus_d() {
    let mut b = vec![0x00, 0x40]; // d = 2.0
    b.extend((0..16).map(|i| 0x5A ^ i as u8));
    let out = run(GgmlType::Q1_0, &b);
    for (j, v) in out.iter().enumerate() {
        let bit = ((0x5A ^ (j / 8) as u8) >> (j % 8)) & 1;
        assert_eq!(*v, if bit == 1 { 2.0 } else { -2.0 }, "{j}");
    }
}

#[test]
fn q4_k_by_hand() {
    // d = 1.0, dmin = 0.5; sub-block 0 scale 3 min 2, others 0; all quants 0x21.
    let mut b = vec![0x00, 0x3C, 0x00, 0x38];
    let mut scales = [0u8; 12];
    scales[0] = 3;
    scales[4] = 2;
    b.extend(scales);
    b.extend([0x21; 128]);
    let out = run(GgmlType::Q4_K, &b);
    assert!(out[..32].iter().all(|&v| v == 3.0 * 1.0 - 1.0)); // low nibble 1
    assert!(out[32..].iter().all(|&v| v == 0.0));
}

#[test]
fn wrong_lengths_are_typed_errors() {
    let mut out = vec![0f32; 256];
    let e = dequantize(GgmlType::Q4_K, &[0; 143], &mut out).unwrap_err();
    assert!(matches!(
        e,
        DequantError::PartialBlock { remainder: 143, .. }
    ));
    assert!(e.to_string().contains("whole number of 144-byte blocks"));
    let e = dequantize(GgmlType::Q4_K, &[0; 288], &mut out).unwrap_err();
    assert_eq!(
        e,
        DequantError::OutputTooShort {
            ty: GgmlType::Q4_K,
            needed: 512,
            got: 256
        }
    );
    assert!(DequantChunks::new(GgmlType::Q6_K, &[0; 211]).is_err());
}

#[test]
fn chunks_into_a_fixed_slice() {
    let mut rng = Rng(11);
    let ty = GgmlType::Q5_0;
    let src = rng.bytes(10 * 22);
    let mut want = vec![0f32; 320];
    dequantize_reference(ty, &src, &mut want).unwrap();

    let mut chunks = DequantChunks::new(ty, &src).unwrap();
    let mut tiny = [0f32; 31];
    assert!(matches!(
        chunks.next_into_slice(&mut tiny),
        Some(Err(DequantError::OutputTooShort {
            needed: 32,
            got: 31,
            ..
        }))
    ));
    assert_eq!(
        chunks.remaining_values(),
        320,
        "a refused call consumes nothing"
    );

    // 100 values of room: three blocks a call, then one.
    let mut room = [0f32; 100];
    let mut got = Vec::new();
    let mut sizes = Vec::new();
    while let Some(c) = chunks.next_into_slice(&mut room) {
        let c = c.unwrap();
        assert_eq!(c.first as usize, got.len());
        sizes.push(c.values.len());
        got.extend_from_slice(c.values);
    }
    assert_eq!(sizes, [96, 96, 96, 32]);
    assert_eq!(got, want);
    assert_eq!(chunks.remaining_bytes(), 0);
}

#[test]
fn chunk_size_rounds_to_whole_blocks() {
    let src = vec![0u8; 144 * 5];
    let c = DequantChunks::with_chunk_bytes(GgmlType::Q4_K, &src, 300).unwrap();
    assert_eq!(c.chunk_len(), 2 * 256);
    let c = DequantChunks::with_chunk_bytes(GgmlType::Q4_K, &src, 1).unwrap();
    assert_eq!(c.chunk_len(), 256);
    let c = DequantChunks::new(GgmlType::Q4_K, &src).unwrap();
    assert_eq!(c.chunk_len(), 65536 / 144 * 256);
}

#[test]
fn for_each_stops_at_the_first_error() {
    let src = vec![0u8; 34 * 8];
    let chunks = DequantChunks::with_chunk_bytes(GgmlType::Q8_0, &src, 68).unwrap();
    let mut calls = 0;
    let r: Result<(), String> = chunks.for_each(&mut Vec::new(), |c| {
        calls += 1;
        if c.first >= 128 {
            Err(format!("stop at {}", c.first))
        } else {
            Ok(())
        }
    });
    assert_eq!(r, Err("stop at 128".to_string()));
    assert_eq!(calls, 3);
}
