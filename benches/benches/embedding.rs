//! Embedding cache: `mm_llm::EmbeddingCache` side by side with `moka::sync::Cache` bounded by a
//! byte weigher, on the same skewed get-or-insert workload of 768-dimension vectors.
//!
//! Both caches hold at most 10,000 vectors' worth of bytes (~31 MB); the key space is 40,000
//! texts drawn with a skew (a few hot, a long cold tail), so both hits and evictions happen.
//! Our cache is measured bare (`&mut`), with its optional frequency admission, and behind an
//! uncontended `Mutex`; moka as it comes (it is concurrent and does its bookkeeping in
//! batches).
//!
//! Run: `cargo bench -p mm-benches --bench embedding -- --warm-up-time 1 --measurement-time 3`

use std::hint::black_box;
use std::sync::{Arc, Mutex};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use mm_llm::{ENTRY_OVERHEAD, EmbeddingCache, EmbeddingCacheConfig, Interner};

const DIMS: usize = 768;
const CAP_ENTRIES: u64 = 10_000;
const KEYS: u64 = 40_000;
const OPS: usize = 20_000;

/// Skewed key indices: squaring a uniform draw puts most draws near 0.
fn workload() -> Vec<u64> {
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    (0..OPS)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let u = (x >> 11) as f64 / (1u64 << 53) as f64;
            (u * u * KEYS as f64) as u64
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let keys = workload();
    let texts: Vec<String> = (0..KEYS)
        .map(|i| format!("document chunk number {i}"))
        .collect();
    let vector: Vec<f32> = (0..DIMS).map(|i| i as f32).collect();
    let bytes = CAP_ENTRIES * (DIMS as u64 * 4 + ENTRY_OVERHEAD);
    let names = Interner::default();
    let model = names.get_or_intern("nomic-embed-text-v1.5");

    let mut group = c.benchmark_group("embedding/get_or_insert_768d");
    group.throughput(Throughput::Elements(OPS as u64));

    let cfg = EmbeddingCacheConfig {
        max_bytes: bytes,
        max_entries: CAP_ENTRIES as usize,
    };
    let mut ours = EmbeddingCache::new(cfg, None);
    let run_ours = |cache: &mut EmbeddingCache| {
        let mut hits = 0usize;
        for &k in &keys {
            let key = cache.key(model, &texts[k as usize]);
            match cache.get(&key) {
                Some(v) => hits += usize::from(v[1] == 1.0),
                None => cache.insert(key, &vector).unwrap(),
            }
        }
        hits
    };
    run_ours(&mut ours);
    group.bench_function("mm_llm", |b| b.iter(|| black_box(run_ours(&mut ours))));
    let s = ours.stats();
    eprintln!(
        "mm_llm: hit rate {:.3}, {} entries, {} bytes counted, {} bytes of slot storage",
        s.hit_rate().unwrap_or(0.0),
        s.entries,
        s.bytes,
        s.storage_bytes
    );

    let mut admitting = EmbeddingCache::new(cfg, None).with_frequency_admission();
    run_ours(&mut admitting);
    group.bench_function("mm_llm_frequency_admission", |b| {
        b.iter(|| black_box(run_ours(&mut admitting)))
    });

    let locked = Mutex::new(EmbeddingCache::new(cfg, None));
    let run_locked = || {
        let mut hits = 0usize;
        for &k in &keys {
            let mut cache = locked.lock().unwrap();
            let key = cache.key(model, &texts[k as usize]);
            match cache.get(&key) {
                Some(v) => hits += usize::from(v[1] == 1.0),
                None => cache.insert(key, &vector).unwrap(),
            }
        }
        hits
    };
    run_locked();
    group.bench_function("mm_llm_in_mutex", |b| b.iter(|| black_box(run_locked())));

    let moka: moka::sync::Cache<(u32, u64), Arc<[f32]>> = moka::sync::Cache::builder()
        .max_capacity(bytes)
        .weigher(|_k, v: &Arc<[f32]>| (v.len() * 4) as u32 + ENTRY_OVERHEAD as u32)
        .build();
    let hasher = std::hash::RandomState::new();
    let run_moka = || {
        use std::hash::BuildHasher;
        let mut hits = 0usize;
        for &k in &keys {
            let key = (7u32, hasher.hash_one(&texts[k as usize]));
            match moka.get(&key) {
                Some(v) => hits += usize::from(v[1] == 1.0),
                None => moka.insert(key, Arc::from(vector.as_slice())),
            }
        }
        hits
    };
    run_moka();
    group.bench_function("moka_sync_weigher", |b| b.iter(|| black_box(run_moka())));
    moka.run_pending_tasks();
    eprintln!(
        "one more pass, hit rates: mm_llm {:.3}, mm_llm with admission {:.3}, moka {:.3}; moka holds {} entries, weighted size {}",
        run_ours(&mut ours) as f64 / OPS as f64,
        run_ours(&mut admitting) as f64 / OPS as f64,
        run_moka() as f64 / OPS as f64,
        moka.entry_count(),
        moka.weighted_size()
    );
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
