//! The crate's one error type.

use std::path::PathBuf;

/// Everything that can go wrong while reading, validating, writing or loading a GGUF file.
///
/// Parse errors name the byte offset in the file where the problem was found and the field
/// being read (for example `tensor #3 'blk.0.attn_q.weight' dims[1]`), so a bad file can be
/// examined with a hex dump. No variant is produced by a panic: every malformed input ends
/// here.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GgufError {
    /// An I/O error while opening, mapping or reading a file.
    #[error("{}: {source}", path.as_ref().map_or_else(|| "I/O error".to_string(), |p| p.display().to_string()))]
    Io {
        /// The file, when known.
        path: Option<PathBuf>,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The first four bytes are not `GGUF`.
    #[error("not a GGUF file: magic at offset 0 is {found:02x?}, expected \"GGUF\" (47 47 55 46)")]
    BadMagic {
        /// The four bytes found (fewer when the file is shorter).
        found: Vec<u8>,
    },
    /// The file is a big-endian GGUF (produced by gguf-py's `--bigendian`); refused.
    #[error(
        "big-endian GGUF (version {version} byte-swapped) is not supported; convert it to little-endian with gguf-py"
    )]
    BigEndian {
        /// The version once byte-swapped.
        version: u32,
    },
    /// GGUF version 1 or an unknown future version.
    #[error("unsupported GGUF version {version} at offset 4: only versions 2 and 3 are read{}",
        if *version == 1 { " (version 1 used 32-bit counts; re-convert the model)" } else { "" })]
    UnsupportedVersion {
        /// The version field.
        version: u32,
    },
    /// Mapping the file failed (not found, not a regular file, permission, ...).
    #[error(transparent)]
    Map(#[from] mm_mmap::MmapError),
    /// The file ends before a field (or a tensor's data) that it declares.
    #[error(
        "truncated file: {field} at offset {offset} needs {missing} more byte(s) than the file has"
    )]
    Truncated {
        /// Offset of the field that could not be read.
        offset: u64,
        /// What was being read.
        field: String,
        /// How many bytes are missing at least (exact for tensor data past the end).
        missing: u64,
    },
    /// A count (tensors, key-value pairs, array elements) that cannot fit in what remains.
    #[error(
        "{field} at offset {offset} claims {count} entries, but only {remaining} bytes remain \
         (at most {max} entries fit): the file is truncated or the count is corrupt"
    )]
    CountTooLarge {
        /// Offset of the count.
        offset: u64,
        /// Which count.
        field: String,
        /// The count read.
        count: u64,
        /// Bytes left in the file after the count.
        remaining: u64,
        /// The largest count that could fit.
        max: u64,
        /// Bytes the claimed entries need at least (saturating).
        needed: u64,
    },
    /// A string that is not valid UTF-8.
    #[error("{field} at offset {offset} is not valid UTF-8")]
    InvalidUtf8 {
        /// Offset of the string's bytes.
        offset: u64,
        /// Which string.
        field: String,
    },
    /// A metadata value type id outside the GGUF specification.
    #[error("{field} at offset {offset}: unknown metadata value type {type_id}")]
    UnknownValueType {
        /// Offset of the type id.
        offset: u64,
        /// Which value.
        field: String,
        /// The type id read.
        type_id: u32,
    },
    /// Arrays nested deeper than [`crate::MAX_ARRAY_DEPTH`].
    #[error("{field} at offset {offset}: arrays nested deeper than {max} levels")]
    NestingTooDeep {
        /// Offset of the innermost array header.
        offset: u64,
        /// Which value.
        field: String,
        /// The limit.
        max: u32,
    },
    /// A tensor type id that is not in the ggml type table.
    #[error("{field} at offset {offset}: unknown ggml tensor type {type_id}")]
    UnknownTensorType {
        /// Offset of the type id.
        offset: u64,
        /// Which tensor.
        field: String,
        /// The type id read.
        type_id: u32,
    },
    /// A tensor's shape is invalid (too many dimensions, a zero dimension, a product that
    /// overflows, a row not a whole number of blocks).
    #[error("{field} at offset {offset}: {reason}")]
    BadShape {
        /// Offset of the shape.
        offset: u64,
        /// Which tensor.
        field: String,
        /// What is wrong.
        reason: String,
    },
    /// `general.alignment` is zero, not a power of two, or not a `u32`.
    #[error("general.alignment at offset {offset}: {reason}")]
    BadAlignment {
        /// Offset of the value.
        offset: u64,
        /// What is wrong.
        reason: String,
    },
    /// A tensor's offset is not a multiple of the file's alignment.
    #[error(
        "{field} at offset {offset}: data offset {data_offset} is not a multiple of the alignment {alignment}"
    )]
    MisalignedTensor {
        /// Offset of the tensor info's offset field.
        offset: u64,
        /// Which tensor.
        field: String,
        /// The tensor's offset relative to the data section.
        data_offset: u64,
        /// The file's alignment.
        alignment: u64,
    },
    /// Two tensors' byte ranges overlap.
    #[error(
        "tensors '{first}' and '{second}' overlap in the data section (bytes {first_end} > {second_start})"
    )]
    OverlappingTensors {
        /// The tensor that starts first.
        first: String,
        /// The tensor that starts inside it.
        second: String,
        /// Where the first ends (relative to the data section).
        first_end: u64,
        /// Where the second starts (relative to the data section).
        second_start: u64,
    },
    /// A metadata key appears twice.
    #[error("duplicate metadata key '{key}' at offset {offset}")]
    DuplicateKey {
        /// Offset of the second occurrence.
        offset: u64,
        /// The key.
        key: String,
    },
    /// A tensor name appears twice.
    #[error("duplicate tensor name '{name}' at offset {offset}")]
    DuplicateTensor {
        /// Offset of the second occurrence.
        offset: u64,
        /// The name.
        name: String,
    },
    /// A string longer than the streaming reader handles for that field (keys and tensor
    /// names must fit in one 64 KiB read; GGUF caps keys at 65,535 bytes).
    #[error("{field} at offset {offset} is {len} bytes long; at most {max} are supported here")]
    TooLong {
        /// Offset of the string's length.
        offset: u64,
        /// Which string.
        field: String,
        /// Its length.
        len: u64,
        /// The limit.
        max: u64,
    },
    /// The header's index would need more memory than [`crate::ParseLimits`] allows (a
    /// crafted header of many empty keys, or a limit set too low for a genuine model).
    #[error(
        "{field} at offset {offset}: indexing this header needs {needed} bytes, more than the \
         limit of {limit} bytes; the header is crafted or corrupt (raise \
         ParseLimits::max_index_bytes only for a file you trust)"
    )]
    IndexTooLarge {
        /// Offset of the count (or record) that passed the limit.
        offset: u64,
        /// Which count or record.
        field: String,
        /// Bytes the index would need at least.
        needed: u64,
        /// The limit.
        limit: u64,
    },
    /// A value of another type was found where a specific type was asked for.
    #[error("metadata key '{key}' has type {found}, expected {expected}")]
    WrongType {
        /// The key.
        key: String,
        /// What the caller asked for.
        expected: &'static str,
        /// What the file has.
        found: &'static str,
    },
    /// A tensor or key asked for by name does not exist.
    #[error("no {what} named '{name}' in this file")]
    NotFound {
        /// "tensor" or "metadata key".
        what: &'static str,
        /// The name asked for.
        name: String,
    },
    /// The writer was used incorrectly (a tensor's bytes do not match its declared shape,
    /// a duplicate name, more data written than declared).
    #[error("GGUF writer: {0}")]
    Writer(String),
    /// A memory budget refused the working memory the operation needs.
    #[error("memory budget refused {bytes} bytes for {what}: {reason}")]
    Budget {
        /// How much was asked for.
        bytes: u64,
        /// What it was for.
        what: &'static str,
        /// The budget's own message.
        reason: String,
    },
    /// A tensor whose type cannot be dequantized by this crate.
    #[error("tensor '{name}': dequantization of type {type_name} is not supported: {reason}")]
    Dequant {
        /// The tensor.
        name: String,
        /// Its ggml type name.
        type_name: String,
        /// Why.
        reason: String,
    },
}

impl GgufError {
    /// Wraps an I/O error with the path it happened on.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        GgufError::Io {
            path: Some(path.into()),
            source,
        }
    }

    /// True when the file ends before what it declares: [`GgufError::Truncated`], or a
    /// [`GgufError::CountTooLarge`] (a cut inside an array looks like a count that cannot
    /// fit). The file may still be inspected with [`crate::inspect`].
    pub fn is_truncated(&self) -> bool {
        matches!(
            self,
            GgufError::Truncated { .. } | GgufError::CountTooLarge { .. }
        )
    }

    /// Bytes missing at the end of a truncated file: exact when tensor data runs past the
    /// end, a lower bound when the header is cut (what the field being read needs).
    pub fn missing_bytes(&self) -> Option<u64> {
        match self {
            GgufError::Truncated { missing, .. } => Some(*missing),
            GgufError::CountTooLarge {
                remaining, needed, ..
            } => Some(needed.saturating_sub(*remaining)),
            _ => None,
        }
    }

    /// The file offset the error points at, when it has one.
    pub fn offset(&self) -> Option<u64> {
        match self {
            GgufError::Truncated { offset, .. }
            | GgufError::CountTooLarge { offset, .. }
            | GgufError::InvalidUtf8 { offset, .. }
            | GgufError::UnknownValueType { offset, .. }
            | GgufError::NestingTooDeep { offset, .. }
            | GgufError::UnknownTensorType { offset, .. }
            | GgufError::BadShape { offset, .. }
            | GgufError::BadAlignment { offset, .. }
            | GgufError::MisalignedTensor { offset, .. }
            | GgufError::DuplicateKey { offset, .. }
            | GgufError::DuplicateTensor { offset, .. }
            | GgufError::TooLong { offset, .. }
            | GgufError::IndexTooLarge { offset, .. } => Some(*offset),
            GgufError::BadMagic { .. } => Some(0),
            GgufError::BigEndian { .. } | GgufError::UnsupportedVersion { .. } => Some(4),
            _ => None,
        }
    }
}

/// Shorthand for this crate's results.
pub type Result<T, E = GgufError> = std::result::Result<T, E>;
