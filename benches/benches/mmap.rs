//! mm-mmap: hit latency and two-thread hits of `MmapCache` against a `Mutex<lru::LruCache>`
//! holding `Arc<Mmap>`s (the obvious alternative), plus the cost of a miss that evicts.
//!
//! cargo bench -p mm-benches --bench mmap -- --warm-up-time 1 --measurement-time 3

use std::hint::black_box;
use std::num::NonZeroUsize;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use memmap2::Mmap;
use mm_mmap::{MmapCache, MmapCacheConfig, Revalidate};

const FILES: usize = 16;
const FILE_LEN: usize = 64 * 1024;

/// The baseline: one lock around an LRU of maps (hits only). Keyed by `PathBuf` as one
/// would write it, or by the path's bytes as `MmapCache` keys (a fairer hash cost).
struct MutexLru<K: std::hash::Hash + Eq>(Mutex<lru::LruCache<K, Arc<Mmap>>>);

impl<K: std::hash::Hash + Eq> MutexLru<K> {
    fn new(paths: &[PathBuf], key: impl Fn(&Path) -> K) -> Self {
        let mut lru = lru::LruCache::new(NonZeroUsize::new(paths.len()).unwrap());
        for p in paths {
            let file = std::fs::File::open(p).unwrap();
            // SAFETY: the bench's own temporary files, never modified while mapped.
            let map = unsafe { Mmap::map(&file) }.unwrap();
            lru.put(key(p), Arc::new(map));
        }
        Self(Mutex::new(lru))
    }

    fn get<Q: std::hash::Hash + Eq + ?Sized>(&self, key: &Q) -> Arc<Mmap>
    where
        K: std::borrow::Borrow<Q>,
    {
        self.0
            .lock()
            .unwrap()
            .get(key)
            .expect("all files cached")
            .clone()
    }
}

fn path_bytes(p: &Path) -> &[u8] {
    p.as_os_str().as_bytes()
}

fn files(dir: &Path, n: usize, len: usize) -> Vec<PathBuf> {
    (0..n)
        .map(|i| {
            let p = dir.join(format!("f{i}"));
            std::fs::write(&p, vec![i as u8; len]).unwrap();
            p
        })
        .collect()
}

/// `MmapCache::get` on the bench's own files, written once and never modified.
fn get(c: &MmapCache, p: &std::path::Path) -> std::sync::Arc<mm_mmap::MappedFile> {
    // SAFETY: the bench's temporary files are never changed while mapped.
    unsafe { c.get(p) }.unwrap()
}

fn cache(paths: &[PathBuf], revalidate: Revalidate) -> MmapCache {
    let c = MmapCache::new(MmapCacheConfig::default().with_revalidate(revalidate));
    for p in paths {
        get(&c, p);
    }
    c
}

/// Runs `get` on two threads for `iters` iterations each; returns the wall time.
fn two_threads(iters: u64, paths: &[PathBuf], get: &(dyn Fn(&Path) -> u8 + Sync)) -> Duration {
    let start = Instant::now();
    std::thread::scope(|s| {
        for t in 0..2 {
            s.spawn(move || {
                for i in 0..iters as usize {
                    black_box(get(&paths[(i + t * FILES / 2) % FILES]));
                }
            });
        }
    });
    start.elapsed()
}

fn bench_hits(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let paths = files(dir.path(), FILES, FILE_LEN);
    let trusting = cache(&paths, Revalidate::Never);
    let checking = cache(&paths, Revalidate::Always);
    let baseline = MutexLru::new(&paths, Path::to_path_buf);
    let baseline_bytes = MutexLru::new(&paths, |p| Box::<[u8]>::from(path_bytes(p)));

    let mut g = c.benchmark_group("mmap_hit");
    let mut i = 0usize;
    g.bench_function("mutex_lru", |b| {
        b.iter(|| {
            i = (i + 1) % FILES;
            black_box(baseline.get(paths[i].as_path())[0])
        })
    });
    g.bench_function("mutex_lru_bytes_key", |b| {
        b.iter(|| {
            i = (i + 1) % FILES;
            black_box(baseline_bytes.get(path_bytes(&paths[i]))[0])
        })
    });
    g.bench_function("mm_mmap_never_revalidate", |b| {
        b.iter(|| {
            i = (i + 1) % FILES;
            black_box(get(&trusting, &paths[i])[0])
        })
    });
    g.bench_function("mm_mmap_always_revalidate", |b| {
        b.iter(|| {
            i = (i + 1) % FILES;
            black_box(get(&checking, &paths[i])[0])
        })
    });
    g.finish();

    let mut g = c.benchmark_group("mmap_hit_2threads");
    g.bench_function("mutex_lru", |b| {
        b.iter_custom(|iters| two_threads(iters, &paths, &|p| baseline.get(p)[0]))
    });
    g.bench_function("mutex_lru_bytes_key", |b| {
        b.iter_custom(|iters| two_threads(iters, &paths, &|p| baseline_bytes.get(path_bytes(p))[0]))
    });
    g.bench_function("mm_mmap_never_revalidate", |b| {
        b.iter_custom(|iters| two_threads(iters, &paths, &|p| get(&trusting, p)[0]))
    });
    g.bench_function("mm_mmap_always_revalidate", |b| {
        b.iter_custom(|iters| two_threads(iters, &paths, &|p| get(&checking, p)[0]))
    });
    g.finish();
}

/// Every `get` misses and evicts the least recently used of `n` cached maps (a cyclic scan
/// over n + 1 files, LRU's worst case): open + fstat + mmap + munmap + queue work.
fn bench_evicting_miss(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let mut g = c.benchmark_group("mmap_evicting_miss");
    for n in [16usize, 1024] {
        let paths = files(dir.path(), n + 1, 4096);
        let cache = MmapCache::new(
            MmapCacheConfig::default()
                .with_budget(4096 * n as u64)
                .with_revalidate(Revalidate::Never),
        );
        let mut i = 0usize;
        g.bench_function(format!("{n}_entries"), |b| {
            b.iter(|| {
                i = (i + 1) % paths.len();
                black_box(get(&cache, &paths[i])[0])
            })
        });
        let s = cache.stats();
        assert!(s.evictions > 0 && s.held_bytes <= 4096 * n as u64);
    }
    g.finish();
}

criterion_group!(benches, bench_hits, bench_evicting_miss);
criterion_main!(benches);
