//! The charge gate: when, and by whom, the budget's charges for held memory are updated.
//!
//! # The protocol
//! A sync reads what every component holds and resizes one reservation per component to
//! match, under the gate's lock. The lock is taken *blocking*: a thread that calls
//! [`ChargeGate::sync`] (say, right after it mapped a file) returns only after a round that
//! started after its call completed, so its own memory is charged when `sync` returns.
//!
//! One caller may not block: the thread that holds the lock, re-entering through a pressure
//! handler that the round itself triggered (resizing a reservation can cross a threshold, and
//! synchronous delivery runs the handlers on that thread). The gate recognises it by a
//! thread-local mark, sets a dirty flag instead and returns; the outer round sees the flag
//! and repeats, up to [`MAX_ROUNDS`] times, so a handler that frees memory gets its release
//! counted without looping forever on a handler that frees nothing.
//!
//! An earlier shape used `try_lock` for every caller and a dirty flag for the one that lost:
//! a caller that failed `try_lock` after the holder's last dirty check returned with its
//! bytes uncharged (and even when the holder did repeat, the caller returned before the
//! charge). The loom models in `tests/loom.rs` check the blocking shape.

use std::cell::Cell;

use crate::sync::{AtomicBool, IN_ROUND, Mutex, Ordering, lock};

/// Most rounds one sync runs when pressure handlers keep changing what is held.
pub const MAX_ROUNDS: usize = 3;

/// A table of charges (`T`) updated in rounds under one lock; see the module docs.
#[derive(Debug, Default)]
pub struct ChargeGate<T> {
    table: Mutex<T>,
    /// Set by a re-entrant sync on the thread running a round: the round repeats.
    dirty: AtomicBool,
}

/// Restores the thread's mark when a round ends, also by panic.
struct RoundMark(usize);

impl Drop for RoundMark {
    fn drop(&mut self) {
        let prev = self.0;
        IN_ROUND.with(|c| c.set(prev));
    }
}

impl<T> ChargeGate<T> {
    /// A gate over `table`.
    pub fn new(table: T) -> Self {
        ChargeGate {
            table: Mutex::new(table),
            dirty: AtomicBool::new(false),
        }
    }

    /// Runs `round` over the table until no re-entrant sync asked for a repeat (at most
    /// [`MAX_ROUNDS`] times). Blocks while another thread's sync runs. Called from inside
    /// `round` on the same thread, it marks the table dirty and returns at once.
    pub fn sync(&self, mut round: impl FnMut(&mut T)) {
        let me = self as *const Self as usize;
        if IN_ROUND.with(Cell::get) == me {
            // Only the lock holder reaches here, so the flag is read by the same thread.
            self.dirty.store(true, Ordering::Relaxed);
            return;
        }
        let mut table = lock(&self.table);
        let _mark = RoundMark(IN_ROUND.with(|c| c.replace(me)));
        for _ in 0..MAX_ROUNDS {
            self.dirty.store(false, Ordering::Relaxed);
            round(&mut table);
            if !self.dirty.load(Ordering::Relaxed) {
                break;
            }
        }
    }

    /// Runs `f` on the table under the lock (for the loom models).
    #[cfg(loom)]
    pub fn with<R>(&self, f: impl FnOnce(&mut T) -> R) -> R {
        f(&mut lock(&self.table))
    }
}
