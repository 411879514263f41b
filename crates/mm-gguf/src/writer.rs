//! A GGUF writer: metadata of every type, tensors of any ggml type, correct alignment.

use std::io::Write;

use crate::error::{GgufError, Result};
use crate::parse::{ALIGNMENT_KEY, DEFAULT_ALIGNMENT, GGUF_MAGIC, MAX_DIMS, align_up};
use crate::types::GgmlType;
use crate::value::{Value, ValueType};

/// An owned metadata value for the writer.
#[derive(Debug, Clone, PartialEq)]
#[allow(missing_docs)]
pub enum MetaValue {
    U8(u8),
    I8(i8),
    U16(u16),
    I16(i16),
    U32(u32),
    I32(i32),
    F32(f32),
    Bool(bool),
    String(String),
    /// An array: the element type (needed for empty arrays) and the elements, which must
    /// all have that type.
    Array(ValueType, Vec<MetaValue>),
    U64(u64),
    I64(i64),
    F64(f64),
}

impl MetaValue {
    /// The value's type tag.
    pub fn value_type(&self) -> ValueType {
        match self {
            MetaValue::U8(_) => ValueType::U8,
            MetaValue::I8(_) => ValueType::I8,
            MetaValue::U16(_) => ValueType::U16,
            MetaValue::I16(_) => ValueType::I16,
            MetaValue::U32(_) => ValueType::U32,
            MetaValue::I32(_) => ValueType::I32,
            MetaValue::F32(_) => ValueType::F32,
            MetaValue::Bool(_) => ValueType::Bool,
            MetaValue::String(_) => ValueType::String,
            MetaValue::Array(..) => ValueType::Array,
            MetaValue::U64(_) => ValueType::U64,
            MetaValue::I64(_) => ValueType::I64,
            MetaValue::F64(_) => ValueType::F64,
        }
    }

    /// Copies a parsed value (decoding arrays; allocates in proportion to the value).
    pub fn from_value(v: Value<'_>) -> Result<Self> {
        Ok(match v {
            Value::U8(x) => MetaValue::U8(x),
            Value::I8(x) => MetaValue::I8(x),
            Value::U16(x) => MetaValue::U16(x),
            Value::I16(x) => MetaValue::I16(x),
            Value::U32(x) => MetaValue::U32(x),
            Value::I32(x) => MetaValue::I32(x),
            Value::F32(x) => MetaValue::F32(x),
            Value::Bool(x) => MetaValue::Bool(x),
            Value::String(s) => MetaValue::String(s.to_owned()),
            Value::U64(x) => MetaValue::U64(x),
            Value::I64(x) => MetaValue::I64(x),
            Value::F64(x) => MetaValue::F64(x),
            Value::Array(a) => {
                let items = a
                    .iter()
                    .map(|e| e.and_then(MetaValue::from_value))
                    .collect::<Result<Vec<_>>>()?;
                MetaValue::Array(a.element_type(), items)
            }
        })
    }

    /// A string array, the common case (`tokenizer.ggml.tokens`).
    pub fn strings<S: Into<String>>(items: impl IntoIterator<Item = S>) -> Self {
        MetaValue::Array(
            ValueType::String,
            items
                .into_iter()
                .map(|s| MetaValue::String(s.into()))
                .collect(),
        )
    }

    fn check(&self, key: &str) -> Result<()> {
        if let MetaValue::Array(elem, items) = self {
            if let Some(bad) = items.iter().find(|i| i.value_type() != *elem) {
                return Err(GgufError::Writer(format!(
                    "array '{key}' declared with {} elements holds a {}",
                    elem.name(),
                    bad.value_type().name()
                )));
            }
            items.iter().try_for_each(|i| i.check(key))?;
        }
        Ok(())
    }

    fn encode(&self, out: &mut Vec<u8>) {
        match self {
            MetaValue::U8(x) => out.push(*x),
            MetaValue::I8(x) => out.extend_from_slice(&x.to_le_bytes()),
            MetaValue::U16(x) => out.extend_from_slice(&x.to_le_bytes()),
            MetaValue::I16(x) => out.extend_from_slice(&x.to_le_bytes()),
            MetaValue::U32(x) => out.extend_from_slice(&x.to_le_bytes()),
            MetaValue::I32(x) => out.extend_from_slice(&x.to_le_bytes()),
            MetaValue::F32(x) => out.extend_from_slice(&x.to_le_bytes()),
            MetaValue::Bool(x) => out.push(u8::from(*x)),
            MetaValue::String(s) => put_str(out, s),
            MetaValue::U64(x) => out.extend_from_slice(&x.to_le_bytes()),
            MetaValue::I64(x) => out.extend_from_slice(&x.to_le_bytes()),
            MetaValue::F64(x) => out.extend_from_slice(&x.to_le_bytes()),
            MetaValue::Array(elem, items) => {
                out.extend_from_slice(&elem.id().to_le_bytes());
                out.extend_from_slice(&(items.len() as u64).to_le_bytes());
                for i in items {
                    i.encode(out);
                }
            }
        }
    }
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u64).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

#[derive(Debug)]
struct PendingTensor<'d> {
    name: String,
    ty: GgmlType,
    shape: Vec<u64>,
    data: &'d [u8],
}

/// Builds a GGUF file: add metadata and tensors, then [`write_to`](Self::write_to).
///
/// Tensor data is borrowed until the write, so building a file costs no copy of it. The
/// header is assembled in memory (its size is that of the metadata), tensor data is
/// streamed to the sink with zero padding to the alignment.
///
/// ```
/// use mm_gguf::{Gguf, GgufWriter, MetaValue, types::GgmlType};
/// let weights: Vec<u8> = [1.0f32, 2.0, 3.0, 4.0].iter().flat_map(|x| x.to_le_bytes()).collect();
/// let mut w = GgufWriter::new();
/// w.add_metadata("general.architecture", MetaValue::String("demo".into()))?;
/// w.add_tensor("w", GgmlType::F32, &[2, 2], &weights)?;
/// let bytes = w.to_bytes()?;
/// let g = Gguf::parse(&bytes)?;
/// assert_eq!(g.get_str("general.architecture")?, "demo");
/// assert_eq!(g.tensor("w").unwrap().data, &weights[..]);
/// # Ok::<(), mm_gguf::GgufError>(())
/// ```
#[derive(Debug)]
pub struct GgufWriter<'d> {
    version: u32,
    alignment: u64,
    metadata: Vec<(String, MetaValue)>,
    tensors: Vec<PendingTensor<'d>>,
}

impl Default for GgufWriter<'_> {
    fn default() -> Self {
        Self::new()
    }
}

impl<'d> GgufWriter<'d> {
    /// A writer for a version 3 file with the default alignment (32).
    pub fn new() -> Self {
        GgufWriter {
            version: 3,
            alignment: DEFAULT_ALIGNMENT,
            metadata: Vec::new(),
            tensors: Vec::new(),
        }
    }

    /// Sets the format version (2 or 3; they differ only in the version number).
    pub fn version(&mut self, version: u32) -> Result<&mut Self> {
        if !(2..=3).contains(&version) {
            return Err(GgufError::Writer(format!(
                "version {version}: only 2 and 3 can be written"
            )));
        }
        self.version = version;
        Ok(self)
    }

    /// Sets the data alignment (a power of two); writes `general.alignment` when it is not 32.
    pub fn alignment(&mut self, alignment: u32) -> Result<&mut Self> {
        if alignment == 0 || !alignment.is_power_of_two() {
            return Err(GgufError::Writer(format!(
                "alignment {alignment} is not a non-zero power of two"
            )));
        }
        self.alignment = alignment.into();
        self.metadata.retain(|(k, _)| k != ALIGNMENT_KEY);
        if self.alignment != DEFAULT_ALIGNMENT {
            self.metadata
                .push((ALIGNMENT_KEY.into(), MetaValue::U32(alignment)));
        }
        Ok(self)
    }

    /// Adds a metadata pair. Fails on a duplicate key or a mixed-type array; use
    /// [`alignment`](Self::alignment) for `general.alignment`.
    pub fn add_metadata(&mut self, key: impl Into<String>, value: MetaValue) -> Result<&mut Self> {
        let key = key.into();
        if key == ALIGNMENT_KEY {
            return match value {
                MetaValue::U32(a) => self.alignment(a),
                v => Err(GgufError::Writer(format!(
                    "{ALIGNMENT_KEY} must be uint32, got {}",
                    v.value_type().name()
                ))),
            };
        }
        if self.metadata.iter().any(|(k, _)| *k == key) {
            return Err(GgufError::Writer(format!("duplicate metadata key '{key}'")));
        }
        value.check(&key)?;
        self.metadata.push((key, value));
        Ok(self)
    }

    /// Adds a tensor of `ty` with `shape` (ggml order, row length first) whose encoded
    /// blocks are `data`. Fails when `data` is not exactly the size the shape needs.
    pub fn add_tensor(
        &mut self,
        name: impl Into<String>,
        ty: GgmlType,
        shape: &[u64],
        data: &'d [u8],
    ) -> Result<&mut Self> {
        let name = name.into();
        if shape.len() > MAX_DIMS {
            return Err(GgufError::Writer(format!(
                "tensor '{name}': {} dimensions, at most {MAX_DIMS}",
                shape.len()
            )));
        }
        let need = ty.tensor_bytes(shape).ok_or_else(|| {
            GgufError::Writer(format!(
                "tensor '{name}': shape {shape:?} is not a whole number of {} blocks of {}",
                ty.name(),
                ty.block_size()
            ))
        })?;
        if need != data.len() as u64 {
            return Err(GgufError::Writer(format!(
                "tensor '{name}': shape {shape:?} of {} needs {need} bytes, got {}",
                ty.name(),
                data.len()
            )));
        }
        if self.tensors.iter().any(|t| t.name == name) {
            return Err(GgufError::Writer(format!("duplicate tensor name '{name}'")));
        }
        self.tensors.push(PendingTensor {
            name,
            ty,
            shape: shape.to_vec(),
            data,
        });
        Ok(self)
    }

    /// The encoded header (magic through tensor infos, padded to the alignment) and each
    /// tensor's offset in the data section.
    fn header(&self) -> (Vec<u8>, Vec<u64>) {
        let mut h = Vec::new();
        h.extend_from_slice(&GGUF_MAGIC);
        h.extend_from_slice(&self.version.to_le_bytes());
        h.extend_from_slice(&(self.tensors.len() as u64).to_le_bytes());
        h.extend_from_slice(&(self.metadata.len() as u64).to_le_bytes());
        for (k, v) in &self.metadata {
            put_str(&mut h, k);
            h.extend_from_slice(&v.value_type().id().to_le_bytes());
            v.encode(&mut h);
        }
        let mut offsets = Vec::with_capacity(self.tensors.len());
        let mut off = 0u64;
        for t in &self.tensors {
            put_str(&mut h, &t.name);
            h.extend_from_slice(&(t.shape.len() as u32).to_le_bytes());
            for d in &t.shape {
                h.extend_from_slice(&d.to_le_bytes());
            }
            h.extend_from_slice(&t.ty.id().to_le_bytes());
            h.extend_from_slice(&off.to_le_bytes());
            offsets.push(off);
            off = align_up(off + t.data.len() as u64, self.alignment).unwrap_or(u64::MAX);
        }
        let padded = align_up(h.len() as u64, self.alignment).unwrap_or(u64::MAX);
        h.resize(padded as usize, 0);
        (h, offsets)
    }

    /// Writes the file to `sink`, returning the number of bytes written.
    pub fn write_to(&self, mut sink: impl Write) -> Result<u64> {
        let io = |e| GgufError::Io {
            path: None,
            source: e,
        };
        let (header, offsets) = self.header();
        sink.write_all(&header).map_err(io)?;
        let mut pos = 0u64;
        let zeros = [0u8; 256];
        for (t, &off) in self.tensors.iter().zip(&offsets) {
            let mut pad = off - pos;
            while pad > 0 {
                let n = pad.min(zeros.len() as u64);
                sink.write_all(&zeros[..n as usize]).map_err(io)?;
                pad -= n;
            }
            sink.write_all(t.data).map_err(io)?;
            pos = off + t.data.len() as u64;
        }
        // Pad the last tensor too, as gguf-py does, so files concatenate cleanly.
        let end = align_up(pos, self.alignment).unwrap_or(pos);
        sink.write_all(&vec![0u8; (end - pos) as usize])
            .map_err(io)?;
        sink.flush().map_err(io)?;
        Ok(header.len() as u64 + end)
    }

    /// Writes the file into a new `Vec<u8>`.
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        self.write_to(&mut out)?;
        Ok(out)
    }

    /// Writes the file to `path` (created or truncated).
    pub fn write_file(&self, path: impl AsRef<std::path::Path>) -> Result<u64> {
        let path = path.as_ref();
        let f = std::fs::File::create(path).map_err(|e| GgufError::io(path, e))?;
        self.write_to(std::io::BufWriter::new(f))
            .map_err(|e| match e {
                GgufError::Io { source, .. } => GgufError::io(path, source),
                e => e,
            })
    }
}
