//! [`RequestArena`]: an owned arena, for a request that is not tied to one thread.

use std::fmt;

use bumpalo::Bump;

use crate::arena::consumed;
use crate::{Arena, ArenaConfig, ArenaError, ArenaStats};

/// An owned bump arena: one per request object, task or connection.
///
/// Use it where [`scope`](crate::scope) does not fit: an async task that may move between
/// threads (`RequestArena` is `Send`), or a request whose data must live across several
/// calls. It is not `Sync`: one owner allocates at a time.
///
/// Allocations borrow the arena ([`arena`](Self::arena)), and [`reset`](Self::reset) takes
/// `&mut self`, so the borrow checker rules out references that outlive a reset.
///
/// ```
/// use mm_arena::{ArenaConfig, RequestArena};
///
/// let mut request = RequestArena::new(ArenaConfig::new().with_allocation_limit(Some(1 << 20)))?;
/// for _ in 0..3 {
///     let arena = request.arena();
///     let prompt = arena.alloc_str("system: be brief")?;
///     assert_eq!(prompt.len(), 16);
///     request.reset();
/// }
/// assert_eq!(request.stats().resets, 3);
/// # Ok::<(), mm_arena::ArenaError>(())
/// ```
pub struct RequestArena {
    bump: Bump,
    chunks_at_reset: u64,
    stats: ArenaStats,
}

impl RequestArena {
    /// Builds an arena; allocates only if the config has an initial capacity.
    ///
    /// # Errors
    /// [`ArenaError::ZeroLimit`], or [`ArenaError::LimitExceeded`] for an initial capacity
    /// above the limit (see [`ArenaConfig::validate`]), or [`ArenaError::OutOfMemory`].
    pub fn new(config: ArenaConfig) -> Result<Self, ArenaError> {
        config.validate()?;
        let bump = if config.initial_capacity() > 0 {
            Bump::try_with_capacity(config.initial_capacity()).map_err(|_| {
                ArenaError::OutOfMemory {
                    requested: config.initial_capacity(),
                }
            })?
        } else {
            Bump::new()
        };
        bump.set_allocation_limit(config.allocation_limit());
        let chunks_at_reset = u64::from(bump.allocated_bytes() > 0);
        Ok(Self {
            bump,
            chunks_at_reset,
            stats: ArenaStats::default(),
        })
    }

    /// The allocation handle; its results live as long as this borrow.
    #[inline]
    pub fn arena(&self) -> Arena<'_> {
        Arena::new(&self.bump)
    }

    /// Frees every allocation, keeping the largest chunk for reuse. O(chunks).
    pub fn reset(&mut self) {
        let (chunks, used) = self
            .bump
            .iter_allocated_chunks()
            .fold((0u64, 0u64), |(n, u), c| (n + 1, u + c.len() as u64));
        self.stats.high_water_bytes = self.stats.high_water_bytes.max(used);
        self.stats.chunk_allocations = self
            .stats
            .chunk_allocations
            .saturating_add(chunks.saturating_sub(self.chunks_at_reset));
        self.stats.resets = self.stats.resets.saturating_add(1);
        self.bump.reset();
        self.chunks_at_reset = u64::from(self.bump.allocated_bytes() > 0);
    }

    /// Releases all memory, including the retained chunk; the limit stays.
    pub fn trim(&mut self) {
        self.reset();
        let limit = self.bump.allocation_limit();
        self.bump = Bump::new();
        self.bump.set_allocation_limit(limit);
        self.chunks_at_reset = 0;
    }

    /// Current figures. O(1).
    pub fn stats(&self) -> ArenaStats {
        let in_use = consumed(&self.bump) as u64;
        ArenaStats {
            high_water_bytes: self.stats.high_water_bytes.max(in_use),
            in_use_bytes: in_use,
            retained_bytes: self.bump.allocated_bytes() as u64,
            ..self.stats
        }
    }
}

impl fmt::Debug for RequestArena {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RequestArena")
            .field("stats", &self.stats())
            .field("allocation_limit", &self.bump.allocation_limit())
            .finish()
    }
}
