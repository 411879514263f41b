//! The crate's one error type.

/// Everything that can go wrong when building or using a pool.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PoolError {
    /// A pool (or a tier) was configured to hold 0 idle objects.
    #[error("pool tier {index} has max_idle 0 and would never reuse anything; use at least 1")]
    ZeroCapacity {
        /// Index of the tier (0 for an `ObjectPool`).
        index: usize,
    },
    /// A buffer tier of 0 bytes.
    #[error("buffer tier {index} has size 0; every tier needs at least 1 byte (e.g. 4096)")]
    ZeroSizedTier {
        /// Index of the tier in the configuration.
        index: usize,
    },
    /// Tier sizes must strictly increase, so that "smallest tier that fits" is well defined.
    #[error(
        "buffer tier {index} ({size} bytes) is not larger than tier {} ({previous} bytes); \
         list tiers from smallest to largest without repeats", index - 1
    )]
    TiersNotIncreasing {
        /// Index of the offending tier.
        index: usize,
        /// Size of the tier before it.
        previous: usize,
        /// Its size.
        size: usize,
    },
    /// A buffer pool with no tiers.
    #[error("buffer pool needs at least one tier")]
    NoTiers,
    /// The pool's total bound (sum of size times max_idle) does not fit in `usize`.
    #[error("buffer pool bound overflows usize; lower the tier sizes or max_idle")]
    BoundOverflow,
    /// A request larger than the pool's `max_request`.
    #[error("buffer of {requested} bytes refused: above this pool's max_request of {max} bytes")]
    TooLarge {
        /// Bytes requested.
        requested: usize,
        /// The configured maximum.
        max: usize,
    },
}
