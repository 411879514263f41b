//! Walking a tensor through a bounded, reused output buffer.

use super::{DequantError, Kernel, output_len, run};
use crate::types::GgmlType;

/// Dequantizes a tensor's bytes a chunk at a time into a buffer the caller owns and reuses,
/// so a tensor of any size is decoded with a fixed working set (by default 64 KiB of input
/// per chunk, which stays in the L2 cache together with its output).
///
/// The caller supplies the buffer on every call: a `Vec<f32>` kept across calls, or a buffer
/// taken from a pool (anything that dereferences to `Vec<f32>` or `[f32]`). The walker itself
/// holds only a borrow of the input and never allocates.
///
/// ```
/// use mm_gguf::quant::DequantChunks;
/// use mm_gguf::types::GgmlType;
///
/// // 4096 BF16 values (0, 1, ..., 255 repeated: all exact in bf16), decoded 1 KiB of
/// // input (512 values) at a time.
/// let data: Vec<u8> = (0..4096u32)
///     .flat_map(|i| (((i % 256) as f32).to_bits() >> 16).to_le_bytes()[..2].to_vec())
///     .collect();
/// let mut chunks = DequantChunks::with_chunk_bytes(GgmlType::BF16, &data, 1024)?;
/// let mut buf = Vec::with_capacity(chunks.chunk_len());
/// let mut sum = 0.0f64;
/// while let Some(chunk) = chunks.next_into(&mut buf) {
///     assert_eq!(chunk.values.len(), 512);
///     assert_eq!(chunk.values[1], 1.0);
///     sum += chunk.values.iter().map(|&v| f64::from(v)).sum::<f64>();
/// }
/// assert_eq!(sum, 16.0 * (0..256).map(f64::from).sum::<f64>());
/// # Ok::<(), mm_gguf::quant::DequantError>(())
/// ```
#[derive(Debug, Clone)]
pub struct DequantChunks<'a> {
    ty: GgmlType,
    src: &'a [u8],
    pos: usize,
    chunk_bytes: usize,
    kernel: Kernel,
}

/// One decoded chunk: where it starts in the tensor and its values.
#[derive(Debug)]
pub struct DequantChunk<'b> {
    /// Index (in values, from the tensor's start) of `values[0]`.
    pub first: u64,
    /// The decoded values, borrowed from the caller's buffer.
    pub values: &'b [f32],
}

impl<'a> DequantChunks<'a> {
    /// The default input bytes per chunk (rounded down to whole blocks).
    pub const DEFAULT_CHUNK_BYTES: usize = 64 * 1024;

    /// Walks `src` (whole blocks of `ty`) in chunks of about [`Self::DEFAULT_CHUNK_BYTES`].
    ///
    /// # Errors
    /// [`DequantError::PartialBlock`] / [`DequantError::TooLarge`] as [`output_len`].
    pub fn new(ty: GgmlType, src: &'a [u8]) -> Result<Self, DequantError> {
        Self::with_chunk_bytes(ty, src, Self::DEFAULT_CHUNK_BYTES)
    }

    /// Walks `src` in chunks of `chunk_bytes` of input, rounded down to whole blocks (and up
    /// to one block at least).
    ///
    /// # Errors
    /// As [`Self::new`].
    pub fn with_chunk_bytes(
        ty: GgmlType,
        src: &'a [u8],
        chunk_bytes: usize,
    ) -> Result<Self, DequantError> {
        output_len(ty, src.len())?;
        let ts = ty.type_size() as usize;
        let chunk_bytes = (chunk_bytes / ts).max(1) * ts;
        // A full chunk's output length must fit in usize too (checked once here).
        output_len(ty, chunk_bytes)?;
        Ok(Self {
            ty,
            src,
            pos: 0,
            chunk_bytes,
            kernel: Kernel::Fast,
        })
    }

    /// Uses `kernel` instead of the default [`Kernel::Fast`].
    #[must_use]
    pub fn with_kernel(mut self, kernel: Kernel) -> Self {
        self.kernel = kernel;
        self
    }

    /// The tensor type.
    pub fn ty(&self) -> GgmlType {
        self.ty
    }

    /// Values in a full chunk: the buffer length [`Self::next_into`] grows a `Vec` to. Size
    /// a pooled buffer with it.
    pub fn chunk_len(&self) -> usize {
        self.chunk_bytes / self.ty.type_size() as usize * self.ty.block_size() as usize
    }

    /// Input bytes not yet decoded.
    pub fn remaining_bytes(&self) -> usize {
        self.src.len() - self.pos
    }

    /// Values not yet decoded.
    pub fn remaining_values(&self) -> usize {
        self.remaining_bytes() / self.ty.type_size() as usize * self.ty.block_size() as usize
    }

    /// Decodes the next chunk into `buf` and returns it, or `None` when the tensor is done.
    ///
    /// `buf`'s length is set to the chunk's value count: a buffer already at
    /// [`Self::chunk_len`] values is reused as it is (no allocation, no clearing); a shorter
    /// one grows once. To avoid even that first allocation, pass a buffer whose capacity is
    /// at least [`Self::chunk_len`].
    pub fn next_into<'b>(&mut self, buf: &'b mut Vec<f32>) -> Option<DequantChunk<'b>> {
        let (first, src) = self.take(self.chunk_bytes)?;
        let n = self.values_in(src.len());
        // Only values beyond the current length are written by resize; existing ones are
        // overwritten by the kernel below.
        buf.resize(n, 0.0);
        run(self.kernel, self.ty, src, buf);
        Some(DequantChunk { first, values: buf })
    }

    /// Decodes as many whole blocks as fit in `buf` (up to one chunk) into its front.
    ///
    /// Returns `None` when the tensor is done.
    ///
    /// # Errors
    /// [`DequantError::OutputTooShort`] when `buf` cannot hold even one block; nothing is
    /// consumed then.
    pub fn next_into_slice<'b>(
        &mut self,
        buf: &'b mut [f32],
    ) -> Option<Result<DequantChunk<'b>, DequantError>> {
        if self.remaining_bytes() == 0 {
            return None;
        }
        let bs = self.ty.block_size() as usize;
        let fit = buf.len() / bs * self.ty.type_size() as usize;
        if fit == 0 {
            return Some(Err(DequantError::OutputTooShort {
                ty: self.ty,
                needed: bs,
                got: buf.len(),
            }));
        }
        let (first, src) = self.take(fit.min(self.chunk_bytes))?;
        let out = &mut buf[..self.values_in(src.len())];
        run(self.kernel, self.ty, src, out);
        Some(Ok(DequantChunk { first, values: out }))
    }

    /// Decodes every remaining chunk through `buf`, calling `f` on each; stops at the first
    /// error `f` returns.
    ///
    /// # Errors
    /// Whatever `f` returns.
    pub fn for_each<E>(
        mut self,
        buf: &mut Vec<f32>,
        mut f: impl FnMut(DequantChunk<'_>) -> Result<(), E>,
    ) -> Result<(), E> {
        while let Some(chunk) = self.next_into(buf) {
            f(chunk)?;
        }
        Ok(())
    }

    /// Takes up to `max` bytes (a whole number of blocks) of input; the index of its first
    /// value and the bytes.
    fn take(&mut self, max: usize) -> Option<(u64, &'a [u8])> {
        let len = max.min(self.remaining_bytes());
        if len == 0 {
            return None;
        }
        let first = self.values_in(self.pos) as u64;
        let src = &self.src[self.pos..self.pos + len];
        self.pos += len;
        Some((first, src))
    }

    /// Values in `bytes` bytes of whole blocks; cannot overflow, since `new` checked the
    /// whole input.
    fn values_in(&self, bytes: usize) -> usize {
        bytes / self.ty.type_size() as usize * self.ty.block_size() as usize
    }
}
