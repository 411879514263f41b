//! Process, system and cgroup memory figures, read from the kernel (Linux only).
//!
//! | function | source | typical cost |
//! |---|---|---|
//! | [`rss_bytes`] | `/proc/self/statm` × page size | a few µs, no heap allocation; fine to poll |
//! | [`status_memory`] | `/proc/self/status` (`VmRSS`, `VmHWM`, `RssAnon`, `RssFile`, `RssShmem`) | tens of µs |
//! | [`meminfo`] | `/proc/meminfo` (`MemTotal`, `MemFree`, `MemAvailable`) | tens of µs |
//! | [`cgroup_memory`] | `/proc/self/cgroup`, `/proc/self/mountinfo`, then `memory.max`/`memory.current` (v2) or `memory.limit_in_bytes`/`memory.usage_in_bytes` (v1) | a few file reads per call; cache the limit |
//!
//! Nothing here returns a made-up 0: a figure the kernel does not report is `None`, and a
//! file that cannot be read or parsed is an error. `/proc/self/smaps` is not read: it costs
//! tens of microseconds per mapping and is too slow to poll.
//!
//! The pure parsers are in [`parse`].

pub mod parse;

use std::path::{Path, PathBuf};

use crate::{BudgetError, MAX_LIMIT};

pub use parse::{MemInfo, StatusMemory};

/// Which cgroup version a [`CgroupMemory`] was read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CgroupVersion {
    /// The unified hierarchy (`memory.max`, `memory.current`).
    V2,
    /// The legacy memory controller (`memory.limit_in_bytes`, `memory.usage_in_bytes`).
    V1,
}

/// The memory limit and usage of the cgroup this process runs in.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct CgroupMemory {
    /// Where the figures came from.
    pub version: CgroupVersion,
    /// The process's cgroup directory.
    pub path: PathBuf,
    /// The effective hard limit in bytes: the smallest limit of this cgroup and of its
    /// ancestors up to the mount point. `None` when none of them has one (`max`).
    pub limit: Option<u64>,
    /// Bytes charged to this cgroup (including page cache), `None` if the kernel does not
    /// report it for this cgroup.
    pub current: Option<u64>,
}

/// The system page size from `sysconf(_SC_PAGESIZE)`.
///
/// # Errors
/// [`BudgetError::Unsupported`] off Unix, or if `sysconf` reports no page size.
pub fn page_size() -> Result<u64, BudgetError> {
    #[cfg(unix)]
    {
        // SAFETY: `sysconf` takes an integer name, reads process-wide constants and has no
        // memory-safety preconditions; `_SC_PAGESIZE` is a valid name on every Unix.
        let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
        if let Ok(size @ 1..) = u64::try_from(size) {
            return Ok(size);
        }
    }
    Err(BudgetError::Unsupported {
        what: "the page size",
    })
}

fn io_error(path: &Path, source: std::io::Error) -> BudgetError {
    BudgetError::Io {
        path: path.display().to_string(),
        source,
    }
}

fn read(path: &Path) -> Result<String, BudgetError> {
    std::fs::read_to_string(path).map_err(|e| io_error(path, e))
}

/// Reads a file that may legitimately be absent: `Ok(None)` when it does not exist.
fn read_optional(path: &Path) -> Result<Option<String>, BudgetError> {
    match std::fs::read_to_string(path) {
        Ok(s) => Ok(Some(s)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_error(path, e)),
    }
}

fn linux_only(what: &'static str) -> Result<(), BudgetError> {
    if cfg!(target_os = "linux") {
        Ok(())
    } else {
        Err(BudgetError::Unsupported { what })
    }
}

/// The process's resident set size in bytes, from `/proc/self/statm` times the page size.
///
/// Reads into a stack buffer: no heap allocation, so it can be polled (about as costly as
/// three system calls).
///
/// # Errors
/// [`BudgetError::Unsupported`] off Linux; [`BudgetError::Io`] or [`BudgetError::Parse`] if
/// the file cannot be read or parsed, or the product overflows.
pub fn rss_bytes() -> Result<u64, BudgetError> {
    use std::io::Read;
    linux_only("/proc/self/statm")?;
    let path = Path::new("/proc/self/statm");
    let mut buf = [0u8; 256];
    let mut len = 0;
    let mut file = std::fs::File::open(path).map_err(|e| io_error(path, e))?;
    loop {
        match file.read(&mut buf[len..]) {
            Ok(0) => break,
            Ok(n) => len += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(io_error(path, e)),
        }
        if len == buf.len() {
            return Err(BudgetError::parse(
                "/proc/self/statm",
                "longer than 256 bytes",
                "",
            ));
        }
    }
    let text = std::str::from_utf8(&buf[..len])
        .map_err(|_| BudgetError::parse("/proc/self/statm", "not UTF-8", ""))?;
    let pages = parse::statm_resident_pages(text)?;
    pages
        .checked_mul(page_size()?)
        .ok_or_else(|| BudgetError::parse("/proc/self/statm", "resident bytes overflow", text))
}

/// The memory lines of `/proc/self/status` (RSS split into anonymous, file and shared).
///
/// # Errors
/// [`BudgetError::Unsupported`] off Linux; [`BudgetError::Io`] or [`BudgetError::Parse`].
pub fn status_memory() -> Result<StatusMemory, BudgetError> {
    linux_only("/proc/self/status")?;
    parse::status(&read(Path::new("/proc/self/status"))?)
}

/// The machine's memory from `/proc/meminfo`.
///
/// Inside a container this is the host's memory; see [`cgroup_memory`] for the container's
/// limit.
///
/// # Errors
/// [`BudgetError::Unsupported`] off Linux; [`BudgetError::Io`] or [`BudgetError::Parse`].
pub fn meminfo() -> Result<MemInfo, BudgetError> {
    linux_only("/proc/meminfo")?;
    parse::meminfo(&read(Path::new("/proc/meminfo"))?)
}

/// The memory limit and usage of this process's cgroup: v2 if the memory controller is
/// enabled on the unified hierarchy, else v1's memory controller. `Ok(None)` when the process
/// is in no memory cgroup (or in the root cgroup, which has no limit files).
///
/// # Errors
/// [`BudgetError::Unsupported`] off Linux; [`BudgetError::Io`] or [`BudgetError::Parse`] when
/// a file exists but cannot be read or parsed.
pub fn cgroup_memory() -> Result<Option<CgroupMemory>, BudgetError> {
    linux_only("cgroup memory")?;
    let Some(cgroup) = read_optional(Path::new("/proc/self/cgroup"))? else {
        return Ok(None);
    };
    let mountinfo = read(Path::new("/proc/self/mountinfo"))?;
    if let (Some(path), Some(mount)) = (
        parse::cgroup_v2_path(&cgroup)?,
        parse::find_cgroup_mount(&mountinfo, "cgroup2", None)?,
    ) && let Some(found) = read_cgroup(CgroupVersion::V2, &mount, path)?
    {
        return Ok(Some(found));
    }
    if let (Some(path), Some(mount)) = (
        parse::cgroup_v1_memory_path(&cgroup)?,
        parse::find_cgroup_mount(&mountinfo, "cgroup", Some("memory"))?,
    ) {
        return read_cgroup(CgroupVersion::V1, &mount, path);
    }
    Ok(None)
}

/// The directory of cgroup `path` under `mount`. The path in `/proc/self/cgroup` is relative
/// to the hierarchy's root, and the mount may show only a sub-tree (`mount.root`), so that
/// prefix is removed. A path outside the mounted sub-tree (possible with cgroup namespaces)
/// falls back to the mount point itself.
fn cgroup_dir(mount: &parse::CgroupMount<'_>, path: &str) -> PathBuf {
    let root = mount.root.trim_end_matches('/');
    let rel = match path.strip_prefix(root) {
        Some(rest) if rest.is_empty() || rest.starts_with('/') => rest,
        _ if root.is_empty() => path,
        _ => "",
    };
    let rel = rel.trim_start_matches('/');
    // `..` components would escape the mount; treat such a path as the mount point itself.
    if rel.split('/').any(|c| c == "..") {
        return PathBuf::from(mount.mount_point.as_ref());
    }
    Path::new(mount.mount_point.as_ref()).join(rel)
}

/// Reads the limit (minimum over the cgroup's directory and its ancestors up to the mount
/// point) and usage. `None` when neither a limit file nor a usage file exists (controller not
/// enabled there).
fn read_cgroup(
    version: CgroupVersion,
    mount: &parse::CgroupMount<'_>,
    path: &str,
) -> Result<Option<CgroupMemory>, BudgetError> {
    let dir = cgroup_dir(mount, path);
    let top = Path::new(mount.mount_point.as_ref());
    let (limit_file, usage_file) = match version {
        CgroupVersion::V2 => ("memory.max", "memory.current"),
        CgroupVersion::V1 => ("memory.limit_in_bytes", "memory.usage_in_bytes"),
    };
    let current = read_optional(&dir.join(usage_file))?
        .map(|t| parse::cgroup_counter(usage_file, &t))
        .transpose()?;
    let mut limit: Option<u64> = None;
    let mut any_limit_file = false;
    // Walk up to the mount point (never above it). A directory without the limit file is
    // skipped, not the end: the root of a v2 hierarchy has no `memory.max`, and a child whose
    // parent did not enable the memory controller has no memory files while the parent's
    // limit still applies to it.
    for d in dir.ancestors().take_while(|d| d.starts_with(top)) {
        let Some(text) = read_optional(&d.join(limit_file))? else {
            continue;
        };
        any_limit_file = true;
        let l = match version {
            CgroupVersion::V2 => parse::cgroup_v2_limit(&text)?,
            CgroupVersion::V1 => parse::cgroup_v1_limit(&text)?,
        };
        limit = match (limit, l) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
    }
    if current.is_none() && !any_limit_file {
        return Ok(None);
    }
    Ok(Some(CgroupMemory {
        version,
        path: dir,
        limit,
        current,
    }))
}

/// The fraction of the available memory that [`default_limit`] budgets: 3/4.
///
/// The rest is left for what a budget does not count: code and stacks, allocator overhead
/// and fragmentation, the page cache a cgroup is also charged for, and untracked libraries.
pub const DEFAULT_LIMIT_FRACTION: (u64, u64) = (3, 4);

/// A default budget limit: 3/4 ([`DEFAULT_LIMIT_FRACTION`]) of the cgroup's effective limit
/// if the process has one, else of the machine's `MemTotal` (the smaller of the two when both
/// exist, since a cgroup limit may exceed the RAM). Clamped to `1..=MAX_LIMIT`.
///
/// Read once at start-up: it costs several file reads.
///
/// # Errors
/// [`BudgetError::Unsupported`] off Linux; an I/O or parse error if `/proc/meminfo` or an
/// existing cgroup file cannot be read or parsed (a silently ignored container limit would
/// invite the OOM killer, so cgroup errors are not swallowed).
pub fn default_limit() -> Result<u64, BudgetError> {
    let total = meminfo()?.total;
    let cgroup_limit = cgroup_memory()?.and_then(|c| c.limit);
    Ok(limit_from(total, cgroup_limit))
}

/// The arithmetic of [`default_limit`], separated for tests.
fn limit_from(mem_total: u64, cgroup_limit: Option<u64>) -> u64 {
    let base = cgroup_limit.map_or(mem_total, |l| l.min(mem_total));
    let (num, den) = DEFAULT_LIMIT_FRACTION;
    let scaled = u128::from(base) * u128::from(num) / u128::from(den);
    u64::try_from(scaled)
        .unwrap_or(MAX_LIMIT)
        .clamp(1, MAX_LIMIT)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::borrow::Cow;

    #[test]
    fn limit_arithmetic() {
        assert_eq!(limit_from(16 << 30, None), 12 << 30);
        assert_eq!(limit_from(16 << 30, Some(2 << 30)), 3 << 29);
        // A cgroup limit above the RAM does not raise the budget.
        assert_eq!(limit_from(4 << 30, Some(64 << 30)), 3 << 30);
        assert_eq!(limit_from(0, None), 1);
        assert_eq!(limit_from(u64::MAX, None), MAX_LIMIT);
    }

    fn mount(root: &'static str, at: &'static str) -> parse::CgroupMount<'static> {
        parse::CgroupMount {
            root: Cow::Borrowed(root),
            mount_point: Cow::Borrowed(at),
        }
    }

    #[test]
    fn cgroup_dir_resolution() {
        let m = mount("/", "/sys/fs/cgroup");
        assert_eq!(cgroup_dir(&m, "/"), Path::new("/sys/fs/cgroup/"));
        assert_eq!(
            cgroup_dir(&m, "/system.slice/app.service"),
            Path::new("/sys/fs/cgroup/system.slice/app.service")
        );
        // A bind-mounted sub-tree: strip its root.
        let m = mount("/docker/abc", "/sys/fs/cgroup");
        assert_eq!(cgroup_dir(&m, "/docker/abc"), Path::new("/sys/fs/cgroup/"));
        assert_eq!(
            cgroup_dir(&m, "/docker/abc/child"),
            Path::new("/sys/fs/cgroup/child")
        );
        // Not under the mounted root, or trying to escape: the mount point itself.
        assert_eq!(
            cgroup_dir(&m, "/docker/abcdef"),
            Path::new("/sys/fs/cgroup")
        );
        let m = mount("/", "/sys/fs/cgroup");
        assert_eq!(cgroup_dir(&m, "/../.."), Path::new("/sys/fs/cgroup"));
    }

    /// A fake v2 hierarchy: the effective limit is the smallest along the path, the walk stops
    /// at the mount point, and "max" everywhere means no limit.
    #[test]
    fn v2_tree_walk() {
        let tmp = tempfile::tempdir().unwrap();
        let top = tmp.path().join("cg");
        let leaf = top.join("a/b");
        std::fs::create_dir_all(&leaf).unwrap();
        // Above the mount point: must be ignored.
        std::fs::write(tmp.path().join("memory.max"), "1\n").unwrap();
        std::fs::write(top.join("a/memory.max"), "2048\n").unwrap();
        std::fs::write(leaf.join("memory.max"), "max\n").unwrap();
        std::fs::write(leaf.join("memory.current"), "512\n").unwrap();
        let m = parse::CgroupMount {
            root: Cow::Borrowed("/"),
            mount_point: Cow::Owned(top.to_str().unwrap().to_owned()),
        };
        let c = read_cgroup(CgroupVersion::V2, &m, "/a/b").unwrap().unwrap();
        assert_eq!((c.limit, c.current), (Some(2048), Some(512)));
        assert_eq!(c.path, leaf);

        std::fs::write(top.join("a/memory.max"), "max\n").unwrap();
        let c = read_cgroup(CgroupVersion::V2, &m, "/a/b").unwrap().unwrap();
        assert_eq!(c.limit, None, "max everywhere is no limit, not 0");

        // A cgroup with no memory files anywhere up to the mount: no memory controller.
        std::fs::create_dir_all(top.join("plain")).unwrap();
        assert_eq!(read_cgroup(CgroupVersion::V2, &m, "/plain").unwrap(), None);

        // A child without memory files under a limited parent: the parent's limit applies,
        // the child's usage is unknown (None, not 0).
        std::fs::write(top.join("a/memory.max"), "4096\n").unwrap();
        std::fs::create_dir_all(leaf.join("c")).unwrap();
        let c = read_cgroup(CgroupVersion::V2, &m, "/a/b/c")
            .unwrap()
            .unwrap();
        assert_eq!((c.limit, c.current), (Some(4096), None));
        std::fs::write(top.join("a/memory.max"), "max\n").unwrap();

        // A corrupt file is an error, not a guess.
        std::fs::write(leaf.join("memory.current"), "lots\n").unwrap();
        assert!(matches!(
            read_cgroup(CgroupVersion::V2, &m, "/a/b"),
            Err(BudgetError::Parse { .. })
        ));
    }

    #[test]
    fn v1_unlimited_is_none() {
        let tmp = tempfile::tempdir().unwrap();
        let top = tmp.path().to_path_buf();
        std::fs::create_dir_all(top.join("svc")).unwrap();
        std::fs::write(top.join("memory.limit_in_bytes"), "9223372036854771712\n").unwrap();
        std::fs::write(
            top.join("svc/memory.limit_in_bytes"),
            "9223372036854771712\n",
        )
        .unwrap();
        std::fs::write(top.join("svc/memory.usage_in_bytes"), "4096\n").unwrap();
        let m = parse::CgroupMount {
            root: Cow::Borrowed("/"),
            mount_point: Cow::Owned(top.to_str().unwrap().to_owned()),
        };
        let c = read_cgroup(CgroupVersion::V1, &m, "/svc").unwrap().unwrap();
        assert_eq!((c.limit, c.current), (None, Some(4096)));
        std::fs::write(top.join("memory.limit_in_bytes"), "1073741824\n").unwrap();
        let c = read_cgroup(CgroupVersion::V1, &m, "/svc").unwrap().unwrap();
        assert_eq!(c.limit, Some(1 << 30), "an ancestor's limit applies");
    }
}
