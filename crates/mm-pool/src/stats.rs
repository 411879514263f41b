//! [`PoolStats`].

/// Counters of an [`ObjectPool`](crate::ObjectPool) or a [`BufferPool`](crate::BufferPool).
///
/// Counters are read with relaxed loads while other threads may be updating them, so a
/// snapshot taken under load can be off by the operations in flight; once the pool is quiet
/// they are exact.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct PoolStats {
    /// Acquires served from the pool.
    pub hits: u64,
    /// Acquires that had to allocate a new object or buffer (pool empty).
    pub misses: u64,
    /// Objects or buffers taken back into the pool.
    pub returns: u64,
    /// Objects or buffers dropped on return: pool full, or a buffer that no longer has its
    /// tier's capacity (grown, split, swapped out).
    pub discards: u64,
    /// `BufferPool` buffers that came back with another capacity than their tier's and
    /// could not be restored, so were dropped (also counted in `discards`): grown past the
    /// tier, or split (`split`, `split_to`, `split_off`, `mem::take(..).freeze()`) while
    /// the split-off part is still alive. A split whose parts are all dropped by the time
    /// the guard returns is reclaimed whole. Use [`PooledBuffer::into_bytes`](crate::PooledBuffer::into_bytes)
    /// for a frozen body that goes back to the pool.
    pub reshaped: u64,
    /// `BufferPool` requests above the largest tier: plain allocations, never pooled.
    pub oversize: u64,
    /// Objects or buffers held idle right now.
    pub held: u64,
    /// Bytes held idle right now (`ObjectPool`: `held * size_of::<T>()`, the shallow size).
    pub held_bytes: u64,
    /// Most bytes the pool may hold idle, by construction.
    pub bound_bytes: u64,
}

impl PoolStats {
    /// `hits / (hits + misses)`, or `None` before the first pooled acquire. Oversize requests
    /// are not counted: the pool never serves them.
    pub fn hit_rate(&self) -> Option<f64> {
        let total = self.hits + self.misses;
        (total > 0).then(|| self.hits as f64 / total as f64)
    }
}
