//! memory-manager: the fixed cost of a default `MemoryManager` with every component touched
//! once (a pooled buffer, an interned string, an arena scope, a mapped file, an object pool,
//! a report and a sampler snapshot).
//!
//! Measured twice, since each way can hide something the other sees: the heap bytes the
//! manager keeps (mm-track, this thread's net bytes: everything here runs on this thread)
//! and the growth of the process's resident set (`mm_budget::sys::rss_bytes`), which also
//! counts pages the allocator touched for it and the mapped page. This part runs first, while
//! the process is small, so that RSS growth is the manager's own.

use std::io::Write as _;

use memory_manager::{MemoryConfig, MemoryManager, Sampler};

use super::mb;
use crate::Options;
use crate::check::{Check, Report};

const PART: &str = "memory-manager";

/// 3.5 MB: the design's line for the fixed overhead.
pub const FIXED_LIMIT: f64 = 3_500_000.0;

/// Runs the fixed-overhead checks.
pub fn run(_opts: &Options, report: &mut Report) {
    let file = match small_file() {
        Ok(f) => f,
        Err(e) => {
            report.push(
                Check::holds(PART, "fixed overhead: temp file for the map", false, "yes")
                    .detail(e.to_string()),
            );
            return;
        }
    };
    // Warm what std and the tracker set up once per thread, outside the measurement.
    let _ = mm_track::count(|| ());
    let _ = mm_budget::sys::rss_bytes();
    let rss_before = mm_budget::sys::rss_bytes().ok();

    let (touched, stats) = mm_track::count(|| -> Result<_, String> {
        let manager = MemoryManager::new(MemoryConfig::default()).map_err(|e| e.to_string())?;
        let buf = manager.buffer(1).map_err(|e| e.to_string())?;
        drop(buf);
        manager.interner().get_or_intern("gemma-3-270m");
        manager
            .scope(|arena| arena.alloc(1u64).map(|_| ()))
            .map_err(|e| e.to_string())?;
        // SAFETY: the run's own temporary file, never modified while mapped.
        let map = unsafe { manager.map(file.path()) }.map_err(|e| e.to_string())?;
        let first = map.first().copied();
        let objects = manager
            .object_pool("scratch", 4, || vec![0u8; 64], |v| v.fill(0))
            .map_err(|e| e.to_string())?;
        drop(objects.acquire());
        let text = manager.report().to_string();
        let mut sampler = Sampler::new(manager.clone());
        sampler.sample();
        Ok((manager, sampler, map, first, text.len()))
    });
    let rss_after = mm_budget::sys::rss_bytes().ok();
    let (manager, sampler, map, first, report_len) = match touched {
        Ok(t) => t,
        Err(e) => {
            report.push(
                Check::holds(PART, "fixed overhead: default manager builds", false, "yes")
                    .detail(e),
            );
            return;
        }
    };
    let heap = stats.net_bytes() as f64;
    report.push(
        Check::at_most(
            PART,
            "fixed overhead, heap (every component touched once)",
            heap,
            "bytes",
            FIXED_LIMIT,
        )
        .detail(format!(
            "{} in {} allocations; derived budget limit {}; map byte {first:?}; report {report_len} chars",
            mb(heap),
            stats.allocs - stats.deallocs,
            mb(manager.budget().limit() as f64)
        ))
        .require(
            mm_track::is_active() && stats.allocs > 0,
            "the tracker saw no allocation",
        ),
    );
    match (rss_before, rss_after) {
        (Some(before), Some(after)) => {
            let growth = after.saturating_sub(before) as f64;
            report.push(
                Check::at_most(
                    PART,
                    "fixed overhead, RSS growth",
                    growth,
                    "bytes",
                    FIXED_LIMIT,
                )
                .detail(format!(
                    "RSS {} -> {}{}",
                    mb(before as f64),
                    mb(after as f64),
                    if under_sanitizer() {
                        " (under a sanitizer: shadow memory and quarantine count, so a miss only warns)"
                    } else {
                        ""
                    }
                ))
                .soft(under_sanitizer()),
            );
        }
        _ => report.push(Check::holds(
            PART,
            "fixed overhead, RSS growth (RSS readable)",
            false,
            "RSS readable from /proc",
        )),
    }
    drop((sampler, map, manager));
}

/// Set by `.ci/asan.sh`: RSS then includes the sanitizer's shadow memory and quarantine.
fn under_sanitizer() -> bool {
    std::env::var_os("MM_UNDER_SANITIZER").is_some()
}

/// A 4 KiB file to map.
fn small_file() -> std::io::Result<tempfile::NamedTempFile> {
    let mut file = tempfile::NamedTempFile::new()?;
    file.write_all(&[7u8; 4096])?;
    file.flush()?;
    Ok(file)
}
