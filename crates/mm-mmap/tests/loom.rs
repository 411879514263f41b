//! Loom models of the cache: its real `get` (lookup, miss path `load`, insert race), its
//! real `evict_one` (through `trim_to`) and `remove_exact` (through `remove`), with the
//! lookup index behind the crate's `sync` shim (a loom `Mutex<HashMap>` under `cfg(loom)`,
//! see `src/index.rs`) and the eviction queue behind a loom `Mutex`. The maps are real maps
//! of small files written before the models run (loom does not model system calls, it just
//! lets them happen); what loom explores is every interleaving of the cache's locks and of
//! the accounting core's atomics (`Ledger`, `Charge`), whose own lifecycle is modelled
//! directly at the end of the file.
//!
//! Run: `RUSTFLAGS="--cfg loom" LOOM_MAX_PREEMPTIONS=2 cargo test --release -p mm-mmap --test loom`
#![cfg(loom)]

use std::path::{Path, PathBuf};
use std::sync::Arc as StdArc;

use loom::sync::Arc;
use loom::sync::atomic::{AtomicUsize, Ordering};
use loom::thread;
use mm_mmap::loom_core::{Charge, Ledger};
use mm_mmap::{MappedFile, MmapCache, MmapCacheConfig};

/// Files of `len` bytes each, written once, never modified (the contract of `get`).
fn files(n: usize, len: usize) -> (tempfile::TempDir, Vec<PathBuf>) {
    let dir = tempfile::tempdir().unwrap();
    let paths = (0..n)
        .map(|i| {
            let p = dir.path().join(format!("f{i}"));
            std::fs::write(&p, vec![i as u8; len]).unwrap();
            p
        })
        .collect();
    (dir, paths)
}

fn get(cache: &MmapCache, path: &Path) -> StdArc<MappedFile> {
    // SAFETY: the models' files are written before the models run and never modified.
    unsafe { cache.get(path) }.unwrap()
}

fn cache(budget: u64) -> Arc<MmapCache> {
    Arc::new(MmapCache::new(
        MmapCacheConfig::default().with_budget(budget),
    ))
}

/// Held bytes equal the lengths of the cached entries, and never pass the budget.
fn check_accounting(c: &MmapCache) {
    let s = c.stats();
    let cached: u64 = c.cached_files().iter().map(|(_, len)| len).sum();
    assert_eq!(
        s.held_bytes,
        cached,
        "held bytes are the cached entries' lengths: {s:?} {:?}",
        c.cached_files()
    );
    assert!(
        s.held_bytes <= s.budget_bytes,
        "held bytes passed the budget"
    );
    assert_eq!(s.entries, c.cached_files().len() as u64);
}

/// Two threads miss on two different files at once with room for only one: the real miss
/// path reserves (evicting the other's map when it is in) before inserting, so the held
/// bytes never pass the budget, both callers get a usable map, and once they drop them
/// nothing is left outstanding.
#[test]
fn concurrent_misses_never_exceed_budget() {
    let (_dir, paths) = files(2, 4096);
    let paths = StdArc::new(paths);
    loom::model(move || {
        let c = cache(6000);
        let handles: Vec<_> = (0..2)
            .map(|i| {
                let (c, paths) = (c.clone(), paths.clone());
                thread::spawn(move || {
                    let map = get(&c, &paths[i]);
                    assert_eq!(map[0], i as u8);
                    assert!(c.stats().held_bytes <= 6000);
                    drop(map);
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        check_accounting(&c);
        assert_eq!(c.stats().outstanding_bytes, 0);
        assert_eq!(c.stats().misses, 2);
        c.clear();
        assert_eq!((c.stats().held_bytes, c.stats().outstanding_bytes), (0, 0));
    });
}

/// Two threads miss on the same file at once: both may map it, but the loser of the insert
/// race returns the winner's map and gives back its reservation, so both callers hold the
/// one cached map and the cache holds its length exactly once.
#[test]
fn same_file_misses_share_one_map() {
    let (_dir, paths) = files(1, 4096);
    let path = StdArc::new(paths[0].clone());
    loom::model(move || {
        let c = cache(1 << 20);
        let handles: Vec<_> = (0..2)
            .map(|_| {
                let (c, path) = (c.clone(), path.clone());
                thread::spawn(move || get(&c, &path))
            })
            .collect();
        let got: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        assert!(StdArc::ptr_eq(&got[0], &got[1]), "one map for both");
        check_accounting(&c);
        assert_eq!(c.stats().held_bytes, 4096);
        assert_eq!(c.stats().outstanding_bytes, 0);
    });
}

/// An eviction (`trim_to` -> `evict_one` -> `remove_exact`) races an explicit `remove` of
/// the same entry while a caller holds the map: exactly one of them takes it out, its
/// bytes move from held to outstanding once, and leave when the caller drops it.
#[test]
fn eviction_racing_remove_moves_bytes_once() {
    let (_dir, paths) = files(1, 4096);
    let path = StdArc::new(paths[0].clone());
    loom::model(move || {
        let c = cache(1 << 20);
        let held = get(&c, &path);
        let evictor = {
            let c = c.clone();
            thread::spawn(move || c.trim_to(0))
        };
        let remover = {
            let (c, path) = (c.clone(), path.clone());
            thread::spawn(move || c.remove(&path))
        };
        let trimmed = evictor.join().unwrap();
        let removed = remover.join().unwrap();
        assert!(
            (trimmed == 4096) ^ removed,
            "exactly one took it out: trimmed {trimmed}, removed {removed}"
        );
        let s = c.stats();
        assert_eq!((s.held_bytes, s.outstanding_bytes, s.entries), (0, 4096, 0));
        assert_eq!(s.evictions, 1);
        drop(held);
        assert_eq!(c.stats().outstanding_bytes, 0);
    });
}

/// A miss races a trim to zero: whatever the order, the cache's held bytes are exactly the
/// cached entries' lengths afterwards, and the caller's map is valid either way.
#[test]
fn miss_racing_trim_keeps_accounting_exact() {
    let (_dir, paths) = files(2, 4096);
    let paths = StdArc::new(paths);
    loom::model(move || {
        let c = cache(1 << 20);
        drop(get(&c, &paths[0]));
        let getter = {
            let (c, paths) = (c.clone(), paths.clone());
            thread::spawn(move || get(&c, &paths[1]))
        };
        let trimmer = {
            let c = c.clone();
            thread::spawn(move || c.trim_to(0))
        };
        let map = getter.join().unwrap();
        trimmer.join().unwrap();
        assert_eq!(map[0], 1);
        check_accounting(&c);
        assert!(!c.contains(&paths[0]), "the older entry was trimmed");
        let s = c.stats();
        let expected = if c.contains(&paths[1]) { 0 } else { 4096 };
        assert_eq!(s.outstanding_bytes, expected, "a map let go of while held");
        drop(map);
        assert_eq!(c.stats().outstanding_bytes, 0);
    });
}

/// A fake map for the accounting-core models: only its charge.
struct FakeMap {
    charge: Charge,
}

fn fake(ledger: &StdArc<Ledger>, len: u64) -> Arc<FakeMap> {
    Arc::new(FakeMap {
        charge: Charge::uncharged(ledger.clone(), len),
    })
}

/// The cache evicts a map while its only caller drops its reference: whichever `Arc`
/// goes last, the bytes pass from held to outstanding and then out, ending at zero.
#[test]
fn eviction_racing_caller_drop_settles_to_zero() {
    loom::model(|| {
        let ledger = StdArc::new(Ledger::new(8));
        let map = fake(&ledger, 4);
        assert!(ledger.try_reserve(4) && map.charge.commit_held());
        let caller = map.clone();
        let evictor = thread::spawn(move || {
            assert!(map.charge.release_from_cache());
            drop(map);
        });
        let dropper = thread::spawn(move || drop(caller));
        evictor.join().unwrap();
        dropper.join().unwrap();
        assert_eq!((ledger.held(), ledger.outstanding()), (0, 0));
    });
}

/// Two evictors race for the same map: exactly one moves its bytes, so held drops by the
/// length once and outstanding rises by it once while a caller still holds the map.
#[test]
fn double_eviction_moves_bytes_once() {
    loom::model(|| {
        let ledger = StdArc::new(Ledger::new(8));
        let map = fake(&ledger, 4);
        assert!(ledger.try_reserve(4) && map.charge.commit_held());
        let winners = Arc::new(AtomicUsize::new(0));
        let handles: Vec<_> = (0..2)
            .map(|_| {
                let (map, winners) = (map.clone(), winners.clone());
                thread::spawn(move || {
                    if map.charge.release_from_cache() {
                        winners.fetch_add(1, Ordering::Relaxed);
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        assert_eq!(winners.load(Ordering::Relaxed), 1);
        assert_eq!((ledger.held(), ledger.outstanding()), (0, 4));
        drop(map);
        assert_eq!(ledger.outstanding(), 0);
    });
}
