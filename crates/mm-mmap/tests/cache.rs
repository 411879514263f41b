//! Behaviour of the cache: budget, LRU order, accounting, changed files, oversized files.

mod common;

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use common::{MapFile, Rng, mapped_bytes_under, page, write};
use mm_mmap::{MmapCache, MmapCacheConfig, MmapError, OversizedPolicy, Revalidate};

fn cache(budget: u64) -> MmapCache {
    MmapCache::new(MmapCacheConfig::default().with_budget(budget))
}

#[test]
fn hit_returns_same_map_and_counts() {
    let dir = tempfile::tempdir().unwrap();
    let a = write(dir.path(), "a", 3 * page(), 1);
    let c = cache(16 * page());
    let first = c.map_file(&a).unwrap();
    let second = c.map_file(&a).unwrap();
    assert!(Arc::ptr_eq(&first, &second));
    assert!(first.iter().all(|&b| b == 1));
    assert_eq!(first.len() as u64, 3 * page());
    let s = c.stats();
    assert_eq!(
        (s.hits, s.misses, s.entries, s.held_bytes),
        (1, 1, 1, 3 * page())
    );
}

#[test]
fn lru_evicts_least_recently_used_not_oldest_or_largest() {
    let dir = tempfile::tempdir().unwrap();
    let p = page();
    let a = write(dir.path(), "a", p, 1);
    let b = write(dir.path(), "b", p, 2);
    let big = write(dir.path(), "c", 2 * p, 3);
    let d = write(dir.path(), "d", p, 4);
    let c = cache(4 * p);
    for path in [&a, &b, &big] {
        c.map_file(path).unwrap();
    }
    // a is the oldest insert and c the largest; touching both leaves b least recent.
    c.map_file(&a).unwrap();
    c.map_file(&big).unwrap();
    c.map_file(&d).unwrap();
    assert!(
        !c.contains(&b),
        "b was least recently used and must go first"
    );
    assert!(c.contains(&a) && c.contains(&big) && c.contains(&d));
    assert_eq!(c.stats().evictions, 1);
    // Now a is least recent (touched before c, and d is newer).
    c.map_file(&b).unwrap();
    assert!(!c.contains(&a));
    assert_eq!(c.stats().held_bytes, 4 * p);
}

/// Runs a random single-threaded workload against the cache and a plain reference LRU and
/// checks the cached set after every step.
#[test]
fn lru_matches_reference_model() {
    let dir = tempfile::tempdir().unwrap();
    let p = page();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let files: Vec<(PathBuf, u64)> = (0..24)
        .map(|i| {
            let len = p * (1 + rng.below(4));
            (write(dir.path(), &format!("f{i}"), len, i as u8), len)
        })
        .collect();
    let budget = 10 * p;
    let c = MmapCache::new(
        MmapCacheConfig::default()
            .with_budget(budget)
            .with_revalidate(Revalidate::Never),
    );
    let mut model: VecDeque<usize> = VecDeque::new(); // front = least recently used
    let held = |m: &VecDeque<usize>| m.iter().map(|&i| files[i].1).sum::<u64>();
    for step in 0..3000 {
        let i = rng.below(files.len() as u64) as usize;
        let map = c.map_file(&files[i].0).unwrap();
        assert_eq!(map[0], i as u8);
        if let Some(pos) = model.iter().position(|&j| j == i) {
            model.remove(pos);
        } else {
            while held(&model) + files[i].1 > budget {
                model.pop_front();
            }
        }
        model.push_back(i);
        let mut want: Vec<PathBuf> = model.iter().map(|&j| files[j].0.clone()).collect();
        let mut got: Vec<PathBuf> = c.cached_files().into_iter().map(|(path, _)| path).collect();
        want.sort();
        got.sort();
        assert_eq!(
            got, want,
            "cached set differs from the reference LRU at step {step}"
        );
        assert_eq!(c.stats().held_bytes, held(&model));
    }
}

#[test]
fn budget_holds_with_many_files_and_threads() {
    let dir = tempfile::tempdir().unwrap();
    let p = page();
    let mut rng = Rng(42);
    let files: Vec<PathBuf> = (0..64)
        .map(|i| {
            write(
                dir.path(),
                &format!("f{i}"),
                p * (1 + rng.below(8)),
                i as u8,
            )
        })
        .collect();
    let budget = 40 * p;
    let c = MmapCache::new(MmapCacheConfig::default().with_budget(budget));
    let stop = AtomicBool::new(false);
    std::thread::scope(|s| {
        let watcher = s.spawn(|| {
            let mut max_seen = 0;
            while !stop.load(Ordering::Relaxed) {
                max_seen = max_seen.max(c.stats().held_bytes);
                std::thread::yield_now();
            }
            max_seen
        });
        let workers: Vec<_> = (0..4)
            .map(|t| {
                let (c, files) = (&c, &files);
                s.spawn(move || {
                    let mut rng = Rng(1000 + t);
                    let mut kept = Vec::new();
                    for _ in 0..3000 {
                        let i = rng.below(files.len() as u64) as usize;
                        let map = c.map_file(&files[i]).unwrap();
                        assert_eq!(map[map.len() - 1], i as u8, "wrong bytes for file {i}");
                        // Keep a few maps alive past their eviction to exercise outstanding.
                        if rng.below(10) == 0 {
                            kept.push(map);
                            if kept.len() > 4 {
                                kept.remove(0);
                            }
                        }
                    }
                })
            })
            .collect();
        for w in workers {
            w.join().unwrap();
        }
        stop.store(true, Ordering::Relaxed);
        assert!(
            watcher.join().unwrap() <= budget,
            "held bytes exceeded the budget"
        );
    });
    let s = c.stats();
    assert!(s.held_bytes <= budget);
    assert!(s.evictions > 0, "the workload must have forced evictions");
    let listed: u64 = c.cached_files().iter().map(|(_, len)| len).sum();
    assert_eq!(
        s.held_bytes, listed,
        "held bytes must equal the sum of cached lengths"
    );
    assert_eq!(s.outstanding_bytes, 0, "every caller dropped its maps");
    assert_eq!(s.entries as usize, c.cached_files().len());
    assert_eq!(s.hits + s.misses, 4 * 3000);
    assert_eq!(
        mapped_bytes_under(dir.path()),
        s.held_bytes,
        "/proc/self/smaps disagrees"
    );
}

#[test]
fn racing_misses_on_one_file_cache_one_map() {
    let dir = tempfile::tempdir().unwrap();
    let a = write(dir.path(), "a", 4 * page(), 9);
    for _ in 0..20 {
        let c = cache(64 * page());
        let maps: Vec<_> = std::thread::scope(|s| {
            let hs: Vec<_> = (0..4)
                .map(|_| s.spawn(|| c.map_file(&a).unwrap()))
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert!(
            maps.iter().all(|m| Arc::ptr_eq(m, &maps[0])),
            "losers must return the winner"
        );
        let s = c.stats();
        assert_eq!(
            (s.entries, s.held_bytes, s.outstanding_bytes),
            (1, 4 * page(), 0)
        );
    }
}

#[test]
fn accounting_matches_proc_smaps() {
    let dir = tempfile::tempdir().unwrap();
    let p = page();
    let paths: Vec<_> = (0..6)
        .map(|i| write(dir.path(), &format!("f{i}"), (i + 1) * p, 1))
        .collect();
    let c = cache(12 * p);
    let mut kept = Vec::new();
    for path in &paths {
        kept.push(c.map_file(path).unwrap());
    }
    // 1+2+3+4+5+6 = 21 pages were asked for; the cache holds at most 12, the rest of what
    // the callers keep is outstanding, and the kernel maps exactly the sum.
    let s = c.stats();
    assert!(s.held_bytes <= 12 * p);
    assert_eq!(s.held_bytes + s.outstanding_bytes, 21 * p);
    assert_eq!(mapped_bytes_under(dir.path()), 21 * p);
    let cached: u64 = c.cached_files().iter().map(|(_, len)| len).sum();
    assert_eq!(cached, s.held_bytes);

    kept.clear();
    let s = c.stats();
    assert_eq!(s.outstanding_bytes, 0);
    assert_eq!(
        mapped_bytes_under(dir.path()),
        s.held_bytes,
        "evicted maps must be unmapped"
    );

    let released = c.evict_to_fraction(0.5);
    let s = c.stats();
    assert!(
        s.held_bytes <= 6 * p,
        "evict_to_fraction(0.5) left {} bytes",
        s.held_bytes
    );
    assert!(released > 0);
    assert_eq!(mapped_bytes_under(dir.path()), s.held_bytes);
    c.clear();
    assert_eq!(mapped_bytes_under(dir.path()), 0);
    assert_eq!(c.stats().entries, 0);
}

#[test]
fn trim_keeps_most_recent() {
    let dir = tempfile::tempdir().unwrap();
    let p = page();
    let paths: Vec<_> = (0..4)
        .map(|i| write(dir.path(), &format!("f{i}"), p, 1))
        .collect();
    let c = cache(4 * p);
    for path in &paths {
        c.map_file(path).unwrap();
    }
    c.map_file(&paths[0]).unwrap();
    assert_eq!(c.trim_to(2 * p), 2 * p);
    assert!(c.contains(&paths[0]) && c.contains(&paths[3]));
    assert!(!c.contains(&paths[1]) && !c.contains(&paths[2]));
}

#[test]
fn file_replaced_by_rename_is_remapped() {
    let dir = tempfile::tempdir().unwrap();
    let p = page();
    let path = write(dir.path(), "model", p, b'a');
    let c = cache(16 * p);
    let old = c.map_file(&path).unwrap();
    let tmp = write(dir.path(), "model.tmp", 2 * p, b'b');
    std::fs::rename(&tmp, &path).unwrap();
    let new = c.map_file(&path).unwrap();
    assert!(!Arc::ptr_eq(&old, &new));
    assert_eq!((new[0], new.len() as u64), (b'b', 2 * p));
    // The old inode is still alive for its holder: readable, no SIGBUS.
    assert!(old.iter().all(|&b| b == b'a'));
    assert!(!old.is_cached());
    let s = c.stats();
    assert_eq!(
        (s.remaps, s.entries, s.held_bytes, s.outstanding_bytes),
        (1, 1, 2 * p, p)
    );
    assert!(
        Arc::ptr_eq(&c.map_file(&path).unwrap(), &new),
        "the stale map is never handed out"
    );
    drop(old);
    assert_eq!(c.stats().outstanding_bytes, 0);
}

#[test]
fn file_rewritten_in_place_with_same_length_is_remapped() {
    let dir = tempfile::tempdir().unwrap();
    let p = page();
    let path = write(dir.path(), "cfg", p, b'x');
    let old_mtime = std::fs::metadata(&path).unwrap().modified().unwrap();
    let c = cache(16 * p);
    let old = c.map_file(&path).unwrap();
    let old_identity = old.identity();
    drop(old); // no live map over the rewrite: this test is about detection, not SIGBUS
    std::fs::write(&path, vec![b'y'; p as usize]).unwrap();
    // Force a different mtime even on file systems with coarse timestamps.
    let f = std::fs::File::options().write(true).open(&path).unwrap();
    f.set_modified(old_mtime + Duration::from_secs(5)).unwrap();
    drop(f);
    let new = c.map_file(&path).unwrap();
    assert_ne!(new.identity(), old_identity);
    assert_eq!(new.identity().len, old_identity.len);
    assert_eq!(new[0], b'y');
    assert_eq!(c.stats().remaps, 1);
}

#[test]
fn never_revalidate_trusts_the_cache() {
    let dir = tempfile::tempdir().unwrap();
    let p = page();
    let path = write(dir.path(), "m", p, b'a');
    let c = MmapCache::new(MmapCacheConfig::default().with_revalidate(Revalidate::Never));
    let old = c.map_file(&path).unwrap();
    std::fs::rename(write(dir.path(), "m2", p, b'b'), &path).unwrap();
    assert!(
        Arc::ptr_eq(&c.map_file(&path).unwrap(), &old),
        "Never means no stat on a hit"
    );
    assert!(c.remove(&path));
    assert_eq!(c.map_file(&path).unwrap()[0], b'b');
}

#[test]
fn deleted_file_is_not_found_and_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let p = page();
    let path = write(dir.path(), "gone", 2 * p, 1);
    let c = cache(16 * p);
    let held = c.map_file(&path).unwrap();
    std::fs::remove_file(&path).unwrap();
    assert!(matches!(c.map_file(&path), Err(MmapError::NotFound { .. })));
    let s = c.stats();
    assert_eq!(
        (s.entries, s.held_bytes, s.outstanding_bytes),
        (0, 0, 2 * p)
    );
    assert_eq!(held[0], 1);
    drop(held);
    assert_eq!(c.stats().outstanding_bytes, 0);
}

#[test]
fn oversized_file_is_mapped_uncached_counted_and_shared() {
    let dir = tempfile::tempdir().unwrap();
    let p = page();
    let big = write(dir.path(), "big", 8 * p, 5);
    let small = write(dir.path(), "small", p, 6);
    let c = cache(4 * p);
    c.map_file(&small).unwrap();
    let first = c.map_file(&big).unwrap();
    let second = c.map_file(&big).unwrap();
    assert!(
        Arc::ptr_eq(&first, &second),
        "a live oversized map is shared, not mapped twice"
    );
    assert!(!first.is_cached());
    let s = c.stats();
    assert_eq!(
        (s.held_bytes, s.outstanding_bytes, s.entries),
        (p, 8 * p, 1)
    );
    assert_eq!(s.uncached, 1);
    assert!(
        c.contains(&small),
        "an oversized file must not evict cached ones"
    );
    assert_eq!(mapped_bytes_under(dir.path()), 9 * p);
    drop((first, second));
    assert_eq!(c.stats().outstanding_bytes, 0);
    assert_eq!(mapped_bytes_under(dir.path()), p);
    // Once dropped, the next get maps again.
    let third = c.map_file(&big).unwrap();
    assert_eq!(c.stats().misses, 3);
    assert_eq!(third[0], 5);
}

#[test]
fn oversized_file_rejected_when_configured() {
    let dir = tempfile::tempdir().unwrap();
    let big = write(dir.path(), "big", 8 * page(), 5);
    let c = MmapCache::new(
        MmapCacheConfig::default()
            .with_budget(4 * page())
            .with_oversized(OversizedPolicy::Reject),
    );
    match c.map_file(&big) {
        Err(MmapError::TooLarge { len, limit, .. }) => {
            assert_eq!((len, limit), (8 * page(), 4 * page()));
        }
        other => panic!("expected TooLarge, got {other:?}"),
    }
    let s = c.stats();
    assert_eq!((s.held_bytes, s.outstanding_bytes, s.entries), (0, 0, 0));
}

#[test]
fn default_budget_is_100_mib() {
    assert_eq!(MmapCache::default().stats().budget_bytes, 100 * 1024 * 1024);
}

/// Readers, a writer that replaces files by rename, and a pressure handler that trims,
/// all at once: every map handed out is a whole version of its file, the held bytes stay
/// within the budget, and the counters settle to exactly what is cached.
///
/// Whether a replaced file is still cached when a reader next asks for it (a remap) depends
/// on the schedule: most replaced files are trimmed first, and a starved reader may see
/// none. So the writer does not stop after a fixed number of replacements: it waits for the
/// readers to make progress after each one, and goes on until remaps and evictions both
/// happened while everything ran together (a few percent of replacements end in a remap).
#[test]
fn concurrent_replacements_trims_and_gets_keep_accounting_exact() {
    let dir = tempfile::tempdir().unwrap();
    let p = page();
    let files: Vec<PathBuf> = (0..12)
        .map(|i| write(dir.path(), &format!("f{i}"), p, 0))
        .collect();
    let budget = 8 * p;
    let c = MmapCache::new(MmapCacheConfig::default().with_budget(budget));
    let stop = AtomicBool::new(false);
    let gets = AtomicU64::new(0);
    std::thread::scope(|s| {
        let readers: Vec<_> = (0..2)
            .map(|t| {
                let (c, files, stop, gets) = (&c, &files, &stop, &gets);
                s.spawn(move || {
                    let mut rng = Rng(77 + t);
                    while !stop.load(Ordering::Relaxed) {
                        let i = rng.below(files.len() as u64) as usize;
                        let map = c.map_file(&files[i]).unwrap();
                        let version = map[0];
                        assert!(map.iter().all(|&b| b == version), "torn map of file {i}");
                        assert_eq!(map.len() as u64, p * (1 + u64::from(version % 3)));
                        assert!(c.stats().held_bytes <= budget);
                        gets.fetch_add(1, Ordering::Relaxed);
                    }
                })
            })
            .collect();
        let trimmer = s.spawn(|| {
            while !stop.load(Ordering::Relaxed) {
                c.evict_to_fraction(0.5);
                std::thread::sleep(Duration::from_micros(200));
            }
        });
        let mut rng = Rng(5);
        let mut replaced = 0u32;
        // Set instead of panicking here: the scope would wait for readers never stopped.
        let mut exhausted = None;
        'replace: loop {
            let now = c.stats();
            if replaced >= 120 && now.remaps > 0 && now.evictions > 0 {
                break;
            }
            // Not reached unless remaps or evictions are broken: each replacement is
            // followed by reader gets, and several per hundred end in a remap.
            if replaced >= 20_000 {
                exhausted = Some(now);
                break;
            }
            replaced += 1;
            // 1..=255: the byte says the version, and the version the length.
            let version = (replaced % 255 + 1) as u8;
            let i = rng.below(files.len() as u64) as usize;
            let len = p * (1 + u64::from(version % 3));
            let tmp = write(dir.path(), &format!("tmp{i}"), len, version);
            std::fs::rename(&tmp, &files[i]).unwrap();
            // Let the readers get a few files before the next replacement, however the
            // threads are scheduled. A reader that stopped early panicked: join reports it.
            let seen = gets.load(Ordering::Relaxed);
            while gets.load(Ordering::Relaxed) < seen + 4 {
                if readers.iter().any(|r| r.is_finished()) {
                    break 'replace;
                }
                std::thread::sleep(Duration::from_micros(100));
            }
        }
        stop.store(true, Ordering::Relaxed);
        for r in readers {
            r.join().unwrap();
        }
        trimmer.join().unwrap();
        if let Some(now) = exhausted {
            panic!("{replaced} replacements without both a remap and an eviction: {now:?}");
        }
    });
    let s = c.stats();
    assert!(s.remaps > 0 && s.evictions > 0, "{s:?}");
    let listed: u64 = c.cached_files().iter().map(|(_, len)| len).sum();
    assert_eq!(s.held_bytes, listed);
    assert_eq!(s.outstanding_bytes, 0);
    assert_eq!(mapped_bytes_under(dir.path()), s.held_bytes);
}
