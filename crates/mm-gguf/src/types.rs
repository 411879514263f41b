//! The table of ggml tensor types.
//!
//! Every tensor type id the current GGUF format knows has one row here: its name, how many
//! elements one block holds and how many bytes that block takes. The table matches gguf-py
//! 0.19 (`GGMLQuantizationType` and `GGML_QUANT_SIZES`), checked by
//! `tests/dequant_fixtures.rs` against a list written by `scripts/dequant_ref.py`, with one
//! deliberate exception: Q8_1 is 36 bytes per block, as in ggml's C code, where gguf-py has
//! a stale 40.
//!
//! Ids that ggml once used and has since removed (Q4_2, Q4_3, the interleaved Q4_0_x_x and
//! IQ4_NL_x_x repacks) are not types: [`GgmlType::from_id`] refuses them with an
//! [`UnknownType`] that names the removed type, so a user learns to re-convert the model.

use std::fmt;

/// A ggml tensor element type, as stored in a GGUF tensor info.
///
/// Variant names follow ggml's (`Q4_K`, `IQ2_XXS`...), so they read the same as in llama.cpp
/// and gguf-py. The discriminant is the on-disk type id (`ty as u32`).
///
/// Non-exhaustive: ggml adds types; a newer file may carry an id this table lacks, which
/// [`GgmlType::from_id`] reports as [`UnknownType`].
#[allow(non_camel_case_types)]
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u32)]
pub enum GgmlType {
    /// IEEE 754 binary32.
    F32 = 0,
    /// IEEE 754 binary16.
    F16 = 1,
    /// 32 weights: f16 scale, 4-bit quants, offset 8.
    Q4_0 = 2,
    /// 32 weights: f16 scale and minimum, 4-bit quants.
    Q4_1 = 3,
    /// 32 weights: f16 scale, 5-bit quants, offset 16.
    Q5_0 = 6,
    /// 32 weights: f16 scale and minimum, 5-bit quants.
    Q5_1 = 7,
    /// 32 weights: f16 scale, 8-bit signed quants.
    Q8_0 = 8,
    /// 32 weights: f16 scale and sum, 8-bit quants (an intermediate type for dot products).
    ///
    /// 36 bytes per block, as ggml's `block_q8_1` (`static_assert`ed in ggml-common.h).
    /// gguf-py 0.19 still lists 40, a leftover from when the scale and sum were f32.
    Q8_1 = 9,
    /// 256-weight super-block, 2-bit quants with 4-bit scales and minimums.
    Q2_K = 10,
    /// 256-weight super-block, 3-bit quants with 6-bit scales.
    Q3_K = 11,
    /// 256-weight super-block, 4-bit quants with 6-bit scales and minimums.
    Q4_K = 12,
    /// 256-weight super-block, 5-bit quants with 6-bit scales and minimums.
    Q5_K = 13,
    /// 256-weight super-block, 6-bit quants with 8-bit scales.
    Q6_K = 14,
    /// 256-weight super-block, f32 scale, 8-bit quants and block sums.
    Q8_K = 15,
    /// Importance-matrix 2-bit type, 2.06 bits per weight.
    IQ2_XXS = 16,
    /// Importance-matrix 2-bit type, 2.31 bits per weight.
    IQ2_XS = 17,
    /// Importance-matrix 3-bit type, 3.06 bits per weight.
    IQ3_XXS = 18,
    /// Importance-matrix 1-bit type, 1.56 bits per weight.
    IQ1_S = 19,
    /// 32 weights: f16 scale, 4-bit indices into a non-linear table.
    IQ4_NL = 20,
    /// Importance-matrix 3-bit type, 3.44 bits per weight.
    IQ3_S = 21,
    /// Importance-matrix 2-bit type, 2.5 bits per weight.
    IQ2_S = 22,
    /// 256-weight super-block of the non-linear 4-bit table, 4.25 bits per weight.
    IQ4_XS = 23,
    /// Signed 8-bit integer.
    I8 = 24,
    /// Signed 16-bit integer, little-endian.
    I16 = 25,
    /// Signed 32-bit integer, little-endian.
    I32 = 26,
    /// Signed 64-bit integer, little-endian.
    I64 = 27,
    /// IEEE 754 binary64.
    F64 = 28,
    /// Importance-matrix 1-bit type, 1.75 bits per weight.
    IQ1_M = 29,
    /// bfloat16: the top half of an f32.
    BF16 = 30,
    /// Ternary weights, 1.69 bits per weight (base-3 packing).
    TQ1_0 = 34,
    /// Ternary weights, 2.06 bits per weight (2-bit packing).
    TQ2_0 = 35,
    /// OCP microscaling FP4: 32 E2M1 weights sharing an E8M0 scale.
    MXFP4 = 39,
    /// NVIDIA FP4: 64 E2M1 weights in four groups, each with an UE4M3 scale.
    NVFP4 = 40,
    /// 128 weights: f16 scale, one sign bit per weight.
    Q1_0 = 41,
}

/// One row of the table: `(type, name, block size in elements, bytes per block)`.
type Row = (GgmlType, &'static str, u32, u32);

const TABLE: &[Row] = &[
    (GgmlType::F32, "F32", 1, 4),
    (GgmlType::F16, "F16", 1, 2),
    (GgmlType::Q4_0, "Q4_0", 32, 18),
    (GgmlType::Q4_1, "Q4_1", 32, 20),
    (GgmlType::Q5_0, "Q5_0", 32, 22),
    (GgmlType::Q5_1, "Q5_1", 32, 24),
    (GgmlType::Q8_0, "Q8_0", 32, 34),
    (GgmlType::Q8_1, "Q8_1", 32, 36),
    (GgmlType::Q2_K, "Q2_K", 256, 84),
    (GgmlType::Q3_K, "Q3_K", 256, 110),
    (GgmlType::Q4_K, "Q4_K", 256, 144),
    (GgmlType::Q5_K, "Q5_K", 256, 176),
    (GgmlType::Q6_K, "Q6_K", 256, 210),
    (GgmlType::Q8_K, "Q8_K", 256, 292),
    (GgmlType::IQ2_XXS, "IQ2_XXS", 256, 66),
    (GgmlType::IQ2_XS, "IQ2_XS", 256, 74),
    (GgmlType::IQ3_XXS, "IQ3_XXS", 256, 98),
    (GgmlType::IQ1_S, "IQ1_S", 256, 50),
    (GgmlType::IQ4_NL, "IQ4_NL", 32, 18),
    (GgmlType::IQ3_S, "IQ3_S", 256, 110),
    (GgmlType::IQ2_S, "IQ2_S", 256, 82),
    (GgmlType::IQ4_XS, "IQ4_XS", 256, 136),
    (GgmlType::I8, "I8", 1, 1),
    (GgmlType::I16, "I16", 1, 2),
    (GgmlType::I32, "I32", 1, 4),
    (GgmlType::I64, "I64", 1, 8),
    (GgmlType::F64, "F64", 1, 8),
    (GgmlType::IQ1_M, "IQ1_M", 256, 56),
    (GgmlType::BF16, "BF16", 1, 2),
    (GgmlType::TQ1_0, "TQ1_0", 256, 54),
    (GgmlType::TQ2_0, "TQ2_0", 256, 66),
    (GgmlType::MXFP4, "MXFP4", 32, 17),
    (GgmlType::NVFP4, "NVFP4", 64, 36),
    (GgmlType::Q1_0, "Q1_0", 128, 18),
];

/// Ids ggml used once and removed from the GGUF format, with their old names.
const REMOVED: &[(u32, &str)] = &[
    (4, "Q4_2"),
    (5, "Q4_3"),
    (31, "Q4_0_4_4"),
    (32, "Q4_0_4_8"),
    (33, "Q4_0_8_8"),
    (36, "IQ4_NL_4_4"),
    (37, "IQ4_NL_4_8"),
    (38, "IQ4_NL_8_8"),
];

/// A tensor type id that is not in the table.
///
/// `removed` names the type when ggml once used the id and has dropped it (such files must
/// be re-converted with a current llama.cpp); otherwise the id is unknown to this version
/// (a newer format, or a corrupt file).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{}", describe_unknown(*.id, *.removed))]
pub struct UnknownType {
    /// The type id read from the file.
    pub id: u32,
    /// The old name when the id belonged to a type ggml has removed.
    pub removed: Option<&'static str>,
}

fn describe_unknown(id: u32, removed: Option<&'static str>) -> String {
    match removed {
        Some(name) => format!(
            "tensor type id {id} ({name}) was removed from the GGUF format; \
             re-convert the model with a current llama.cpp"
        ),
        None => format!(
            "unknown tensor type id {id}: not a ggml type this version knows \
             (a newer format, or a corrupt file)"
        ),
    }
}

impl GgmlType {
    /// Every type in the table, in id order.
    pub const ALL: [GgmlType; 34] = [
        GgmlType::F32,
        GgmlType::F16,
        GgmlType::Q4_0,
        GgmlType::Q4_1,
        GgmlType::Q5_0,
        GgmlType::Q5_1,
        GgmlType::Q8_0,
        GgmlType::Q8_1,
        GgmlType::Q2_K,
        GgmlType::Q3_K,
        GgmlType::Q4_K,
        GgmlType::Q5_K,
        GgmlType::Q6_K,
        GgmlType::Q8_K,
        GgmlType::IQ2_XXS,
        GgmlType::IQ2_XS,
        GgmlType::IQ3_XXS,
        GgmlType::IQ1_S,
        GgmlType::IQ4_NL,
        GgmlType::IQ3_S,
        GgmlType::IQ2_S,
        GgmlType::IQ4_XS,
        GgmlType::I8,
        GgmlType::I16,
        GgmlType::I32,
        GgmlType::I64,
        GgmlType::F64,
        GgmlType::IQ1_M,
        GgmlType::BF16,
        GgmlType::TQ1_0,
        GgmlType::TQ2_0,
        GgmlType::MXFP4,
        GgmlType::NVFP4,
        GgmlType::Q1_0,
    ];

    /// The type with on-disk id `id`.
    ///
    /// # Errors
    /// [`UnknownType`] when the id is not in the table (removed types are named in it).
    /// Never panics. O(1) for known ids.
    pub fn from_id(id: u32) -> Result<GgmlType, UnknownType> {
        let row = usize::try_from(id)
            .ok()
            .and_then(|i| Self::ALL.get(index_of(i)?));
        match row {
            Some(&ty) if ty.id() == id => Ok(ty),
            _ => Err(UnknownType {
                id,
                removed: REMOVED.iter().find(|r| r.0 == id).map(|r| r.1),
            }),
        }
    }

    /// The type named `name` (ggml's spelling, ASCII case-insensitive: `"q4_k"` works).
    pub fn from_name(name: &str) -> Option<GgmlType> {
        TABLE
            .iter()
            .find(|r| r.1.eq_ignore_ascii_case(name))
            .map(|r| r.0)
    }

    /// The on-disk type id.
    pub const fn id(self) -> u32 {
        self as u32
    }

    fn row(self) -> &'static Row {
        // `index_of` maps every discriminant to its row; the unit test `table_is_consistent`
        // checks that for all types, so the fallback is never taken.
        match index_of(self as usize) {
            Some(i) => &TABLE[i],
            None => &TABLE[0],
        }
    }

    /// ggml's name for the type (`"Q4_K"`).
    pub fn name(self) -> &'static str {
        self.row().1
    }

    /// Elements per block (1 for plain scalar types, 32, 64, 128 or 256 otherwise).
    pub fn block_size(self) -> u32 {
        self.row().2
    }

    /// Bytes per block.
    pub fn type_size(self) -> u32 {
        self.row().3
    }

    /// True for block-quantized types (block size above one).
    pub fn is_quantized(self) -> bool {
        self.block_size() > 1
    }

    /// Bytes taken by `n_elements` consecutive elements (one row).
    ///
    /// Returns `None` when `n_elements` is not a whole number of blocks or the size
    /// overflows `u64`. O(1).
    pub fn row_bytes(self, n_elements: u64) -> Option<u64> {
        let bs = u64::from(self.block_size());
        if !n_elements.is_multiple_of(bs) {
            return None;
        }
        (n_elements / bs).checked_mul(u64::from(self.type_size()))
    }

    /// Bytes taken by a tensor of shape `dims` (ggml order: `dims[0]` is the row length,
    /// the contiguous axis that blocks run along).
    ///
    /// An empty shape is a scalar (one element). Returns `None` when the row length is not
    /// a whole number of blocks or the size (or the element count) overflows `u64`.
    /// O(`dims.len()`).
    pub fn tensor_bytes(self, dims: &[u64]) -> Option<u64> {
        let (&row, rest) = dims.split_first().unwrap_or((&1, &[]));
        let rows = rest.iter().try_fold(1u64, |acc, &d| acc.checked_mul(d))?;
        // The element count must fit too, so a consumer can index every element.
        row.checked_mul(rows)?;
        self.row_bytes(row)?.checked_mul(rows)
    }
}

/// Position of type id `id` in [`TABLE`] and [`GgmlType::ALL`]: ids are dense except for the
/// removed ones, so the index is the id minus the removed ids below it.
const fn index_of(id: usize) -> Option<usize> {
    match id {
        0..=3 => Some(id),
        6..=30 => Some(id - 2),
        34..=35 => Some(id - 5),
        39..=41 => Some(id - 8),
        _ => None,
    }
}

impl fmt::Display for GgmlType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl TryFrom<u32> for GgmlType {
    type Error = UnknownType;

    fn try_from(id: u32) -> Result<Self, Self::Error> {
        GgmlType::from_id(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_consistent() {
        assert_eq!(TABLE.len(), GgmlType::ALL.len());
        for (i, (&ty, row)) in GgmlType::ALL.iter().zip(TABLE).enumerate() {
            assert_eq!(row.0, ty, "row {i}");
            assert_eq!(index_of(ty.id() as usize), Some(i), "{ty}");
            assert_eq!(GgmlType::from_id(ty.id()), Ok(ty));
            assert_eq!(GgmlType::from_name(row.1), Some(ty));
            assert_eq!(ty.to_string(), row.1);
        }
    }

    #[test]
    fn unknown_and_removed_ids_are_errors() {
        for id in (0..=200u32).chain([u32::MAX, u32::MAX - 1, 1 << 31]) {
            let known = GgmlType::ALL.iter().any(|t| t.id() == id);
            match GgmlType::from_id(id) {
                Ok(t) => assert!(known && t.id() == id),
                Err(e) => {
                    assert!(!known);
                    assert_eq!(e.id, id);
                }
            }
        }
        let e = GgmlType::from_id(31).unwrap_err();
        assert_eq!(e.removed, Some("Q4_0_4_4"));
        assert!(e.to_string().contains("re-convert"));
        assert_eq!(GgmlType::from_id(99).unwrap_err().removed, None);
    }

    #[test]
    fn sizes() {
        assert_eq!(GgmlType::Q4_K.row_bytes(512), Some(288));
        assert_eq!(GgmlType::Q4_K.row_bytes(100), None);
        assert_eq!(GgmlType::F32.row_bytes(3), Some(12));
        assert_eq!(GgmlType::F32.row_bytes(u64::MAX), None);
        assert_eq!(GgmlType::Q8_0.tensor_bytes(&[64, 3, 2]), Some(2 * 34 * 6));
        assert_eq!(GgmlType::Q8_0.tensor_bytes(&[48, 3]), None);
        assert_eq!(GgmlType::F16.tensor_bytes(&[]), Some(2));
        assert_eq!(GgmlType::Q8_0.tensor_bytes(&[]), None);
        assert_eq!(GgmlType::I8.tensor_bytes(&[1 << 32, 1 << 32]), None);
        assert_eq!(
            GgmlType::I8.tensor_bytes(&[1 << 31, 1 << 31]),
            Some(1 << 62)
        );
        assert_eq!(GgmlType::F32.tensor_bytes(&[1 << 31, 1 << 31]), None);
        assert_eq!(GgmlType::F32.tensor_bytes(&[7, 0]), Some(0));
    }
}
