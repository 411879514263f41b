//! Behaviour of the whole cache: bounds, admission, expiry, listener, single flight, budget.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier, Mutex as StdMutex};
use std::time::Duration;

use super::*;
use crate::names::Interner;

fn model() -> Symbol {
    Interner::new().get_or_intern("m")
}

fn cache(entries: usize, bytes: u64) -> EmbeddingCache {
    let cfg = EmbeddingCacheConfig::new()
        .with_max_entries(entries)
        .with_max_bytes(bytes)
        .with_shards(1);
    EmbeddingCache::new(cfg, None).unwrap()
}

/// A listener that records every notice.
fn recorder() -> (
    Arc<StdMutex<Vec<EvictionNotice>>>,
    impl Fn(&EvictionNotice) + Send + Sync,
) {
    let log = Arc::new(StdMutex::new(Vec::new()));
    let sink = log.clone();
    (log, move |n: &EvictionNotice| sink.lock().unwrap().push(*n))
}

fn causes(log: &StdMutex<Vec<EvictionNotice>>) -> Vec<RemovalCause> {
    log.lock().unwrap().iter().map(|n| n.cause).collect()
}

#[test]
fn is_send_sync_and_the_overhead_covers_the_bookkeeping() {
    fn shared<T: Send + Sync>() {}
    shared::<EmbeddingCache>();
    shared::<Embedding>();
    // Record + policy node + index slot (key, u32, control byte) at half load per entry.
    let per =
        shard::RECORD_SIZE + size_of::<policy::Node>() + 2 * (size_of::<(EmbeddingKey, u32)>() + 1);
    assert!(per as u64 <= ENTRY_OVERHEAD, "{per} bytes per entry");
}

#[test]
fn insert_get_replace_and_mixed_dims() {
    let c = cache(100, 1 << 20);
    let m = model();
    let k = c.key(m, "x");
    assert!(c.get(&k).is_none());
    c.insert(k, &[1.0, 2.0]).unwrap();
    assert_eq!(c.get(&k).unwrap(), &[1.0, 2.0][..]);
    c.insert(k, &[3.0, 4.0, 5.0]).unwrap();
    assert_eq!(*c.peek(&k).unwrap(), [3.0, 4.0, 5.0]);
    assert_eq!(c.len(), 1);
    assert_eq!(c.bytes(), entry_bytes(3));
    let s = c.stats();
    assert_eq!((s.hits, s.misses, s.inserts), (1, 1, 2));
    assert_eq!(s.evictions.replaced, 1);
    assert!(c.invalidate(&k));
    assert!(!c.invalidate(&k));
    assert_eq!(c.bytes(), 0);
    assert!(matches!(c.insert(k, &[]), Err(LlmError::InvalidConfig(_))));
    c.check_invariants();
}

#[test]
fn keys_separate_models_and_texts() {
    let names = Interner::new();
    let (a, b) = (names.get_or_intern("a"), names.get_or_intern("b"));
    let c = cache(10, 1 << 20);
    assert_ne!(c.key(a, "t"), c.key(b, "t"));
    assert_ne!(c.key(a, "t"), c.key(a, "u"));
    assert_eq!(c.key(a, "t"), c.key(a, "t"));
}

#[test]
fn entry_and_byte_bounds_hold_and_slots_are_reused() {
    let m = model();
    let per = entry_bytes(768);
    let c = cache(1000, per * 10);
    for i in 0..100 {
        let key = c.key(m, &i.to_string());
        c.insert(key, &vec![i as f32; 768]).unwrap();
        assert!(c.bytes() <= per * 10);
        c.check_invariants();
    }
    assert_eq!(c.len(), 10);
    let s = c.stats();
    assert!(s.storage_bytes <= 10 * 768 * 4, "{s:?}");
    assert_eq!(s.evictions.size, 90);
    let big = vec![0.0; 10_000];
    assert!(matches!(
        c.insert(c.key(m, "big"), &big),
        Err(LlmError::EmbeddingTooLarge { .. })
    ));
    let small = cache(3, 1 << 20);
    for i in 0..10 {
        small.insert(small.key(m, &i.to_string()), &[1.0]).unwrap();
        assert!(small.len() <= 3);
    }
}

#[test]
fn a_handle_keeps_its_vector_after_eviction_and_slot_reuse() {
    let m = model();
    let c = cache(1, 1 << 20);
    let a = c.key(m, "a");
    c.insert(a, &[1.0; 4]).unwrap();
    let held = c.get(&a).unwrap();
    assert!(held.is_cached());
    for i in 0..5 {
        c.insert(c.key(m, &i.to_string()), &[i as f32; 4]).unwrap();
        c.check_invariants();
    }
    assert!(!c.contains(&a));
    assert_eq!(*held, [1.0; 4], "a pinned slot is never overwritten");
    assert_eq!(c.stats().pinned_slots, 1);
    drop(held);
    c.insert(c.key(m, "after"), &[9.0; 4]).unwrap();
    assert_eq!(c.stats().pinned_slots, 0, "reclaimed once unpinned");
    // A handle outlives the cache itself.
    let k = c.key(m, "after");
    let h = c.get(&k).unwrap();
    drop(c);
    assert_eq!(*h, [9.0; 4]);
}

#[test]
fn popular_entries_survive_a_scan_of_one_time_keys() {
    let m = model();
    let c = cache(100, 1 << 30);
    let hot: Vec<_> = (0..50).map(|i| c.key(m, &format!("hot{i}"))).collect();
    for _ in 0..4 {
        for k in &hot {
            if c.get(k).is_none() {
                c.insert(*k, &[1.0; 4]).unwrap();
            }
        }
    }
    // A scan of 5,000 one-time keys while the popular ones keep being asked for (more
    // slowly: one for every two scanned keys).
    let mut hot_hits = 0;
    for i in 0..5_000 {
        let k = c.key(m, &format!("cold{i}"));
        assert!(c.get(&k).is_none());
        c.insert(k, &[2.0; 4]).unwrap();
        // Inserted entries start in the window: an immediate get hits.
        assert!(c.contains(&k));
        if i % 2 == 0 {
            hot_hits += usize::from(c.get(&hot[i / 2 % 50]).is_some());
        }
    }
    assert_eq!(hot_hits, 2_500);
    c.check_invariants();
    let kept = hot.iter().filter(|k| c.contains(k)).count();
    assert_eq!(kept, 50, "a plain LRU would have lost them all");
    assert!(c.stats().rejected > 4_000);
}

#[test]
fn a_new_key_that_becomes_popular_gets_in() {
    let m = model();
    let c = cache(100, 1 << 30);
    for round in 0..3 {
        for i in 0..100 {
            let k = c.key(m, &format!("old{i}"));
            if c.get(&k).is_none() {
                c.insert(k, &[round as f32]).unwrap();
            }
        }
    }
    let rising = c.key(m, "rising");
    for _ in 0..10 {
        if c.get(&rising).is_none() {
            c.insert(rising, &[3.0]).unwrap();
        }
        // Other new keys push it out of the window.
        for j in 0..3 {
            let k = c.key(m, &format!("noise{j}-{}", c.stats().inserts));
            c.insert(k, &[0.0]).unwrap();
        }
    }
    assert!(c.contains(&rising));
    c.check_invariants();
}

#[test]
fn time_to_live_and_idle_with_an_injected_clock() {
    let m = model();
    let clock = Arc::new(ManualClock::new());
    let cfg = EmbeddingCacheConfig::new()
        .with_max_entries(100)
        .with_time_to_live(Duration::from_secs(3600))
        .with_time_to_idle(Duration::from_secs(1800));
    let (log, listener) = recorder();
    let c = EmbeddingCache::new(cfg, None)
        .unwrap()
        .with_clock(clock.clone())
        .with_listener(listener);
    let busy = c.key(m, "busy");
    let idle = c.key(m, "idle");
    c.insert(busy, &[1.0]).unwrap();
    c.insert(idle, &[2.0]).unwrap();
    // Hit `busy` every 20 minutes: it never idles; `idle` idles out after 30.
    for _ in 0..2 {
        clock.advance(Duration::from_secs(20 * 60));
        assert!(c.get(&busy).is_some());
        c.check_invariants();
    }
    assert!(!c.contains(&idle), "idle for 40 minutes");
    assert!(c.get(&idle).is_none());
    assert_eq!(causes(&log), [RemovalCause::Expired]);
    // 60 minutes after its insert, `busy` expires however often it is hit.
    clock.advance(Duration::from_secs(19 * 60));
    assert!(c.get(&busy).is_some());
    clock.advance(Duration::from_secs(60));
    assert!(c.peek(&busy).is_none());
    assert_eq!(c.evict_expired(), 1);
    assert!(c.is_empty());
    let s = c.stats();
    assert_eq!(s.evictions.expired, 2);
    assert_eq!(s.misses, 1);
    // Inserts sweep what expired in the meantime.
    for i in 0..10 {
        c.insert(c.key(m, &i.to_string()), &[0.0]).unwrap();
    }
    clock.advance(Duration::from_secs(1800));
    c.insert(c.key(m, "fresh"), &[0.0]).unwrap();
    assert_eq!(c.len(), 1);
    c.check_invariants();
}

#[test]
fn the_listener_hears_every_cause() {
    let m = model();
    let budget = MemoryBudget::with_limit(entry_bytes(1) * 4).unwrap();
    let clock = Arc::new(ManualClock::new());
    let cfg = EmbeddingCacheConfig::new()
        .with_max_entries(3)
        .with_shards(1)
        .with_time_to_live(Duration::from_secs(10));
    let (log, listener) = recorder();
    let c = EmbeddingCache::new(cfg, Some(budget.clone()))
        .unwrap()
        .with_clock(clock.clone())
        .with_listener(listener);
    let k = |s: &str| c.key(m, s);
    c.insert(k("a"), &[1.0]).unwrap();
    c.insert(k("a"), &[2.0]).unwrap(); // replaced
    assert!(c.invalidate(&k("a"))); // explicit
    for s in ["b", "c", "d", "e"] {
        c.insert(k(s), &[1.0]).unwrap(); // the fourth: size
    }
    // Another reservation takes what the budget has left: the next insert is refused and
    // evicts for room.
    let hog = budget.try_reserve(budget.available()).unwrap();
    c.insert(k("f"), &[1.0]).unwrap(); // pressure
    clock.advance(Duration::from_secs(10));
    assert_eq!(c.evict_expired(), 3); // expired
    c.insert(k("g"), &[1.0]).unwrap();
    c.evict_fraction(1.0); // pressure
    c.insert(k("h"), &[1.0]).unwrap();
    c.invalidate_all(); // explicit
    drop(hog);
    let seen = causes(&log);
    for cause in RemovalCause::ALL {
        assert!(seen.contains(&cause), "{cause:?} not heard in {seen:?}");
    }
    let s = c.stats();
    assert_eq!(s.evictions.total() as usize, seen.len());
    for cause in RemovalCause::ALL {
        let n = seen.iter().filter(|&&c| c == cause).count() as u64;
        assert_eq!(s.evictions.of(cause), n, "{cause:?}");
    }
    assert!(log.lock().unwrap().iter().all(|n| n.dims == 1));
    assert_eq!(budget.used(), 0);
}

#[test]
fn invalidate_all_evict_fraction_and_clear() {
    let m = model();
    let c = EmbeddingCache::new(
        EmbeddingCacheConfig::new()
            .with_max_entries(4096)
            .with_shards(4),
        None,
    )
    .unwrap();
    for i in 0..1000 {
        c.insert(c.key(m, &i.to_string()), &[1.0; 16]).unwrap();
    }
    assert_eq!(c.len(), 1000);
    let evicted = c.evict_fraction(0.25);
    assert!((250..=254).contains(&evicted), "{evicted}");
    assert_eq!(c.len() as u64, 1000 - evicted);
    assert_eq!(c.stats().evictions.pressure, evicted);
    assert_eq!(c.evict_fraction(f64::NAN), 0);
    c.check_invariants();
    c.invalidate_all();
    assert!(c.is_empty());
    assert!(c.stats().storage_bytes > 0, "storage kept for reuse");
    assert!(c.evict_fraction(1.0) == 0);
    assert_eq!(c.stats().storage_bytes, 0, "unused blocks returned");
    c.insert(c.key(m, "x"), &[1.0; 16]).unwrap();
    c.clear();
    let s = c.stats();
    assert_eq!(
        (s.entries, s.bytes, s.storage_bytes, s.policy_bytes),
        (0, 0, 0, 0)
    );
    c.check_invariants();
}

#[test]
fn budget_is_charged_and_refusal_evicts() {
    let m = model();
    let per = entry_bytes(100);
    let budget = MemoryBudget::with_limit(per * 5).unwrap();
    let c = EmbeddingCache::new(
        EmbeddingCacheConfig::new().with_max_entries(1000),
        Some(budget.clone()),
    )
    .unwrap();
    for i in 0..20 {
        c.insert(c.key(m, &i.to_string()), &[1.0; 100]).unwrap();
        assert_eq!(budget.used(), c.bytes());
        c.check_invariants();
    }
    assert_eq!(c.len(), 5);
    assert_eq!(c.stats().evictions.pressure, 15);
    c.clear();
    assert_eq!(budget.used(), 0);
    let hog = budget.try_reserve(per * 3).unwrap();
    for i in 0..5 {
        c.insert(c.key(m, &format!("h{i}")), &[1.0; 100]).unwrap();
    }
    assert_eq!(c.len(), 2);
    c.clear();
    let blocker = budget.try_reserve(budget.available()).unwrap();
    assert!(matches!(
        c.insert(c.key(m, "refused"), &[1.0; 100]),
        Err(LlmError::Budget { .. })
    ));
    assert!(c.is_empty());
    drop((hog, blocker));
    assert_eq!(budget.used(), 0);
}

#[test]
fn get_with_computes_once_under_threads() {
    let m = model();
    let c = cache(100, 1 << 20);
    let key = c.key(m, "shared");
    let calls = AtomicUsize::new(0);
    let start = Barrier::new(8);
    let gate = std::sync::Mutex::new(());
    let held = gate.lock().unwrap();
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..8)
            .map(|_| {
                s.spawn(|| {
                    start.wait();
                    c.get_with(key, || {
                        calls.fetch_add(1, Ordering::SeqCst);
                        // Hold the computation until the test lets go.
                        drop(gate.lock().unwrap());
                        vec![7.0; 8]
                    })
                    .unwrap()
                    .to_vec()
                })
            })
            .collect();
        // Let the computation finish only once all callers are in: the leader, plus either
        // waiters on its flight or later hits.
        while c.stats().misses + c.stats().hits < 8 {
            std::thread::yield_now();
        }
        drop(held);
        for h in handles {
            assert_eq!(h.join().unwrap(), vec![7.0; 8]);
        }
    });
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    let s = c.stats();
    assert_eq!(s.inserts, 1);
    assert_eq!(s.coalesced + s.hits, 7);
    c.check_invariants();
}

#[test]
fn an_error_is_not_cached_and_waiters_retry() {
    let m = model();
    let c = cache(100, 1 << 20);
    let key = c.key(m, "flaky");
    let first: Result<Embedding, LlmError> = c.try_get_with(key, || {
        Err::<Vec<f32>, _>(LlmError::InvalidConfig("model down"))
    });
    assert!(matches!(first, Err(LlmError::InvalidConfig("model down"))));
    assert!(!c.contains(&key));
    let v = c
        .try_get_with(key, || Ok::<_, LlmError>(vec![1.0]))
        .unwrap();
    assert_eq!(*v, [1.0]);
    // A computation that panics leaves no flight behind.
    let k2 = c.key(m, "panics");
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        c.get_with(k2, || -> Vec<f32> { panic!("model crashed") })
    }));
    assert!(r.is_err());
    assert_eq!(*c.get_with(k2, || vec![2.0]).unwrap(), [2.0]);
    // An oversized vector: the error goes to the caller, nothing is cached.
    let k3 = c.key(m, "huge");
    assert!(matches!(
        c.get_with(k3, || vec![0.0; 1 << 20]),
        Err(LlmError::EmbeddingTooLarge { .. })
    ));
    c.check_invariants();
}

#[test]
fn waiters_on_a_failed_computation_compute_themselves() {
    let m = model();
    let c = cache(100, 1 << 20);
    let key = c.key(m, "k");
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let leader_in = Barrier::new(2);
    let (c, leader_in) = (&c, &leader_in);
    std::thread::scope(|s| {
        let leader = s.spawn(move || {
            c.try_get_with(key, || {
                leader_in.wait();
                rx.recv().unwrap();
                Err::<Vec<f32>, _>(LlmError::InvalidConfig("fails"))
            })
        });
        leader_in.wait();
        let waiter = s.spawn(move || c.get_with(key, || vec![5.0]).unwrap().to_vec());
        while c.stats().coalesced == 0 {
            std::thread::yield_now();
        }
        tx.send(()).unwrap();
        assert!(leader.join().unwrap().is_err());
        assert_eq!(waiter.join().unwrap(), vec![5.0]);
    });
    assert_eq!(*c.get(&key).unwrap(), [5.0]);
}

#[test]
fn async_get_with_shares_one_computation_without_a_runtime() {
    use futures::FutureExt;
    use futures::channel::oneshot;
    let m = model();
    let c = cache(100, 1 << 20);
    let key = c.key(m, "async");
    let (tx, rx) = oneshot::channel::<Vec<f32>>();
    let calls = AtomicUsize::new(0);
    let lead = c.get_with_async(key, async {
        calls.fetch_add(1, Ordering::SeqCst);
        rx.await.unwrap()
    });
    let wait = c.get_with_async(key, async {
        calls.fetch_add(1, Ordering::SeqCst);
        vec![0.0]
    });
    let mut both = Box::pin(futures::future::join(lead, wait));
    assert!(
        both.as_mut().now_or_never().is_none(),
        "the leader waits on its model"
    );
    tx.send(vec![4.0, 2.0]).unwrap();
    let (a, b) = futures::executor::block_on(both);
    assert_eq!(*a.unwrap(), [4.0, 2.0]);
    assert_eq!(*b.unwrap(), [4.0, 2.0]);
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert_eq!(c.stats().coalesced, 1);
    // A dropped leader hands the key over; an error is not cached.
    let k2 = c.key(m, "dropped");
    let (_tx2, rx2) = oneshot::channel::<Vec<f32>>();
    let mut lead = Box::pin(c.get_with_async(k2, async { rx2.await.unwrap_or_default() }));
    assert!(lead.as_mut().now_or_never().is_none());
    drop(lead);
    let got = futures::executor::block_on(
        c.try_get_with_async(k2, async { Ok::<_, LlmError>(vec![1.0]) }),
    );
    assert_eq!(*got.unwrap(), [1.0]);
    let err = futures::executor::block_on(c.try_get_with_async(c.key(m, "e"), async {
        Err::<Vec<f32>, _>(LlmError::NoModel)
    }));
    assert!(matches!(err, Err(LlmError::NoModel)));
    assert!(!c.contains(&c.key(m, "e")));
}

#[test]
fn the_byte_bound_holds_under_concurrent_inserts() {
    let m = model();
    let bound = entry_bytes(64) * 200;
    let budget = MemoryBudget::with_limit(1 << 30).unwrap();
    let c = EmbeddingCache::new(
        EmbeddingCacheConfig::new()
            .with_max_entries(10_000)
            .with_max_bytes(bound)
            .with_shards(4),
        Some(budget.clone()),
    )
    .unwrap();
    let done = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|s| {
        for t in 0..3u32 {
            let c = &c;
            s.spawn(move || {
                for i in 0..3000u32 {
                    let dims = [16, 64, 200][(i % 3) as usize];
                    let key = c.key(m, &format!("{t}-{}", i % 700));
                    if c.get(&key).is_none() {
                        c.insert(key, &vec![t as f32; dims]).unwrap();
                    }
                }
            });
        }
        s.spawn(|| {
            while !done.load(Ordering::Relaxed) {
                let st = c.stats();
                assert!(st.bytes <= bound, "{st:?}");
                if st.inserts >= 6000 {
                    break;
                }
                std::thread::yield_now();
            }
        });
        s.spawn(|| {
            for _ in 0..50 {
                assert!(c.bytes() <= bound);
                std::thread::yield_now();
            }
            done.store(false, Ordering::Relaxed);
        });
    });
    done.store(true, Ordering::Relaxed);
    c.check_invariants();
    assert_eq!(budget.used(), c.bytes());
    assert!(c.stats().evictions.size > 0);
}

#[test]
fn random_operations_keep_every_invariant() {
    use proptest::prelude::*;
    let m = model();
    proptest!(ProptestConfig::with_cases(150), |(ttl in prop::option::of(1u64..50), ops in prop::collection::vec((0u8..6, 0u32..40, 1usize..40), 1..250))| {
        let clock = Arc::new(ManualClock::new());
        let mut cfg = EmbeddingCacheConfig::new().with_max_bytes(3_000).with_max_entries(12).with_shards(2);
        if let Some(t) = ttl {
            cfg = cfg.with_time_to_idle(Duration::from_nanos(t)).with_time_to_live(Duration::from_nanos(t * 3));
        }
        let budget = MemoryBudget::with_limit(2_500).unwrap();
        let c = EmbeddingCache::new(cfg, Some(budget.clone())).unwrap().with_clock(clock.clone());
        let mut last = HashMap::new();
        let mut held = Vec::new();
        for (op, k, dims) in ops {
            let key = c.key(m, &k.to_string());
            match op {
                0 | 1 => {
                    let v = vec![k as f32 + dims as f32; dims];
                    c.insert(key, &v).unwrap();
                    last.insert(k, v);
                }
                2 => {
                    if let Some(got) = c.get(&key) {
                        prop_assert_eq!(&*got, &last[&k][..]);
                        if k % 3 == 0 {
                            held.push((got, last[&k].clone()));
                        }
                    }
                }
                3 => {
                    c.invalidate(&key);
                }
                4 => clock.advance(Duration::from_nanos(u64::from(k))),
                _ => {
                    c.evict_fraction(f64::from(k) / 40.0);
                }
            }
            c.check_invariants();
            prop_assert_eq!(budget.used(), c.bytes());
            for (h, v) in &held {
                prop_assert_eq!(&**h, &v[..]);
            }
        }
    });
}
