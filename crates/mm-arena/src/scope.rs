//! The thread arena and its request scopes.
//!
//! Soundness argument, in one place:
//! - The `Bump` sits in a `RefCell`. A scope holds a shared `Ref` for its whole run and hands
//!   out an [`Arena<'a>`] whose `'a` is the `Ref`'s borrow; the closure is higher-ranked over
//!   `'a`, so neither its result nor anything it writes to captured state can name `'a`.
//! - Resetting needs `RefCell::try_borrow_mut`, which only succeeds when no `Ref` exists, i.e.
//!   when no scope on this thread is running. So a reset can never free memory a live
//!   reference points into, whatever the nesting, and even on unwind: the unwinding drops the
//!   inner frames (and their `Ref`s) before the outer guard's `Drop` runs the reset.
//! - No `unsafe` is involved; if the bookkeeping were ever wrong the reset would be skipped
//!   (memory kept), never done early.

use std::cell::{Cell, RefCell};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use bumpalo::Bump;

use crate::arena::consumed;
use crate::{Arena, ArenaConfig, ArenaError, ArenaStats};

static GLOBAL_HIGH_WATER: AtomicU64 = AtomicU64::new(0);
static GLOBAL_RETAINED: AtomicU64 = AtomicU64::new(0);
static GLOBAL_RESETS: AtomicU64 = AtomicU64::new(0);
static GLOBAL_CHUNKS: AtomicU64 = AtomicU64::new(0);
static GLOBAL_THREADS: AtomicUsize = AtomicUsize::new(0);
static TRIM_EPOCH: AtomicU64 = AtomicU64::new(0);

/// Figures summed over every thread arena of the process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct GlobalArenaStats {
    /// Threads whose arena has been used and not yet torn down.
    pub threads: usize,
    /// Most bytes any single request used, over all threads.
    pub high_water_bytes: u64,
    /// Bytes of chunks held by all thread arenas between requests.
    pub retained_bytes: u64,
    /// Outermost scopes completed, over all threads.
    pub resets: u64,
    /// Chunks requested from the global allocator, over all threads.
    pub chunk_allocations: u64,
}

struct ThreadArena {
    bump: RefCell<Bump>,
    depth: Cell<usize>,
    /// Chunks the arena held when the current outermost scope began.
    chunks_at_start: Cell<u64>,
    /// Retained bytes last reported to `GLOBAL_RETAINED`.
    reported_retained: Cell<u64>,
    trim_epoch: Cell<u64>,
    stats: Cell<ArenaStats>,
}

impl ThreadArena {
    fn new() -> Self {
        GLOBAL_THREADS.fetch_add(1, Ordering::Relaxed);
        Self {
            bump: RefCell::new(Bump::new()),
            depth: Cell::new(0),
            chunks_at_start: Cell::new(0),
            reported_retained: Cell::new(0),
            trim_epoch: Cell::new(TRIM_EPOCH.load(Ordering::Relaxed)),
            stats: Cell::new(ArenaStats::default()),
        }
    }

    fn run<R>(&self, f: impl for<'a> FnOnce(&Arena<'a>) -> R) -> R {
        let outermost = self.depth.get() == 0;
        if outermost {
            self.chunks_at_start.set(chunk_count(&self.bump.borrow()));
        }
        self.depth.set(self.depth.get() + 1);
        // Declared before `bump` so that it drops after it, on return and on unwind alike.
        let _guard = ScopeGuard {
            arena: self,
            outermost,
        };
        let bump = self.bump.borrow();
        f(&Arena::new(&bump))
    }

    /// Ends the outermost scope: records stats, then resets (or trims) the arena.
    fn finish(&self) {
        let Ok(mut bump) = self.bump.try_borrow_mut() else {
            // Unreachable by the module's argument; keeping the memory is the safe choice.
            return;
        };
        let (chunks, used) = chunk_usage(&mut bump);
        let mut stats = self.stats.get();
        if used > stats.high_water_bytes {
            // The process-wide mark is at least this thread's: only a new thread record can
            // raise it, so the shared line is touched rarely.
            GLOBAL_HIGH_WATER.fetch_max(used, Ordering::Relaxed);
            stats.high_water_bytes = used;
        }
        stats.chunk_allocations = stats
            .chunk_allocations
            .saturating_add(chunks.saturating_sub(self.chunks_at_start.get()));
        stats.resets = stats.resets.saturating_add(1);
        let epoch = TRIM_EPOCH.load(Ordering::Relaxed);
        if epoch != self.trim_epoch.get() {
            self.trim_epoch.set(epoch);
            *bump = fresh_like(&bump);
        } else {
            bump.reset();
        }
        stats.retained_bytes = bump.allocated_bytes() as u64;
        stats.in_use_bytes = 0;
        GLOBAL_RESETS.fetch_add(1, Ordering::Relaxed);
        let new_chunks = chunks.saturating_sub(self.chunks_at_start.get());
        if new_chunks > 0 {
            GLOBAL_CHUNKS.fetch_add(new_chunks, Ordering::Relaxed);
        }
        self.report_retained(stats.retained_bytes);
        self.stats.set(stats);
    }

    fn report_retained(&self, now: u64) {
        let before = self.reported_retained.replace(now);
        if now > before {
            GLOBAL_RETAINED.fetch_add(now - before, Ordering::Relaxed);
        } else if now < before {
            GLOBAL_RETAINED.fetch_sub(before - now, Ordering::Relaxed);
        }
    }

    fn stats(&self) -> ArenaStats {
        let mut stats = self.stats.get();
        if let Ok(bump) = self.bump.try_borrow() {
            let in_use = if self.depth.get() > 0 {
                consumed(&bump) as u64
            } else {
                0
            };
            stats.in_use_bytes = in_use;
            stats.high_water_bytes = stats.high_water_bytes.max(in_use);
            stats.retained_bytes = bump.allocated_bytes() as u64;
        }
        stats
    }

    fn outside_scope(&self) -> Result<std::cell::RefMut<'_, Bump>, ArenaError> {
        if self.depth.get() > 0 {
            return Err(ArenaError::InsideScope);
        }
        self.bump
            .try_borrow_mut()
            .map_err(|_| ArenaError::InsideScope)
    }
}

impl Drop for ThreadArena {
    fn drop(&mut self) {
        GLOBAL_THREADS.fetch_sub(1, Ordering::Relaxed);
        self.report_retained(0);
    }
}

struct ScopeGuard<'t> {
    arena: &'t ThreadArena,
    outermost: bool,
}

impl Drop for ScopeGuard<'_> {
    fn drop(&mut self) {
        self.arena.depth.set(self.arena.depth.get() - 1);
        if self.outermost {
            self.arena.finish();
        }
    }
}

/// Number of chunks and bytes used in them. Walks the chunk list (one chunk at steady state).
fn chunk_usage(bump: &mut Bump) -> (u64, u64) {
    bump.iter_allocated_chunks()
        .fold((0, 0), |(n, used), chunk| {
            (n + 1, used + chunk.len() as u64)
        })
}

fn chunk_count(bump: &Bump) -> u64 {
    // Outside a scope the thread arena has been reset: one chunk if it ever allocated.
    u64::from(bump.allocated_bytes() > 0)
}

/// An empty arena with the same limit as `bump`.
fn fresh_like(bump: &Bump) -> Bump {
    let fresh = Bump::new();
    fresh.set_allocation_limit(bump.allocation_limit());
    fresh
}

thread_local! {
    static THREAD_ARENA: ThreadArena = ThreadArena::new();
}

/// Runs `f` with this thread's request arena; everything allocated in it is freed (the
/// memory kept for reuse) when the outermost scope on this thread returns or unwinds.
///
/// Scopes nest: an inner scope shares the arena and does not reset it, so values of the
/// outer scope stay valid inside; the borrow checker keeps each scope's values inside it.
///
/// ```
/// let total = mm_arena::scope(|arena| {
///     let words = arena.alloc_slice_copy(&["a", "bb", "ccc"])?;
///     let inner = mm_arena::scope(|inner| inner.alloc(7usize).map(|n| *n))?;
///     Ok::<_, mm_arena::ArenaError>(words.iter().map(|w| w.len()).sum::<usize>() + inner)
/// });
/// assert_eq!(total, Ok(13));
/// ```
///
/// References cannot escape the scope:
///
/// ```compile_fail
/// let escaped: &u32 = mm_arena::scope(|arena| &*arena.alloc(1u32).unwrap());
/// ```
///
/// not even through a captured variable:
///
/// ```compile_fail,E0521
/// let mut out: Option<&u32> = None;
/// mm_arena::scope(|arena| out = Some(&*arena.alloc(1u32).unwrap()));
/// ```
///
/// Cost: two `Cell` updates and a `RefCell` borrow per scope; at the end of the outermost
/// scope a walk of the chunk list (one chunk after warm-up), a reset, and one relaxed atomic
/// add to the process-wide stats (more only when the request set a record or grew the
/// arena). After warm-up a request that fits in the retained chunk
/// makes no call to the global allocator.
///
/// When called while this thread's locals are being destroyed (from another thread-local's
/// `Drop`), `f` runs on a temporary arena freed on return, so it still works, at the cost of
/// a fresh allocation.
pub fn scope<R>(f: impl for<'a> FnOnce(&Arena<'a>) -> R) -> R {
    let mut f = Some(f);
    let run = THREAD_ARENA.try_with(|arena| f.take().map(|f| arena.run(f)));
    match (run, f.take()) {
        (Ok(Some(result)), _) => result,
        (_, Some(f)) => {
            let bump = Bump::new();
            f(&Arena::new(&bump))
        }
        // `f` is taken exactly when `run` produced a result.
        (_, None) => unreachable!("scope closure consumed without a result"),
    }
}

/// Sets the allocation limit of this thread's arena (and preallocates its initial capacity).
///
/// # Errors
/// [`ArenaError::InsideScope`] inside a scope, [`ArenaError::ZeroLimit`] for a limit of 0,
/// [`ArenaError::LimitExceeded`] if the arena already holds more than the limit or the
/// initial capacity exceeds it, and [`ArenaError::ThreadExiting`] when called from a
/// thread-local destructor after this thread's arena was destroyed (never a panic: a later
/// [`scope`] there still runs, on a temporary arena).
pub fn configure_thread(config: &ArenaConfig) -> Result<(), ArenaError> {
    config.validate()?;
    let configured = THREAD_ARENA.try_with(|arena| {
        let mut bump = arena.outside_scope()?;
        if let Some(limit) = config.allocation_limit()
            && bump.allocated_bytes() > limit
        {
            // Drop the retained chunk rather than refuse: the next request re-grows under the limit.
            *bump = Bump::new();
        }
        bump.set_allocation_limit(config.allocation_limit());
        if config.initial_capacity() > 0 && bump.allocated_bytes() < config.initial_capacity() {
            let fresh = Bump::try_with_capacity(config.initial_capacity()).map_err(|_| {
                ArenaError::OutOfMemory {
                    requested: config.initial_capacity(),
                }
            })?;
            fresh.set_allocation_limit(config.allocation_limit());
            *bump = fresh;
        }
        let retained = bump.allocated_bytes() as u64;
        drop(bump);
        arena.report_retained(retained);
        Ok(())
    });
    configured.unwrap_or(Err(ArenaError::ThreadExiting))
}

/// Releases the chunk this thread's arena keeps between requests.
///
/// Called from a thread-local destructor after this thread's arena was destroyed, it does
/// nothing and returns `Ok`: that arena's chunks are already freed.
///
/// # Errors
/// [`ArenaError::InsideScope`] when called inside a scope.
pub fn trim_thread() -> Result<(), ArenaError> {
    THREAD_ARENA
        .try_with(|arena| {
            let mut bump = arena.outside_scope()?;
            *bump = fresh_like(&bump);
            drop(bump);
            arena.report_retained(0);
            Ok(())
        })
        .unwrap_or(Ok(()))
}

/// Asks every thread arena to release its retained chunk at the end of its next request
/// (a memory-pressure handler calls this; threads idle in no request keep theirs until then).
pub fn request_trim() {
    TRIM_EPOCH.fetch_add(1, Ordering::Relaxed);
}

/// Stats of this thread's arena.
pub fn thread_stats() -> ArenaStats {
    THREAD_ARENA
        .try_with(ThreadArena::stats)
        .unwrap_or_default()
}

/// Whether a scope is running on this thread.
pub fn in_scope() -> bool {
    THREAD_ARENA
        .try_with(|arena| arena.depth.get() > 0)
        .unwrap_or(false)
}

/// Stats summed over every thread arena (relaxed reads: a consistent-enough snapshot).
pub fn global_stats() -> GlobalArenaStats {
    GlobalArenaStats {
        threads: GLOBAL_THREADS.load(Ordering::Relaxed),
        high_water_bytes: GLOBAL_HIGH_WATER.load(Ordering::Relaxed),
        retained_bytes: GLOBAL_RETAINED.load(Ordering::Relaxed),
        resets: GLOBAL_RESETS.load(Ordering::Relaxed),
        chunk_allocations: GLOBAL_CHUNKS.load(Ordering::Relaxed),
    }
}
