//! Loom models of the charge gate (`src/gate.rs`), the real code behind the crate's `sync`
//! shim. Run with `.ci/loom.sh` (`RUSTFLAGS="--cfg loom"`).
#![cfg(loom)]

use loom::sync::Arc;
use loom::sync::atomic::{AtomicU64, Ordering};
use loom::thread;
use memory_manager::loom_api::{ChargeGate, MAX_ROUNDS};

/// What a component holds (grown by "maps") and what the gate's table charged for it.
struct Model {
    held: AtomicU64,
    gate: ChargeGate<u64>,
}

impl Model {
    fn new() -> Arc<Self> {
        Arc::new(Model {
            held: AtomicU64::new(0),
            gate: ChargeGate::new(0),
        })
    }

    /// A `map()`: the cache grows, then the caller syncs.
    fn map_and_sync(&self, bytes: u64) -> u64 {
        let after = self.held.fetch_add(bytes, Ordering::SeqCst) + bytes;
        self.gate
            .sync(|charged| *charged = self.held.load(Ordering::SeqCst));
        after
    }
}

/// No sync is lost: when `sync` returns on a thread, the charge covers at least what held
/// was right after that thread's own growth, whatever the other thread does meanwhile
/// (the `try_lock` shape failed this: the loser returned before its bytes were charged).
#[test]
fn a_returned_sync_has_charged_the_callers_bytes() {
    loom::model(|| {
        let m = Model::new();
        let other = {
            let m = Arc::clone(&m);
            thread::spawn(move || {
                let mine = m.map_and_sync(10);
                assert!(m.gate.with(|c| *c) >= mine.min(10));
            })
        };
        let mine = m.map_and_sync(5);
        // Held only grows here, so the charge after my sync is at least my own view.
        assert!(m.gate.with(|c| *c) >= mine, "my 5 bytes were not charged");
        other.join().unwrap();
        assert_eq!(m.gate.with(|c| *c), 15, "the last sync saw everything");
    });
}

/// A sync called from inside a round on the same thread (a pressure handler the round
/// triggered) neither deadlocks nor is lost: it returns at once and the outer round repeats,
/// at most `MAX_ROUNDS` times, while another thread syncs concurrently.
#[test]
fn a_reentrant_sync_repeats_the_round_and_never_deadlocks() {
    loom::model(|| {
        let m = Model::new();
        let rounds = Arc::new(AtomicU64::new(0));
        let other = {
            let m = Arc::clone(&m);
            thread::spawn(move || {
                m.map_and_sync(1);
            })
        };
        m.gate.sync(|charged| {
            let n = rounds.fetch_add(1, Ordering::SeqCst);
            *charged = m.held.load(Ordering::SeqCst);
            if n == 0 {
                // The "handler" frees nothing but asks for a re-sync, re-entrantly.
                m.gate
                    .sync(|_| unreachable!("a re-entrant sync runs no round"));
            }
        });
        let n = rounds.load(Ordering::SeqCst);
        assert!((2..=MAX_ROUNDS as u64).contains(&n), "{n} rounds");
        other.join().unwrap();
        assert_eq!(m.gate.with(|c| *c), 1);
    });
}
