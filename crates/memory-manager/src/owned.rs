//! Owned request arenas handed out by the manager: `Send`, so a request can keep one across
//! an `.await`, and counted as the `request-arenas` component.

use std::ops::Deref;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use mm_arena::{Arena, ArenaStats, RequestArena};

use crate::component::{Component, ComponentReading};

/// Live owned arenas and the chunk bytes they hold, updated at creation, reset, trim and drop.
#[derive(Debug, Default)]
pub(crate) struct ArenaTally {
    live: AtomicU64,
    bytes: AtomicU64,
    high_water: AtomicU64,
    created: AtomicU64,
}

impl ArenaTally {
    fn resized(&self, before: u64, now: u64) {
        if now > before {
            self.bytes.fetch_add(now - before, Ordering::Relaxed);
        } else {
            self.bytes.fetch_sub(before - now, Ordering::Relaxed);
        }
    }
}

impl Component for ArenaTally {
    fn name(&self) -> &str {
        "request-arenas"
    }

    fn reading(&self) -> ComponentReading {
        let mut r = ComponentReading::new(self.bytes.load(Ordering::Relaxed));
        r.items = self.live.load(Ordering::Relaxed);
        r.misses = Some(self.created.load(Ordering::Relaxed));
        r.high_water_bytes = Some(self.high_water.load(Ordering::Relaxed));
        r
    }
}

/// A [`RequestArena`] owned by one request, from
/// [`MemoryManager::request_arena`](crate::MemoryManager::request_arena): its chunks are
/// charged to the manager's budget (at sync points) and listed as `request-arenas`. `Send`:
/// move it into a task and across `.await`s (allocate through [`arena`](Self::arena) between
/// them).
#[derive(Debug)]
pub struct ManagedArena {
    arena: RequestArena,
    tally: Arc<ArenaTally>,
    accounted: u64,
}

impl ManagedArena {
    pub(crate) fn new(arena: RequestArena, tally: Arc<ArenaTally>) -> Self {
        tally.live.fetch_add(1, Ordering::Relaxed);
        tally.created.fetch_add(1, Ordering::Relaxed);
        let mut a = ManagedArena {
            arena,
            tally,
            accounted: 0,
        };
        a.account();
        a
    }

    fn account(&mut self) {
        let s = self.arena.stats();
        self.tally.resized(self.accounted, s.retained_bytes);
        self.tally
            .high_water
            .fetch_max(s.high_water_bytes, Ordering::Relaxed);
        self.accounted = s.retained_bytes;
    }

    /// The allocation handle; its results live as long as this borrow.
    pub fn arena(&self) -> Arena<'_> {
        self.arena.arena()
    }

    /// Frees every allocation, keeping the largest chunk; updates the tally.
    pub fn reset(&mut self) {
        self.arena.reset();
        self.account();
    }

    /// Releases every chunk; updates the tally.
    pub fn trim(&mut self) {
        self.arena.trim();
        self.account();
    }

    /// Current figures.
    pub fn stats(&self) -> ArenaStats {
        self.arena.stats()
    }
}

impl Deref for ManagedArena {
    type Target = RequestArena;
    fn deref(&self) -> &RequestArena {
        &self.arena
    }
}

impl Drop for ManagedArena {
    fn drop(&mut self) {
        self.tally.live.fetch_sub(1, Ordering::Relaxed);
        self.tally
            .bytes
            .fetch_sub(self.accounted, Ordering::Relaxed);
    }
}
