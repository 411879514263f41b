//! Dequantization of ggml tensor data to `f32`.
//!
//! Every type in [`GgmlType`] can be dequantized. For every type that gguf-py 0.19's
//! `gguf.quants.dequantize` handles, the result is **bit-identical** to it (checked by
//! `tests/dequant_fixtures.rs` against fixtures written by `scripts/dequant_ref.py`). The
//! types gguf-py cannot dequantize follow ggml's C dequantizers: Q8_1 and Q8_K (`d * q`),
//! Q1_0 (`±d`), and the plain I8/I16/I32/I64/F64 (converted with round-to-nearest-even, as
//! numpy's `astype(float32)`).
//!
//! Two implementations exist for each type:
//! - a scalar reference ([`dequantize_reference`]) that follows gguf-py's numpy code
//!   operation by operation, and
//! - the fast path ([`dequantize`]): AVX2 kernels for Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K,
//!   Q3_K, Q4_K, Q5_K, Q6_K, IQ4_NL, IQ4_XS and MXFP4, chosen at run time on x86_64 CPUs that
//!   have AVX2; the scalar code for other types and other CPUs. The
//!   fast kernels do the same f32 operations in the same order (no fused multiply-add), so
//!   they give the same bits; tests check fast == scalar == gguf-py.
//!
//! Neither allocates. To walk a whole tensor through a bounded buffer use [`DequantChunks`].
//!
//! ```
//! use mm_gguf::quant::{dequantize, output_len};
//! use mm_gguf::types::GgmlType;
//!
//! // One Q8_0 block: f16 scale 0.5 (0x3800), then 32 signed bytes.
//! let mut block = vec![0x00, 0x38];
//! block.extend((0..32).map(|i| (i as i8 - 16) as u8));
//! let mut out = vec![0f32; output_len(GgmlType::Q8_0, block.len())?];
//! dequantize(GgmlType::Q8_0, &block, &mut out)?;
//! assert_eq!(out[0], -8.0);
//! assert_eq!(out[31], 7.5);
//! # Ok::<(), mm_gguf::quant::DequantError>(())
//! ```

mod chunks;
mod grids;
mod rows;
mod scalar;
#[cfg(target_arch = "x86_64")]
mod x86;

pub use chunks::{DequantChunk, DequantChunks};
pub use rows::{dequantize_rows, dequantize_rows_with, dequantize_tensor_rows, row_bytes};

use crate::types::GgmlType;

/// Why a dequantization call was refused. Nothing is written to the output on error.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DequantError {
    /// The input is not a whole number of blocks of its type.
    #[error(
        "{len} bytes of {ty} data is not a whole number of {type_size}-byte blocks \
         ({remainder} bytes left over); pass whole blocks"
    )]
    PartialBlock {
        /// The tensor type.
        ty: GgmlType,
        /// Input length in bytes.
        len: usize,
        /// Bytes per block of `ty`.
        type_size: usize,
        /// `len % type_size`.
        remainder: usize,
    },
    /// The output slice is too short for the input.
    #[error(
        "output has room for {got} values but the {ty} input holds {needed}; \
         size it with quant::output_len"
    )]
    OutputTooShort {
        /// The tensor type.
        ty: GgmlType,
        /// Values the input decodes to.
        needed: usize,
        /// Length of the output slice.
        got: usize,
    },
    /// A row length that is not a whole number of blocks (rows of a ggml tensor always
    /// are).
    #[error("a row of {row_len} {ty} values is not a whole number of {block_size}-value blocks")]
    RowNotWholeBlocks {
        /// The tensor type.
        ty: GgmlType,
        /// Values per row asked for.
        row_len: usize,
        /// Values per block of `ty`.
        block_size: usize,
    },
    /// A row index past the end of the tensor.
    #[error("row {row} asked for, but the tensor has {n_rows} rows")]
    RowOutOfRange {
        /// The row asked for.
        row: usize,
        /// Rows in the tensor.
        n_rows: usize,
    },
    /// The number of values does not fit in `usize` on this platform.
    #[error("{len} bytes of {ty} data decode to more values than fit in memory")]
    TooLarge {
        /// The tensor type.
        ty: GgmlType,
        /// Input length in bytes.
        len: usize,
    },
}

/// Which implementation [`dequantize_with`] runs.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kernel {
    /// The portable scalar reference.
    Scalar,
    /// The fastest implementation this CPU supports for the type (the scalar one when there
    /// is no faster one).
    Fast,
}

/// The number of `f32` values `src_len` bytes of `ty` data decode to.
///
/// # Errors
/// [`DequantError::PartialBlock`] when `src_len` is not a whole number of blocks;
/// [`DequantError::TooLarge`] when the count overflows `usize` (32-bit targets).
pub fn output_len(ty: GgmlType, src_len: usize) -> Result<usize, DequantError> {
    let type_size = ty.type_size() as usize;
    let remainder = src_len % type_size;
    if remainder != 0 {
        return Err(DequantError::PartialBlock {
            ty,
            len: src_len,
            type_size,
            remainder,
        });
    }
    (src_len / type_size)
        .checked_mul(ty.block_size() as usize)
        .ok_or(DequantError::TooLarge { ty, len: src_len })
}

/// Dequantizes `src` (whole blocks of `ty`) into the front of `dst` with the fastest kernel
/// this CPU has, returning the number of values written.
///
/// Cost: one pass over `src` and the written part of `dst`; no allocation, no locking. The
/// CPU feature check is a cached atomic load.
///
/// # Errors
/// [`DequantError::PartialBlock`] if `src` is not whole blocks, [`DequantError::OutputTooShort`]
/// if `dst` is shorter than [`output_len`]. `dst` is untouched on error.
pub fn dequantize(ty: GgmlType, src: &[u8], dst: &mut [f32]) -> Result<usize, DequantError> {
    dequantize_with(Kernel::Fast, ty, src, dst)
}

/// [`dequantize`] with the scalar reference kernels: slower, portable, and the yardstick the
/// fast kernels are tested against.
///
/// # Errors
/// As [`dequantize`].
pub fn dequantize_reference(
    ty: GgmlType,
    src: &[u8],
    dst: &mut [f32],
) -> Result<usize, DequantError> {
    dequantize_with(Kernel::Scalar, ty, src, dst)
}

/// [`dequantize`] with an explicit choice of [`Kernel`].
///
/// # Errors
/// As [`dequantize`].
pub fn dequantize_with(
    kernel: Kernel,
    ty: GgmlType,
    src: &[u8],
    dst: &mut [f32],
) -> Result<usize, DequantError> {
    let n = output_len(ty, src.len())?;
    let got = dst.len();
    let Some(dst) = dst.get_mut(..n) else {
        return Err(DequantError::OutputTooShort { ty, needed: n, got });
    };
    run(kernel, ty, src, dst);
    Ok(n)
}

/// Runs `kernel` for `ty`; `src` is whole blocks and `dst` exactly its output length.
fn run(kernel: Kernel, ty: GgmlType, src: &[u8], dst: &mut [f32]) {
    debug_assert_eq!(output_len(ty, src.len()), Ok(dst.len()));
    if kernel == Kernel::Fast && fast(ty, src, dst) {
        return;
    }
    reference(ty, src, dst);
}

/// The name of the fast kernel family [`dequantize`] uses for `ty` on this CPU
/// (`"avx2"` or `"scalar"`), for reports and benchmarks.
pub fn fast_kernel_name(ty: GgmlType) -> &'static str {
    #[cfg(target_arch = "x86_64")]
    if x86::has(ty) {
        return "avx2";
    }
    let _ = ty;
    "scalar"
}

/// Runs a fast kernel if there is one for `ty` on this CPU; false if not.
fn fast(ty: GgmlType, src: &[u8], dst: &mut [f32]) -> bool {
    #[cfg(target_arch = "x86_64")]
    if x86::dequantize(ty, src, dst) {
        return true;
    }
    let _ = (ty, src, dst);
    false
}

/// Dispatches to the scalar kernel. `src` is whole blocks, `dst` exactly the output length.
fn reference(ty: GgmlType, src: &[u8], dst: &mut [f32]) {
    use GgmlType as T;
    let kernel: fn(&[u8], &mut [f32]) = match ty {
        T::F32 => scalar::f32,
        T::F16 => scalar::f16,
        T::BF16 => scalar::bf16,
        T::F64 => scalar::f64,
        T::I8 => scalar::i8,
        T::I16 => scalar::i16,
        T::I32 => scalar::i32,
        T::I64 => scalar::i64,
        T::Q4_0 => scalar::q4_0,
        T::Q4_1 => scalar::q4_1,
        T::Q5_0 => scalar::q5_0,
        T::Q5_1 => scalar::q5_1,
        T::Q8_0 => scalar::q8_0,
        T::Q8_1 => scalar::q8_1,
        T::Q2_K => scalar::q2_k,
        T::Q3_K => scalar::q3_k,
        T::Q4_K => scalar::q4_k,
        T::Q5_K => scalar::q5_k,
        T::Q6_K => scalar::q6_k,
        T::Q8_K => scalar::q8_k,
        T::IQ2_XXS => scalar::iq2_xxs,
        T::IQ2_XS => scalar::iq2_xs,
        T::IQ2_S => scalar::iq2_s,
        T::IQ3_XXS => scalar::iq3_xxs,
        T::IQ3_S => scalar::iq3_s,
        T::IQ1_S => scalar::iq1_s,
        T::IQ1_M => scalar::iq1_m,
        T::IQ4_NL => scalar::iq4_nl,
        T::IQ4_XS => scalar::iq4_xs,
        T::TQ1_0 => scalar::tq1_0,
        T::TQ2_0 => scalar::tq2_0,
        T::MXFP4 => scalar::mxfp4,
        T::NVFP4 => scalar::nvfp4,
        T::Q1_0 => scalar::q1_0,
    };
    kernel(src, dst);
}

/// Widens an IEEE binary16 to binary32 exactly, the way numpy does: NaN payloads are kept
/// (a signalling NaN stays signalling), subnormals become normal f32 values.
#[inline(always)]
pub(crate) fn f16_to_f32(h: u16) -> f32 {
    let sign = u32::from(h & 0x8000) << 16;
    let exp = h & 0x7C00;
    let man = u32::from(h & 0x03FF);
    let bits = if exp == 0x7C00 {
        sign | 0x7F80_0000 | (man << 13)
    } else if exp == 0 {
        // man * 2^-24 is exact in f32 (at most 10 significant bits).
        sign | (man as f32 * (1.0 / 16_777_216.0)).to_bits()
    } else {
        sign | ((u32::from(h & 0x7FFF) + 0x1_C000) << 13)
    };
    f32::from_bits(bits)
}

/// Half the value of an OCP E8M0 scale (`2^(e - 128)`), as ggml's `ggml_e8m0_to_fp32_half`
/// and gguf-py's `MXFP4.e8m0_to_fp32_half`.
#[inline(always)]
pub(crate) fn e8m0_to_f32_half(e: u8) -> f32 {
    let bits = if e < 2 {
        0x0020_0000u32 << e
    } else {
        u32::from(e - 1) << 23
    };
    f32::from_bits(bits)
}

/// Half the value of an unsigned E4M3 (bias 7) NVFP4 group scale, as gguf-py's
/// `NVFP4.ue4m3_to_fp32`: bit 7 is ignored except that 0x00 and 0x7F (NaN) decode to 0.
#[inline(always)]
pub(crate) fn ue4m3_to_f32(x: u8) -> f32 {
    if x == 0 || x == 0x7F {
        return 0.0;
    }
    let exp = i32::from((x >> 3) & 0x0F);
    let man = f32::from(x & 0x07);
    let raw = if exp == 0 {
        man * (1.0 / 512.0)
    } else {
        // 2^(exp - 7) for exp in 1..=15, exact.
        (1.0 + man / 8.0) * f32::from_bits(((exp - 7 + 127) as u32) << 23)
    };
    raw * 0.5
}

/// E2M1 values, doubled (the scale helpers above return half scales to match).
pub(crate) const KVALUES_FP4: [i8; 16] = [0, 1, 2, 3, 4, 6, 8, 12, 0, -1, -2, -3, -4, -6, -8, -12];

/// The non-linear 4-bit table of IQ4_NL and IQ4_XS.
pub(crate) const KVALUES_IQ4NL: [i8; 16] = [
    -127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113,
];

/// IQ2/IQ3 sign patterns: 7 stored sign bits plus an eighth that makes the count even.
pub(crate) const KSIGNS: [u8; 128] = {
    let mut t = [0u8; 128];
    let mut i = 0;
    while i < 128 {
        t[i] = i as u8
            | if (i as u8).count_ones() % 2 == 1 {
                0x80
            } else {
                0
            };
        i += 1;
    }
    t
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn f16_matches_half_on_every_non_nan() {
        // Under Miri (which interprets every instruction) every 7th pattern: a stride prime to
        // the field widths still reaches every exponent, subnormals, infinities and NaNs.
        for h in (0..=u16::MAX).step_by(if cfg!(miri) { 7 } else { 1 }) {
            let ours = f16_to_f32(h);
            let theirs = half::f16::from_bits(h).to_f32();
            if theirs.is_nan() {
                assert!(ours.is_nan(), "{h:#06x}");
                // numpy keeps the payload, including the signalling bit.
                let want =
                    (u32::from(h & 0x8000) << 16) | 0x7F80_0000 | (u32::from(h & 0x3FF) << 13);
                assert_eq!(ours.to_bits(), want, "{h:#06x}");
            } else {
                assert_eq!(ours.to_bits(), theirs.to_bits(), "{h:#06x}");
            }
        }
    }

    #[test]
    fn ksigns_match_ggml() {
        assert_eq!(
            &KSIGNS[..8],
            &[0x00, 0x81, 0x82, 0x03, 0x84, 0x05, 0x06, 0x87]
        );
        assert_eq!(KSIGNS[127], 0xFF);
        assert!(KSIGNS.iter().all(|s| s.count_ones() % 2 == 0));
    }

    #[test]
    fn small_scales() {
        assert_eq!(e8m0_to_f32_half(127), 0.5);
        assert_eq!(e8m0_to_f32_half(0).to_bits(), 0x0020_0000); // 2^-128
        assert_eq!(e8m0_to_f32_half(1).to_bits(), 0x0040_0000); // 2^-127
        assert_eq!(e8m0_to_f32_half(255).to_bits(), 0x7F00_0000); // 2^127
        assert_eq!(ue4m3_to_f32(0x38), 0.5); // exp 7, man 0: 1.0, halved
        assert_eq!(ue4m3_to_f32(0x01), 0.5 / 512.0);
        assert_eq!(ue4m3_to_f32(0x7F), 0.0);
        assert_eq!(ue4m3_to_f32(0x7E), 224.0);
        assert_eq!(ue4m3_to_f32(0xFF), 240.0);
    }

    #[test]
    fn errors_are_typed() {
        let mut out = [0f32; 32];
        assert_eq!(
            dequantize(GgmlType::Q8_0, &[0; 35], &mut out),
            Err(DequantError::PartialBlock {
                ty: GgmlType::Q8_0,
                len: 35,
                type_size: 34,
                remainder: 1
            })
        );
        assert_eq!(
            dequantize(GgmlType::Q8_0, &[0; 68], &mut out),
            Err(DequantError::OutputTooShort {
                ty: GgmlType::Q8_0,
                needed: 64,
                got: 32
            })
        );
        assert_eq!(out, [0f32; 32]);
        assert_eq!(dequantize(GgmlType::Q8_0, &[], &mut out), Ok(0));
    }

    /// Small enough for Miri, which runs it with `-C target-feature=+avx2` to check the AVX2
    /// kernels' loads and stores (see docs/mm-gguf-dequant.md).
    #[test]
    fn fast_matches_scalar_on_a_few_blocks() {
        let mut x = 0x1234_5678u32;
        let buf: Vec<u8> = (0..3 * 292 + 1)
            .map(|_| {
                x = x.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                (x >> 24) as u8
            })
            .collect();
        for ty in GgmlType::ALL {
            let src = &buf[1..1 + 3 * ty.type_size() as usize];
            let n = 3 * ty.block_size() as usize;
            let (mut a, mut b) = (vec![0f32; n], vec![0f32; n]);
            dequantize_with(Kernel::Scalar, ty, src, &mut a).unwrap();
            dequantize_with(Kernel::Fast, ty, src, &mut b).unwrap();
            for (x, y) in a.iter().zip(&b) {
                assert!(
                    x.to_bits() == y.to_bits() || (x.is_nan() && y.is_nan()),
                    "{ty}"
                );
            }
        }
    }

    #[test]
    fn q8_0_by_hand() {
        let mut b = vec![0x00, 0xC0]; // f16 -2.0
        b.extend((0..32u8).map(|i| i.wrapping_mul(37)));
        for kernel in [Kernel::Scalar, Kernel::Fast] {
            let mut out = [0f32; 32];
            dequantize_with(kernel, GgmlType::Q8_0, &b, &mut out).unwrap();
            for (i, v) in out.iter().enumerate() {
                assert_eq!(*v, -2.0 * f32::from((i as u8).wrapping_mul(37) as i8));
            }
        }
    }
}
