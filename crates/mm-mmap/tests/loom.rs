//! Loom models of the cache's accounting core (`Ledger` + `Charge`), with in-memory fake
//! maps standing in for `mmap` (loom cannot model system calls) and a loom `Mutex<Vec>`
//! standing in for the lookup index and eviction queue.
//!
//! Run: `RUSTFLAGS="--cfg loom" LOOM_MAX_PREEMPTIONS=2 cargo test --release -p mm-mmap --test loom`
#![cfg(loom)]

use std::sync::Arc as StdArc;

use loom::sync::atomic::{AtomicUsize, Ordering};
use loom::sync::{Arc, Mutex};
use loom::thread;
use mm_mmap::loom_core::{Charge, Ledger};

/// A fake map: only its accounting.
struct FakeMap {
    charge: Charge,
}

fn fake(ledger: &StdArc<Ledger>, len: u64) -> Arc<FakeMap> {
    Arc::new(FakeMap {
        charge: Charge::uncharged(ledger.clone(), len),
    })
}

/// Inserts a map as the cache's miss path does: reserve, evicting the oldest entry when
/// full, then commit and publish. Returns whether it was cached.
fn insert(ledger: &Ledger, cache: &Mutex<Vec<Arc<FakeMap>>>, map: &Arc<FakeMap>) -> bool {
    let len = map.charge.len();
    loop {
        if ledger.try_reserve(len) {
            assert!(map.charge.commit_held());
            assert!(
                ledger.held() <= ledger.budget(),
                "held bytes passed the budget"
            );
            cache.lock().unwrap().push(map.clone());
            return true;
        }
        let victim = {
            let mut entries = cache.lock().unwrap();
            if entries.is_empty() {
                None
            } else {
                Some(entries.remove(0))
            }
        };
        match victim {
            Some(v) => {
                v.charge.release_from_cache();
            }
            None => {
                // Budget reserved by the other in-flight insert: hand out uncached.
                assert!(map.charge.charge_outstanding());
                return false;
            }
        }
    }
}

/// Two threads insert 2-byte maps into a 3-byte budget, evicting each other: the held
/// counter never passes the budget and, when both are done, equals the cached lengths
/// exactly, with nothing left outstanding once the callers dropped their maps.
#[test]
fn concurrent_inserts_never_exceed_budget() {
    loom::model(|| {
        let ledger = StdArc::new(Ledger::new(3));
        let cache = Arc::new(Mutex::new(Vec::new()));
        let handles: Vec<_> = (0..2)
            .map(|_| {
                let (ledger, cache) = (ledger.clone(), cache.clone());
                thread::spawn(move || {
                    let map = fake(&ledger, 2);
                    insert(&ledger, &cache, &map);
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        let cached: u64 = cache.lock().unwrap().iter().map(|m| m.charge.len()).sum();
        assert_eq!(ledger.held(), cached);
        assert!(cached <= 3);
        assert_eq!(ledger.outstanding(), 0);
        cache.lock().unwrap().clear();
        assert_eq!((ledger.held(), ledger.outstanding()), (0, 0));
    });
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

/// Two threads miss on the same file at once and both reserve room; the loser of the
/// insert gives its reservation back, so the cache holds the file's length exactly once.
#[test]
fn lost_insert_race_cancels_its_reservation() {
    loom::model(|| {
        let ledger = StdArc::new(Ledger::new(10));
        let slot: Arc<Mutex<Option<Arc<FakeMap>>>> = Arc::new(Mutex::new(None));
        let handles: Vec<_> = (0..2)
            .map(|_| {
                let (ledger, slot) = (ledger.clone(), slot.clone());
                thread::spawn(move || {
                    let mine = fake(&ledger, 3);
                    assert!(ledger.try_reserve(3) && mine.charge.commit_held());
                    let mut current = slot.lock().unwrap();
                    match current.as_ref() {
                        Some(winner) => {
                            let winner = winner.clone();
                            drop(current);
                            assert!(mine.charge.cancel_held());
                            winner
                        }
                        None => {
                            *current = Some(mine.clone());
                            mine
                        }
                    }
                })
            })
            .collect();
        let got: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        assert!(
            Arc::ptr_eq(&got[0], &got[1]),
            "both callers get the one cached map"
        );
        assert_eq!((ledger.held(), ledger.outstanding()), (3, 0));
        drop(got);
        slot.lock().unwrap().take();
        assert_eq!(ledger.held(), 0);
    });
}
