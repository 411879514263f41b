//! Metadata values: borrowed scalars, strings and lazy array views.

use crate::error::{GgufError, Result};
use crate::reader::Reader;

/// Deepest nesting of arrays inside arrays that the parser accepts. Real models use one
/// level; the limit stops a crafted file from driving the (recursive) validator deep.
pub const MAX_ARRAY_DEPTH: u32 = 8;

/// The type tag of a metadata value, as numbered by the GGUF specification.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u32)]
#[allow(missing_docs)]
pub enum ValueType {
    U8 = 0,
    I8 = 1,
    U16 = 2,
    I16 = 3,
    U32 = 4,
    I32 = 5,
    F32 = 6,
    Bool = 7,
    String = 8,
    Array = 9,
    U64 = 10,
    I64 = 11,
    F64 = 12,
}

impl ValueType {
    /// Every value type, in id order.
    pub const ALL: [ValueType; 13] = [
        ValueType::U8,
        ValueType::I8,
        ValueType::U16,
        ValueType::I16,
        ValueType::U32,
        ValueType::I32,
        ValueType::F32,
        ValueType::Bool,
        ValueType::String,
        ValueType::Array,
        ValueType::U64,
        ValueType::I64,
        ValueType::F64,
    ];

    /// The type for a GGUF type id, `None` when the id is unknown.
    pub fn from_id(id: u32) -> Option<Self> {
        Self::ALL.get(id as usize).copied()
    }

    /// The GGUF type id.
    pub fn id(self) -> u32 {
        self as u32
    }

    /// Lower-case name as gguf-py spells it (`uint32`, `string`, ...).
    pub fn name(self) -> &'static str {
        match self {
            ValueType::U8 => "uint8",
            ValueType::I8 => "int8",
            ValueType::U16 => "uint16",
            ValueType::I16 => "int16",
            ValueType::U32 => "uint32",
            ValueType::I32 => "int32",
            ValueType::F32 => "float32",
            ValueType::Bool => "bool",
            ValueType::String => "string",
            ValueType::Array => "array",
            ValueType::U64 => "uint64",
            ValueType::I64 => "int64",
            ValueType::F64 => "float64",
        }
    }

    /// Encoded size of a scalar of this type; `None` for strings and arrays.
    pub fn fixed_size(self) -> Option<u64> {
        Some(match self {
            ValueType::U8 | ValueType::I8 | ValueType::Bool => 1,
            ValueType::U16 | ValueType::I16 => 2,
            ValueType::U32 | ValueType::I32 | ValueType::F32 => 4,
            ValueType::U64 | ValueType::I64 | ValueType::F64 => 8,
            ValueType::String | ValueType::Array => return None,
        })
    }

    /// Fewest bytes one encoded value of this type can take (used to bound counts).
    pub(crate) fn min_size(self) -> u64 {
        match self {
            ValueType::String => 8,
            ValueType::Array => 12,
            t => t.fixed_size().unwrap_or(1),
        }
    }
}

/// One metadata value, borrowing from the file's bytes.
///
/// Scalars are copied out (they are at most 8 bytes), strings are `&str` views validated
/// when the file was opened, arrays are [`ArrayView`]s that decode on demand.
#[derive(Debug, Clone, Copy, PartialEq)]
#[allow(missing_docs)]
pub enum Value<'a> {
    U8(u8),
    I8(i8),
    U16(u16),
    I16(i16),
    U32(u32),
    I32(i32),
    F32(f32),
    Bool(bool),
    String(&'a str),
    Array(ArrayView<'a>),
    U64(u64),
    I64(i64),
    F64(f64),
}

impl<'a> Value<'a> {
    /// The value's type tag.
    pub fn value_type(&self) -> ValueType {
        match self {
            Value::U8(_) => ValueType::U8,
            Value::I8(_) => ValueType::I8,
            Value::U16(_) => ValueType::U16,
            Value::I16(_) => ValueType::I16,
            Value::U32(_) => ValueType::U32,
            Value::I32(_) => ValueType::I32,
            Value::F32(_) => ValueType::F32,
            Value::Bool(_) => ValueType::Bool,
            Value::String(_) => ValueType::String,
            Value::Array(_) => ValueType::Array,
            Value::U64(_) => ValueType::U64,
            Value::I64(_) => ValueType::I64,
            Value::F64(_) => ValueType::F64,
        }
    }

    /// The value as a string, if it is one.
    pub fn as_str(&self) -> Option<&'a str> {
        match self {
            Value::String(s) => Some(s),
            _ => None,
        }
    }

    /// The value as an array view, if it is one.
    pub fn as_array(&self) -> Option<ArrayView<'a>> {
        match self {
            Value::Array(a) => Some(*a),
            _ => None,
        }
    }

    /// Any unsigned or non-negative signed integer, widened to `u64`.
    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            Value::U8(v) => Some(v.into()),
            Value::U16(v) => Some(v.into()),
            Value::U32(v) => Some(v.into()),
            Value::U64(v) => Some(v),
            Value::I8(v) => u64::try_from(v).ok(),
            Value::I16(v) => u64::try_from(v).ok(),
            Value::I32(v) => u64::try_from(v).ok(),
            Value::I64(v) => u64::try_from(v).ok(),
            _ => None,
        }
    }

    /// Any integer widened to `i64` (a `u64` above `i64::MAX` gives `None`).
    pub fn as_i64(&self) -> Option<i64> {
        match *self {
            Value::U8(v) => Some(v.into()),
            Value::U16(v) => Some(v.into()),
            Value::U32(v) => Some(v.into()),
            Value::U64(v) => i64::try_from(v).ok(),
            Value::I8(v) => Some(v.into()),
            Value::I16(v) => Some(v.into()),
            Value::I32(v) => Some(v.into()),
            Value::I64(v) => Some(v),
            _ => None,
        }
    }

    /// Either float type widened to `f64`.
    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            Value::F32(v) => Some(v.into()),
            Value::F64(v) => Some(v),
            _ => None,
        }
    }

    /// The value as a bool, if it is one.
    pub fn as_bool(&self) -> Option<bool> {
        match *self {
            Value::Bool(v) => Some(v),
            _ => None,
        }
    }
}

/// A lazily decoded metadata array borrowing the file's bytes.
///
/// Opening a file validates the array's structure (every length fits, nesting is bounded)
/// but decodes nothing and allocates nothing: `tokenizer.ggml.tokens` with 262,144 strings
/// costs one walk over the length prefixes. Elements of fixed-size types are reached in
/// O(1) with [`get`](Self::get); strings and nested arrays are variable-length, so `get(i)`
/// on them walks `i` elements; use [`iter`](Self::iter) to visit them all. Strings inside
/// arrays are validated as UTF-8 when they are read, not at open time (a bad one gives
/// [`GgufError::InvalidUtf8`] naming its offset).
#[derive(Clone, Copy, PartialEq)]
pub struct ArrayView<'a> {
    elem: ValueType,
    len: u64,
    /// The encoded elements (after the array header).
    bytes: &'a [u8],
    /// File offset of `bytes[0]`.
    offset: u64,
}

impl std::fmt::Debug for ArrayView<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ArrayView")
            .field("elem", &self.elem)
            .field("len", &self.len)
            .field("bytes", &self.bytes.len())
            .field("offset", &self.offset)
            .finish()
    }
}

impl<'a> ArrayView<'a> {
    /// The element type.
    pub fn element_type(&self) -> ValueType {
        self.elem
    }

    /// Number of elements.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// True when the array has no elements.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The encoded elements as stored in the file (little-endian scalars, or
    /// length-prefixed strings).
    pub fn as_bytes(&self) -> &'a [u8] {
        self.bytes
    }

    /// File offset of the first element.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// Element `i`, or `None` past the end. O(1) for scalar elements, O(i) otherwise.
    pub fn get(&self, i: u64) -> Option<Result<Value<'a>>> {
        if i >= self.len {
            return None;
        }
        if let Some(size) = self.elem.fixed_size() {
            // In bounds: the array was validated to hold `len * size` bytes.
            let start = (i * size) as usize;
            let mut r = Reader::with_base(&self.bytes[start..], self.offset + start as u64);
            return Some(read_scalar(&mut r, self.elem, &|| {
                format!("array element {i}")
            }));
        }
        self.iter().nth(i as usize)
    }

    /// Visits every element in order.
    pub fn iter(&self) -> ArrayIter<'a> {
        ArrayIter {
            array: *self,
            reader: Reader::with_base(self.bytes, self.offset),
            index: 0,
        }
    }

    /// Visits a string array's elements as `&str`; an error if the elements are not strings.
    pub fn strings(&self) -> Result<impl Iterator<Item = Result<&'a str>> + 'a> {
        if self.elem != ValueType::String {
            return Err(GgufError::WrongType {
                key: "array element".into(),
                expected: "string",
                found: self.elem.name(),
            });
        }
        Ok(self
            .iter()
            .map(|v| v.map(|v| v.as_str().unwrap_or_default())))
    }
}

/// Iterator over an [`ArrayView`]'s elements.
#[derive(Debug, Clone)]
pub struct ArrayIter<'a> {
    array: ArrayView<'a>,
    reader: Reader<'a>,
    index: u64,
}

impl<'a> Iterator for ArrayIter<'a> {
    type Item = Result<Value<'a>>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.index >= self.array.len {
            return None;
        }
        let i = self.index;
        self.index += 1;
        let field = || format!("array element {i}");
        let out = if self.array.elem == ValueType::String {
            self.reader.str(field).map(Value::String)
        } else if self.array.elem == ValueType::Array {
            read_array(&mut self.reader, 1, &field).map(Value::Array)
        } else {
            read_scalar(&mut self.reader, self.array.elem, &field)
        };
        if out.is_err() {
            // A bad element ends the walk: later elements cannot be located reliably.
            self.index = self.array.len;
        }
        Some(out)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let n = usize::try_from(self.array.len - self.index).unwrap_or(usize::MAX);
        (n, Some(n))
    }
}

/// Reads a scalar of fixed-size type `ty`.
fn read_scalar<'a>(
    r: &mut Reader<'a>,
    ty: ValueType,
    field: &impl Fn() -> String,
) -> Result<Value<'a>> {
    Ok(match ty {
        ValueType::U8 => Value::U8(r.u8(field)?),
        ValueType::I8 => Value::I8(i8::from_le_bytes(r.array(field)?)),
        ValueType::U16 => Value::U16(u16::from_le_bytes(r.array(field)?)),
        ValueType::I16 => Value::I16(i16::from_le_bytes(r.array(field)?)),
        ValueType::U32 => Value::U32(r.u32(field)?),
        ValueType::I32 => Value::I32(i32::from_le_bytes(r.array(field)?)),
        ValueType::F32 => Value::F32(f32::from_le_bytes(r.array(field)?)),
        ValueType::Bool => Value::Bool(r.u8(field)? != 0),
        ValueType::U64 => Value::U64(r.u64(field)?),
        ValueType::I64 => Value::I64(i64::from_le_bytes(r.array(field)?)),
        ValueType::F64 => Value::F64(f64::from_le_bytes(r.array(field)?)),
        ValueType::String => Value::String(r.str(field)?),
        ValueType::Array => Value::Array(read_array(r, 1, field)?),
    })
}

/// Reads a value type id.
pub(crate) fn read_type(r: &mut Reader<'_>, field: &impl Fn() -> String) -> Result<ValueType> {
    let at = r.offset();
    let id = r.u32(|| format!("{} type", field()))?;
    ValueType::from_id(id).ok_or_else(|| GgufError::UnknownValueType {
        offset: at,
        field: field(),
        type_id: id,
    })
}

/// Reads (and validates) a value of type `ty`: the parse-time entry point.
pub(crate) fn read_value<'a>(
    r: &mut Reader<'a>,
    ty: ValueType,
    field: &impl Fn() -> String,
) -> Result<Value<'a>> {
    read_scalar(r, ty, field)
}

/// Reads an array header and validates its whole payload, returning a view of it.
///
/// Validation walks strings' length prefixes and nested arrays (up to
/// [`MAX_ARRAY_DEPTH`]) without allocating; string contents are not UTF-8 checked here.
fn read_array<'a>(
    r: &mut Reader<'a>,
    depth: u32,
    field: &dyn Fn() -> String,
) -> Result<ArrayView<'a>> {
    let header_at = r.offset();
    if depth > MAX_ARRAY_DEPTH {
        return Err(GgufError::NestingTooDeep {
            offset: header_at,
            field: field(),
            max: MAX_ARRAY_DEPTH,
        });
    }
    let elem = read_type(r, &|| format!("{} element", field()))?;
    let len = r.count(elem.min_size(), || format!("{} length", field()))?;
    let start = r.pos();
    let offset = r.offset();
    match elem.fixed_size() {
        // `count` guaranteed len * size <= remaining.
        Some(size) => {
            r.take(len * size, field)?;
        }
        None if elem == ValueType::String => {
            for _ in 0..len {
                r.str_bytes(&field)?;
            }
        }
        None => {
            for i in 0..len {
                read_array(r, depth + 1, &|| format!("{}[{i}]", field()))?;
            }
        }
    }
    let end = r.pos();
    let bytes = r.slice_back(start, end);
    Ok(ArrayView {
        elem,
        len,
        bytes,
        offset,
    })
}

impl<'a> Reader<'a> {
    /// The bytes between two earlier positions of this reader.
    pub(crate) fn slice_back(&self, start: usize, end: usize) -> &'a [u8] {
        self.whole().get(start..end).unwrap_or_default()
    }
}
