//! The crate's error type.

/// Why a string could not be interned or an interner could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InternError {
    /// The interner already holds `limit` unique strings ([`InternerConfig::max_strings`]).
    ///
    /// [`InternerConfig::max_strings`]: crate::InternerConfig::max_strings
    #[error(
        "the interner already holds its limit of {limit} unique strings; raise \
         InternerConfig::max_strings or intern fewer distinct strings"
    )]
    TooManyStrings {
        /// The configured limit.
        limit: u64,
    },
    /// Storing `len` more bytes would pass [`InternerConfig::max_bytes`].
    ///
    /// [`InternerConfig::max_bytes`]: crate::InternerConfig::max_bytes
    #[error(
        "storing a new {len}-byte string would exceed the limit of {limit} bytes of string \
         data ({stored} stored); raise InternerConfig::max_bytes or intern shorter strings"
    )]
    TooManyBytes {
        /// Length of the string that was refused.
        len: u64,
        /// Bytes of unique strings stored when it was refused.
        stored: u64,
        /// The configured limit.
        limit: u64,
    },
    /// The interner holds as many strings as a 32-bit [`Symbol`](crate::Symbol) can name
    /// (`capacity`, about 4.29 billion, shared by all shards).
    #[error(
        "the interner is full ({capacity} strings, the most a 32-bit symbol can name); \
         split the strings over several interners"
    )]
    SymbolSpaceExhausted {
        /// Strings an interner can hold.
        capacity: u64,
    },
    /// The allocator returned memory for a new chunk of string data at or above 2^48 (or
    /// ending past it): the live interner keeps each string's address in 48 bits of an
    /// 8-byte span. No mainstream 64-bit OS hands out such addresses to a process that
    /// did not ask for them; nothing was stored.
    #[error(
        "the allocator returned string storage at {addr:#x}, above the 48-bit addresses the \
         interner can record; this platform's address layout is not supported"
    )]
    AddressOutOfRange {
        /// Start of the refused allocation.
        addr: u64,
    },
    /// [`InternerConfig::shards`](crate::InternerConfig::shards) is not a power of two in
    /// `1..=256`.
    #[error("invalid shard count {0}: use a power of two from 1 to 256")]
    InvalidShardCount(usize),
}
