//! Loom models of the embedding cache's concurrency, run on the real code through the crate's
//! `sync` shim (`RUSTFLAGS="--cfg loom" cargo test -p mm-llm --test loom --release`, or
//! `.ci/loom.sh`). Each explores every interleaving of two threads (LOOM_MAX_PREEMPTIONS=2 in
//! CI).
#![cfg(loom)]

use std::sync::Arc;

use loom::sync::atomic::{AtomicUsize, Ordering};
use mm_budget::MemoryBudget;
use mm_llm::{ENTRY_OVERHEAD, EmbeddingCache, EmbeddingCacheConfig, Interner, LlmError};

fn cache(entries: usize, shards: usize, budget: Option<MemoryBudget>) -> Arc<EmbeddingCache> {
    let cfg = EmbeddingCacheConfig::new()
        .with_max_entries(entries)
        .with_shards(shards);
    Arc::new(EmbeddingCache::new(cfg, budget).unwrap())
}

/// Two callers missing the same key at once: the vector is computed exactly once and both
/// get it, whichever of them leads and however the waiter's wait interleaves with the
/// leader's insert.
#[test]
fn single_flight_computes_once() {
    loom::model(|| {
        let names = Interner::new();
        let c = cache(8, 1, None);
        let key = c.key(names.get_or_intern("m"), "t");
        let calls = Arc::new(AtomicUsize::new(0));
        let (c2, calls2) = (c.clone(), calls.clone());
        let t = loom::thread::spawn(move || {
            c2.get_with(key, || {
                calls2.fetch_add(1, Ordering::SeqCst);
                vec![1.0, 2.0]
            })
            .unwrap()
            .to_vec()
        });
        let mine = c
            .get_with(key, || {
                calls.fetch_add(1, Ordering::SeqCst);
                vec![1.0, 2.0]
            })
            .unwrap()
            .to_vec();
        assert_eq!(t.join().unwrap(), mine);
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        assert_eq!(c.stats().inserts, 1);
    });
}

/// A leader whose computation fails never hands its error to a waiter and leaves nothing
/// cached: the other caller computes its own vector, and it is the one cached.
#[test]
fn single_flight_error_is_not_shared() {
    loom::model(|| {
        let names = Interner::new();
        let c = cache(8, 1, None);
        let key = c.key(names.get_or_intern("m"), "t");
        let c2 = c.clone();
        let t = loom::thread::spawn(move || {
            c2.try_get_with(key, || Err::<Vec<f32>, _>(LlmError::NoModel))
                .map(|e| e.to_vec())
        });
        let mine = c.get_with(key, || vec![3.0]).unwrap().to_vec();
        assert_eq!(mine, vec![3.0]);
        match t.join().unwrap() {
            // It ran its failing computation (before or after ours was cached: then it hit).
            Err(LlmError::NoModel) => {}
            Ok(v) => assert_eq!(v, vec![3.0]),
            Err(e) => panic!("{e}"),
        }
        assert_eq!(c.peek(&key).unwrap().to_vec(), vec![3.0]);
    });
}

/// Concurrent inserts, evictions and an invalidation across two shards: at the end the
/// budget holds exactly the bytes the shards count, and a stats snapshot taken meanwhile
/// never shows more than the bounds.
#[test]
fn shard_accounting_matches_the_budget() {
    loom::model(|| {
        let names = Interner::new();
        let m = names.get_or_intern("m");
        let budget = MemoryBudget::with_limit(1 << 20).unwrap();
        let c = cache(2, 2, Some(budget.clone()));
        let keys: Vec<_> = (0..3).map(|i| c.key(m, &i.to_string())).collect();
        let (c2, k2) = (c.clone(), keys.clone());
        let t = loom::thread::spawn(move || {
            c2.insert(k2[0], &[1.0; 4]).unwrap();
            c2.insert(k2[1], &[2.0; 4]).unwrap();
        });
        c.insert(keys[2], &[3.0; 4]).unwrap();
        let s = c.stats();
        assert!(s.entries <= 2 && s.bytes <= s.entries * (16 + ENTRY_OVERHEAD));
        c.invalidate(&keys[0]);
        t.join().unwrap();
        let s = c.stats();
        assert_eq!(budget.used(), s.bytes);
        assert_eq!(s.bytes, s.entries * (16 + ENTRY_OVERHEAD));
        assert_eq!(s.inserts, 3);
        assert_eq!(s.entries + s.evictions.total(), 3);
    });
}
