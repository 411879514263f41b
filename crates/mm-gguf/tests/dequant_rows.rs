//! Row dequantization gives, for every type, the same bits as the same rows of the
//! whole-tensor path, with both kernels.

use mm_gguf::quant::{
    DequantError, Kernel, dequantize_rows_with, dequantize_tensor_rows, dequantize_with, row_bytes,
};
use mm_gguf::types::GgmlType;
use mm_gguf::{Gguf, GgufWriter};

/// Deterministic bytes (xorshift), with every other f16 high byte tamed so most scales
/// are finite; NaNs and infinities that remain are compared by bits.
fn bytes(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..n)
        .map(|i| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let b = x as u8;
            if i % 2 == 1 { b & 0x3F } else { b }
        })
        .collect()
}

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|f| f.to_bits()).collect()
}

#[test]
fn rows_match_the_whole_tensor_for_every_type() {
    for ty in GgmlType::ALL {
        let row_len = 2 * ty.block_size() as usize;
        let n_rows = 5;
        let rb = row_bytes(ty, row_len).unwrap();
        let data = bytes(n_rows * rb, ty.id() as u64 + 7);
        for kernel in [Kernel::Scalar, Kernel::Fast] {
            let mut whole = vec![0f32; n_rows * row_len];
            dequantize_with(kernel, ty, &data, &mut whole).unwrap();
            let pick = [4usize, 0, 2, 2];
            let mut out = vec![0f32; pick.len() * row_len];
            let n = dequantize_rows_with(kernel, ty, &data, row_len, &pick, &mut out).unwrap();
            assert_eq!(n, out.len());
            for (i, &r) in pick.iter().enumerate() {
                assert_eq!(
                    bits(&out[i * row_len..(i + 1) * row_len]),
                    bits(&whole[r * row_len..(r + 1) * row_len]),
                    "{ty} {kernel:?} row {r}"
                );
            }
        }
    }
}

#[test]
fn bad_requests_are_typed_errors() {
    let ty = GgmlType::Q4_K;
    let data = bytes(3 * 144, 1);
    let mut out = vec![0f32; 256];
    assert!(matches!(
        dequantize_rows_with(Kernel::Fast, ty, &data, 100, &[0], &mut out),
        Err(DequantError::RowNotWholeBlocks {
            row_len: 100,
            block_size: 256,
            ..
        })
    ));
    assert!(matches!(
        dequantize_rows_with(Kernel::Fast, ty, &data, 256, &[3], &mut out),
        Err(DequantError::RowOutOfRange { row: 3, n_rows: 3 })
    ));
    assert!(matches!(
        dequantize_rows_with(Kernel::Fast, ty, &data, 256, &[0, 1], &mut out),
        Err(DequantError::OutputTooShort {
            needed: 512,
            got: 256,
            ..
        })
    ));
    assert!(matches!(
        dequantize_rows_with(Kernel::Fast, ty, &data[..200], 256, &[0], &mut out),
        Err(DequantError::PartialBlock { .. })
    ));
    assert!(row_bytes(ty, 0).is_err());
    let e = row_bytes(ty, 100).unwrap_err();
    assert!(e.to_string().contains("whole number"), "{e}");
}

#[test]
fn tensor_rows_use_the_first_dimension() {
    let values: Vec<u8> = (0..4 * 8).flat_map(|i| (i as f32).to_le_bytes()).collect();
    let mut w = GgufWriter::new();
    w.add_tensor("token_embd.weight", GgmlType::F32, &[8, 4], &values)
        .unwrap();
    let bytes = w.to_bytes().unwrap();
    let g = Gguf::parse(&bytes).unwrap();
    let t = g.tensor("token_embd.weight").unwrap();
    let mut out = [0f32; 16];
    assert_eq!(dequantize_tensor_rows(&t, &[3, 1], &mut out), Ok(16));
    assert_eq!(out[0], 24.0);
    assert_eq!(out[8], 8.0);
}
