//! A GGUF file mapped through `mm-mmap` and parsed in place.
//!
//! The only `unsafe` in the crate's loading path is here: a [`Gguf`] that borrows from the
//! map it is stored next to (a self-referential pair), sealed behind an API that never
//! hands out a borrow longer than `&self`.

use std::path::Path;
use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use mm_mmap::{Access, MappedFile, MmapCache, MmapCacheConfig, MmapError};

use crate::error::{GgufError, Result};
use crate::parse::Gguf;

/// The process-wide map cache used by [`MappedGguf::open`]: default budget; models larger
/// than it are mapped uncached (and shared while alive), as `mm-mmap` documents.
fn default_cache() -> &'static MmapCache {
    static CACHE: OnceLock<MmapCache> = OnceLock::new();
    CACHE.get_or_init(|| MmapCache::new(MmapCacheConfig::default()))
}

/// A parsed GGUF file that owns (a share of) its mapping.
///
/// Opening maps the file (no read), parses the header in place and keeps the small index
/// [`Gguf`] builds; tensor data stays in the page cache and is faulted in on first touch.
/// Heap cost is the index only (about 100 bytes per tensor and per metadata key), so a
/// 4 GB model costs the same heap as a 40 MB one with the same tensor count.
///
/// `MappedGguf` is `Send + Sync`; share it with `Arc`. The map stays valid while any clone
/// of the underlying `Arc<MappedFile>` lives, even after the cache evicts it.
///
/// # The file must not change while mapped
/// The index holds `&str` keys and names validated as UTF-8 at open, and tensor data as
/// `&[u8]` into the map, so [`open`](Self::open) and [`open_in`](Self::open_in) are
/// `unsafe fn`s whose caller promises the file is neither modified in place nor truncated
/// while the `MappedGguf` (or the map) lives; replace model files by writing a new file and
/// renaming it. A file truncated anyway makes the next touch of a vanished page (reading a
/// tensor, a string, an array element) raise `SIGBUS`, which kills the process. For a file
/// that may change while it is read, use [`StreamingGguf`](crate::StreamingGguf) over a
/// `File`: it copies through `read(2)`, so a change or truncation gives wrong bytes or a
/// typed error, never undefined behaviour or a signal.
pub struct MappedGguf {
    // Field order matters: `gguf` borrows from `file` and must drop first.
    gguf: Gguf<'static>,
    file: Arc<MappedFile>,
}

/// The owner of [`MappedGguf::file_bytes`]: a share of the map.
struct MapOwner(Arc<MappedFile>);

impl AsRef<[u8]> for MapOwner {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl std::fmt::Debug for MappedGguf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MappedGguf")
            .field("path", &self.file.path())
            .field("len", &self.file.len())
            .field("tensors", &self.gguf.n_tensors())
            .field("metadata", &self.gguf.metadata().len())
            .finish()
    }
}

impl MappedGguf {
    /// Maps `path` through a process-wide [`MmapCache`] and parses it.
    ///
    /// # Safety
    /// The file at `path` must not be modified in place or truncated while the returned
    /// value (or its map) lives: the contract of [`MmapCache::get`], which this calls.
    /// Reading a tensor of a file truncated anyway raises `SIGBUS` (see the type's docs).
    ///
    /// # Errors
    /// [`GgufError::Map`] when the file cannot be mapped, [`GgufError::Truncated`] for an
    /// empty file, and every parse error of [`Gguf::parse`].
    ///
    /// ```compile_fail
    /// let _ = mm_gguf::MappedGguf::open("model.gguf"); // needs `unsafe`
    /// ```
    pub unsafe fn open(path: impl AsRef<Path>) -> Result<Self> {
        // SAFETY: the caller's contract is the one `open_in` asks for.
        unsafe { Self::open_in(default_cache(), path) }
    }

    /// Maps `path` through `cache` (sharing the map with other users of the cache) and
    /// parses it.
    ///
    /// # Safety
    /// As [`open`](Self::open): the file must not be modified in place or truncated while
    /// the returned value (or its map) lives.
    pub unsafe fn open_in(cache: &MmapCache, path: impl AsRef<Path>) -> Result<Self> {
        // SAFETY: the caller promised the file stays unchanged while the map lives.
        let file = unsafe { cache.get(path.as_ref()) }.map_err(|e| match e {
            MmapError::EmptyFile { .. } => GgufError::Truncated {
                offset: 0,
                field: "magic".into(),
                missing: 4,
            },
            e => GgufError::Map(e),
        })?;
        Self::from_mapped(file)
    }

    /// Parses an already mapped file. Safe: whoever made the map (with the `unsafe`
    /// [`MmapCache::get`]) took on the promise that the file stays unchanged. Reading a
    /// tensor of a file truncated anyway raises `SIGBUS`.
    pub fn from_mapped(file: Arc<MappedFile>) -> Result<Self> {
        let bytes: &[u8] = &file;
        // SAFETY: the slice points into the mapping owned by `file`, whose address does
        // not change when the `Arc` moves and which is unmapped only when the last `Arc`
        // drops. We keep a clone of that `Arc` in the same struct, declared after `gguf`
        // so it drops after it, and never mutate the map; that nobody else changes the
        // file is the contract of the `unsafe` `MmapCache::get` that made the map. The
        // `'static` lifetime is never exposed: `gguf()` re-borrows it for `&self`'s
        // lifetime only.
        let bytes: &'static [u8] =
            unsafe { std::slice::from_raw_parts(bytes.as_ptr(), bytes.len()) };
        let gguf = Gguf::parse(bytes)?;
        Ok(MappedGguf { gguf, file })
    }

    /// The parsed file, borrowing from the map for as long as `self` is borrowed. Reading
    /// its tensors or strings touches the map's pages: `SIGBUS` if the file was truncated.
    pub fn gguf<'s>(&'s self) -> &'s Gguf<'s> {
        &self.gguf
    }

    /// The underlying map.
    pub fn file(&self) -> &Arc<MappedFile> {
        &self.file
    }

    /// Length of the mapped file in bytes.
    pub fn mapped_bytes(&self) -> u64 {
        self.file.len() as u64
    }

    /// Heap held by the parsed index (approximate, from vector capacities).
    pub fn index_heap_bytes(&self) -> u64 {
        self.gguf.index_heap_bytes()
    }

    /// The whole mapped file as [`Bytes`] that keep the map alive: the map is unmapped only
    /// when the last clone (or slice) drops, even if the cache evicted it and this
    /// `MappedGguf` is gone. No copy; costs one small allocation (the owner's reference
    /// count, inside `bytes`); clones and slices of the result allocate nothing.
    pub fn file_bytes(&self) -> Bytes {
        Bytes::from_owner(MapOwner(Arc::clone(&self.file)))
    }

    /// The raw (possibly quantized) data of tensor `name` as [`Bytes`] that keep the map
    /// alive, for a zero-copy response body or a hand-off to another thread or task. No
    /// copy; O(log n) lookup and one small allocation, as [`file_bytes`](Self::file_bytes).
    /// `None` for a name the file does not have. Reading the bytes touches the map's pages
    /// (`SIGBUS` if the file was truncated, see the type's docs).
    ///
    /// ```no_run
    /// # fn demo() -> Result<(), mm_gguf::GgufError> {
    /// // SAFETY: the model file is never modified in place.
    /// let model = unsafe { mm_gguf::MappedGguf::open("model.gguf")? };
    /// let body = model.tensor_bytes("token_embd.weight").expect("tensor");
    /// drop(model); // the bytes keep the map alive
    /// assert!(!body.is_empty());
    /// # Ok(()) }
    /// ```
    pub fn tensor_bytes(&self, name: &str) -> Option<Bytes> {
        let view = self.gguf.tensor(name)?;
        // `view.data` borrows from the map that `file_bytes` covers whole.
        Some(self.file_bytes().slice_ref(view.data))
    }

    /// Hints the kernel about how the tensor data will be read (`madvise`): `Sequential`
    /// before reading everything once, `WillNeed` to prefetch, `Random` for lookups.
    pub fn advise(&self, access: Access) -> Result<()> {
        self.file.advise(access).map_err(GgufError::Map)
    }
}
