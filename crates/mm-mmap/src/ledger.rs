//! The accounting core: how many mapped bytes the cache holds and how many evicted maps are
//! still referenced by callers.
//!
//! Two counters and one state machine per map:
//!
//! * [`Ledger::held`] is the sum of the lengths of maps the cache itself keeps. It only grows
//!   through [`Ledger::try_reserve`], a compare-and-swap that refuses to pass the budget, so
//!   it can never exceed the budget, whatever the interleaving.
//! * [`Ledger::outstanding`] is the sum of the lengths of maps the cache no longer keeps
//!   (evicted, replaced by a newer version of the file, or never cached because too large)
//!   but that some caller still holds an `Arc` to.
//!
//! Each map carries a [`Charge`] whose state says which counter (if any) includes its length:
//!
//! ```text
//!   Uncharged --commit_held--> Held --release_from_cache--> Outstanding --drop--> (gone)
//!       |                        |                                         
//!       |                        +--cancel_held--> Uncharged (lost an insert race)
//!       +--charge_outstanding--> Outstanding (mapped uncached)
//!   Drop: Held subtracts from held, Outstanding from outstanding, Uncharged from nothing.
//! ```
//!
//! The transitions out of `Held` are compare-and-swaps, so exactly one caller moves the
//! bytes even if two evictors race for the same map. This module is what the loom models in
//! `tests/loom.rs` exercise with in-memory fake maps.

use std::sync::Arc;

use crate::sync::{AtomicU8, AtomicU64, Ordering};

/// Budget and the two byte counters shared by a cache and every map it created.
#[derive(Debug)]
pub struct Ledger {
    budget: u64,
    held: AtomicU64,
    outstanding: AtomicU64,
}

impl Ledger {
    /// A ledger that lets the cache hold at most `budget` bytes.
    pub fn new(budget: u64) -> Self {
        Self {
            budget,
            held: AtomicU64::new(0),
            outstanding: AtomicU64::new(0),
        }
    }

    /// The most bytes the cache may hold.
    pub fn budget(&self) -> u64 {
        self.budget
    }

    /// Bytes of maps the cache holds (including reservations for maps being inserted).
    pub fn held(&self) -> u64 {
        self.held.load(Ordering::Acquire)
    }

    /// Bytes of maps the cache no longer holds but callers still reference.
    pub fn outstanding(&self) -> u64 {
        self.outstanding.load(Ordering::Acquire)
    }

    /// Adds `len` to the held bytes if the result stays within the budget.
    ///
    /// Returns `false`, changing nothing, when it would not fit. Lock-free; retries only
    /// when another thread changed the counter in between.
    pub fn try_reserve(&self, len: u64) -> bool {
        let budget = self.budget;
        self.held
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |held| {
                held.checked_add(len).filter(|&next| next <= budget)
            })
            .is_ok()
    }

    fn sub_held(&self, len: u64) {
        let prev = self.held.fetch_sub(len, Ordering::AcqRel);
        debug_assert!(prev >= len, "held bytes underflow: {prev} - {len}");
    }

    fn add_outstanding(&self, len: u64) {
        self.outstanding.fetch_add(len, Ordering::AcqRel);
    }

    fn sub_outstanding(&self, len: u64) {
        let prev = self.outstanding.fetch_sub(len, Ordering::AcqRel);
        debug_assert!(prev >= len, "outstanding bytes underflow: {prev} - {len}");
    }
}

const UNCHARGED: u8 = 0;
const HELD: u8 = 1;
const OUTSTANDING: u8 = 2;

/// Which counter of the [`Ledger`] includes one map's length; settles its debt on drop.
#[derive(Debug)]
pub struct Charge {
    ledger: Arc<Ledger>,
    len: u64,
    state: AtomicU8,
}

impl Charge {
    /// A charge for a map of `len` bytes that no counter includes yet.
    pub fn uncharged(ledger: Arc<Ledger>, len: u64) -> Self {
        Self {
            ledger,
            len,
            state: AtomicU8::new(UNCHARGED),
        }
    }

    /// The map's length in bytes.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether the cache currently holds (counts in `held`) this map.
    pub fn is_held(&self) -> bool {
        self.state.load(Ordering::Acquire) == HELD
    }

    /// Whether this map is counted as outstanding (evicted or never cached, still alive).
    #[cfg(any(test, loom))]
    pub fn is_outstanding(&self) -> bool {
        self.state.load(Ordering::Acquire) == OUTSTANDING
    }

    /// Marks an uncharged map as held, after a successful [`Ledger::try_reserve`] of its
    /// length. Returns `false` (and changes nothing) if the map was not uncharged.
    pub fn commit_held(&self) -> bool {
        self.transition(UNCHARGED, HELD)
    }

    /// Gives back the reservation of a held map that will not be cached after all (another
    /// thread inserted the same file first). Returns `false` if the map was not held.
    pub fn cancel_held(&self) -> bool {
        let moved = self.transition(HELD, UNCHARGED);
        if moved {
            self.ledger.sub_held(self.len);
        }
        moved
    }

    /// Counts an uncharged map as outstanding: it is handed out without being cached.
    /// Returns `false` if the map was not uncharged.
    pub fn charge_outstanding(&self) -> bool {
        let moved = self.transition(UNCHARGED, OUTSTANDING);
        if moved {
            self.ledger.add_outstanding(self.len);
        }
        moved
    }

    /// Moves a held map's bytes from `held` to `outstanding`: the cache lets go of it.
    ///
    /// Exactly one of any number of racing callers gets `true`; the others change nothing.
    /// If the cache's reference was the last one, dropping it right after takes the bytes
    /// out of `outstanding` again.
    pub fn release_from_cache(&self) -> bool {
        let moved = self.transition(HELD, OUTSTANDING);
        if moved {
            // Outstanding first, so a reader that sums the two never sees the bytes vanish.
            self.ledger.add_outstanding(self.len);
            self.ledger.sub_held(self.len);
        }
        moved
    }

    fn transition(&self, from: u8, to: u8) -> bool {
        self.state
            .compare_exchange(from, to, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }
}

/// Set by `Drop`: the charge is settled.
const SETTLED: u8 = 3;

impl Drop for Charge {
    fn drop(&mut self) {
        // A swap, not a load: a read-modify-write reads the latest transition whatever the
        // path by which this thread came to drop the map. With `std::sync::Arc` the last
        // strong drop's acquire fence orders the evictor's transition before this read
        // anyway; the swap does not lean on that (loom, which cannot see `std`'s `Arc`,
        // found a stale `HELD` read here subtracting a map's bytes from the wrong counter).
        match self.state.swap(SETTLED, Ordering::AcqRel) {
            HELD => self.ledger.sub_held(self.len),
            OUTSTANDING => self.ledger.sub_outstanding(self.len),
            _ => {}
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn reserve_refuses_past_budget() {
        let ledger = Ledger::new(10);
        assert!(ledger.try_reserve(6));
        assert!(!ledger.try_reserve(5));
        assert!(ledger.try_reserve(4));
        assert_eq!(ledger.held(), 10);
        assert!(!ledger.try_reserve(1));
        assert!(
            !ledger.try_reserve(u64::MAX),
            "overflow must be refused, not wrapped"
        );
    }

    #[test]
    fn charge_lifecycle_moves_bytes_between_counters() {
        let ledger = Arc::new(Ledger::new(100));
        let charge = Charge::uncharged(ledger.clone(), 40);
        assert!(ledger.try_reserve(40));
        assert!(charge.commit_held());
        assert!(!charge.commit_held());
        assert_eq!((ledger.held(), ledger.outstanding()), (40, 0));
        assert!(charge.release_from_cache());
        assert!(
            !charge.release_from_cache(),
            "second release must not move bytes twice"
        );
        assert_eq!((ledger.held(), ledger.outstanding()), (0, 40));
        assert!(charge.is_outstanding() && !charge.is_held());
        drop(charge);
        assert_eq!((ledger.held(), ledger.outstanding()), (0, 0));
    }

    #[test]
    fn cancel_and_uncached_paths() {
        let ledger = Arc::new(Ledger::new(100));
        let lost = Charge::uncharged(ledger.clone(), 30);
        assert!(ledger.try_reserve(30));
        assert!(lost.commit_held());
        assert!(lost.cancel_held());
        assert_eq!(ledger.held(), 0);
        drop(lost);
        assert_eq!((ledger.held(), ledger.outstanding()), (0, 0));

        let big = Charge::uncharged(ledger.clone(), 500);
        assert!(big.charge_outstanding());
        assert!(!big.release_from_cache());
        assert_eq!((ledger.held(), ledger.outstanding()), (0, 500));
        drop(big);
        assert_eq!(ledger.outstanding(), 0);

        let held_at_drop = Charge::uncharged(ledger.clone(), 7);
        assert!(ledger.try_reserve(7));
        assert!(held_at_drop.commit_held());
        drop(held_at_drop);
        assert_eq!(ledger.held(), 0);
    }
}
