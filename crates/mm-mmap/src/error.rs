//! The crate's one error type.

use std::io;
use std::path::PathBuf;

/// Why [`MmapCache::get`](crate::MmapCache::get) (or a [`MappedFile`](crate::MappedFile)
/// operation) failed. Every variant names the file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MmapError {
    /// The path does not exist (or a component of it does not), or the file was deleted
    /// after it was cached.
    #[error("{path}: no such file; check the path (a cached map of a deleted file is dropped)")]
    NotFound {
        /// The path asked for.
        path: PathBuf,
    },
    /// The process may not open or stat the file.
    #[error("{path}: permission denied; the file must be readable by this process")]
    PermissionDenied {
        /// The path asked for.
        path: PathBuf,
    },
    /// The file is zero bytes long: there is nothing to map (`mmap` rejects length 0).
    #[error("{path}: the file is empty; there is nothing to map")]
    EmptyFile {
        /// The path asked for.
        path: PathBuf,
    },
    /// The path names a directory, FIFO, socket or device rather than a regular file.
    #[error("{path}: is a {kind}, not a regular file; only regular files can be mapped")]
    NotRegularFile {
        /// The path asked for.
        path: PathBuf,
        /// What it is instead: "directory", "fifo", "socket", "character device",
        /// "block device" or "special file".
        kind: &'static str,
    },
    /// The file is larger than the cache budget and the cache was configured with
    /// [`OversizedPolicy::Reject`](crate::OversizedPolicy::Reject), or larger than the
    /// address space.
    #[error(
        "{path}: {len} bytes is larger than {limit} bytes; raise the cache budget or use \
         OversizedPolicy::MapUncached"
    )]
    TooLarge {
        /// The path asked for.
        path: PathBuf,
        /// The file's length.
        len: u64,
        /// The limit it broke (the budget, or `usize::MAX`).
        limit: u64,
    },
    /// `mlock` of the map failed, usually because `RLIMIT_MEMLOCK` is too small
    /// (`ulimit -l`) or the process lacks `CAP_IPC_LOCK`. The map was not cached.
    #[error("{path}: could not lock {len} bytes in memory (raise `ulimit -l`): {source}")]
    Lock {
        /// The path asked for.
        path: PathBuf,
        /// The length that was to be locked.
        len: u64,
        /// The operating system's error.
        #[source]
        source: io::Error,
    },
    /// `madvise` rejected an access hint.
    #[error("{path}: the kernel rejected the access hint {advice:?}: {source}")]
    Advise {
        /// The mapped file's path.
        path: PathBuf,
        /// The hint.
        advice: crate::Access,
        /// The operating system's error.
        #[source]
        source: io::Error,
    },
    /// Any other I/O failure while opening, inspecting or mapping the file (for example
    /// `ENOMEM` from `mmap` when the address space is exhausted).
    #[error("{path}: {op} failed: {source}")]
    Io {
        /// The path asked for.
        path: PathBuf,
        /// What was being done: "open", "stat" or "mmap".
        op: &'static str,
        /// The operating system's error.
        #[source]
        source: io::Error,
    },
}

impl MmapError {
    /// Classifies an I/O error from `op` on `path` into the typed variants.
    pub(crate) fn from_io(path: &std::path::Path, op: &'static str, source: io::Error) -> Self {
        let path = path.to_path_buf();
        match source.kind() {
            io::ErrorKind::NotFound => Self::NotFound { path },
            io::ErrorKind::PermissionDenied => Self::PermissionDenied { path },
            io::ErrorKind::IsADirectory => Self::NotRegularFile {
                path,
                kind: "directory",
            },
            _ => Self::Io { path, op, source },
        }
    }
}
