//! Embedding cache: `mm_llm::EmbeddingCache` side by side with `moka::sync::Cache` bounded by a
//! byte weigher (moka's window TinyLFU), on the same traces of 768-dimension vectors.
//!
//! Three parts, one run:
//! 1. **Hit rates** (printed before the timings): each trace replayed through each cache with
//!    get-or-insert, next to Belady's optimal (the ceiling for any cache of that size that
//!    does not prefetch) and a plain LRU (`lru` crate). Traces: `replayed` (the fixed
//!    20,000-lookup trace over 40,000 texts with a squared-uniform skew, replayed once to
//!    warm and measured on the second pass, bound 10,000 entries), and the two committed
//!    traces `benches/traces/scan.u32` (popular texts interleaved with scans of one-time
//!    texts) and `benches/traces/shift.u32` (a popular set that moves), bound 1,000 entries,
//!    measured from cold (see `benches/traces/gen.py`).
//! 2. **Hits** (`embedding/hits_768d/{1,2}_threads`): the replayed trace against caches that
//!    hold all of its texts, so every lookup hits; each thread replays the whole trace.
//!    Before criterion, an interleaved probe runs both caches' hit passes in alternating rounds
//!    (`MM_HITS_ROUNDS`, default 21) and prints the medians (wall and thread CPU) and their
//!    ratio: on a loaded machine this ratio is steadier than two criterion runs one after
//!    the other.
//! 3. **Get-or-insert** (`embedding/get_or_insert_768d`): one pass of the replayed trace with
//!    misses and evictions, bound 10,000 vectors' worth of bytes (~32 MB).
//!
//! Run: `cargo bench -p mm-benches --bench embedding -- --warm-up-time 1 --measurement-time 3`

use std::collections::{BTreeSet, HashMap};
use std::hash::{BuildHasher, RandomState};
use std::hint::black_box;
use std::num::NonZeroUsize;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use mm_benches::thread_cpu_ns;
use mm_llm::{ENTRY_OVERHEAD, EmbeddingCache, EmbeddingCacheConfig, Interner, Symbol};

const DIMS: usize = 768;
const KEYS: u64 = 40_000;
const OPS: usize = 20_000;
const ENTRY: u64 = DIMS as u64 * 4 + ENTRY_OVERHEAD;

type Moka = moka::sync::Cache<(u32, u64), Arc<[f32]>>;

/// The replayed trace: skewed text ids (squaring a uniform draw puts most draws near 0).
fn replayed() -> Vec<u32> {
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    (0..OPS)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let u = (x >> 11) as f64 / (1u64 << 53) as f64;
            (u * u * KEYS as f64) as u32
        })
        .collect()
}

fn committed(bytes: &[u8]) -> Vec<u32> {
    bytes
        .chunks_exact(4)
        .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

/// Hits of Belady's optimal (evict the entry used furthest in the future) with `cap` entries
/// over `trace`, counted from lookup `from` on.
fn belady(trace: &[u32], cap: usize, from: usize) -> usize {
    let mut next = vec![usize::MAX; trace.len()];
    let mut seen: HashMap<u32, usize> = HashMap::new();
    for (i, &k) in trace.iter().enumerate().rev() {
        next[i] = seen.insert(k, i).unwrap_or(usize::MAX);
    }
    let (mut held, mut order): (HashMap<u32, usize>, BTreeSet<(usize, u32)>) = Default::default();
    let mut hits = 0;
    for (i, &k) in trace.iter().enumerate() {
        if let Some(at) = held.get_mut(&k) {
            order.remove(&(*at, k));
            *at = next[i];
            order.insert((next[i], k));
            hits += usize::from(i >= from);
            continue;
        }
        if next[i] == usize::MAX {
            continue; // never used again: not worth caching
        }
        if held.len() == cap {
            let (far, victim) = *order.iter().next_back().expect("full");
            if far < next[i] {
                continue; // the new text comes back later than everything held
            }
            order.remove(&(far, victim));
            held.remove(&victim);
        }
        held.insert(k, next[i]);
        order.insert((next[i], k));
    }
    hits
}

struct Texts {
    names: Interner,
    model: Symbol,
    texts: HashMap<u32, String>,
}

impl Texts {
    fn new(traces: &[&[u32]]) -> Self {
        let names = Interner::default();
        let model = names.get_or_intern("nomic-embed-text-v1.5");
        let texts = traces
            .iter()
            .flat_map(|t| t.iter())
            .map(|&k| (k, format!("document chunk number {k}")))
            .collect();
        Self {
            names,
            model,
            texts,
        }
    }

    fn of(&self, trace: &[u32]) -> Vec<&str> {
        trace.iter().map(|k| self.texts[k].as_str()).collect()
    }
}

fn ours(entries: usize, bytes: u64) -> EmbeddingCache {
    let cfg = EmbeddingCacheConfig::new()
        .with_max_entries(entries)
        .with_max_bytes(bytes);
    EmbeddingCache::new(cfg, None).unwrap()
}

fn moka(bytes: u64) -> Moka {
    moka::sync::Cache::builder()
        .max_capacity(bytes)
        .weigher(|_k, v: &Arc<[f32]>| (v.len() as u64 * 4 + ENTRY_OVERHEAD) as u32)
        .build()
}

/// One get-or-insert pass of `texts` through our cache; returns the hits.
fn pass_ours(cache: &EmbeddingCache, model: Symbol, texts: &[&str], vector: &[f32]) -> usize {
    let mut hits = 0;
    for t in texts {
        let key = cache.key(model, t);
        match cache.get(&key) {
            Some(v) => hits += usize::from(v[1] == 1.0),
            None => cache.insert(key, vector).unwrap(),
        }
    }
    hits
}

fn pass_moka(cache: &Moka, hasher: &RandomState, texts: &[&str], vector: &[f32]) -> usize {
    let mut hits = 0;
    for t in texts {
        let key = (7u32, hasher.hash_one(t));
        match cache.get(&key) {
            Some(v) => hits += usize::from(v[1] == 1.0),
            None => cache.insert(key, Arc::from(vector)),
        }
    }
    hits
}

fn pass_lru(
    cache: &mut lru::LruCache<u64, Arc<[f32]>>,
    hasher: &RandomState,
    texts: &[&str],
    vector: &[f32],
) -> usize {
    let mut hits = 0;
    for t in texts {
        let key = hasher.hash_one(t);
        match cache.get(&key) {
            Some(v) => hits += usize::from(v[1] == 1.0),
            None => {
                cache.put(key, Arc::from(vector));
            }
        }
    }
    hits
}

/// Hit rates of every cache on one trace, as a table row.
fn hit_rates(
    name: &str,
    trace: &[u32],
    texts: &Texts,
    cap: usize,
    warm_passes: usize,
    vector: &[f32],
) {
    let words = texts.of(trace);
    let hasher = RandomState::new();
    let measured = |f: &mut dyn FnMut() -> usize| {
        for _ in 0..warm_passes {
            f();
        }
        f() as f64 / trace.len() as f64
    };
    let c = ours(cap, cap as u64 * ENTRY);
    let r_ours = measured(&mut || pass_ours(&c, texts.model, &words, vector));
    let shards = c.stats().shards;
    let one = EmbeddingCache::new(
        EmbeddingCacheConfig::new()
            .with_max_entries(cap)
            .with_max_bytes(cap as u64 * ENTRY)
            .with_shards(1),
        None,
    )
    .unwrap();
    let r_one = measured(&mut || pass_ours(&one, texts.model, &words, vector));
    let m = moka(cap as u64 * ENTRY);
    let r_moka = measured(&mut || pass_moka(&m, &hasher, &words, vector));
    let mut l = lru::LruCache::new(NonZeroUsize::new(cap).unwrap());
    let r_lru = measured(&mut || pass_lru(&mut l, &hasher, &words, vector));
    let looped: Vec<u32> = (0..=warm_passes)
        .flat_map(|_| trace.iter().copied())
        .collect();
    let opt = belady(&looped, cap, warm_passes * trace.len()) as f64 / trace.len() as f64;
    eprintln!(
        "| {name} | {} | {cap} | {opt:.3} | {r_ours:.3} ({:.0}% of optimal; {shards} shards) | {r_one:.3} | {r_moka:.3} ({:.0}%) | {r_lru:.3} |",
        trace.len(),
        100.0 * r_ours / opt,
        100.0 * r_moka / opt,
    );
    let _ = &texts.names;
}

/// `threads` threads each running `pass` once, started together: the wall time of the slowest
/// and the mean thread CPU time.
fn probe_threads(threads: usize, pass: &(dyn Fn() -> usize + Sync)) -> (f64, f64) {
    let start = Barrier::new(threads);
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                s.spawn(|| {
                    start.wait();
                    let (t0, c0) = (Instant::now(), thread_cpu_ns());
                    black_box(pass());
                    (
                        t0.elapsed().as_secs_f64(),
                        (thread_cpu_ns() - c0) as f64 * 1e-9,
                    )
                })
            })
            .collect();
        let times: Vec<(f64, f64)> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        let wall = times.iter().map(|t| t.0).fold(0.0, f64::max);
        let cpu = times.iter().map(|t| t.1).sum::<f64>() / threads as f64;
        (wall, cpu)
    })
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Hits of both caches in interleaved rounds (ours, moka, ours, ...), so that both see the same
/// machine load: median ns per lookup and thread, wall and thread CPU, and moka / ours.
fn hits_probe(
    threads: usize,
    rounds: usize,
    ours: &(dyn Fn() -> usize + Sync),
    moka: &(dyn Fn() -> usize + Sync),
) {
    let (mut o, mut m) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        o.push(probe_threads(threads, ours));
        m.push(probe_threads(threads, moka));
    }
    let per = 1e9 / OPS as f64;
    let (ow, oc) = (
        median(o.iter().map(|t| t.0).collect()) * per,
        median(o.iter().map(|t| t.1).collect()) * per,
    );
    let (mw, mc) = (
        median(m.iter().map(|t| t.0).collect()) * per,
        median(m.iter().map(|t| t.1).collect()) * per,
    );
    eprintln!(
        "| hits, {threads} thread(s), {rounds} interleaved rounds | {ow:.0} / {oc:.0} ns | {mw:.0} / {mc:.0} ns | {:.2}x / {:.2}x |",
        mw / ow,
        mc / oc
    );
}

/// Wall time of `threads` threads each running `pass` once, started together.
fn timed_threads(threads: usize, pass: &(dyn Fn() -> usize + Sync)) -> Duration {
    let start = Barrier::new(threads);
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                s.spawn(|| {
                    start.wait();
                    let t0 = Instant::now();
                    black_box(pass());
                    t0.elapsed()
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap())
            .max()
            .unwrap_or_default()
    })
}

fn bench(c: &mut Criterion) {
    let trace = replayed();
    let scan = committed(include_bytes!("../traces/scan.u32"));
    let shift = committed(include_bytes!("../traces/shift.u32"));
    let texts = Texts::new(&[&trace, &scan, &shift]);
    let vector: Vec<f32> = (0..DIMS).map(|i| i as f32).collect();

    eprintln!(
        "| trace | lookups | bound (entries) | Belady | mm_llm | mm_llm, 1 shard | moka 0.12 | lru |"
    );
    eprintln!("|---|---|---|---|---|---|---|---|");
    hit_rates("replayed (2nd pass)", &trace, &texts, 10_000, 1, &vector);
    hit_rates("scan", &scan, &texts, 1_000, 0, &vector);
    hit_rates("shift", &shift, &texts, 1_000, 0, &vector);

    // Hits only: caches large enough for every text of the replayed trace.
    let words = texts.of(&trace);
    let all = ours(KEYS as usize, KEYS * ENTRY);
    pass_ours(&all, texts.model, &words, &vector);
    let hasher = RandomState::new();
    let m = moka(KEYS * ENTRY);
    pass_moka(&m, &hasher, &words, &vector);
    m.run_pending_tasks();
    assert_eq!(pass_ours(&all, texts.model, &words, &vector), OPS);
    assert_eq!(pass_moka(&m, &hasher, &words, &vector), OPS);
    let rounds = std::env::var("MM_HITS_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(21);
    eprintln!("| case | mm_llm, wall / CPU per lookup | moka | moka / mm_llm, wall / CPU |");
    eprintln!("|---|---|---|---|");
    for threads in [1, 2] {
        hits_probe(
            threads,
            rounds,
            &|| pass_ours(&all, texts.model, &words, &vector),
            &|| pass_moka(&m, &hasher, &words, &vector),
        );
    }
    for threads in [1, 2] {
        let mut group = c.benchmark_group(format!("embedding/hits_768d/{threads}_threads"));
        group.throughput(Throughput::Elements((OPS * threads) as u64));
        let run_ours = || pass_ours(&all, texts.model, &words, &vector);
        group.bench_function("mm_llm", |b| {
            b.iter_custom(|iters| (0..iters).map(|_| timed_threads(threads, &run_ours)).sum())
        });
        let run_moka = || pass_moka(&m, &hasher, &words, &vector);
        group.bench_function("moka_sync_weigher", |b| {
            b.iter_custom(|iters| (0..iters).map(|_| timed_threads(threads, &run_moka)).sum())
        });
        group.finish();
    }

    // Get-or-insert with evictions.
    let mut group = c.benchmark_group("embedding/get_or_insert_768d");
    group.throughput(Throughput::Elements(OPS as u64));
    let bounded = ours(10_000, 10_000 * ENTRY);
    pass_ours(&bounded, texts.model, &words, &vector);
    group.bench_function("mm_llm", |b| {
        b.iter(|| black_box(pass_ours(&bounded, texts.model, &words, &vector)))
    });
    let bm = moka(10_000 * ENTRY);
    pass_moka(&bm, &hasher, &words, &vector);
    group.bench_function("moka_sync_weigher", |b| {
        b.iter(|| black_box(pass_moka(&bm, &hasher, &words, &vector)))
    });
    group.finish();
    let s = bounded.stats();
    eprintln!(
        "mm_llm after the get-or-insert runs: {} entries, {} bytes counted, {} bytes of slot storage, {} bytes of policy, {} shards",
        s.entries, s.bytes, s.storage_bytes, s.policy_bytes, s.shards
    );
}

criterion_group!(benches, bench);
criterion_main!(benches);
