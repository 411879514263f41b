//! Dequantizing chosen rows of a tensor (the embedding rows of a list of token ids)
//! without touching the others.
//!
//! A ggml tensor's rows (`shape[0]` values each) are whole blocks, and blocks decode
//! independently, so a row decoded alone is bit-identical to the same row of the whole
//! tensor: each row here goes through the very kernels [`dequantize_with`] uses.
//!
//! ```
//! use mm_gguf::quant::{dequantize, dequantize_rows};
//! use mm_gguf::types::GgmlType;
//!
//! // Three rows of one Q8_0 block each: scale 1.0 (0x3C00), then the row number.
//! let mut data = Vec::new();
//! for r in 0..3u8 {
//!     data.extend([0x00, 0x3C]);
//!     data.extend([r; 32]);
//! }
//! let mut rows = vec![0f32; 2 * 32];
//! dequantize_rows(GgmlType::Q8_0, &data, 32, &[2, 0], &mut rows)?;
//! assert_eq!((rows[0], rows[32]), (2.0, 0.0));
//! let mut whole = vec![0f32; 3 * 32];
//! dequantize(GgmlType::Q8_0, &data, &mut whole)?;
//! assert_eq!(rows[..32], whole[64..]);
//! # Ok::<(), mm_gguf::quant::DequantError>(())
//! ```

use super::{DequantError, Kernel, dequantize_with};
use crate::parse::TensorView;
use crate::types::GgmlType;

/// Bytes of one row of `row_len` values of `ty`.
///
/// # Errors
/// [`DequantError::RowNotWholeBlocks`] when `row_len` is not a multiple of the block size.
pub fn row_bytes(ty: GgmlType, row_len: usize) -> Result<usize, DequantError> {
    let block = ty.block_size() as usize;
    if row_len == 0 || !row_len.is_multiple_of(block) {
        return Err(DequantError::RowNotWholeBlocks {
            ty,
            row_len,
            block_size: block,
        });
    }
    (row_len / block)
        .checked_mul(ty.type_size() as usize)
        .ok_or(DequantError::TooLarge { ty, len: row_len })
}

/// Dequantizes rows `rows` (in that order, repeats allowed) of `data`, a tensor of `ty`
/// with rows of `row_len` values, into the front of `dst`, returning the values written
/// (`rows.len() * row_len`). Uses the fastest kernel this CPU has.
///
/// Cost: only the chosen rows are read (for a mapped file, only their pages are faulted
/// in); no allocation.
///
/// # Errors
/// [`DequantError::RowNotWholeBlocks`], [`DequantError::PartialBlock`] when `data` is not
/// whole rows, [`DequantError::RowOutOfRange`] for a row past the end,
/// [`DequantError::OutputTooShort`]. `dst` is untouched on error.
pub fn dequantize_rows(
    ty: GgmlType,
    data: &[u8],
    row_len: usize,
    rows: &[usize],
    dst: &mut [f32],
) -> Result<usize, DequantError> {
    dequantize_rows_with(Kernel::Fast, ty, data, row_len, rows, dst)
}

/// [`dequantize_rows`] with an explicit choice of [`Kernel`].
///
/// # Errors
/// As [`dequantize_rows`].
pub fn dequantize_rows_with(
    kernel: Kernel,
    ty: GgmlType,
    data: &[u8],
    row_len: usize,
    rows: &[usize],
    dst: &mut [f32],
) -> Result<usize, DequantError> {
    let rb = row_bytes(ty, row_len)?;
    if !data.len().is_multiple_of(rb) {
        return Err(DequantError::PartialBlock {
            ty,
            len: data.len(),
            type_size: rb,
            remainder: data.len() % rb,
        });
    }
    let n_rows = data.len() / rb;
    if let Some(&row) = rows.iter().find(|&&r| r >= n_rows) {
        return Err(DequantError::RowOutOfRange { row, n_rows });
    }
    let needed = rows
        .len()
        .checked_mul(row_len)
        .ok_or(DequantError::TooLarge {
            ty,
            len: data.len(),
        })?;
    if dst.len() < needed {
        return Err(DequantError::OutputTooShort {
            ty,
            needed,
            got: dst.len(),
        });
    }
    for (i, &r) in rows.iter().enumerate() {
        let src = &data[r * rb..(r + 1) * rb];
        dequantize_with(kernel, ty, src, &mut dst[i * row_len..(i + 1) * row_len])?;
    }
    Ok(needed)
}

/// [`dequantize_rows`] on a tensor of the file: rows of `shape[0]` values.
///
/// # Errors
/// As [`dequantize_rows`].
pub fn dequantize_tensor_rows(
    t: &TensorView<'_>,
    rows: &[usize],
    dst: &mut [f32],
) -> Result<usize, DequantError> {
    let row_len = t.shape().first().copied().unwrap_or(0);
    let row_len = usize::try_from(row_len).map_err(|_| DequantError::TooLarge {
        ty: t.ggml_type(),
        len: t.data.len(),
    })?;
    dequantize_rows(t.ggml_type(), t.data, row_len, rows, dst)
}
