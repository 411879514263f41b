//! Helpers shared by the behaviour tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

/// The system page size.
pub fn page() -> u64 {
    // SAFETY: sysconf has no preconditions; _SC_PAGESIZE is always supported on Linux.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    u64::try_from(size).expect("page size")
}

/// Writes `len` bytes of `byte` to `dir/name`.
pub fn write(dir: &Path, name: &str, len: u64, byte: u8) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, vec![byte; usize::try_from(len).unwrap()]).unwrap();
    path
}

/// One mapping of a file from `/proc/self/smaps`.
#[derive(Debug)]
pub struct SmapsEntry {
    pub path: PathBuf,
    pub size_bytes: u64,
    pub locked_bytes: u64,
    pub vm_flags: Vec<String>,
}

/// Every mapping in `/proc/self/smaps` of a file under `dir`.
pub fn smaps_under(dir: &Path) -> Vec<SmapsEntry> {
    let text = std::fs::read_to_string("/proc/self/smaps").expect("read /proc/self/smaps");
    let mut out = Vec::new();
    let mut current: Option<SmapsEntry> = None;
    for line in text.lines() {
        let first = line.split_whitespace().next().unwrap_or("");
        let is_header =
            first.contains('-') && first.chars().all(|c| c.is_ascii_hexdigit() || c == '-');
        if is_header {
            out.extend(current.take());
            // address perms offset dev inode path
            let path = line.split_whitespace().nth(5).map(PathBuf::from);
            current = path.filter(|p| p.starts_with(dir)).map(|path| SmapsEntry {
                path,
                size_bytes: 0,
                locked_bytes: 0,
                vm_flags: Vec::new(),
            });
            continue;
        }
        let Some(entry) = current.as_mut() else {
            continue;
        };
        let kb = |rest: &str| {
            rest.trim()
                .trim_end_matches("kB")
                .trim()
                .parse::<u64>()
                .unwrap()
                * 1024
        };
        if let Some(rest) = line.strip_prefix("Size:") {
            entry.size_bytes = kb(rest);
        } else if let Some(rest) = line.strip_prefix("Locked:") {
            entry.locked_bytes = kb(rest);
        } else if let Some(rest) = line.strip_prefix("VmFlags:") {
            entry.vm_flags = rest.split_whitespace().map(str::to_owned).collect();
        }
    }
    out.extend(current);
    out
}

/// Sum of the mapped sizes of files under `dir`.
pub fn mapped_bytes_under(dir: &Path) -> u64 {
    smaps_under(dir).iter().map(|e| e.size_bytes).sum()
}

/// A small deterministic PRNG (xorshift64*), so failures reproduce.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Maps through the cache for the tests: every test's files live in its own temporary
/// directory and are replaced by rename, or rewritten only after each map of them was
/// dropped, which is what `MmapCache::get`'s contract asks.
pub trait MapFile {
    /// `MmapCache::get` under that argument.
    fn map_file(
        &self,
        path: &Path,
    ) -> Result<std::sync::Arc<mm_mmap::MappedFile>, mm_mmap::MmapError>;
}

impl MapFile for mm_mmap::MmapCache {
    fn map_file(
        &self,
        path: &Path,
    ) -> Result<std::sync::Arc<mm_mmap::MappedFile>, mm_mmap::MmapError> {
        // SAFETY: see the trait's docs: no test changes a file in place while it is mapped,
        // except the SIGBUS test, which does so on purpose in a child process.
        unsafe { self.get(path) }
    }
}
