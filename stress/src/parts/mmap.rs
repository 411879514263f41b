//! mm-mmap through the facade: many files of different sizes mapped by 2 threads through a
//! manager whose mmap cache budget is far below their total, so the cache must evict all the
//! time. After every `map` call each thread reads the cache's held bytes; the largest figure
//! either thread ever saw must stay within the budget.

use std::io::Write as _;
use std::path::PathBuf;

use memory_manager::{MemoryConfig, MemoryError, MemoryManager};

use super::{mb, on_threads};
use crate::Options;
use crate::check::{Check, Report, fmt_num};
use crate::workload::Rng;

const PART: &str = "mm-mmap";

/// The cache budget of this part: 1 MiB.
pub const CACHE_BUDGET: u64 = 1 << 20;

/// Files on disk for the maps, removed with the directory when dropped.
#[derive(Debug)]
pub struct Files {
    /// The directory holding them.
    pub dir: tempfile::TempDir,
    /// The files, of 4 KiB to 64 KiB.
    pub paths: Vec<PathBuf>,
    /// Their total size.
    pub total_bytes: u64,
}

impl Files {
    /// Writes `n` files of 1 to 16 pages (4 KiB) each.
    ///
    /// # Errors
    /// The I/O error of creating the directory or a file.
    pub fn create(n: usize) -> std::io::Result<Self> {
        let dir = tempfile::tempdir()?;
        let mut rng = Rng::new(17);
        let mut paths = Vec::with_capacity(n);
        let mut total_bytes = 0;
        for i in 0..n {
            let pages = 1 + rng.below(16) as usize;
            let path = dir.path().join(format!("file-{i:04}.bin"));
            let mut f = std::fs::File::create(&path)?;
            let block = [(i % 251) as u8; 4096];
            for _ in 0..pages {
                f.write_all(&block)?;
            }
            total_bytes += 4096 * pages as u64;
            paths.push(path);
        }
        Ok(Self {
            dir,
            paths,
            total_bytes,
        })
    }
}

/// What one thread saw.
#[derive(Debug, Clone, Copy, Default)]
pub struct MapTally {
    /// `map` calls.
    pub gets: u64,
    /// The largest held-bytes figure seen after a call.
    pub max_held: u64,
    /// Sum of the first byte of each map (the maps were read).
    pub sum: u64,
}

/// Maps `gets` files chosen with a skew (a hot set, and a long tail that forces eviction)
/// through `manager`, reading each and recording the cache's held bytes after each call.
///
/// # Errors
/// The first mapping error.
pub fn touch(
    manager: &MemoryManager,
    files: &Files,
    rng: &mut Rng,
    gets: u64,
) -> Result<MapTally, MemoryError> {
    let mut t = MapTally::default();
    for _ in 0..gets {
        let path = &files.paths[rng.skewed(files.paths.len())];
        // SAFETY: the files `Files::create` wrote for this run, never modified afterwards.
        let map = unsafe { manager.map(path) }?;
        t.sum += u64::from(map.first().copied().unwrap_or(0));
        t.sum += u64::from(map.last().copied().unwrap_or(0));
        drop(map);
        t.gets += 1;
        t.max_held = t.max_held.max(manager.mmap_cache().stats().held_bytes);
    }
    Ok(t)
}

/// Runs the mmap cache check.
pub fn run(opts: &Options, report: &mut Report) {
    let (n_files, gets) = if opts.quick {
        (96, 2_000)
    } else {
        (256, 10_000)
    };
    let files = match Files::create(n_files) {
        Ok(f) => f,
        Err(e) => {
            report.push(
                Check::holds(PART, "mmap: test files written", false, "yes").detail(e.to_string()),
            );
            return;
        }
    };
    let config = MemoryConfig::default()
        .with_max_memory(1 << 30)
        .with_mmap_cache(CACHE_BUDGET);
    let manager = match MemoryManager::new(config) {
        Ok(m) => m,
        Err(e) => {
            report.push(
                Check::holds(PART, "mmap: manager builds", false, "yes").detail(e.to_string()),
            );
            return;
        }
    };
    let (results, _) = on_threads(2, |w| touch(&manager, &files, &mut Rng::new(w + 3), gets));
    let mut max_held = 0;
    let mut total = 0;
    let mut errors = Vec::new();
    for r in results {
        match r {
            Ok(t) => {
                max_held = max_held.max(t.max_held);
                total += t.gets;
            }
            Err(e) => errors.push(e.to_string()),
        }
    }
    let stats = manager.mmap_cache().stats();
    report.push(
        Check::at_most(
            PART,
            "mmap cache held bytes never above its budget",
            max_held as f64,
            "bytes",
            CACHE_BUDGET as f64,
        )
        .detail(format!(
            "{} maps of {} files ({} in all) on 2 threads: {} hits, {} misses, {} evictions, now {} held",
            fmt_num(total as f64),
            files.paths.len(),
            mb(files.total_bytes as f64),
            fmt_num(stats.hits as f64),
            fmt_num(stats.misses as f64),
            fmt_num(stats.evictions as f64),
            mb(stats.held_bytes as f64)
        ))
        .require(errors.is_empty(), &errors.join("; "))
        .require(
            stats.evictions > 0 && stats.hits > 0,
            "the budget was never reached or nothing was reused: the check proves nothing",
        ),
    );
}
