//! Request arenas handed out by the manager from its arena pool: `Send + 'static` guards
//! that come back warm, listed as the `request-arenas` component.

use std::fmt;
use std::ops::Deref;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use mm_arena::{ArenaPool, PooledArena};
use mm_budget::PressureLevel;

use crate::MemoryManager;
use crate::component::{Component, ComponentReading};

/// Most idle arenas the manager's pool keeps (each with its retained chunk, 64 KiB by
/// default, so 4 MiB at most by default); guards returned past that are freed. The pool is
/// emptied under pressure.
pub const ARENA_POOL_MAX_IDLE: usize = 64;

/// The manager's arena pool and the chunk bytes of the arenas on loan, updated when a guard
/// is handed out and when it comes back (not on every allocation: an arena that grows
/// during a request is seen when it returns).
#[derive(Debug)]
pub(crate) struct ArenaPart {
    pub(crate) pool: ArenaPool,
    live: AtomicU64,
    loaned_bytes: AtomicU64,
    high_water: AtomicU64,
}

impl ArenaPart {
    pub(crate) fn new(pool: ArenaPool) -> Self {
        ArenaPart {
            pool,
            live: AtomicU64::new(0),
            loaned_bytes: AtomicU64::new(0),
            high_water: AtomicU64::new(0),
        }
    }
}

impl Component for ArenaPart {
    fn name(&self) -> &str {
        "request-arenas"
    }

    /// Held: the chunks of the idle arenas plus those of the arenas on loan; items: guards
    /// on loan; hits/misses: warm and cold gets; evictions: arenas freed on return because
    /// the pool was full.
    fn reading(&self) -> ComponentReading {
        let s = self.pool.stats();
        let mut r = ComponentReading::new(
            s.idle_bytes
                .saturating_add(self.loaned_bytes.load(Ordering::Relaxed)),
        );
        r.items = self.live.load(Ordering::Relaxed);
        r.hits = Some(s.warm_gets);
        r.misses = Some(s.gets.saturating_sub(s.warm_gets));
        r.evictions = Some(s.discards);
        r.high_water_bytes = Some(self.high_water.load(Ordering::Relaxed));
        r
    }

    /// Frees every idle arena (guards on loan keep theirs until they return).
    fn on_pressure(&self, _level: PressureLevel) -> u64 {
        self.pool.trim()
    }
}

/// A request arena on loan from the manager's pool, from
/// [`MemoryManager::request_arena`]: `Send + 'static`, so an async handler keeps it across
/// `.await`s, with the allocation methods of [`PooledArena`] on the guard itself (through
/// `Deref`), so nothing `!Send` is held across an await. Dropping it resets the arena and
/// returns it to the pool, warm for the next request.
///
/// Its chunks are charged to the manager's budget under `request-arenas`: on loan or idle
/// in the pool, the bytes are the same, so a warm guard changes no charge and makes no heap
/// allocation. The manager syncs the charge when the held memory grows: a cold get (a new
/// arena) and a return with more chunk bytes than it left with.
///
/// ```
/// use memory_manager::{MemoryConfig, MemoryManager};
///
/// let manager = MemoryManager::new(MemoryConfig::new().with_max_memory(64 << 20))?;
/// for _ in 0..3 {
///     let arena = manager.request_arena()?;
///     let prompt = arena.alloc_str("system: be brief")?;
///     assert_eq!(prompt.len(), 16);
/// } // back to the pool here
/// let row = manager.report().components.into_iter().find(|c| c.name == "request-arenas");
/// assert_eq!(row.and_then(|r| r.hits), Some(2)); // the 2nd and 3rd gets were warm
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct ManagedArena {
    /// `Some` until dropped.
    guard: Option<PooledArena>,
    part: Arc<ArenaPart>,
    manager: MemoryManager,
    accounted: u64,
}

impl ManagedArena {
    pub(crate) fn new(guard: PooledArena, manager: MemoryManager, part: Arc<ArenaPart>) -> Self {
        let accounted = guard.stats().retained_bytes;
        part.live.fetch_add(1, Ordering::Relaxed);
        part.loaned_bytes.fetch_add(accounted, Ordering::Relaxed);
        ManagedArena {
            guard: Some(guard),
            part,
            manager,
            accounted,
        }
    }

    /// The guard from the pool (its methods are also reachable through `Deref`).
    pub fn guard(&self) -> &PooledArena {
        // `guard` is only taken in `drop`.
        self.guard
            .as_ref()
            .unwrap_or_else(|| unreachable!("a ManagedArena's guard is taken only on drop"))
    }

    /// Frees this request's allocations now, keeping the arena on loan.
    pub fn reset(&mut self) {
        if let Some(guard) = self.guard.as_mut() {
            guard.reset();
        }
    }
}

impl Deref for ManagedArena {
    type Target = PooledArena;
    #[inline]
    fn deref(&self) -> &PooledArena {
        self.guard()
    }
}

impl fmt::Debug for ManagedArena {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ManagedArena")
            .field("stats", &self.guard.as_ref().map(PooledArena::stats))
            .finish_non_exhaustive()
    }
}

impl Drop for ManagedArena {
    fn drop(&mut self) {
        let Some(guard) = self.guard.take() else {
            return;
        };
        let s = guard.stats();
        let part = &self.part;
        part.live.fetch_sub(1, Ordering::Relaxed);
        part.loaned_bytes
            .fetch_sub(self.accounted, Ordering::Relaxed);
        part.high_water
            .fetch_max(s.high_water_bytes, Ordering::Relaxed);
        drop(guard); // reset and back to the pool (or freed when the pool is full)
        if s.retained_bytes > self.accounted {
            // The arena grew during the request: charge its new chunks now that they are
            // counted in the pool (a warm request that fits never gets here).
            self.manager.sync();
        }
    }
}
