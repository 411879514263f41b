//! The zero-copy GGUF parser.
//!
//! [`Gguf::parse`] walks the header once, validating every count, length, type, shape and
//! offset against the bytes that remain, and keeps only a small index: one entry per
//! metadata key and per tensor, each borrowing from the input. Nothing is copied and no
//! allocation is sized by a number read from the file before that number has been checked
//! against the file's length.

use std::ops::Range;

use crate::error::{GgufError, Result};
use crate::reader::Reader;
use crate::types::GgmlType;
use crate::value::{ArrayView, Value, read_type, read_value};

/// The four bytes every GGUF file starts with.
pub const GGUF_MAGIC: [u8; 4] = *b"GGUF";
/// Tensor data alignment when `general.alignment` is absent.
pub const DEFAULT_ALIGNMENT: u64 = 32;
/// Most dimensions a ggml tensor can have.
pub const MAX_DIMS: usize = 4;
/// The metadata key that sets the data alignment.
pub const ALIGNMENT_KEY: &str = "general.alignment";

/// Fewest bytes one key-value pair takes: key length, type id, a one-byte value.
pub(crate) const MIN_KV_BYTES: u64 = 8 + 4 + 1;
/// Fewest bytes one tensor info takes: name length, n_dims, type id, offset.
pub(crate) const MIN_TENSOR_INFO_BYTES: u64 = 8 + 4 + 4 + 8;

/// The default [`ParseLimits::max_index_bytes`]: 8 MiB, about 100,000 keys and tensors.
/// Real models need far less (Gemma 3 270M: 23 KB for 236 tensors and 40 keys; a
/// 1,000-tensor 70B model about 120 KB).
pub const DEFAULT_MAX_INDEX_BYTES: u64 = 8 << 20;

/// Bounds on the memory a reader may spend on a file's header index, whatever the file
/// claims. Counts are already checked against the file's length (a key-value pair takes
/// at least 13 bytes of file), but the index costs several times that per entry, so a
/// file of a few megabytes of empty keys could still demand tens of megabytes of index.
///
/// ```
/// use mm_gguf::{Gguf, GgufError, GgufWriter, MetaValue, ParseLimits};
/// let mut w = GgufWriter::new();
/// for i in 0..100 {
///     w.add_metadata(&format!("k{i}"), MetaValue::U8(0))?;
/// }
/// let bytes = w.to_bytes()?;
/// let tight = ParseLimits::new().with_max_index_bytes(1024);
/// assert!(matches!(Gguf::parse_with(&bytes, tight), Err(GgufError::IndexTooLarge { .. })));
/// assert_eq!(Gguf::parse(&bytes)?.metadata().len(), 100);
/// # Ok::<(), GgufError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParseLimits {
    max_index_bytes: u64,
}

impl Default for ParseLimits {
    fn default() -> Self {
        Self::new()
    }
}

impl ParseLimits {
    /// The defaults: an index of at most [`DEFAULT_MAX_INDEX_BYTES`].
    pub const fn new() -> Self {
        ParseLimits {
            max_index_bytes: DEFAULT_MAX_INDEX_BYTES,
        }
    }

    /// Most heap bytes the index of one header may take (entries, their sorted orders,
    /// and for the streaming reader the copied keys, names and short strings). Default
    /// [`DEFAULT_MAX_INDEX_BYTES`]; any value, 0 refusing every non-empty header. A header
    /// that needs more is refused with [`GgufError::IndexTooLarge`] before the memory is
    /// allocated.
    pub const fn with_max_index_bytes(mut self, bytes: u64) -> Self {
        self.max_index_bytes = bytes;
        self
    }

    /// The index cap in bytes.
    pub const fn max_index_bytes(&self) -> u64 {
        self.max_index_bytes
    }
}

/// Index bytes of one metadata entry in the slice parser: the entry and its sort slot.
const KV_INDEX_BYTES: u64 = (std::mem::size_of::<MetadataEntry<'static>>() + 4) as u64;
/// Index bytes of one tensor in the slice parser: the info, its sort slot, and its slot
/// in the range check's offset order.
const TENSOR_INDEX_BYTES: u64 =
    (std::mem::size_of::<TensorInfo<'static>>() + 4 + std::mem::size_of::<usize>()) as u64;

/// Refuses an index of `needed` bytes over `limits`; `offset` and `field` name the count.
pub(crate) fn check_index(
    needed: u64,
    limits: ParseLimits,
    offset: u64,
    field: &str,
) -> Result<()> {
    if needed > limits.max_index_bytes {
        return Err(GgufError::IndexTooLarge {
            offset,
            field: field.into(),
            needed,
            limit: limits.max_index_bytes,
        });
    }
    Ok(())
}

/// One metadata key-value pair.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MetadataEntry<'a> {
    /// The key (`general.architecture`, ...).
    pub key: &'a str,
    /// The value.
    pub value: Value<'a>,
    /// File offset where the pair starts.
    pub offset: u64,
}

/// A tensor's description from the header (no data).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TensorInfo<'a> {
    pub(crate) name: &'a str,
    pub(crate) dims: [u64; MAX_DIMS],
    pub(crate) n_dims: u8,
    pub(crate) ggml_type: GgmlType,
    pub(crate) offset: u64,
    pub(crate) n_bytes: u64,
    pub(crate) info_offset: u64,
}

impl<'a> TensorInfo<'a> {
    /// The tensor's name.
    pub fn name(&self) -> &'a str {
        self.name
    }

    /// The shape in ggml order (`shape()[0]` is the contiguous row length).
    pub fn shape(&self) -> &[u64] {
        &self.dims[..usize::from(self.n_dims)]
    }

    /// Number of elements (product of the shape; 1 for a 0-dimensional tensor).
    pub fn n_elements(&self) -> u64 {
        // Checked at parse time not to overflow.
        self.shape().iter().product()
    }

    /// The element type.
    pub fn ggml_type(&self) -> GgmlType {
        self.ggml_type
    }

    /// Offset of the data relative to the start of the data section.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// Size of the data in bytes.
    pub fn n_bytes(&self) -> u64 {
        self.n_bytes
    }

    /// File offset of this tensor's info record in the header.
    pub fn info_offset(&self) -> u64 {
        self.info_offset
    }
}

/// A tensor: its description and its bytes, borrowed from the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TensorView<'a> {
    /// The description.
    pub info: TensorInfo<'a>,
    /// The raw (possibly quantized) blocks, exactly [`TensorInfo::n_bytes`] long.
    pub data: &'a [u8],
    /// File offset of `data[0]`.
    pub file_offset: u64,
}

impl<'a> std::ops::Deref for TensorView<'a> {
    type Target = TensorInfo<'a>;
    fn deref(&self) -> &TensorInfo<'a> {
        &self.info
    }
}

/// What a best-effort read of a (possibly damaged) file found: everything up to the first
/// error, and that error. Made by [`inspect`]; [`Gguf::parse`] is the strict form.
#[derive(Debug)]
pub struct Inspection<'a> {
    /// Total length of the input.
    pub file_len: u64,
    /// The format version, once read.
    pub version: Option<u32>,
    /// Tensor count the header declares.
    pub declared_tensors: Option<u64>,
    /// Key-value count the header declares.
    pub declared_kv: Option<u64>,
    /// The data alignment in effect.
    pub alignment: u64,
    /// Metadata pairs read before any error, in file order.
    pub metadata: Vec<MetadataEntry<'a>>,
    /// Tensor infos read before any error, in file order.
    pub tensors: Vec<TensorInfo<'a>>,
    /// File offset of the data section, once the header was read whole.
    pub data_offset: Option<u64>,
    /// The first problem found; `None` for a valid file.
    pub error: Option<GgufError>,
    /// The key or tensor name of the record the error is in, when its name could be read
    /// (for example `tokenizer.ggml.tokens` when a download stopped inside the vocabulary).
    pub cut_in: Option<&'a str>,
    /// Indices into `metadata` sorted by key, once all keys were found distinct.
    key_order: Vec<u32>,
    /// Indices into `tensors` sorted by name, once all names were found distinct.
    name_order: Vec<u32>,
}

impl Inspection<'_> {
    /// True when the file ends early (the rest may still be shown).
    pub fn is_truncated(&self) -> bool {
        self.error.as_ref().is_some_and(GgufError::is_truncated)
    }
}

/// A parsed, validated GGUF file borrowing from its bytes.
///
/// Cost: one pass over the header (time proportional to the metadata's size, since
/// string arrays must be walked to find what follows them), heap proportional to the
/// number of keys and tensors (about 100 bytes each), nothing proportional to tensor data.
#[derive(Debug, Clone)]
pub struct Gguf<'a> {
    bytes: &'a [u8],
    version: u32,
    alignment: u64,
    metadata: Vec<MetadataEntry<'a>>,
    tensors: Vec<TensorInfo<'a>>,
    /// Indices into `metadata`, sorted by key.
    key_order: Vec<u32>,
    /// Indices into `tensors`, sorted by name.
    name_order: Vec<u32>,
    data_offset: u64,
}

/// Reads as much of `bytes` as possible, never failing: see [`Inspection`]. The checks are
/// those of [`Gguf::parse`], duplicate keys and tensor names included (everything is read
/// first, so the duplicates are shown along with the error), under the default
/// [`ParseLimits`].
pub fn inspect(bytes: &[u8]) -> Inspection<'_> {
    inspect_with(bytes, ParseLimits::new())
}

/// [`inspect`] under `limits`.
pub fn inspect_with(bytes: &[u8], limits: ParseLimits) -> Inspection<'_> {
    let mut out = Inspection {
        file_len: bytes.len() as u64,
        version: None,
        declared_tensors: None,
        declared_kv: None,
        alignment: DEFAULT_ALIGNMENT,
        metadata: Vec::new(),
        tensors: Vec::new(),
        data_offset: None,
        error: None,
        cut_in: None,
        key_order: Vec::new(),
        name_order: Vec::new(),
    };
    if let Err(e) = read_into(bytes, &mut out, limits) {
        out.error = Some(e);
    }
    out
}

fn read_into<'a>(bytes: &'a [u8], out: &mut Inspection<'a>, limits: ParseLimits) -> Result<()> {
    let mut r = Reader::new(bytes);
    read_magic(&mut r)?;
    let version = read_version(&mut r)?;
    out.version = Some(version);
    let n_tensors = r.u64(|| "header tensor count".into())?;
    out.declared_tensors = Some(n_tensors);
    let n_kv = r.count(MIN_KV_BYTES, || "header metadata count".into())?;
    out.declared_kv = Some(n_kv);
    let kv_index = n_kv.saturating_mul(KV_INDEX_BYTES);
    check_index(kv_index, limits, 16, "header metadata count")?;
    // Capacity bounded by what the remaining bytes can hold, not by the claim alone.
    out.metadata
        .reserve(bounded(n_kv, r.remaining(), MIN_KV_BYTES));
    for i in 0..n_kv {
        let before = r.clone();
        let entry = read_kv(&mut r, i).inspect_err(|_| out.cut_in = record_name(before))?;
        if entry.key == ALIGNMENT_KEY {
            out.alignment = alignment_of(&entry)?;
        }
        out.metadata.push(entry);
    }
    // Checked only now: the count precedes the metadata but the infos follow it.
    let max_tensors = r.remaining() as u64 / MIN_TENSOR_INFO_BYTES;
    if n_tensors > max_tensors {
        return Err(GgufError::CountTooLarge {
            offset: 8,
            field: "header tensor count".into(),
            count: n_tensors,
            remaining: r.remaining() as u64,
            max: max_tensors,
            needed: n_tensors.saturating_mul(MIN_TENSOR_INFO_BYTES),
        });
    }
    let tensor_index = n_tensors.saturating_mul(TENSOR_INDEX_BYTES);
    check_index(
        kv_index.saturating_add(tensor_index),
        limits,
        8,
        "header tensor count",
    )?;
    out.tensors
        .reserve(bounded(n_tensors, r.remaining(), MIN_TENSOR_INFO_BYTES));
    for i in 0..n_tensors {
        let before = r.clone();
        let info = read_tensor_info(&mut r, i, out.alignment)
            .inspect_err(|_| out.cut_in = record_name(before))?;
        out.tensors.push(info);
    }
    let data_offset =
        align_up(r.offset(), out.alignment).ok_or_else(|| GgufError::BadAlignment {
            offset: r.offset(),
            reason: "data section offset overflows".into(),
        })?;
    out.data_offset = Some(data_offset);
    check_tensor_ranges(&out.tensors, data_offset, out.file_len)?;
    out.key_order =
        sorted_unique(&out.metadata, |m| m.key).map_err(|(_, b)| GgufError::DuplicateKey {
            offset: out.metadata[b].offset,
            key: clip(out.metadata[b].key).into(),
        })?;
    out.name_order =
        sorted_unique(&out.tensors, |t| t.name).map_err(|(_, b)| GgufError::DuplicateTensor {
            offset: out.tensors[b].info_offset,
            name: clip(out.tensors[b].name).into(),
        })?;
    Ok(())
}

/// The key or name a record starts with, if it can be read (for [`Inspection::cut_in`]).
fn record_name(mut r: Reader<'_>) -> Option<&str> {
    r.str(String::new).ok()
}

fn bounded(count: u64, remaining: usize, min: u64) -> usize {
    usize::try_from(count.min(remaining as u64 / min)).unwrap_or(0)
}

pub(crate) fn read_magic(r: &mut Reader<'_>) -> Result<()> {
    let head = &r.whole()[..r.remaining().min(4)];
    if head.len() < 4 {
        return Err(if GGUF_MAGIC.starts_with(head) {
            GgufError::Truncated {
                offset: 0,
                field: "magic".into(),
                missing: (4 - head.len()) as u64,
            }
        } else {
            GgufError::BadMagic {
                found: head.to_vec(),
            }
        });
    }
    let magic: [u8; 4] = r.array(|| "magic".into())?;
    if magic == GGUF_MAGIC {
        return Ok(());
    }
    if magic == *b"FUGG" {
        // gguf-py writes the magic as a u32 in the file's byte order.
        let version = r
            .array::<4>(|| "version".into())
            .map(u32::from_be_bytes)
            .unwrap_or(0);
        return Err(GgufError::BigEndian { version });
    }
    Err(GgufError::BadMagic {
        found: magic.to_vec(),
    })
}

pub(crate) fn read_version(r: &mut Reader<'_>) -> Result<u32> {
    let version = r.u32(|| "version".into())?;
    match version {
        2 | 3 => Ok(version),
        // A big-endian file written with the little-endian magic (as llama.cpp does).
        v if v & 0xFFFF == 0 && v != 0 => Err(GgufError::BigEndian {
            version: v.swap_bytes(),
        }),
        v => Err(GgufError::UnsupportedVersion { version: v }),
    }
}

fn read_kv<'a>(r: &mut Reader<'a>, i: u64) -> Result<MetadataEntry<'a>> {
    let offset = r.offset();
    let key = r.str(|| format!("metadata #{i} key"))?;
    let field = || format!("metadata #{i} '{}'", clip(key));
    let ty = read_type(r, &field)?;
    let value = read_value(r, ty, &field)?;
    Ok(MetadataEntry { key, value, offset })
}

pub(crate) fn alignment_of(entry: &MetadataEntry<'_>) -> Result<u64> {
    let offset = entry.offset;
    match entry.value {
        Value::U32(a) if a != 0 && a.is_power_of_two() => Ok(a.into()),
        Value::U32(a) => Err(GgufError::BadAlignment {
            offset,
            reason: format!("{a} is not a non-zero power of two"),
        }),
        v => Err(GgufError::BadAlignment {
            offset,
            reason: format!("type is {}, must be uint32", v.value_type().name()),
        }),
    }
}

fn read_tensor_info<'a>(r: &mut Reader<'a>, i: u64, alignment: u64) -> Result<TensorInfo<'a>> {
    let info_offset = r.offset();
    let name = r.str(|| format!("tensor #{i} name"))?;
    let field = |part: &str| format!("tensor #{i} '{}' {part}", clip(name));
    let layout = read_tensor_layout(r, &field, alignment)?;
    Ok(TensorInfo {
        name,
        dims: layout.dims,
        n_dims: layout.n_dims,
        ggml_type: layout.ggml_type,
        offset: layout.offset,
        n_bytes: layout.n_bytes,
        info_offset,
    })
}

/// What both readers (the slice [`Reader`] and the streaming window) can read fields with, so
/// a tensor's layout is checked by one piece of code whichever way the file is read.
pub(crate) trait FieldSource {
    /// The file offset of the next byte.
    fn pos(&self) -> u64;
    /// A little-endian `u32` field.
    fn field_u32(&mut self, field: &dyn Fn() -> String) -> Result<u32>;
    /// A little-endian `u64` field.
    fn field_u64(&mut self, field: &dyn Fn() -> String) -> Result<u64>;
}

impl FieldSource for Reader<'_> {
    fn pos(&self) -> u64 {
        self.offset()
    }
    fn field_u32(&mut self, field: &dyn Fn() -> String) -> Result<u32> {
        self.u32(field)
    }
    fn field_u64(&mut self, field: &dyn Fn() -> String) -> Result<u64> {
        self.u64(field)
    }
}

/// A tensor info's fields after its name, validated.
pub(crate) struct TensorLayout {
    pub(crate) dims: [u64; MAX_DIMS],
    /// At most [`MAX_DIMS`].
    pub(crate) n_dims: u8,
    pub(crate) ggml_type: GgmlType,
    pub(crate) offset: u64,
    pub(crate) n_bytes: u64,
}

/// Reads and checks `n_dims`, the dimensions, the type and the data offset of a tensor info;
/// `field` names a part of this tensor for errors.
pub(crate) fn read_tensor_layout(
    r: &mut impl FieldSource,
    field: &dyn Fn(&str) -> String,
    alignment: u64,
) -> Result<TensorLayout> {
    let dims_at = r.pos();
    let n_dims = r.field_u32(&|| field("n_dims"))?;
    if n_dims as usize > MAX_DIMS {
        return Err(GgufError::BadShape {
            offset: dims_at,
            field: field("n_dims"),
            reason: format!("{n_dims} dimensions, ggml allows at most {MAX_DIMS}"),
        });
    }
    let mut dims = [1u64; MAX_DIMS];
    for (d, dim) in dims.iter_mut().enumerate().take(n_dims as usize) {
        *dim = r.field_u64(&|| field(&format!("dims[{d}]")))?;
        if *dim > i64::MAX as u64 {
            return Err(GgufError::BadShape {
                offset: dims_at,
                field: field(&format!("dims[{d}]")),
                reason: format!("dimension {dim} exceeds i64::MAX"),
            });
        }
    }
    let type_at = r.pos();
    let type_id = r.field_u32(&|| field("type"))?;
    let ggml_type = GgmlType::from_id(type_id).map_err(|_| GgufError::UnknownTensorType {
        offset: type_at,
        field: field("type"),
        type_id,
    })?;
    let n_bytes = tensor_bytes(ggml_type, &dims[..n_dims as usize]).map_err(|reason| {
        GgufError::BadShape {
            offset: dims_at,
            field: field("shape"),
            reason,
        }
    })?;
    let off_at = r.pos();
    let offset = r.field_u64(&|| field("offset"))?;
    if !offset.is_multiple_of(alignment) {
        return Err(GgufError::MisalignedTensor {
            offset: off_at,
            field: field("offset"),
            data_offset: offset,
            alignment,
        });
    }
    Ok(TensorLayout {
        dims,
        // `n_dims <= MAX_DIMS` was checked above.
        n_dims: n_dims as u8,
        ggml_type,
        offset,
        n_bytes,
    })
}

pub(crate) fn tensor_bytes(ty: GgmlType, shape: &[u64]) -> std::result::Result<u64, String> {
    let n: Option<u64> = shape.iter().try_fold(1u64, |a, &d| a.checked_mul(d));
    let Some(n) = n.filter(|&n| n <= i64::MAX as u64) else {
        return Err(format!("element count of shape {shape:?} overflows"));
    };
    let row = shape.first().copied().unwrap_or(1);
    if !row.is_multiple_of(u64::from(ty.block_size())) {
        return Err(format!(
            "row length {row} is not a multiple of {}'s block size {}",
            ty.name(),
            ty.block_size()
        ));
    }
    let bytes = ty
        .tensor_bytes(shape)
        .ok_or_else(|| format!("byte size of {n} {} elements overflows", ty.name()))?;
    // Must be addressable on this machine to be sliced.
    usize::try_from(bytes)
        .map_err(|_| format!("{bytes} bytes do not fit in memory on this machine"))?;
    Ok(bytes)
}

/// Checks every tensor's range lies in the file and no two overlap.
pub(crate) fn check_tensor_ranges(
    tensors: &[TensorInfo<'_>],
    data_offset: u64,
    file_len: u64,
) -> Result<()> {
    let mut furthest: Option<(u64, &TensorInfo<'_>)> = None;
    for t in tensors {
        let end = data_offset
            .checked_add(t.offset)
            .and_then(|s| s.checked_add(t.n_bytes));
        let Some(end) = end else {
            return Err(GgufError::BadShape {
                offset: t.info_offset,
                field: format!("tensor '{}' offset", clip(t.name)),
                reason: format!("data range {} + {} overflows", t.offset, t.n_bytes),
            });
        };
        if furthest.is_none_or(|(e, _)| end > e) {
            furthest = Some((end, t));
        }
    }
    if let Some((end, t)) = furthest
        && end > file_len
    {
        return Err(GgufError::Truncated {
            offset: data_offset + t.offset,
            field: format!("data of tensor '{}'", clip(t.name)),
            missing: end - file_len,
        });
    }
    let mut order: Vec<&TensorInfo<'_>> = tensors.iter().filter(|t| t.n_bytes > 0).collect();
    order.sort_unstable_by_key(|t| t.offset);
    for pair in order.windows(2) {
        let (a, b) = (pair[0], pair[1]);
        if a.offset + a.n_bytes > b.offset {
            return Err(GgufError::OverlappingTensors {
                first: clip(a.name).into(),
                second: clip(b.name).into(),
                first_end: a.offset + a.n_bytes,
                second_start: b.offset,
            });
        }
    }
    Ok(())
}

/// Rounds `x` up to a multiple of `align` (a power of two).
pub(crate) fn align_up(x: u64, align: u64) -> Option<u64> {
    Some(x.checked_add(align - 1)? & !(align - 1))
}

/// Shortens a name for an error message (a crafted name can be megabytes long).
pub(crate) fn clip(s: &str) -> &str {
    match s.char_indices().nth(120) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

/// Sorted indices of `items` by `key`, or the first duplicate `(earlier, later)`.
fn sorted_unique<T>(
    items: &[T],
    key: impl Fn(&T) -> &str,
) -> std::result::Result<Vec<u32>, (usize, usize)> {
    // At most u32::MAX items: each takes >= 13 bytes of a slice.
    let mut order: Vec<u32> = (0..items.len() as u32).collect();
    order.sort_unstable_by(|&a, &b| {
        key(&items[a as usize])
            .cmp(key(&items[b as usize]))
            .then(a.cmp(&b))
    });
    for w in order.windows(2) {
        if key(&items[w[0] as usize]) == key(&items[w[1] as usize]) {
            return Err((w[0] as usize, w[1] as usize));
        }
    }
    Ok(order)
}

impl<'a> Gguf<'a> {
    /// Parses and validates a whole GGUF file held in memory (typically a mapping).
    ///
    /// Fails on the first problem with an error naming the offset and field: a wrong magic,
    /// a big-endian file, version 1, a truncated file (saying how many bytes are missing),
    /// counts or lengths past the end, unknown types, bad shapes, misaligned or overlapping
    /// tensors, duplicate keys or tensor names, and a header whose index would pass the
    /// default [`ParseLimits`] ([`GgufError::IndexTooLarge`]).
    pub fn parse(bytes: &'a [u8]) -> Result<Self> {
        Self::parse_with(bytes, ParseLimits::new())
    }

    /// [`Gguf::parse`] under `limits`.
    pub fn parse_with(bytes: &'a [u8], limits: ParseLimits) -> Result<Self> {
        let ins = inspect_with(bytes, limits);
        if let Some(e) = ins.error {
            return Err(e);
        }
        let (key_order, name_order) = (ins.key_order, ins.name_order);
        Ok(Gguf {
            bytes,
            version: ins.version.unwrap_or(3),
            alignment: ins.alignment,
            metadata: ins.metadata,
            tensors: ins.tensors,
            key_order,
            name_order,
            data_offset: ins.data_offset.unwrap_or(bytes.len() as u64),
        })
    }

    /// The bytes this view borrows (the whole file).
    pub fn bytes(&self) -> &'a [u8] {
        self.bytes
    }

    /// The format version (2 or 3).
    pub fn version(&self) -> u32 {
        self.version
    }

    /// The tensor data alignment (`general.alignment`, default 32).
    pub fn alignment(&self) -> u64 {
        self.alignment
    }

    /// File offset of the data section.
    pub fn data_offset(&self) -> u64 {
        self.data_offset
    }

    /// Metadata pairs in file order.
    pub fn metadata(&self) -> &[MetadataEntry<'a>] {
        &self.metadata
    }

    /// The value of `key`, if present. O(log n).
    pub fn get(&self, key: &str) -> Option<Value<'a>> {
        let i = self
            .key_order
            .binary_search_by(|&i| self.metadata[i as usize].key.cmp(key))
            .ok()?;
        Some(self.metadata[self.key_order[i] as usize].value)
    }

    /// A string value; an error if it is missing or not a string.
    pub fn get_str(&self, key: &str) -> Result<&'a str> {
        let v = self.require(key)?;
        v.as_str().ok_or_else(|| wrong(key, "string", v))
    }

    /// Any integer value that is non-negative, as `u64`.
    pub fn get_u64(&self, key: &str) -> Result<u64> {
        let v = self.require(key)?;
        v.as_u64().ok_or_else(|| wrong(key, "unsigned integer", v))
    }

    /// An array value.
    pub fn get_array(&self, key: &str) -> Result<ArrayView<'a>> {
        let v = self.require(key)?;
        v.as_array().ok_or_else(|| wrong(key, "array", v))
    }

    fn require(&self, key: &str) -> Result<Value<'a>> {
        self.get(key).ok_or_else(|| GgufError::NotFound {
            what: "metadata key",
            name: key.into(),
        })
    }

    /// Tensor infos in file order.
    pub fn tensor_infos(&self) -> &[TensorInfo<'a>] {
        &self.tensors
    }

    /// Number of tensors.
    pub fn n_tensors(&self) -> usize {
        self.tensors.len()
    }

    /// Every tensor with its data, in file order.
    pub fn tensors(&self) -> impl ExactSizeIterator<Item = TensorView<'a>> + '_ {
        self.tensors.iter().map(|t| self.view(*t))
    }

    /// The tensor named `name`. O(log n).
    pub fn tensor(&self, name: &str) -> Option<TensorView<'a>> {
        let i = self
            .name_order
            .binary_search_by(|&i| self.tensors[i as usize].name.cmp(name))
            .ok()?;
        Some(self.view(self.tensors[self.name_order[i] as usize]))
    }

    /// Absolute file range of a tensor's data.
    pub fn data_range(&self, info: &TensorInfo<'_>) -> Range<u64> {
        let start = self.data_offset + info.offset;
        start..start + info.n_bytes
    }

    fn view(&self, info: TensorInfo<'a>) -> TensorView<'a> {
        let r = self.data_range(&info);
        // In bounds: `check_tensor_ranges` verified every range against the length.
        let data = &self.bytes[r.start as usize..r.end as usize];
        TensorView {
            info,
            data,
            file_offset: r.start,
        }
    }

    /// Heap held by this index (vector capacities; the bytes it borrows are not counted).
    pub fn index_heap_bytes(&self) -> u64 {
        use std::mem::size_of;
        (self.metadata.capacity() * size_of::<MetadataEntry<'_>>()
            + self.tensors.capacity() * size_of::<TensorInfo<'_>>()
            + (self.key_order.capacity() + self.name_order.capacity()) * size_of::<u32>())
            as u64
    }

    /// Total bytes of tensor data.
    pub fn tensor_bytes(&self) -> u64 {
        self.tensors.iter().map(|t| t.n_bytes).sum()
    }
}

fn wrong(key: &str, expected: &'static str, v: Value<'_>) -> GgufError {
    GgufError::WrongType {
        key: key.into(),
        expected,
        found: v.value_type().name(),
    }
}
