//! Scalar reference dequantizers, one per type.
//!
//! Each kernel is written to follow gguf-py 0.19's numpy code operation by operation: the
//! same element order, the same f32 products in the same order, no fused multiply-add. f32
//! multiplication and subtraction are correctly rounded, so the same sequence of operations
//! gives the same bits. The fast kernels are checked against these, and these against
//! fixtures written by gguf-py.
//!
//! Every kernel takes `src` holding whole blocks and `dst` holding exactly the block count
//! times the block size; the caller (`super::dequantize_with`) checks both.

use super::grids::{IQ1S_GRID, IQ2S_GRID, IQ2XS_GRID, IQ2XXS_GRID, IQ3S_GRID, IQ3XXS_GRID};
use super::{KSIGNS, KVALUES_FP4, KVALUES_IQ4NL, e8m0_to_f32_half, f16_to_f32, ue4m3_to_f32};

/// Little-endian u16 at `i`.
#[inline(always)]
pub(crate) fn u16_at(b: &[u8], i: usize) -> u16 {
    u16::from_le_bytes([b[i], b[i + 1]])
}

/// Little-endian u32 at `i`.
#[inline(always)]
pub(crate) fn u32_at(b: &[u8], i: usize) -> u32 {
    u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]])
}

/// The f16 at `i`, widened exactly.
#[inline(always)]
pub(crate) fn f16_at(b: &[u8], i: usize) -> f32 {
    f16_to_f32(u16_at(b, i))
}

/// Runs `f` on each (block, output block) pair.
#[inline(always)]
fn blocks<const TS: usize, const BS: usize>(
    src: &[u8],
    dst: &mut [f32],
    mut f: impl FnMut(&[u8; TS], &mut [f32; BS]),
) {
    for (b, y) in src.chunks_exact(TS).zip(dst.chunks_exact_mut(BS)) {
        // chunks_exact yields slices of exactly TS / BS elements, so both conversions succeed.
        if let (Ok(b), Ok(y)) = (b.try_into(), y.try_into()) {
            f(b, y);
        }
    }
}

/// Applies `sign` (bit set means negative) to `v`; gguf-py multiplies by -1.0 or 1.0, which is
/// exact, so negation gives the same bits.
#[inline(always)]
fn signed(v: f32, negative: bool) -> f32 {
    if negative { -v } else { v }
}

pub(crate) fn f32(src: &[u8], dst: &mut [f32]) {
    for (b, y) in src.chunks_exact(4).zip(dst.iter_mut()) {
        *y = f32::from_bits(u32_at(b, 0));
    }
}

pub(crate) fn f16(src: &[u8], dst: &mut [f32]) {
    for (b, y) in src.chunks_exact(2).zip(dst.iter_mut()) {
        *y = f16_at(b, 0);
    }
}

pub(crate) fn bf16(src: &[u8], dst: &mut [f32]) {
    for (b, y) in src.chunks_exact(2).zip(dst.iter_mut()) {
        *y = f32::from_bits(u32::from(u16_at(b, 0)) << 16);
    }
}

pub(crate) fn f64(src: &[u8], dst: &mut [f32]) {
    for (b, y) in src.chunks_exact(8).zip(dst.iter_mut()) {
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        *y = f64::from_le_bytes(a) as f32;
    }
}

pub(crate) fn i8(src: &[u8], dst: &mut [f32]) {
    for (&b, y) in src.iter().zip(dst.iter_mut()) {
        *y = f32::from(b as i8);
    }
}

pub(crate) fn i16(src: &[u8], dst: &mut [f32]) {
    for (b, y) in src.chunks_exact(2).zip(dst.iter_mut()) {
        *y = f32::from(u16_at(b, 0) as i16);
    }
}

pub(crate) fn i32(src: &[u8], dst: &mut [f32]) {
    for (b, y) in src.chunks_exact(4).zip(dst.iter_mut()) {
        // Round to nearest, ties to even, as numpy's astype(float32).
        *y = u32_at(b, 0) as i32 as f32;
    }
}

pub(crate) fn i64(src: &[u8], dst: &mut [f32]) {
    for (b, y) in src.chunks_exact(8).zip(dst.iter_mut()) {
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        *y = i64::from_le_bytes(a) as f32;
    }
}

pub(crate) fn q4_0(src: &[u8], dst: &mut [f32]) {
    blocks::<18, 32>(src, dst, |b, y| {
        let d = f16_at(b, 0);
        for j in 0..16 {
            y[j] = d * f32::from((b[2 + j] & 0x0F) as i8 - 8);
            y[j + 16] = d * f32::from((b[2 + j] >> 4) as i8 - 8);
        }
    });
}

pub(crate) fn q4_1(src: &[u8], dst: &mut [f32]) {
    blocks::<20, 32>(src, dst, |b, y| {
        let d = f16_at(b, 0);
        let m = f16_at(b, 2);
        for j in 0..16 {
            y[j] = d * f32::from(b[4 + j] & 0x0F) + m;
            y[j + 16] = d * f32::from(b[4 + j] >> 4) + m;
        }
    });
}

pub(crate) fn q5_0(src: &[u8], dst: &mut [f32]) {
    blocks::<22, 32>(src, dst, |b, y| {
        let d = f16_at(b, 0);
        let qh = u32_at(b, 2);
        for j in 0..16 {
            let lo = (b[6 + j] & 0x0F) | ((((qh >> j) & 1) as u8) << 4);
            let hi = (b[6 + j] >> 4) | ((((qh >> (j + 16)) & 1) as u8) << 4);
            y[j] = d * f32::from(lo as i8 - 16);
            y[j + 16] = d * f32::from(hi as i8 - 16);
        }
    });
}

pub(crate) fn q5_1(src: &[u8], dst: &mut [f32]) {
    blocks::<24, 32>(src, dst, |b, y| {
        let d = f16_at(b, 0);
        let m = f16_at(b, 2);
        let qh = u32_at(b, 4);
        for j in 0..16 {
            let lo = (b[8 + j] & 0x0F) | ((((qh >> j) & 1) as u8) << 4);
            let hi = (b[8 + j] >> 4) | ((((qh >> (j + 16)) & 1) as u8) << 4);
            y[j] = d * f32::from(lo) + m;
            y[j + 16] = d * f32::from(hi) + m;
        }
    });
}

pub(crate) fn q8_0(src: &[u8], dst: &mut [f32]) {
    blocks::<34, 32>(src, dst, |b, y| {
        let d = f16_at(b, 0);
        for j in 0..32 {
            y[j] = f32::from(b[2 + j] as i8) * d;
        }
    });
}

/// Q8_1 is an intermediate type of ggml's dot products; gguf-py has no dequantizer for it.
/// Its value is `d * q` (the stored sum `s` is redundant).
pub(crate) fn q8_1(src: &[u8], dst: &mut [f32]) {
    blocks::<36, 32>(src, dst, |b, y| {
        let d = f16_at(b, 0);
        for j in 0..32 {
            y[j] = d * f32::from(b[4 + j] as i8);
        }
    });
}

pub(crate) fn q2_k(src: &[u8], dst: &mut [f32]) {
    blocks::<84, 256>(src, dst, |b, y| {
        let (scales, qs) = (&b[0..16], &b[16..80]);
        let d = f16_at(b, 80);
        let dmin = f16_at(b, 82);
        // Value e = 128h + 32s + l takes bits 2s..2s+2 of qs[32h + l]; scale e / 16.
        for h in 0..2 {
            for s in 0..4 {
                for half in 0..2 {
                    let sc = scales[h * 8 + s * 2 + half];
                    let dl = d * f32::from(sc & 0x0F);
                    let ml = dmin * f32::from(sc >> 4);
                    let at = h * 128 + s * 32 + half * 16;
                    let q = &qs[h * 32 + half * 16..][..16];
                    for (v, &q) in y[at..at + 16].iter_mut().zip(q) {
                        *v = dl * f32::from((q >> (2 * s)) & 3) - ml;
                    }
                }
            }
        }
    });
}

pub(crate) fn q3_k(src: &[u8], dst: &mut [f32]) {
    blocks::<110, 256>(src, dst, |b, y| {
        let (hmask, qs, sc) = (&b[0..32], &b[32..96], &b[96..108]);
        let d = f16_at(b, 108);
        let mut dl = [0f32; 16];
        for (i, v) in dl.iter_mut().enumerate() {
            let lo = if i < 8 { sc[i] & 0x0F } else { sc[i - 8] >> 4 };
            let hi = (sc[8 + i % 4] >> (2 * (i / 4))) & 3;
            *v = d * f32::from((lo | (hi << 4)) as i8 - 32);
        }
        // Value e = 128h + 32s + l: low bits 2s..2s+2 of qs[32h + l], high bit e / 32 of
        // hmask[l] (which subtracts 4 when it is clear); scale e / 16.
        for h in 0..2 {
            for s in 0..4 {
                let g = h * 4 + s;
                for (l, v) in y[g * 32..g * 32 + 32].iter_mut().enumerate() {
                    let ql = ((qs[h * 32 + l] >> (2 * s)) & 3) as i8;
                    let qh = ((hmask[l] >> g) & 1) ^ 1;
                    *v = dl[g * 2 + l / 16] * f32::from(ql - ((qh << 2) as i8));
                }
            }
        }
    });
}

/// The eight 6-bit scales and minimums of Q4_K and Q5_K.
#[inline(always)]
pub(crate) fn k_scale_min(s: &[u8]) -> ([u8; 8], [u8; 8]) {
    let mut sc = [0u8; 8];
    let mut mn = [0u8; 8];
    for j in 0..4 {
        sc[j] = s[j] & 0x3F;
        mn[j] = s[4 + j] & 0x3F;
        sc[4 + j] = (s[8 + j] & 0x0F) | ((s[j] >> 2) & 0x30);
        mn[4 + j] = (s[8 + j] >> 4) | ((s[4 + j] >> 2) & 0x30);
    }
    (sc, mn)
}

/// Per-sub-block `(d * scale, dmin * min)` of Q4_K and Q5_K, as gguf-py computes them.
#[inline(always)]
pub(crate) fn k_scales(b: &[u8]) -> ([f32; 8], [f32; 8]) {
    let d = f16_at(b, 0);
    let dmin = f16_at(b, 2);
    let (sc, mn) = k_scale_min(&b[4..16]);
    (
        sc.map(|s| d * f32::from(s)),
        mn.map(|m| dmin * f32::from(m)),
    )
}

pub(crate) fn q4_k(src: &[u8], dst: &mut [f32]) {
    blocks::<144, 256>(src, dst, |b, y| {
        let (ds, ms) = k_scales(b);
        let qs = &b[16..144];
        // Sub-block j (32 values): nibble j % 2 of qs[32 (j / 2)..][..32].
        for j in 0..8 {
            let q = &qs[(j / 2) * 32..][..32];
            for (v, &q) in y[j * 32..j * 32 + 32].iter_mut().zip(q) {
                *v = ds[j] * f32::from((q >> (4 * (j % 2))) & 0x0F) - ms[j];
            }
        }
    });
}

pub(crate) fn q5_k(src: &[u8], dst: &mut [f32]) {
    blocks::<176, 256>(src, dst, |b, y| {
        let (ds, ms) = k_scales(b);
        let (qh, qs) = (&b[16..48], &b[48..176]);
        // Sub-block j: nibble j % 2 of qs[32 (j / 2) + l], fifth bit bit j of qh[l].
        for j in 0..8 {
            let q = &qs[(j / 2) * 32..][..32];
            for ((v, &q), &h) in y[j * 32..j * 32 + 32].iter_mut().zip(q).zip(qh) {
                let lo = (q >> (4 * (j % 2))) & 0x0F;
                let hi = (h >> j) & 1;
                *v = ds[j] * f32::from(lo | (hi << 4)) - ms[j];
            }
        }
    });
}

pub(crate) fn q6_k(src: &[u8], dst: &mut [f32]) {
    blocks::<210, 256>(src, dst, |b, y| {
        let (ql, qh, sc) = (&b[0..128], &b[128..192], &b[192..208]);
        let d = f16_at(b, 208);
        let dsc: [f32; 16] = std::array::from_fn(|i| d * f32::from(sc[i] as i8));
        // Value e = 128h + 32g + l: nibble g / 2 of ql[64h + 32 (g % 2) + l], two high bits
        // 2g..2g+2 of qh[32h + l]; scale e / 16.
        for h in 0..2 {
            for g in 0..4 {
                let lo = &ql[h * 64 + (g % 2) * 32..][..32];
                let hi = &qh[h * 32..][..32];
                let at = h * 128 + g * 32;
                for (l, v) in y[at..at + 32].iter_mut().enumerate() {
                    let q_lo = (lo[l] >> (4 * (g / 2))) & 0x0F;
                    let q_hi = (hi[l] >> (2 * g)) & 3;
                    let q = (q_lo | (q_hi << 4)) as i8 - 32;
                    *v = dsc[h * 8 + g * 2 + l / 16] * f32::from(q);
                }
            }
        }
    });
}

/// Q8_K is ggml's intermediate type for K-quant dot products; gguf-py has no dequantizer
/// for it. ggml's `dequantize_row_q8_K` computes `d * q` with an f32 `d`.
pub(crate) fn q8_k(src: &[u8], dst: &mut [f32]) {
    blocks::<292, 256>(src, dst, |b, y| {
        let d = f32::from_bits(u32_at(b, 0));
        for (j, v) in y.iter_mut().enumerate() {
            *v = d * f32::from(b[4 + j] as i8);
        }
    });
}

pub(crate) fn tq1_0(src: &[u8], dst: &mut [f32]) {
    const POW3: [u8; 5] = [1, 3, 9, 27, 81];
    blocks::<54, 256>(src, dst, |b, y| {
        let d = f16_at(b, 52);
        // The byte multiplications wrap, as gguf-py's uint8 products do: that is the
        // base-3 digit extraction.
        let ternary = |x: u8| f32::from(((u16::from(x) * 3) >> 8) as i8 - 1);
        for p in 0..5 {
            for l in 0..32 {
                y[p * 32 + l] = d * ternary(b[l].wrapping_mul(POW3[p]));
            }
            for l in 0..16 {
                y[160 + p * 16 + l] = d * ternary(b[32 + l].wrapping_mul(POW3[p]));
            }
        }
        for p in 0..4 {
            for l in 0..4 {
                y[240 + p * 4 + l] = d * ternary(b[48 + l].wrapping_mul(POW3[p]));
            }
        }
    });
}

pub(crate) fn tq2_0(src: &[u8], dst: &mut [f32]) {
    blocks::<66, 256>(src, dst, |b, y| {
        let d = f16_at(b, 64);
        for (e, v) in y.iter_mut().enumerate() {
            let (h, s, l) = (e / 128, (e / 32) % 4, e % 32);
            let q = ((b[h * 32 + l] >> (2 * s)) & 3) as i8 - 1;
            *v = d * f32::from(q);
        }
    });
}

pub(crate) fn mxfp4(src: &[u8], dst: &mut [f32]) {
    blocks::<17, 32>(src, dst, |b, y| {
        let d = e8m0_to_f32_half(b[0]);
        for l in 0..16 {
            y[l] = d * f32::from(KVALUES_FP4[usize::from(b[1 + l] & 0x0F)]);
            y[l + 16] = d * f32::from(KVALUES_FP4[usize::from(b[1 + l] >> 4)]);
        }
    });
}

pub(crate) fn nvfp4(src: &[u8], dst: &mut [f32]) {
    blocks::<36, 64>(src, dst, |b, y| {
        for g in 0..4 {
            let d = ue4m3_to_f32(b[g]);
            let qs = &b[4 + g * 8..4 + g * 8 + 8];
            for l in 0..8 {
                y[g * 16 + l] = d * f32::from(KVALUES_FP4[usize::from(qs[l] & 0x0F)]);
                y[g * 16 + 8 + l] = d * f32::from(KVALUES_FP4[usize::from(qs[l] >> 4)]);
            }
        }
    });
}

/// Q1_0 (gguf-py 0.19 has the type in its table but no dequantizer): ggml's
/// `dequantize_row_q1_0` maps sign bit 1 to `+d` and 0 to `-d`, bits LSB-first.
pub(crate) fn q1_0(src: &[u8], dst: &mut [f32]) {
    blocks::<18, 128>(src, dst, |b, y| {
        let d = f16_at(b, 0);
        for (j, v) in y.iter_mut().enumerate() {
            *v = if (b[2 + j / 8] >> (j % 8)) & 1 != 0 {
                d
            } else {
                -d
            };
        }
    });
}

/// Byte `j` of a grid row, as f32.
#[inline(always)]
fn grid8(row: u64, j: usize) -> f32 {
    f32::from((row >> (8 * j)) as u8)
}

pub(crate) fn iq2_xxs(src: &[u8], dst: &mut [f32]) {
    blocks::<66, 256>(src, dst, |b, y| {
        let d = f16_at(b, 0);
        for ib in 0..8 {
            let aux0 = u32_at(b, 2 + 8 * ib);
            let aux1 = u32_at(b, 2 + 8 * ib + 4);
            let db = d * (0.5 + (aux1 >> 28) as f32) * 0.25;
            for k in 0..4 {
                let row = IQ2XXS_GRID[((aux0 >> (8 * k)) & 0xFF) as usize];
                let signs = KSIGNS[((aux1 >> (7 * k)) & 0x7F) as usize];
                for j in 0..8 {
                    y[ib * 32 + k * 8 + j] = signed(db * grid8(row, j), (signs >> j) & 1 != 0);
                }
            }
        }
    });
}

pub(crate) fn iq2_xs(src: &[u8], dst: &mut [f32]) {
    blocks::<74, 256>(src, dst, |b, y| {
        let d = f16_at(b, 0);
        let scales = &b[66..74];
        for i in 0..32 {
            let q = u16_at(b, 2 + 2 * i);
            let s = (scales[i / 4] >> (4 * ((i / 2) % 2))) & 0x0F;
            let db = d * (0.5 + f32::from(s)) * 0.25;
            let row = IQ2XS_GRID[usize::from(q & 511)];
            let signs = KSIGNS[usize::from(q >> 9)];
            for j in 0..8 {
                y[i * 8 + j] = signed(db * grid8(row, j), (signs >> j) & 1 != 0);
            }
        }
    });
}

pub(crate) fn iq2_s(src: &[u8], dst: &mut [f32]) {
    blocks::<82, 256>(src, dst, |b, y| {
        let d = f16_at(b, 0);
        let (qs, signs, qh, scales) = (&b[2..34], &b[34..66], &b[66..74], &b[74..82]);
        for i in 0..32 {
            let s = (scales[i / 4] >> (4 * ((i / 2) % 2))) & 0x0F;
            let db = d * (0.5 + f32::from(s)) * 0.25;
            let hi = u16::from((qh[i / 4] >> (2 * (i % 4))) & 3);
            let row = IQ2S_GRID[usize::from(u16::from(qs[i]) | (hi << 8))];
            for j in 0..8 {
                y[i * 8 + j] = signed(db * grid8(row, j), (signs[i] >> j) & 1 != 0);
            }
        }
    });
}

pub(crate) fn iq3_xxs(src: &[u8], dst: &mut [f32]) {
    blocks::<98, 256>(src, dst, |b, y| {
        let d = f16_at(b, 0);
        let qs = &b[2..66];
        for ib in 0..8 {
            let aux = u32_at(b, 66 + 4 * ib);
            let db = d * (0.5 + (aux >> 28) as f32) * 0.5;
            for k in 0..4 {
                let signs = KSIGNS[((aux >> (7 * k)) & 0x7F) as usize];
                for j in 0..8 {
                    let e = ib * 32 + k * 8 + j;
                    let row = IQ3XXS_GRID[usize::from(qs[e / 4])];
                    let g = f32::from((row >> (8 * (e % 4))) as u8);
                    y[e] = signed(db * g, (signs >> j) & 1 != 0);
                }
            }
        }
    });
}

pub(crate) fn iq3_s(src: &[u8], dst: &mut [f32]) {
    blocks::<110, 256>(src, dst, |b, y| {
        let d = f16_at(b, 0);
        let (qs, qh, signs, scales) = (&b[2..66], &b[66..74], &b[74..106], &b[106..110]);
        for (e, v) in y.iter_mut().enumerate() {
            let ib = e / 32;
            let s = (scales[ib / 2] >> (4 * (ib % 2))) & 0x0F;
            let db = d * f32::from(1 + 2 * s);
            let i = e / 4;
            let hi = u16::from((qh[i / 8] >> (i % 8)) & 1);
            let row = IQ3S_GRID[usize::from(u16::from(qs[i]) | (hi << 8))];
            let g = f32::from((row >> (8 * (e % 4))) as u8);
            *v = signed(db * g, (signs[e / 8] >> (e % 8)) & 1 != 0);
        }
    });
}

/// The IQ1 shift applied to every grid value before scaling.
const IQ1_DELTA: f32 = 0.125;

pub(crate) fn iq1_s(src: &[u8], dst: &mut [f32]) {
    blocks::<50, 256>(src, dst, |b, y| {
        let d = f16_at(b, 0);
        let qs = &b[2..34];
        for ib in 0..8 {
            let qh = u16_at(b, 34 + 2 * ib);
            let dl = d * f32::from(2 * ((qh >> 12) & 7) + 1);
            let delta = if qh & 0x8000 == 0 {
                IQ1_DELTA
            } else {
                -IQ1_DELTA
            };
            for k in 0..4 {
                let i = ib * 4 + k;
                let idx = u16::from(qs[i]) | (((qh >> (3 * k)) & 7) << 8);
                let row = IQ1S_GRID[usize::from(idx)];
                for j in 0..8 {
                    let g = f32::from((row >> (8 * j)) as u8 as i8);
                    y[i * 8 + j] = dl * (g + delta);
                }
            }
        }
    });
}

pub(crate) fn iq1_m(src: &[u8], dst: &mut [f32]) {
    blocks::<56, 256>(src, dst, |b, y| {
        let (qs, qh) = (&b[0..32], &b[32..48]);
        let sc = [u16_at(b, 48), u16_at(b, 50), u16_at(b, 52), u16_at(b, 54)];
        // The f16 super-block scale is spread over the top nibbles of the four scale words.
        let d = f16_to_f32(
            ((sc[0] & 0xF000) >> 12)
                | ((sc[1] & 0xF000) >> 8)
                | ((sc[2] & 0xF000) >> 4)
                | (sc[3] & 0xF000),
        );
        for i in 0..32 {
            let s = (sc[i / 8] >> (3 * ((i / 2) % 4))) & 7;
            let dl = d * f32::from(2 * s + 1);
            let h = (qh[i / 2] >> (4 * (i % 2))) & 0x0F;
            let idx = u16::from(qs[i]) | (u16::from(h & 7) << 8);
            let delta = if h & 8 == 0 { IQ1_DELTA } else { -IQ1_DELTA };
            let row = IQ1S_GRID[usize::from(idx)];
            for j in 0..8 {
                let g = f32::from((row >> (8 * j)) as u8 as i8);
                y[i * 8 + j] = dl * (g + delta);
            }
        }
    });
}

pub(crate) fn iq4_nl(src: &[u8], dst: &mut [f32]) {
    blocks::<18, 32>(src, dst, |b, y| {
        let d = f16_at(b, 0);
        for l in 0..16 {
            y[l] = d * f32::from(KVALUES_IQ4NL[usize::from(b[2 + l] & 0x0F)]);
            y[l + 16] = d * f32::from(KVALUES_IQ4NL[usize::from(b[2 + l] >> 4)]);
        }
    });
}

pub(crate) fn iq4_xs(src: &[u8], dst: &mut [f32]) {
    blocks::<136, 256>(src, dst, |b, y| {
        let d = f16_at(b, 0);
        let sh = u16_at(b, 2);
        let (sl, qs) = (&b[4..8], &b[8..136]);
        for ib in 0..8 {
            let lo = (sl[ib / 2] >> (4 * (ib % 2))) & 0x0F;
            let hi = ((sh >> (2 * ib)) & 3) as u8;
            let dl = d * f32::from((lo | (hi << 4)) as i8 - 32);
            for l in 0..16 {
                let q = qs[ib * 16 + l];
                y[ib * 32 + l] = dl * f32::from(KVALUES_IQ4NL[usize::from(q & 0x0F)]);
                y[ib * 32 + 16 + l] = dl * f32::from(KVALUES_IQ4NL[usize::from(q >> 4)]);
            }
        }
    });
}
