#![doc = include_str!("../README.md")]

mod error;
mod mapped;
mod parse;
mod reader;
mod registry;
mod stream;
mod sync;
mod value;
mod writer;

pub mod quant;
pub mod types;

pub use error::{GgufError, Result};
pub use mapped::MappedGguf;
pub use mm_budget::{MemoryBudget, PressureLevel};
pub use mm_mmap::{Access, MappedFile, MmapCache, MmapCacheConfig};
pub use parse::{
    ALIGNMENT_KEY, DEFAULT_ALIGNMENT, DEFAULT_MAX_INDEX_BYTES, GGUF_MAGIC, Gguf, Inspection,
    MAX_DIMS, MetadataEntry, ParseLimits, TensorInfo, TensorView, inspect, inspect_with,
};
pub use registry::{
    ModelRegistry, Preload, ReadAhead, Reaper, RegistryConfig, RegistryEvent, RegistryEvents,
    RegistryStats, UnloadReason,
};
pub use stream::{
    INLINE_STRING_MAX, STREAM_BUFFER, STREAM_CHUNK, StreamTensor, StreamValue, StreamingGguf,
};
pub use value::{ArrayIter, ArrayView, MAX_ARRAY_DEPTH, Value, ValueType};
pub use writer::{GgufWriter, MetaValue};
