//! The crate's one error type.

/// Everything that can go wrong in `mm-arena`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ArenaError {
    /// An allocation would take the arena's chunks past its allocation limit.
    #[error(
        "arena allocation of {requested} bytes refused: the arena already holds {allocated} bytes \
         of chunks and its limit is {limit} bytes; raise the limit or split the request"
    )]
    LimitExceeded {
        /// Bytes the refused allocation asked for.
        requested: usize,
        /// Bytes of chunks the arena held when it refused.
        allocated: usize,
        /// The configured limit in bytes.
        limit: usize,
    },
    /// The system allocator could not provide a new chunk (no limit was hit).
    #[error("arena allocation of {requested} bytes failed: the system allocator is out of memory")]
    OutOfMemory {
        /// Bytes the failed allocation asked for.
        requested: usize,
    },
    /// A slice's size in bytes does not fit in `usize`.
    #[error("arena slice of {len} elements of {elem_size} bytes overflows usize")]
    SizeOverflow {
        /// Requested element count.
        len: usize,
        /// Size of one element in bytes.
        elem_size: usize,
    },
    /// An allocation limit of 0 bytes was configured; it would refuse every allocation.
    #[error(
        "arena allocation limit of 0 bytes would refuse every allocation; use at least one chunk (e.g. 4096) or no limit"
    )]
    ZeroLimit,
    /// The thread arena cannot be reconfigured or trimmed while a scope is running on this thread.
    #[error(
        "the thread arena cannot be reconfigured or trimmed inside `mm_arena::scope`; call this between requests"
    )]
    InsideScope,
    /// This thread's arena was already destroyed: the call came from a thread-local
    /// destructor while the thread exits. Scopes still run there, on a temporary arena.
    #[error(
        "this thread's arena is already destroyed (called from a thread-local destructor at thread exit); \
         a scope here runs on a temporary arena, with default settings"
    )]
    ThreadExiting,
    /// A [`Generational`](crate::Generational) arena reached its configured maximum length.
    #[error(
        "generational arena is full ({max_len} live objects); remove stale entries or raise max_len"
    )]
    Full {
        /// The configured maximum number of live objects.
        max_len: usize,
    },
    /// An [`ArenaPool`](crate::ArenaPool) was asked to keep 0 idle arenas: nothing would be
    /// reused.
    #[error("arena pool max_idle of 0 would free every arena on return; use at least 1")]
    ZeroMaxIdle,
    /// A [`Generational`](crate::Generational) arena was configured with a maximum length of 0.
    #[error("generational arena max_len of 0 would refuse every insert; use at least 1")]
    ZeroMaxLen,
}
