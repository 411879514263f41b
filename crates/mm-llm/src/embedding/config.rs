//! The cache's configuration, clock, eviction causes and statistics.

use std::fmt;
use std::time::{Duration, Instant};

use super::key::EmbeddingKey;
use crate::LlmError;
use crate::sync::{AtomicU64, Ordering};

/// Bounds, sharding and expiry of an [`EmbeddingCache`](super::EmbeddingCache).
///
/// Built with [`new`](Self::new) (equal to `Default`) and `with_*` setters; checked by
/// [`validate`](Self::validate), which [`EmbeddingCache::new`](super::EmbeddingCache::new)
/// calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EmbeddingCacheConfig {
    max_bytes: u64,
    max_entries: usize,
    shards: usize,
    ttl: Option<Duration>,
    tti: Option<Duration>,
}

impl Default for EmbeddingCacheConfig {
    fn default() -> Self {
        Self::new()
    }
}

impl EmbeddingCacheConfig {
    /// 512 MiB, 10,000 entries, shards chosen from the bounds and the machine, no expiry.
    pub const fn new() -> Self {
        Self {
            max_bytes: 512 * 1024 * 1024,
            max_entries: 10_000,
            shards: 0,
            ttl: None,
            tti: None,
        }
    }

    /// Byte bound over all entries, each counting `4 * dims +`
    /// [`ENTRY_OVERHEAD`](super::ENTRY_OVERHEAD) (default 512 MiB; at least 1). Split evenly
    /// between the shards, so one vector may take at most `max_bytes / shards`.
    pub const fn with_max_bytes(mut self, bytes: u64) -> Self {
        self.max_bytes = bytes;
        self
    }

    /// Entry bound (default 10,000; at least 1, at most 2^31). Split evenly between shards.
    pub const fn with_max_entries(mut self, entries: usize) -> Self {
        self.max_entries = entries;
        self
    }

    /// Number of shards, each with its own lock and policy: a power of two from 1 to 256, at
    /// most `max_entries`; 0 (the default) picks one from the bounds and the number of CPUs
    /// (1 below 2,048 entries, else 4 per CPU, at least 1,024 entries each, at most 64).
    pub const fn with_shards(mut self, shards: usize) -> Self {
        self.shards = shards;
        self
    }

    /// Time to live: an entry is dropped this long after it was inserted, however often it
    /// is hit (default none; at least 1 ns).
    pub const fn with_time_to_live(mut self, ttl: Duration) -> Self {
        self.ttl = Some(ttl);
        self
    }

    /// Time to idle: an entry is dropped once this long has passed since its last hit (or its
    /// insert) (default none; at least 1 ns).
    pub const fn with_time_to_idle(mut self, tti: Duration) -> Self {
        self.tti = Some(tti);
        self
    }

    /// The byte bound.
    pub const fn max_bytes(&self) -> u64 {
        self.max_bytes
    }

    /// The entry bound.
    pub const fn max_entries(&self) -> usize {
        self.max_entries
    }

    /// The configured shard count (0: automatic; see [`EmbeddingStats::shards`] for the one
    /// in use).
    pub const fn shards(&self) -> usize {
        self.shards
    }

    /// The time to live.
    pub const fn time_to_live(&self) -> Option<Duration> {
        self.ttl
    }

    /// The time to idle.
    pub const fn time_to_idle(&self) -> Option<Duration> {
        self.tti
    }

    /// Checks the ranges above.
    ///
    /// # Errors
    /// [`LlmError::InvalidConfig`] naming the setting that is out of range.
    pub fn validate(&self) -> Result<(), LlmError> {
        if self.max_bytes == 0 {
            return Err(LlmError::InvalidConfig(
                "EmbeddingCacheConfig::max_bytes must be at least 1",
            ));
        }
        if self.max_entries == 0 || self.max_entries > 1 << 31 {
            return Err(LlmError::InvalidConfig(
                "EmbeddingCacheConfig::max_entries must be between 1 and 2^31",
            ));
        }
        if self.shards != 0
            && (!self.shards.is_power_of_two()
                || self.shards > 256
                || self.shards > self.max_entries)
        {
            return Err(LlmError::InvalidConfig(
                "EmbeddingCacheConfig::shards must be 0 (automatic) or a power of two up to 256 and up to max_entries",
            ));
        }
        if self.ttl == Some(Duration::ZERO) || self.tti == Some(Duration::ZERO) {
            return Err(LlmError::InvalidConfig(
                "EmbeddingCacheConfig time to live and time to idle must be at least 1 ns",
            ));
        }
        Ok(())
    }

    /// The shard count to use: the configured one, or the automatic choice.
    pub(super) fn shard_count(&self) -> usize {
        if self.shards != 0 {
            return self.shards;
        }
        if self.max_entries < 2048 {
            return 1;
        }
        let cpus = std::thread::available_parallelism().map_or(1, usize::from);
        let by_size = prev_power_of_two(self.max_entries / 1024);
        (cpus * 4).next_power_of_two().min(64).min(by_size).max(1)
    }
}

fn prev_power_of_two(n: usize) -> usize {
    if n == 0 {
        0
    } else {
        1 << (usize::BITS - 1 - n.leading_zeros())
    }
}

/// The time source of expiry: nanoseconds on a monotonic scale.
///
/// The default is [`MonotonicClock`]; tests inject a [`ManualClock`] with
/// [`EmbeddingCache::with_clock`](super::EmbeddingCache::with_clock). The cache reads it only
/// when a time to live or idle is set.
pub trait Clock: Send + Sync + fmt::Debug {
    /// Nanoseconds since an arbitrary fixed origin; never decreasing.
    fn now_nanos(&self) -> u64;
}

/// [`Clock`] on `std::time::Instant`.
#[derive(Debug, Clone, Copy)]
pub struct MonotonicClock {
    origin: Instant,
}

impl Default for MonotonicClock {
    fn default() -> Self {
        Self {
            origin: Instant::now(),
        }
    }
}

impl Clock for MonotonicClock {
    fn now_nanos(&self) -> u64 {
        u64::try_from(self.origin.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }
}

/// A [`Clock`] that moves only when told to (for tests of expiry).
#[derive(Debug, Default)]
pub struct ManualClock {
    nanos: AtomicU64,
}

impl ManualClock {
    /// A clock at 0.
    pub fn new() -> Self {
        Self::default()
    }

    /// Moves the clock forward by `by`.
    pub fn advance(&self, by: Duration) {
        let by = u64::try_from(by.as_nanos()).unwrap_or(u64::MAX);
        self.nanos.fetch_add(by, Ordering::Relaxed);
    }
}

impl Clock for ManualClock {
    fn now_nanos(&self) -> u64 {
        self.nanos.load(Ordering::Relaxed)
    }
}

/// Why an entry left the cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RemovalCause {
    /// Evicted to keep within the byte or entry bound (including a new entry that lost
    /// admission against the entry it would have replaced).
    Size,
    /// Its time to live or time to idle passed.
    Expired,
    /// Removed by [`invalidate`](super::EmbeddingCache::invalidate) or
    /// [`invalidate_all`](super::EmbeddingCache::invalidate_all).
    Explicit,
    /// A new vector was inserted under its key.
    Replaced,
    /// Evicted because memory was short: the budget refused a charge, or
    /// [`evict_fraction`](super::EmbeddingCache::evict_fraction) was called.
    Pressure,
}

impl RemovalCause {
    /// Every cause, in the order of [`EvictionCounts`]' fields.
    pub const ALL: [RemovalCause; 5] = [
        RemovalCause::Size,
        RemovalCause::Expired,
        RemovalCause::Explicit,
        RemovalCause::Replaced,
        RemovalCause::Pressure,
    ];

    /// A short lower-case name (`size`, `expired`, ...), for logs and metric labels.
    pub const fn as_str(self) -> &'static str {
        match self {
            RemovalCause::Size => "size",
            RemovalCause::Expired => "expired",
            RemovalCause::Explicit => "explicit",
            RemovalCause::Replaced => "replaced",
            RemovalCause::Pressure => "pressure",
        }
    }

    pub(super) const fn index(self) -> usize {
        self as usize
    }
}

/// What the eviction listener is told about each entry that leaves the cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct EvictionNotice {
    /// The entry's key.
    pub key: EmbeddingKey,
    /// Why it left.
    pub cause: RemovalCause,
    /// Its vector length.
    pub dims: usize,
}

/// Entries that left the cache, per cause.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct EvictionCounts {
    /// [`RemovalCause::Size`].
    pub size: u64,
    /// [`RemovalCause::Expired`].
    pub expired: u64,
    /// [`RemovalCause::Explicit`].
    pub explicit: u64,
    /// [`RemovalCause::Replaced`].
    pub replaced: u64,
    /// [`RemovalCause::Pressure`].
    pub pressure: u64,
}

impl EvictionCounts {
    pub(super) fn from_array(a: [u64; 5]) -> Self {
        Self {
            size: a[0],
            expired: a[1],
            explicit: a[2],
            replaced: a[3],
            pressure: a[4],
        }
    }

    /// The count for `cause`.
    pub fn of(&self, cause: RemovalCause) -> u64 {
        match cause {
            RemovalCause::Size => self.size,
            RemovalCause::Expired => self.expired,
            RemovalCause::Explicit => self.explicit,
            RemovalCause::Replaced => self.replaced,
            RemovalCause::Pressure => self.pressure,
        }
    }

    /// All causes together.
    pub fn total(&self) -> u64 {
        self.size + self.expired + self.explicit + self.replaced + self.pressure
    }
}

/// A snapshot of an [`EmbeddingCache`](super::EmbeddingCache)'s counters and sizes (each
/// shard read under its lock, one after the other).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct EmbeddingStats {
    /// Lookups that found their key.
    pub hits: u64,
    /// Lookups that did not (including expired entries and callers that then waited on
    /// another caller's computation).
    pub misses: u64,
    /// Vectors inserted (new keys and replacements; before admission).
    pub inserts: u64,
    /// `get_with` callers served by another caller's computation instead of their own.
    pub coalesced: u64,
    /// New entries that lost admission (a part of `evictions.size`).
    pub rejected: u64,
    /// Entries that left, by cause.
    pub evictions: EvictionCounts,
    /// Entries held.
    pub entries: u64,
    /// Bytes counted against the bound (vectors plus per-entry overhead) and charged to the
    /// budget.
    pub bytes: u64,
    /// The byte bound.
    pub max_bytes: u64,
    /// The entry bound.
    pub max_entries: u64,
    /// Bytes of vector storage allocated (all slots, used, free or pinned).
    pub storage_bytes: u64,
    /// Bytes of policy bookkeeping (frequency sketch, ghost table, node table).
    pub policy_bytes: u64,
    /// Of `policy_bytes`, the frequency sketch and the ghost table: sized by the entry bound
    /// (16 to 32 bytes per entry of it) by the first lookup, counted in the report's
    /// `held_bytes` and `bound_bytes` beside `bytes`, but not charged to the budget (the
    /// budget is charged `bytes`, what the bounds limit).
    pub tables_bytes: u64,
    /// Evicted slots still pinned by [`Embedding`](super::Embedding) handles.
    pub pinned_slots: u64,
    /// Shards in use.
    pub shards: u64,
}

impl EmbeddingStats {
    /// `hits / (hits + misses)`, or `None` before the first lookup.
    pub fn hit_rate(&self) -> Option<f64> {
        let total = self.hits + self.misses;
        (total > 0).then(|| self.hits as f64 / total as f64)
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn validate_names_each_bad_setting() {
        let ok = EmbeddingCacheConfig::new();
        assert_eq!(ok, EmbeddingCacheConfig::default());
        assert!(ok.validate().is_ok());
        for bad in [
            ok.with_max_bytes(0),
            ok.with_max_entries(0),
            ok.with_shards(3),
            ok.with_shards(512),
            ok.with_max_entries(2).with_shards(4),
            ok.with_time_to_live(Duration::ZERO),
            ok.with_time_to_idle(Duration::ZERO),
        ] {
            assert!(
                matches!(bad.validate(), Err(LlmError::InvalidConfig(_))),
                "{bad:?}"
            );
        }
        let c = ok
            .with_time_to_live(Duration::from_secs(3600))
            .with_time_to_idle(Duration::from_secs(1800))
            .with_shards(4);
        assert_eq!(c.time_to_live(), Some(Duration::from_secs(3600)));
        assert_eq!(c.time_to_idle(), Some(Duration::from_secs(1800)));
        assert_eq!((c.shards(), c.shard_count()), (4, 4));
    }

    #[test]
    fn automatic_shards_follow_the_bounds() {
        let c = EmbeddingCacheConfig::new();
        assert_eq!(c.with_max_entries(100).shard_count(), 1);
        let n = c.with_max_entries(10_000).shard_count();
        assert!(n.is_power_of_two() && (1..=8).contains(&n), "{n}");
        assert_eq!(prev_power_of_two(0), 0);
        assert_eq!(prev_power_of_two(9), 8);
    }

    #[test]
    fn clocks_and_causes() {
        let m = ManualClock::new();
        assert_eq!(m.now_nanos(), 0);
        m.advance(Duration::from_millis(2));
        assert_eq!(m.now_nanos(), 2_000_000);
        let mono = MonotonicClock::default();
        let a = mono.now_nanos();
        assert!(mono.now_nanos() >= a);
        let names: Vec<_> = RemovalCause::ALL.iter().map(|c| c.as_str()).collect();
        assert_eq!(
            names,
            ["size", "expired", "explicit", "replaced", "pressure"]
        );
        let counts = EvictionCounts::from_array([1, 2, 3, 4, 5]);
        for (i, c) in RemovalCause::ALL.into_iter().enumerate() {
            assert_eq!(counts.of(c), i as u64 + 1);
            assert_eq!(c.index(), i);
        }
        assert_eq!(counts.total(), 15);
        assert_eq!(EmbeddingStats::default().hit_rate(), None);
    }
}
