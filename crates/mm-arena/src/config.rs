//! [`ArenaConfig`] and [`ArenaStats`].

use crate::ArenaError;

/// How to build an arena: initial capacity and allocation limit.
///
/// ```
/// let config = mm_arena::ArenaConfig::new()
///     .with_initial_capacity(64 * 1024)
///     .with_allocation_limit(Some(16 * 1024 * 1024));
/// assert!(config.validate().is_ok());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(default, deny_unknown_fields)
)]
pub struct ArenaConfig {
    initial_capacity: usize,
    allocation_limit: Option<usize>,
}

impl ArenaConfig {
    /// No preallocation, no limit.
    pub const fn new() -> Self {
        Self {
            initial_capacity: 0,
            allocation_limit: None,
        }
    }

    /// Bytes to allocate up front (0: the first chunk comes with the first allocation).
    pub const fn with_initial_capacity(mut self, bytes: usize) -> Self {
        self.initial_capacity = bytes;
        self
    }

    /// Most bytes of chunks the arena may hold; `None` for no limit. The limit counts whole
    /// chunks (which double in size), so a request can fail somewhat below it.
    pub const fn with_allocation_limit(mut self, bytes: Option<usize>) -> Self {
        self.allocation_limit = bytes;
        self
    }

    /// The configured initial capacity.
    pub const fn initial_capacity(&self) -> usize {
        self.initial_capacity
    }

    /// The configured allocation limit.
    pub const fn allocation_limit(&self) -> Option<usize> {
        self.allocation_limit
    }

    /// Checks the configuration.
    ///
    /// # Errors
    /// [`ArenaError::ZeroLimit`] for a limit of 0, and
    /// [`ArenaError::LimitExceeded`] for an initial capacity above the limit.
    pub fn validate(&self) -> Result<(), ArenaError> {
        match self.allocation_limit {
            Some(0) => Err(ArenaError::ZeroLimit),
            Some(limit) if self.initial_capacity > limit => Err(ArenaError::LimitExceeded {
                requested: self.initial_capacity,
                allocated: 0,
                limit,
            }),
            _ => Ok(()),
        }
    }
}

/// Figures for one arena, or summed over the threads for [`global_stats`](crate::global_stats).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct ArenaStats {
    /// Most bytes a single request (outermost scope, or span between resets) used.
    pub high_water_bytes: u64,
    /// Bytes consumed right now (0 between requests for a thread arena).
    pub in_use_bytes: u64,
    /// Bytes of chunks held from the global allocator, kept across resets.
    pub retained_bytes: u64,
    /// Resets done (one per outermost scope, or per `RequestArena::reset`).
    pub resets: u64,
    /// Chunks requested from the global allocator; flat at steady state.
    pub chunk_allocations: u64,
}
