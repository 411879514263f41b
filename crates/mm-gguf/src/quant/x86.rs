//! AVX2 kernels for the common types, chosen at run time.
//!
//! Each kernel does exactly the f32 operations of its scalar twin in `scalar.rs`, in the
//! same order, one rounding each (no FMA), so the results are bit-identical; the
//! quantized integers are unpacked with byte shuffles and masks instead of per-element
//! shifts. Per-block scales are computed by the scalar helpers.
//!
//! Unsafe is confined to three things: the load/store helpers (raw-pointer intrinsics on
//! bounds-checked slices) and the one call into `#[target_feature]` code after the CPU check.

use std::arch::x86_64::*;

use super::scalar::{f16_at, k_scales, u16_at, u32_at};
use super::{KVALUES_FP4, KVALUES_IQ4NL, e8m0_to_f32_half};
use crate::types::GgmlType;

/// True when AVX2 is available and there is an AVX2 kernel for `ty`.
pub(super) fn has(ty: GgmlType) -> bool {
    kernel(ty).is_some() && std::arch::is_x86_feature_detected!("avx2")
}

type Kernel = unsafe fn(&[u8], &mut [f32]);

fn kernel(ty: GgmlType) -> Option<Kernel> {
    Some(match ty {
        GgmlType::Q4_0 => q4_0,
        GgmlType::Q5_0 => q5_0,
        GgmlType::Q8_0 => q8_0,
        GgmlType::Q4_K => q4_k,
        GgmlType::Q5_K => q5_k,
        GgmlType::Q6_K => q6_k,
        GgmlType::Q4_1 => q4_1,
        GgmlType::Q5_1 => q5_1,
        GgmlType::Q2_K => q2_k,
        GgmlType::Q3_K => q3_k,
        GgmlType::IQ4_NL => iq4_nl,
        GgmlType::IQ4_XS => iq4_xs,
        GgmlType::MXFP4 => mxfp4,
        _ => return None,
    })
}

/// Runs the AVX2 kernel for `ty` if the CPU has AVX2 and there is one; false otherwise.
/// `src` is whole blocks, `dst` exactly their output length.
pub(super) fn dequantize(ty: GgmlType, src: &[u8], dst: &mut [f32]) -> bool {
    match kernel(ty) {
        Some(k) if std::arch::is_x86_feature_detected!("avx2") => {
            // SAFETY: every kernel is a safe `#[target_feature(enable = "avx2")]` function;
            // its only precondition is that the CPU supports AVX2, checked just above.
            unsafe { k(src, dst) };
            true
        }
        _ => false,
    }
}

/// 32 bytes of `b` from `at`.
#[target_feature(enable = "avx2")]
#[inline]
fn load32(b: &[u8], at: usize) -> __m256i {
    let s = &b[at..at + 32];
    // SAFETY: `s` is 32 readable bytes (the slice index checked it); loadu has no alignment
    // requirement.
    unsafe { _mm256_loadu_si256(s.as_ptr().cast()) }
}

/// 16 bytes of `b` from `at`.
#[target_feature(enable = "avx2")]
#[inline]
fn load16(b: &[u8], at: usize) -> __m128i {
    let s = &b[at..at + 16];
    // SAFETY: `s` is 16 readable bytes; loadu has no alignment requirement.
    unsafe { _mm_loadu_si128(s.as_ptr().cast()) }
}

/// Stores 8 floats to `out[at..at + 8]`.
#[target_feature(enable = "avx2")]
#[inline]
fn store8(out: &mut [f32], at: usize, v: __m256) {
    let s = &mut out[at..at + 8];
    // SAFETY: `s` is 8 writable f32s; storeu has no alignment requirement.
    unsafe { _mm256_storeu_ps(s.as_mut_ptr(), v) }
}

/// Widens the 16 signed bytes of `q` to f32, multiplies by `scale` and stores them at
/// `out[at..at + 16]`.
#[target_feature(enable = "avx2")]
#[inline]
fn mul16(q: __m128i, scale: __m256, out: &mut [f32], at: usize) {
    let a = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(q));
    let b = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128::<8>(q)));
    store8(out, at, _mm256_mul_ps(a, scale));
    store8(out, at + 8, _mm256_mul_ps(b, scale));
}

/// Like [`mul16`] for 32 bytes, all with one scale.
#[target_feature(enable = "avx2")]
#[inline]
fn mul32(q: __m256i, scale: __m256, out: &mut [f32], at: usize) {
    mul16(_mm256_castsi256_si128(q), scale, out, at);
    mul16(_mm256_extracti128_si256::<1>(q), scale, out, at + 16);
}

/// `scale * q - min` for 32 bytes of `q` (values below 128), stored at `out[at..at + 32]`.
#[target_feature(enable = "avx2")]
#[inline]
fn mul_sub32(q: __m256i, scale: __m256, min: __m256, out: &mut [f32], at: usize) {
    let lo = _mm256_castsi256_si128(q);
    let hi = _mm256_extracti128_si256::<1>(q);
    let parts = [lo, _mm_srli_si128::<8>(lo), hi, _mm_srli_si128::<8>(hi)];
    for (k, p) in parts.into_iter().enumerate() {
        let v = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(p));
        store8(out, at + 8 * k, _mm256_sub_ps(_mm256_mul_ps(scale, v), min));
    }
}

/// `scale * q + add` (the order of Q4_1 and Q5_1) for the 16 bytes of `q` (values below
/// 128), stored at `out[at..at + 16]`.
#[target_feature(enable = "avx2")]
#[inline]
fn mul_add16(q: __m128i, scale: __m256, add: __m256, out: &mut [f32], at: usize) {
    let a = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(q));
    let b = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128::<8>(q)));
    store8(out, at, _mm256_add_ps(_mm256_mul_ps(scale, a), add));
    store8(out, at + 8, _mm256_add_ps(_mm256_mul_ps(scale, b), add));
}

/// `scale * q - min` for the 16 bytes of `q` (values below 128) at `out[at..at + 16]`.
#[target_feature(enable = "avx2")]
#[inline]
fn mul_sub16(q: __m128i, scale: __m256, min: __m256, out: &mut [f32], at: usize) {
    let a = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(q));
    let b = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128::<8>(q)));
    store8(out, at, _mm256_sub_ps(_mm256_mul_ps(scale, a), min));
    store8(out, at + 8, _mm256_sub_ps(_mm256_mul_ps(scale, b), min));
}

/// Low and high nibbles of each of the 16 bytes of `q`.
#[target_feature(enable = "avx2")]
#[inline]
fn nibbles16(q: __m128i) -> (__m128i, __m128i) {
    let m = _mm_set1_epi8(0x0F);
    (
        _mm_and_si128(q, m),
        _mm_and_si128(_mm_srli_epi16::<4>(q), m),
    )
}

/// A 16-entry signed byte table as a shuffle operand.
#[target_feature(enable = "avx2")]
#[inline]
fn table16(t: &[i8; 16]) -> __m128i {
    let b = t.map(|v| v as u8);
    load16(&b, 0)
}

/// Bytes `q >> shift` (shift below 8; bits shifted in from the neighbour byte are masked
/// off by the caller).
#[target_feature(enable = "avx2")]
#[inline]
fn shr_bytes(q: __m256i, shift: usize) -> __m256i {
    _mm256_srl_epi16(q, _mm_cvtsi32_si128(shift as i32))
}

/// Low and high nibbles of each byte of `q`.
#[target_feature(enable = "avx2")]
#[inline]
fn nibbles(q: __m256i) -> (__m256i, __m256i) {
    let m = _mm256_set1_epi8(0x0F);
    (
        _mm256_and_si256(q, m),
        _mm256_and_si256(_mm256_srli_epi16::<4>(q), m),
    )
}

/// Byte `j` of the result is 0x10 when bit `j` of `bits` is set, else 0.
#[target_feature(enable = "avx2")]
#[inline]
fn bits_to_0x10(bits: u32) -> __m256i {
    // Spread byte j/8 of `bits` to byte j (the shuffle works within 128-bit lanes, and each
    // lane holds all four bytes after the broadcast), then test bit j % 8.
    let v = _mm256_set1_epi32(bits as i32);
    let spread = _mm256_setr_epi8(
        0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, //
        2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3,
    );
    let bit = _mm256_set1_epi64x(0x8040_2010_0804_0201u64 as i64);
    let v = _mm256_and_si256(_mm256_shuffle_epi8(v, spread), bit);
    _mm256_and_si256(_mm256_cmpeq_epi8(v, bit), _mm256_set1_epi8(0x10))
}

#[target_feature(enable = "avx2")]
fn q8_0(src: &[u8], dst: &mut [f32]) {
    for (b, y) in src.chunks_exact(34).zip(dst.chunks_exact_mut(32)) {
        let d = _mm256_set1_ps(f16_at(b, 0));
        mul32(load32(b, 2), d, y, 0);
    }
}

#[target_feature(enable = "avx2")]
fn q4_0(src: &[u8], dst: &mut [f32]) {
    for (b, y) in src.chunks_exact(18).zip(dst.chunks_exact_mut(32)) {
        let d = _mm256_set1_ps(f16_at(b, 0));
        let q = load16(b, 2);
        let m = _mm_set1_epi8(0x0F);
        let eight = _mm_set1_epi8(8);
        let lo = _mm_sub_epi8(_mm_and_si128(q, m), eight);
        let hi = _mm_sub_epi8(_mm_and_si128(_mm_srli_epi16::<4>(q), m), eight);
        mul16(lo, d, y, 0);
        mul16(hi, d, y, 16);
    }
}

#[target_feature(enable = "avx2")]
fn q5_0(src: &[u8], dst: &mut [f32]) {
    for (b, y) in src.chunks_exact(22).zip(dst.chunks_exact_mut(32)) {
        let d = _mm256_set1_ps(f16_at(b, 0));
        let q = load16(b, 6);
        let m = _mm_set1_epi8(0x0F);
        // Elements 0..16 are the low nibbles, 16..32 the high ones; qh bit j is element j.
        let lo = _mm_and_si128(q, m);
        let hi = _mm_and_si128(_mm_srli_epi16::<4>(q), m);
        let q = _mm256_or_si256(_mm256_set_m128i(hi, lo), bits_to_0x10(u32_at(b, 2)));
        mul32(_mm256_sub_epi8(q, _mm256_set1_epi8(16)), d, y, 0);
    }
}

#[target_feature(enable = "avx2")]
fn q4_k(src: &[u8], dst: &mut [f32]) {
    for (b, y) in src.chunks_exact(144).zip(dst.chunks_exact_mut(256)) {
        let (ds, ms) = k_scales(b);
        for c in 0..4 {
            let (lo, hi) = nibbles(load32(b, 16 + 32 * c));
            let j = 2 * c;
            let (d0, m0) = (_mm256_set1_ps(ds[j]), _mm256_set1_ps(ms[j]));
            let (d1, m1) = (_mm256_set1_ps(ds[j + 1]), _mm256_set1_ps(ms[j + 1]));
            mul_sub32(lo, d0, m0, y, 64 * c);
            mul_sub32(hi, d1, m1, y, 64 * c + 32);
        }
    }
}

#[target_feature(enable = "avx2")]
fn q5_k(src: &[u8], dst: &mut [f32]) {
    for (b, y) in src.chunks_exact(176).zip(dst.chunks_exact_mut(256)) {
        let (ds, ms) = k_scales(b);
        let qh = load32(b, 16);
        let x10 = _mm256_set1_epi8(0x10);
        for c in 0..4 {
            let (lo, hi) = nibbles(load32(b, 48 + 32 * c));
            for (k, nib) in [lo, hi].into_iter().enumerate() {
                let j = 2 * c + k;
                // Bit j of each qh byte, moved to 0x10.
                let bit = _mm256_set1_epi8(1 << j);
                let h = _mm256_cmpeq_epi8(_mm256_and_si256(qh, bit), bit);
                let q = _mm256_or_si256(nib, _mm256_and_si256(h, x10));
                let (d, m) = (_mm256_set1_ps(ds[j]), _mm256_set1_ps(ms[j]));
                mul_sub32(q, d, m, y, 32 * j);
            }
        }
    }
}

#[target_feature(enable = "avx2")]
fn q6_k(src: &[u8], dst: &mut [f32]) {
    for (b, y) in src.chunks_exact(210).zip(dst.chunks_exact_mut(256)) {
        let d = f16_at(b, 208);
        let dsc: [f32; 16] = std::array::from_fn(|i| d * f32::from(b[192 + i] as i8));
        let three = _mm256_set1_epi8(3);
        let thirty_two = _mm256_set1_epi8(32);
        for h in 0..2 {
            let (a_lo, a_hi) = nibbles(load32(b, 64 * h));
            let (b_lo, b_hi) = nibbles(load32(b, 64 * h + 32));
            let qh = load32(b, 128 + 32 * h);
            // Group g of 32 values takes 2 high bits from bits 2g..2g+2 of each qh byte.
            let his = [
                qh,
                _mm256_srli_epi16::<2>(qh),
                _mm256_srli_epi16::<4>(qh),
                _mm256_srli_epi16::<6>(qh),
            ];
            for (g, (lo, hi)) in [a_lo, b_lo, a_hi, b_hi].into_iter().zip(his).enumerate() {
                let hi = _mm256_slli_epi16::<4>(_mm256_and_si256(hi, three));
                let q = _mm256_sub_epi8(_mm256_or_si256(lo, hi), thirty_two);
                let s = 8 * h + 2 * g;
                let at = 128 * h + 32 * g;
                mul16(_mm256_castsi256_si128(q), _mm256_set1_ps(dsc[s]), y, at);
                mul16(
                    _mm256_extracti128_si256::<1>(q),
                    _mm256_set1_ps(dsc[s + 1]),
                    y,
                    at + 16,
                );
            }
        }
    }
}

#[target_feature(enable = "avx2")]
fn q4_1(src: &[u8], dst: &mut [f32]) {
    for (b, y) in src.chunks_exact(20).zip(dst.chunks_exact_mut(32)) {
        let d = _mm256_set1_ps(f16_at(b, 0));
        let m = _mm256_set1_ps(f16_at(b, 2));
        let (lo, hi) = nibbles16(load16(b, 4));
        mul_add16(lo, d, m, y, 0);
        mul_add16(hi, d, m, y, 16);
    }
}

#[target_feature(enable = "avx2")]
fn q5_1(src: &[u8], dst: &mut [f32]) {
    for (b, y) in src.chunks_exact(24).zip(dst.chunks_exact_mut(32)) {
        let d = _mm256_set1_ps(f16_at(b, 0));
        let m = _mm256_set1_ps(f16_at(b, 2));
        let (lo, hi) = nibbles16(load16(b, 8));
        let q = _mm256_or_si256(_mm256_set_m128i(hi, lo), bits_to_0x10(u32_at(b, 4)));
        mul_add16(_mm256_castsi256_si128(q), d, m, y, 0);
        mul_add16(_mm256_extracti128_si256::<1>(q), d, m, y, 16);
    }
}

#[target_feature(enable = "avx2")]
fn q2_k(src: &[u8], dst: &mut [f32]) {
    for (b, y) in src.chunks_exact(84).zip(dst.chunks_exact_mut(256)) {
        let d = f16_at(b, 80);
        let dmin = f16_at(b, 82);
        let three = _mm256_set1_epi8(3);
        for h in 0..2 {
            let q = load32(b, 16 + 32 * h);
            for s in 0..4 {
                let v = _mm256_and_si256(shr_bytes(q, 2 * s), three);
                let halves = [_mm256_castsi256_si128(v), _mm256_extracti128_si256::<1>(v)];
                for (half, v) in halves.into_iter().enumerate() {
                    let sc = b[h * 8 + s * 2 + half];
                    let dl = _mm256_set1_ps(d * f32::from(sc & 0x0F));
                    let ml = _mm256_set1_ps(dmin * f32::from(sc >> 4));
                    mul_sub16(v, dl, ml, y, h * 128 + s * 32 + half * 16);
                }
            }
        }
    }
}

#[target_feature(enable = "avx2")]
fn q3_k(src: &[u8], dst: &mut [f32]) {
    for (b, y) in src.chunks_exact(110).zip(dst.chunks_exact_mut(256)) {
        let d = f16_at(b, 108);
        let sc = &b[96..108];
        let dl: [f32; 16] = std::array::from_fn(|i| {
            let lo = if i < 8 { sc[i] & 0x0F } else { sc[i - 8] >> 4 };
            let hi = (sc[8 + i % 4] >> (2 * (i / 4))) & 3;
            d * f32::from((lo | (hi << 4)) as i8 - 32)
        });
        let hm = load32(b, 0);
        let three = _mm256_set1_epi8(3);
        let four = _mm256_set1_epi8(4);
        for h in 0..2 {
            let q = load32(b, 32 + 32 * h);
            for s in 0..4 {
                let g = h * 4 + s;
                let ql = _mm256_and_si256(shr_bytes(q, 2 * s), three);
                // Subtract 4 where bit g of the hmask byte is clear.
                let bit = _mm256_set1_epi8(1 << g);
                let set = _mm256_cmpeq_epi8(_mm256_and_si256(hm, bit), bit);
                let v = _mm256_sub_epi8(ql, _mm256_andnot_si256(set, four));
                let at = g * 32;
                mul16(_mm256_castsi256_si128(v), _mm256_set1_ps(dl[2 * g]), y, at);
                mul16(
                    _mm256_extracti128_si256::<1>(v),
                    _mm256_set1_ps(dl[2 * g + 1]),
                    y,
                    at + 16,
                );
            }
        }
    }
}

#[target_feature(enable = "avx2")]
fn iq4_nl(src: &[u8], dst: &mut [f32]) {
    let table = table16(&KVALUES_IQ4NL);
    for (b, y) in src.chunks_exact(18).zip(dst.chunks_exact_mut(32)) {
        let d = _mm256_set1_ps(f16_at(b, 0));
        let (lo, hi) = nibbles16(load16(b, 2));
        mul16(_mm_shuffle_epi8(table, lo), d, y, 0);
        mul16(_mm_shuffle_epi8(table, hi), d, y, 16);
    }
}

#[target_feature(enable = "avx2")]
fn iq4_xs(src: &[u8], dst: &mut [f32]) {
    let table = table16(&KVALUES_IQ4NL);
    for (b, y) in src.chunks_exact(136).zip(dst.chunks_exact_mut(256)) {
        let d = f16_at(b, 0);
        let sh = u16_at(b, 2);
        for ib in 0..8 {
            let lo = (b[4 + ib / 2] >> (4 * (ib % 2))) & 0x0F;
            let hi = ((sh >> (2 * ib)) & 3) as u8;
            let dl = _mm256_set1_ps(d * f32::from((lo | (hi << 4)) as i8 - 32));
            let (ql, qh) = nibbles16(load16(b, 8 + 16 * ib));
            mul16(_mm_shuffle_epi8(table, ql), dl, y, 32 * ib);
            mul16(_mm_shuffle_epi8(table, qh), dl, y, 32 * ib + 16);
        }
    }
}

#[target_feature(enable = "avx2")]
fn mxfp4(src: &[u8], dst: &mut [f32]) {
    let table = table16(&KVALUES_FP4);
    for (b, y) in src.chunks_exact(17).zip(dst.chunks_exact_mut(32)) {
        let d = _mm256_set1_ps(e8m0_to_f32_half(b[0]));
        let (lo, hi) = nibbles16(load16(b, 1));
        mul16(_mm_shuffle_epi8(table, lo), d, y, 0);
        mul16(_mm_shuffle_epi8(table, hi), d, y, 16);
    }
}
