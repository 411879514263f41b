//! One read-only private map of one file, and how it is made.

use std::fmt;
use std::fs::{File, Metadata, OpenOptions};
use std::ops::Deref;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use memmap2::{Advice, Mmap, MmapOptions};

use crate::MmapError;
use crate::ledger::{Charge, Ledger};

/// What makes a file "the same file" to the cache: device, inode, length, and the
/// modification and status-change times (nanoseconds).
///
/// A rename over the path changes the inode; an in-place rewrite changes mtime and ctime
/// (even one that restores mtime, such as `touch -d`, changes ctime). Two writes within one
/// timestamp tick of the file system that keep the length are the one change this cannot
/// see; see the crate docs on immutable model files.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FileIdentity {
    /// `st_dev`.
    pub dev: u64,
    /// `st_ino`.
    pub ino: u64,
    /// `st_size` in bytes.
    pub len: u64,
    /// `st_mtime` in nanoseconds since the epoch.
    pub mtime_ns: i128,
    /// `st_ctime` in nanoseconds since the epoch.
    pub ctime_ns: i128,
}

impl FileIdentity {
    /// The identity recorded in `meta`.
    pub fn from_metadata(meta: &Metadata) -> Self {
        let ns = |s: i64, n: i64| i128::from(s) * 1_000_000_000 + i128::from(n);
        Self {
            dev: meta.dev(),
            ino: meta.ino(),
            len: meta.len(),
            mtime_ns: ns(meta.mtime(), meta.mtime_nsec()),
            ctime_ns: ns(meta.ctime(), meta.ctime_nsec()),
        }
    }
}

/// An access-pattern hint passed to `madvise(2)` through memmap2.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(rename_all = "snake_case")
)]
#[non_exhaustive]
pub enum Access {
    /// `MADV_NORMAL`: the kernel's default read-ahead.
    Normal,
    /// `MADV_SEQUENTIAL`: read front to back (a streaming load); aggressive read-ahead,
    /// pages behind the reader may be dropped early.
    Sequential,
    /// `MADV_RANDOM`: scattered reads (tensor lookups); read-ahead off.
    Random,
    /// `MADV_WILLNEED`: start reading the whole range into the page cache now,
    /// asynchronously.
    WillNeed,
}

impl Access {
    fn advice(self) -> Advice {
        match self {
            Access::Normal => Advice::Normal,
            Access::Sequential => Advice::Sequential,
            Access::Random => Advice::Random,
            Access::WillNeed => Advice::WillNeed,
        }
    }
}

/// A read-only, private (`MAP_PRIVATE`, `PROT_READ`) map of a whole file, handed out by
/// [`MmapCache::get`](crate::MmapCache::get) as `Arc<MappedFile>`. That `get` is the only
/// way to make one, and it is `unsafe`: its caller promised the file stays unchanged while
/// the map lives, which is what makes the safe `&[u8]` views below sound.
///
/// Derefs to the file's bytes. The map lives as long as any `Arc` to it, even after the
/// cache evicted it; its bytes are then reported as *outstanding* in
/// [`CacheStats`](crate::CacheStats) until the last `Arc` drops. Reading the bytes costs
/// page faults on first touch (no copy onto the heap).
///
/// # The file must not change while mapped
/// If another process truncates the file anyway, touching a page past the new end raises
/// `SIGBUS` and kills the process (every read of these bytes can hit it); `MAP_PRIVATE`
/// does not protect against that, and in-place writes to pages not yet read show through a
/// private map too. Replace files by writing a new
/// file and renaming it over the old path: existing maps keep the old inode alive and stay
/// valid, and the cache re-maps the new file on the next `get`.
pub struct MappedFile {
    map: Mmap,
    path: PathBuf,
    identity: FileIdentity,
    pub(crate) charge: Charge,
    /// Recency stamp: the cache clock value of the latest hit (only ever grows).
    pub(crate) stamp: AtomicU64,
}

impl MappedFile {
    /// The path the file was mapped from (as given to `get`).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The identity (device, inode, length, times) of the file when it was mapped.
    pub fn identity(&self) -> FileIdentity {
        self.identity
    }

    /// The mapped length in bytes (never 0: empty files are refused).
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Always `false`: empty files are refused with
    /// [`MmapError::EmptyFile`](crate::MmapError::EmptyFile). Present for API symmetry.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// The mapped bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.map
    }

    /// Whether the cache that created this map still holds it (rather than it being
    /// evicted, replaced, or mapped uncached). A snapshot: it may change right after.
    pub fn is_cached(&self) -> bool {
        self.charge.is_held()
    }

    /// Applies an access hint to the whole map (`madvise`). One system call; the hint
    /// affects every holder of this map. Fails only if the kernel rejects the hint.
    pub fn advise(&self, access: Access) -> Result<(), MmapError> {
        self.map
            .advise(access.advice())
            .map_err(|source| MmapError::Advise {
                path: self.path.clone(),
                advice: access,
                source,
            })
    }

    /// Applies an access hint to `len` bytes from `offset` (rounded out to pages by the
    /// kernel). A range outside the map is reported as [`MmapError::Advise`] (`EINVAL`)
    /// rather than passed to the kernel.
    pub fn advise_range(&self, access: Access, offset: usize, len: usize) -> Result<(), MmapError> {
        let in_bounds = offset
            .checked_add(len)
            .is_some_and(|end| end <= self.map.len());
        let result = if in_bounds {
            self.map.advise_range(access.advice(), offset, len)
        } else {
            Err(std::io::Error::from_raw_os_error(libc::EINVAL))
        };
        result.map_err(|source| MmapError::Advise {
            path: self.path.clone(),
            advice: access,
            source,
        })
    }
}

impl Deref for MappedFile {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        &self.map
    }
}

impl AsRef<[u8]> for MappedFile {
    fn as_ref(&self) -> &[u8] {
        &self.map
    }
}

impl fmt::Debug for MappedFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MappedFile")
            .field("path", &self.path)
            .field("len", &self.map.len())
            .field("identity", &self.identity)
            .field("charge", &self.charge)
            .finish()
    }
}

/// How a file is mapped: the per-cache options that apply to every new map.
#[derive(Clone, Copy, Debug)]
pub(crate) struct MapSettings {
    pub(crate) advice: Option<Access>,
    pub(crate) populate: bool,
    pub(crate) lock: bool,
}

/// An opened, checked regular file that is ready to be mapped.
pub(crate) struct OpenedFile {
    file: File,
    pub(crate) identity: FileIdentity,
}

/// Opens `path` read-only and checks it is a non-empty regular file.
///
/// `O_NONBLOCK` keeps a FIFO from blocking the open; the checks use `fstat` of the opened
/// descriptor, so they describe exactly the file that will be mapped.
pub(crate) fn open_checked(path: &Path) -> Result<OpenedFile, MmapError> {
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)
        .map_err(|e| MmapError::from_io(path, "open", e))?;
    let meta = file
        .metadata()
        .map_err(|e| MmapError::from_io(path, "stat", e))?;
    check_regular(path, &meta)?;
    Ok(OpenedFile {
        file,
        identity: FileIdentity::from_metadata(&meta),
    })
}

fn check_regular(path: &Path, meta: &Metadata) -> Result<(), MmapError> {
    let ft = meta.file_type();
    let kind = if ft.is_file() {
        None
    } else if ft.is_dir() {
        Some("directory")
    } else if ft.is_fifo() {
        Some("fifo")
    } else if ft.is_socket() {
        Some("socket")
    } else if ft.is_char_device() {
        Some("character device")
    } else if ft.is_block_device() {
        Some("block device")
    } else {
        Some("special file")
    };
    if let Some(kind) = kind {
        return Err(MmapError::NotRegularFile {
            path: path.to_path_buf(),
            kind,
        });
    }
    if meta.len() == 0 {
        return Err(MmapError::EmptyFile {
            path: path.to_path_buf(),
        });
    }
    Ok(())
}

/// Maps an opened file with `settings`; the result is charged to nobody yet.
pub(crate) fn map_opened(
    path: &Path,
    opened: OpenedFile,
    settings: MapSettings,
    ledger: &Arc<Ledger>,
) -> Result<MappedFile, MmapError> {
    let len = opened.identity.len;
    let too_large = || MmapError::TooLarge {
        path: path.to_path_buf(),
        len,
        limit: usize::MAX as u64,
    };
    let map_len = usize::try_from(len).map_err(|_| too_large())?;
    let mut options = MmapOptions::new();
    options.len(map_len);
    if settings.populate {
        options.populate();
    }
    // SAFETY: `map_copy_read_only` is unsafe because the bytes behind the returned slice can
    // change or vanish if the file is modified or truncated while mapped. The map is
    // PROT_READ and MAP_PRIVATE, so this process never writes through it; that nobody else
    // modifies or truncates the file while the map lives is the `# Safety` contract of
    // `MmapCache::get`, the only (unsafe) entry point that reaches here. Length and offset
    // are the file's own (checked > 0 and <= usize::MAX above).
    let map = unsafe { options.map_copy_read_only(&opened.file) }
        .map_err(|e| MmapError::from_io(path, "mmap", e))?;
    drop(opened.file);
    let mapped = MappedFile {
        map,
        path: path.to_path_buf(),
        identity: opened.identity,
        charge: Charge::uncharged(ledger.clone(), len),
        stamp: AtomicU64::new(0),
    };
    if let Some(access) = settings.advice {
        mapped.advise(access)?;
    }
    if settings.lock {
        mapped.map.lock().map_err(|source| MmapError::Lock {
            path: path.to_path_buf(),
            len,
            source,
        })?;
    }
    Ok(mapped)
}

impl MappedFile {
    /// Records a hit at `stamp`. A plain store, not `fetch_max`: two threads hitting the
    /// same file at once may leave the smaller of their two stamps, which only reorders
    /// hits that were concurrent anyway.
    pub(crate) fn touch(&self, stamp: u64) {
        self.stamp.store(stamp, Ordering::Relaxed);
    }
}
