//! Streaming GGUF reading over `Read + Seek`, in bounded working memory.
//!
//! For hosts where mapping is not wanted (a network filesystem, a sandbox without `mmap`, a
//! 2 GB container that must not fault a whole model into its page cache). The header is
//! parsed through one reused read buffer (up to 512 KiB, [`STREAM_BUFFER`]); scalars and short strings are kept,
//! arrays and long strings are recorded by position and skipped (the 262k-entry vocabulary
//! is never held); tensor data is handed to a callback in chunks of whole blocks. Working
//! memory is the buffer plus the index (about 150 bytes per tensor and key, plus the
//! copied keys, names and short strings). Every piece of it is charged before it is
//! allocated: to an `mm-budget` [`Reservation`] when a budget is given, and always to the
//! [`ParseLimits`] index cap, so a crafted header is refused before it costs more than
//! either allows.
//!
//! The same checks as [`Gguf::parse`](crate::Gguf::parse) apply: every count and length is
//! compared with the bytes left in the stream before it is used.

use std::io::{Read, Seek, SeekFrom};

use mm_budget::{MemoryBudget, Reservation};

use crate::error::{GgufError, Result};
use crate::parse::{
    DEFAULT_ALIGNMENT, FieldSource, MAX_DIMS, MIN_KV_BYTES, MIN_TENSOR_INFO_BYTES, MetadataEntry,
    ParseLimits, TensorInfo, align_up, alignment_of, check_index, check_tensor_ranges, clip,
    read_magic, read_tensor_layout, read_version,
};
use crate::reader::{Reader, check_count};
use crate::types::GgmlType;
use crate::value::{MAX_ARRAY_DEPTH, Value, ValueType};
use crate::writer::MetaValue;

/// The most bytes handed to a tensor sink at once, and the longest key, tensor name or
/// visited array string the streaming reader accepts (each must fit one buffer fill).
pub const STREAM_CHUNK: usize = 64 * 1024;
/// The read buffer for a file larger than this: each `read(2)` asks for up to this much.
/// 768 KiB measured 54 to 55 % of the mapped rate reading every tensor of the real model,
/// against 43 to 44 % with 64 KiB reads and about 46 % with 256 KiB (thread CPU time,
/// `examples/stream_rate.rs`, docs/benchmarks.md); 896 KiB was no faster. 768 KiB left too
/// little of a 1 MiB working-memory target for the index of a vocabulary-sized header and
/// a caller's dequantization buffer (mm-stress's synthetic 8,000-token model peaked at
/// 1.06 MiB), so the buffer is 512 KiB, between the measured points. Smaller files get a
/// buffer of their own size (at least [`STREAM_CHUNK`]); a budget that cannot spare this
/// much gets [`STREAM_CHUNK`].
pub const STREAM_BUFFER: usize = 512 * 1024;
/// Strings up to this length are kept in the index; longer ones are recorded by position.
pub const INLINE_STRING_MAX: u64 = 4096;

/// A metadata value as the streaming reader keeps it.
#[derive(Debug, Clone, PartialEq)]
pub enum StreamValue {
    /// A scalar or a string of at most [`INLINE_STRING_MAX`] bytes.
    Inline(MetaValue),
    /// An array or a long string, left in the file.
    Deferred {
        /// `String` or `Array`.
        value_type: ValueType,
        /// Element type for arrays.
        element_type: Option<ValueType>,
        /// Element count (string length in bytes for strings).
        len: u64,
        /// File offset of the first element (of the string's bytes).
        offset: u64,
        /// Encoded size in bytes from `offset`.
        byte_len: u64,
    },
}

/// An owned tensor description (the streaming reader cannot borrow from a stream).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamTensor {
    name: String,
    dims: [u64; MAX_DIMS],
    n_dims: u8,
    ggml_type: GgmlType,
    offset: u64,
    n_bytes: u64,
    info_offset: u64,
}

impl StreamTensor {
    /// A borrowed [`TensorInfo`] view, the same type the mapped parser returns.
    pub fn info(&self) -> TensorInfo<'_> {
        TensorInfo {
            name: &self.name,
            dims: self.dims,
            n_dims: self.n_dims,
            ggml_type: self.ggml_type,
            offset: self.offset,
            n_bytes: self.n_bytes,
            info_offset: self.info_offset,
        }
    }
}

/// A buffered window over the stream with the file offset of its first byte.
struct Window<R> {
    inner: R,
    buf: Box<[u8]>,
    start: usize,
    end: usize,
    /// File offset of `buf[start]`.
    pos: u64,
    file_len: u64,
}

impl<R: Read + Seek> Window<R> {
    fn remaining(&self) -> u64 {
        self.file_len.saturating_sub(self.pos)
    }

    fn io(e: std::io::Error) -> GgufError {
        GgufError::Io {
            path: None,
            source: e,
        }
    }

    /// Makes at least `n` (<= STREAM_CHUNK) bytes available, or reports how many are missing.
    /// Each read asks for the whole free part of the buffer.
    fn fill(&mut self, n: usize, field: &dyn Fn() -> String) -> Result<&[u8]> {
        if self.end - self.start < n {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
            while self.end < n {
                let got = self
                    .inner
                    .read(&mut self.buf[self.end..])
                    .map_err(Self::io)?;
                if got == 0 {
                    return Err(GgufError::Truncated {
                        offset: self.pos,
                        field: field(),
                        missing: (n - self.end) as u64,
                    });
                }
                self.end += got;
            }
        }
        Ok(&self.buf[self.start..self.start + n])
    }

    fn consume(&mut self, n: usize) {
        self.start += n;
        self.pos += n as u64;
    }

    fn array<const N: usize>(&mut self, field: &dyn Fn() -> String) -> Result<[u8; N]> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.fill(N, field)?);
        self.consume(N);
        Ok(out)
    }

    fn u32(&mut self, field: &dyn Fn() -> String) -> Result<u32> {
        self.array(field).map(u32::from_le_bytes)
    }

    fn u64(&mut self, field: &dyn Fn() -> String) -> Result<u64> {
        self.array(field).map(u64::from_le_bytes)
    }

    /// Skips `n` bytes, checked against the stream's length; seeks past what is not buffered.
    fn skip(&mut self, n: u64, field: &dyn Fn() -> String) -> Result<()> {
        if n > self.remaining() {
            return Err(GgufError::Truncated {
                offset: self.pos,
                field: field(),
                missing: n - self.remaining(),
            });
        }
        let buffered = (self.end - self.start) as u64;
        if n <= buffered {
            self.consume(n as usize);
        } else {
            self.pos += n;
            self.start = 0;
            self.end = 0;
            self.inner
                .seek(SeekFrom::Start(self.pos))
                .map_err(Self::io)?;
        }
        Ok(())
    }

    /// Skips a `n`-byte string, validating it as UTF-8 a buffer at a time (the slice parser
    /// validates every top-level string, so the streaming reader must too).
    fn skip_utf8(&mut self, n: u64, field: &dyn Fn() -> String) -> Result<()> {
        if n > self.remaining() {
            return Err(GgufError::Truncated {
                offset: self.pos,
                field: field(),
                missing: n - self.remaining(),
            });
        }
        let start = self.pos;
        let mut left = n;
        while left > 0 {
            // `left <= remaining`, so these bytes exist.
            let want = left.min(STREAM_CHUNK as u64) as usize;
            let bytes = self.fill(want, field)?;
            let take = match std::str::from_utf8(bytes) {
                Ok(_) => want,
                // A character cut by the chunk end: keep it for the next round.
                Err(e)
                    if e.error_len().is_none() && (want as u64) < left && e.valid_up_to() > 0 =>
                {
                    e.valid_up_to()
                }
                Err(_) => {
                    return Err(GgufError::InvalidUtf8 {
                        offset: start,
                        field: field(),
                    });
                }
            };
            self.consume(take);
            left -= take as u64;
        }
        Ok(())
    }

    fn seek_to(&mut self, pos: u64) -> Result<()> {
        // A short hop forward (the alignment padding between tensors) within what is
        // buffered: consume it instead of dropping the buffer and reading it again.
        if pos >= self.pos && pos - self.pos <= (self.end - self.start) as u64 {
            self.consume((pos - self.pos) as usize);
            return Ok(());
        }
        self.start = 0;
        self.end = 0;
        self.pos = pos;
        self.inner.seek(SeekFrom::Start(pos)).map_err(Self::io)?;
        Ok(())
    }

    /// A count checked against the bytes left, like `Reader::count`.
    fn count(&mut self, min_elem: u64, field: &dyn Fn() -> String) -> Result<u64> {
        let at = self.pos;
        let count = self.u64(field)?;
        check_count(at, count, self.remaining(), min_elem, field)
    }

    /// A string of at most `max` bytes, read, validated and charged to `c` before it is
    /// copied.
    fn short_str(
        &mut self,
        max: u64,
        c: &mut Charges,
        field: &dyn Fn() -> String,
    ) -> Result<String> {
        let at = self.pos;
        let len = self.u64(&|| format!("{} length", field()))?;
        // Past the end is truncation (as the slice parser says); only then too long.
        if len > self.remaining() {
            return Err(GgufError::Truncated {
                offset: self.pos,
                field: field(),
                missing: len - self.remaining(),
            });
        }
        if len > max {
            return Err(GgufError::TooLong {
                offset: at,
                field: field(),
                len,
                max,
            });
        }
        let bytes_at = self.pos;
        c.charge(len, at, field)?;
        // `len <= max <= STREAM_CHUNK`.
        let s = std::str::from_utf8(self.fill(len as usize, field)?)
            .map_err(|_| GgufError::InvalidUtf8 {
                offset: bytes_at,
                field: field(),
            })?
            .to_owned();
        self.consume(len as usize);
        Ok(s)
    }
}

/// The working memory of one reader: what the index holds, checked against the
/// [`ParseLimits`] cap and charged to the budget's reservation *before* each allocation.
struct Charges {
    reservation: Option<Reservation>,
    /// Index bytes charged so far (the read buffer is not part of the index).
    index: u64,
    limits: ParseLimits,
}

impl Charges {
    /// Charges `bytes` of index about to be allocated for `field` (read at `offset`).
    fn charge(&mut self, bytes: u64, offset: u64, field: &dyn Fn() -> String) -> Result<()> {
        let next = self.index.saturating_add(bytes);
        check_index(next, self.limits, offset, &field())?;
        if let Some(r) = self.reservation.as_mut() {
            r.try_grow(bytes).map_err(|e| GgufError::Budget {
                bytes,
                what: "the streamed header index",
                reason: e.to_string(),
            })?;
        }
        self.index = next;
        Ok(())
    }

    /// Gives back `bytes` charged for a temporary that has been freed.
    fn release(&mut self, bytes: u64) {
        self.index = self.index.saturating_sub(bytes);
        if let Some(r) = self.reservation.as_mut() {
            r.shrink(bytes);
        }
    }
}

/// Heap bytes of `n` values of `T`, saturating.
fn bytes_of<T>(n: u64) -> u64 {
    n.saturating_mul(std::mem::size_of::<T>() as u64)
}

/// A GGUF file read through `Read + Seek` with bounded memory. See the module docs.
pub struct StreamingGguf<R> {
    window: Window<R>,
    version: u32,
    alignment: u64,
    data_offset: u64,
    metadata: Vec<(String, StreamValue)>,
    tensors: Vec<StreamTensor>,
    /// Indices into `tensors` in data-offset order (one forward pass over the data).
    data_order: Vec<u32>,
    charges: Charges,
}

impl<R> std::fmt::Debug for StreamingGguf<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamingGguf")
            .field("version", &self.version)
            .field("file_len", &self.window.file_len)
            .field("metadata", &self.metadata.len())
            .field("tensors", &self.tensors.len())
            .field(
                "reserved",
                &self.charges.reservation.as_ref().map(Reservation::bytes),
            )
            .finish()
    }
}

impl<R: Read + Seek> StreamingGguf<R> {
    /// Reads and validates the header from `inner` (from its start), with no budget.
    pub fn open(inner: R) -> Result<Self> {
        Self::open_with(inner, None)
    }

    /// Like [`open`](Self::open), charging the working memory (the read buffer, then each
    /// part of the index before it is allocated) to `budget`; [`GgufError::Budget`] if the
    /// budget refuses. The buffer is [`STREAM_BUFFER`] (or the file's size if smaller), and
    /// [`STREAM_CHUNK`] when the budget cannot spare that. The reservation is held until the reader drops. The index is also capped by
    /// the default [`ParseLimits`].
    pub fn open_with(inner: R, budget: Option<&MemoryBudget>) -> Result<Self> {
        Self::open_with_limits(inner, budget, ParseLimits::new())
    }

    /// Like [`open_with`](Self::open_with), with the index capped by `limits`
    /// ([`GgufError::IndexTooLarge`] before the memory is allocated).
    pub fn open_with_limits(
        mut inner: R,
        budget: Option<&MemoryBudget>,
        limits: ParseLimits,
    ) -> Result<Self> {
        let file_len = inner.seek(SeekFrom::End(0)).map_err(Window::<R>::io)?;
        inner.seek(SeekFrom::Start(0)).map_err(Window::<R>::io)?;
        let wanted = usize::try_from(file_len)
            .unwrap_or(usize::MAX)
            .clamp(STREAM_CHUNK, STREAM_BUFFER);
        let (reservation, buf_len) = match budget {
            Some(b) => match b.try_reserve(wanted as u64) {
                Ok(r) => (Some(r), wanted),
                // A tight budget: the smallest buffer that still reads every field.
                Err(_) if wanted > STREAM_CHUNK => {
                    let r = b
                        .try_reserve(STREAM_CHUNK as u64)
                        .map_err(|e| GgufError::Budget {
                            bytes: STREAM_CHUNK as u64,
                            what: "the streaming read buffer",
                            reason: e.to_string(),
                        })?;
                    (Some(r), STREAM_CHUNK)
                }
                Err(e) => {
                    return Err(GgufError::Budget {
                        bytes: wanted as u64,
                        what: "the streaming read buffer",
                        reason: e.to_string(),
                    });
                }
            },
            None => (None, wanted),
        };
        let window = Window {
            inner,
            buf: vec![0u8; buf_len].into_boxed_slice(),
            start: 0,
            end: 0,
            pos: 0,
            file_len,
        };
        let mut s = StreamingGguf {
            window,
            version: 0,
            alignment: DEFAULT_ALIGNMENT,
            data_offset: 0,
            metadata: Vec::new(),
            tensors: Vec::new(),
            data_order: Vec::new(),
            charges: Charges {
                reservation,
                index: 0,
                limits,
            },
        };
        s.read_header()?;
        Ok(s)
    }

    fn read_header(&mut self) -> Result<()> {
        let w = &mut self.window;
        let c = &mut self.charges;
        let head_len = w.file_len.min(8) as usize;
        let mut head = [0u8; 8];
        head[..head_len].copy_from_slice(w.fill(head_len, &|| "magic".into())?);
        let mut r = Reader::new(&head[..head_len]);
        read_magic(&mut r)?;
        self.version = read_version(&mut r)?;
        w.consume(8);
        let n_tensors = w.u64(&|| "header tensor count".into())?;
        let n_kv = w.count(MIN_KV_BYTES, &|| "header metadata count".into())?;
        // Checked against the bytes left, so the capacities below are bounded by the file.
        let kv_cap = bounded(n_kv, w.remaining(), MIN_KV_BYTES);
        let kv_field = || "header metadata count".to_string();
        c.charge(
            bytes_of::<(String, StreamValue)>(kv_cap as u64),
            16,
            &kv_field,
        )?;
        self.metadata.reserve_exact(kv_cap);
        // Key offsets, for the duplicate check; freed once it is done.
        let offsets_bytes = bytes_of::<u64>(kv_cap as u64);
        c.charge(offsets_bytes, 16, &kv_field)?;
        let mut key_offsets = Vec::with_capacity(kv_cap);
        for i in 0..n_kv {
            let entry_at = w.pos;
            key_offsets.push(entry_at);
            let key = w.short_str(STREAM_CHUNK as u64, c, &|| format!("metadata #{i} key"))?;
            let field = || format!("metadata #{i} '{}'", clip(&key));
            let value = read_stream_value(w, c, 0, &field)?;
            if key == crate::parse::ALIGNMENT_KEY {
                let v = match &value {
                    StreamValue::Inline(MetaValue::U32(a)) => Value::U32(*a),
                    _ => Value::Bool(false),
                };
                self.alignment = alignment_of(&MetadataEntry {
                    key: &key,
                    value: v,
                    offset: entry_at,
                })?;
            }
            self.metadata.push((key, value));
        }
        let max_tensors = w.remaining() / MIN_TENSOR_INFO_BYTES;
        if n_tensors > max_tensors {
            return Err(GgufError::CountTooLarge {
                offset: 8,
                field: "header tensor count".into(),
                count: n_tensors,
                remaining: w.remaining(),
                max: max_tensors,
                needed: n_tensors.saturating_mul(MIN_TENSOR_INFO_BYTES),
            });
        }
        let t_cap = bounded(n_tensors, w.remaining(), MIN_TENSOR_INFO_BYTES);
        let t_field = || "header tensor count".to_string();
        c.charge(bytes_of::<StreamTensor>(t_cap as u64), 8, &t_field)?;
        self.tensors.reserve_exact(t_cap);
        for i in 0..n_tensors {
            let t = read_stream_tensor(w, c, i, self.alignment)?;
            self.tensors.push(t);
        }
        self.data_offset =
            align_up(w.pos, self.alignment).ok_or_else(|| GgufError::BadAlignment {
                offset: w.pos,
                reason: "data section offset overflows".into(),
            })?;
        let n = self.tensors.len() as u64;
        // The range check's borrowed infos and its offset order, freed right after.
        let ranges_bytes = bytes_of::<TensorInfo<'_>>(n) + bytes_of::<usize>(n);
        c.charge(ranges_bytes, 8, &t_field)?;
        let infos: Vec<TensorInfo<'_>> = self.tensors.iter().map(StreamTensor::info).collect();
        check_tensor_ranges(&infos, self.data_offset, w.file_len)?;
        drop(infos);
        c.release(ranges_bytes);
        let keys = self.metadata.iter().map(|(k, _)| k.as_str());
        let unique_bytes = bytes_of::<(&str, u64)>(n_kv);
        c.charge(unique_bytes, 16, &kv_field)?;
        check_unique(keys.zip(key_offsets), |k, offset| GgufError::DuplicateKey {
            offset,
            key: clip(k).into(),
        })?;
        c.release(unique_bytes + offsets_bytes);
        let unique_bytes = bytes_of::<(&str, u64)>(n);
        c.charge(unique_bytes, 8, &t_field)?;
        check_unique(
            self.tensors
                .iter()
                .map(|t| (t.name.as_str(), t.info_offset)),
            |n, offset| GgufError::DuplicateTensor {
                offset,
                name: clip(n).into(),
            },
        )?;
        c.release(unique_bytes);
        c.charge(bytes_of::<u32>(n), 8, &t_field)?;
        // At most u32::MAX tensors: each takes >= 24 bytes of a stream of u64 length.
        let mut order: Vec<u32> = Vec::with_capacity(self.tensors.len());
        order.extend(0..self.tensors.len() as u32);
        order.sort_unstable_by_key(|&i| self.tensors[i as usize].offset);
        self.data_order = order;
        Ok(())
    }

    /// The format version.
    pub fn version(&self) -> u32 {
        self.version
    }

    /// The data alignment.
    pub fn alignment(&self) -> u64 {
        self.alignment
    }

    /// File offset of the data section.
    pub fn data_offset(&self) -> u64 {
        self.data_offset
    }

    /// Length of the stream.
    pub fn file_len(&self) -> u64 {
        self.window.file_len
    }

    /// Metadata in file order.
    pub fn metadata(&self) -> &[(String, StreamValue)] {
        &self.metadata
    }

    /// The value of `key`. O(n) (files have tens of keys).
    pub fn get(&self, key: &str) -> Option<&StreamValue> {
        self.metadata.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    /// Tensors in file order.
    pub fn tensors(&self) -> &[StreamTensor] {
        &self.tensors
    }

    /// Bytes currently charged to the budget (0 without one): the read buffer plus the
    /// index.
    pub fn reserved_bytes(&self) -> u64 {
        self.charges
            .reservation
            .as_ref()
            .map_or(0, Reservation::bytes)
    }

    /// Bytes of index charged against the [`ParseLimits`] cap (and the budget, if any).
    pub fn charged_index_bytes(&self) -> u64 {
        self.charges.index
    }

    /// Heap held by the buffer and the index (capacity-based estimate).
    pub fn index_heap_bytes(&self) -> u64 {
        let meta: usize = self
            .metadata
            .iter()
            .map(|(k, v)| {
                k.capacity()
                    + match v {
                        StreamValue::Inline(MetaValue::String(s)) => s.capacity(),
                        _ => 0,
                    }
            })
            .sum();
        let names: usize = self.tensors.iter().map(|t| t.name.capacity()).sum();
        (meta
            + names
            + self.metadata.capacity() * std::mem::size_of::<(String, StreamValue)>()
            + self.tensors.capacity() * std::mem::size_of::<StreamTensor>()
            + self.data_order.capacity() * std::mem::size_of::<u32>()) as u64
    }

    /// Visits the elements of the deferred array `key` in order, reading them through the
    /// read buffer (so a 262,144-token vocabulary is never held whole): `visit` gets each
    /// element's index and value, strings borrowed from the buffer and UTF-8-validated.
    ///
    /// # Errors
    /// [`GgufError::NotFound`] when `key` is missing; [`GgufError::WrongType`] when it is
    /// not an array or holds arrays (nested arrays are not streamed);
    /// [`GgufError::TooLong`] for a string element over 64 KiB; read errors; whatever
    /// `visit` returns.
    pub fn visit_array(
        &mut self,
        key: &str,
        mut visit: impl FnMut(u64, Value<'_>) -> Result<()>,
    ) -> Result<()> {
        let (elem, len, offset) = match self.get(key) {
            Some(StreamValue::Deferred {
                value_type: ValueType::Array,
                element_type: Some(elem),
                len,
                offset,
                ..
            }) if *elem != ValueType::Array => (*elem, *len, *offset),
            Some(other) => {
                let found = match other {
                    StreamValue::Deferred {
                        element_type: Some(ValueType::Array),
                        ..
                    } => "array of arrays",
                    StreamValue::Deferred { value_type, .. } => value_type.name(),
                    StreamValue::Inline(v) => v.value_type().name(),
                };
                return Err(GgufError::WrongType {
                    key: key.into(),
                    expected: "array of scalars or strings",
                    found,
                });
            }
            None => {
                return Err(GgufError::NotFound {
                    what: "metadata key",
                    name: key.into(),
                });
            }
        };
        let w = &mut self.window;
        w.seek_to(offset)?;
        for i in 0..len {
            let field = || format!("'{}' element {i}", clip(key));
            if elem == ValueType::String {
                let at = w.pos;
                let n = w.u64(&|| format!("{} length", field()))?;
                if n > STREAM_CHUNK as u64 {
                    return Err(GgufError::TooLong {
                        offset: at,
                        field: field(),
                        len: n,
                        max: STREAM_CHUNK as u64,
                    });
                }
                let bytes_at = w.pos;
                let text = std::str::from_utf8(w.fill(n as usize, &field)?).map_err(|_| {
                    GgufError::InvalidUtf8 {
                        offset: bytes_at,
                        field: field(),
                    }
                })?;
                visit(i, Value::String(text))?;
                w.consume(n as usize);
            } else {
                let size = elem.fixed_size().unwrap_or(8) as usize;
                let bytes = w.fill(size, &field)?;
                let v = crate::value::read_value(&mut Reader::new(bytes), elem, &field)?;
                visit(i, v)?;
                w.consume(size);
            }
        }
        Ok(())
    }

    /// Streams tensor `index`'s bytes to `sink` in chunks of whole blocks (at most 64 KiB
    /// each), in order. `sink` gets the byte offset within the tensor and the chunk.
    pub fn read_tensor(
        &mut self,
        index: usize,
        mut sink: impl FnMut(u64, &[u8]) -> Result<()>,
    ) -> Result<()> {
        let t = self.tensors.get(index).ok_or_else(|| GgufError::NotFound {
            what: "tensor",
            name: format!("#{index}"),
        })?;
        stream_tensor(
            &mut self.window,
            self.data_offset,
            &t.info(),
            |at, bytes| sink(at, bytes),
        )
    }

    /// Streams every tensor in file-offset order (one forward pass over the data section).
    /// Allocates nothing.
    pub fn for_each_tensor(
        &mut self,
        mut sink: impl FnMut(&TensorInfo<'_>, u64, &[u8]) -> Result<()>,
    ) -> Result<()> {
        for k in 0..self.data_order.len() {
            let i = self.data_order[k] as usize;
            let info = self.tensors[i].info();
            stream_tensor(&mut self.window, self.data_offset, &info, |at, bytes| {
                sink(&info, at, bytes)
            })?;
        }
        Ok(())
    }
}

/// Hands one tensor's bytes to `sink` in chunks of whole blocks (at most [`STREAM_CHUNK`]),
/// seeking the window to the tensor first unless it is already there.
fn stream_tensor<R: Read + Seek>(
    w: &mut Window<R>,
    data_offset: u64,
    info: &TensorInfo<'_>,
    mut sink: impl FnMut(u64, &[u8]) -> Result<()>,
) -> Result<()> {
    let (start, len, block) = (
        data_offset + info.offset,
        info.n_bytes,
        u64::from(info.ggml_type.type_size()),
    );
    let chunk = (STREAM_CHUNK as u64 / block).max(1) * block;
    if w.pos != start {
        w.seek_to(start)?;
    }
    let mut done = 0u64;
    while done < len {
        let n = chunk.min(len - done) as usize;
        let bytes = w.fill(n, &|| format!("data of tensor '{}'", clip(info.name)))?;
        sink(done, bytes)?;
        w.consume(n);
        done += n as u64;
    }
    Ok(())
}

fn bounded(count: u64, remaining: u64, min: u64) -> usize {
    usize::try_from(count.min(remaining / min)).unwrap_or(0)
}

/// The first duplicate name, reported at the offset of its later occurrence.
fn check_unique<'s>(
    names: impl Iterator<Item = (&'s str, u64)>,
    err: impl Fn(&str, u64) -> GgufError,
) -> Result<()> {
    let mut v: Vec<(&str, u64)> = names.collect();
    v.sort_unstable();
    match v.windows(2).find(|w| w[0].0 == w[1].0) {
        Some(w) => Err(err(w[1].0, w[1].1)),
        None => Ok(()),
    }
}

fn read_stream_value<R: Read + Seek>(
    w: &mut Window<R>,
    c: &mut Charges,
    depth: u32,
    field: &dyn Fn() -> String,
) -> Result<StreamValue> {
    let ty = read_stream_type(w, field)?;
    Ok(match ty {
        ValueType::String => {
            let at = w.pos;
            let len = w.u64(&|| format!("{} length", field()))?;
            if len <= INLINE_STRING_MAX {
                let bytes_at = w.pos;
                // Past the end is truncation, reported by `fill` before anything is charged.
                if len > w.remaining() {
                    return Err(GgufError::Truncated {
                        offset: bytes_at,
                        field: field(),
                        missing: len - w.remaining(),
                    });
                }
                c.charge(len, at, field)?;
                let s = std::str::from_utf8(w.fill(len as usize, field)?)
                    .map_err(|_| GgufError::InvalidUtf8 {
                        offset: bytes_at,
                        field: field(),
                    })?
                    .to_owned();
                w.consume(len as usize);
                StreamValue::Inline(MetaValue::String(s))
            } else {
                let offset = w.pos;
                w.skip_utf8(len, field)?;
                StreamValue::Deferred {
                    value_type: ty,
                    element_type: None,
                    len,
                    offset,
                    byte_len: len,
                }
            }
        }
        ValueType::Array => {
            let (elem, len, offset, byte_len) = skip_array(w, depth + 1, field)?;
            StreamValue::Deferred {
                value_type: ty,
                element_type: Some(elem),
                len,
                offset,
                byte_len,
            }
        }
        scalar => {
            // Scalars are at most 8 bytes: decode them with the slice reader.
            let size = scalar.fixed_size().unwrap_or(8) as usize;
            let bytes = w.fill(size, field)?;
            let v = MetaValue::from_value(crate::value::read_value(
                &mut Reader::new(bytes),
                scalar,
                &field,
            )?)?;
            w.consume(size);
            StreamValue::Inline(v)
        }
    })
}

fn read_stream_type<R: Read + Seek>(
    w: &mut Window<R>,
    field: &dyn Fn() -> String,
) -> Result<ValueType> {
    let at = w.pos;
    let id = w.u32(&|| format!("{} type", field()))?;
    ValueType::from_id(id).ok_or_else(|| GgufError::UnknownValueType {
        offset: at,
        field: field(),
        type_id: id,
    })
}

/// Validates and skips an array's payload; returns (element type, count, offset, bytes).
fn skip_array<R: Read + Seek>(
    w: &mut Window<R>,
    depth: u32,
    field: &dyn Fn() -> String,
) -> Result<(ValueType, u64, u64, u64)> {
    if depth > MAX_ARRAY_DEPTH {
        return Err(GgufError::NestingTooDeep {
            offset: w.pos,
            field: field(),
            max: MAX_ARRAY_DEPTH,
        });
    }
    let elem = read_stream_type(w, &|| format!("{} element", field()))?;
    let len = w.count(elem.min_size(), &|| format!("{} length", field()))?;
    let offset = w.pos;
    match elem.fixed_size() {
        Some(size) => w.skip(len * size, field)?,
        None if elem == ValueType::String => {
            for _ in 0..len {
                let n = w.u64(&|| format!("{} length", field()))?;
                w.skip(n, field)?;
            }
        }
        None => {
            for i in 0..len {
                skip_array(w, depth + 1, &|| format!("{}[{i}]", field()))?;
            }
        }
    }
    Ok((elem, len, offset, w.pos - offset))
}

fn read_stream_tensor<R: Read + Seek>(
    w: &mut Window<R>,
    c: &mut Charges,
    i: u64,
    alignment: u64,
) -> Result<StreamTensor> {
    let info_offset = w.pos;
    let name = w.short_str(STREAM_CHUNK as u64, c, &|| format!("tensor #{i} name"))?;
    let field = |part: &str| format!("tensor #{i} '{}' {part}", clip(&name));
    let layout = read_tensor_layout(w, &field, alignment)?;
    Ok(StreamTensor {
        name,
        dims: layout.dims,
        n_dims: layout.n_dims,
        ggml_type: layout.ggml_type,
        offset: layout.offset,
        n_bytes: layout.n_bytes,
        info_offset,
    })
}

impl<R: Read + Seek> FieldSource for Window<R> {
    fn pos(&self) -> u64 {
        self.pos
    }
    fn field_u32(&mut self, field: &dyn Fn() -> String) -> Result<u32> {
        self.u32(field)
    }
    fn field_u64(&mut self, field: &dyn Fn() -> String) -> Result<u64> {
        self.u64(field)
    }
}
