#![doc = include_str!("../README.md")]

mod buffer;
mod error;
mod fence;
mod lease;
mod object;
mod registry;
mod slot;
mod stats;
mod sync;
mod tiers;

pub use buffer::{BufferPool, BufferPoolConfig, BufferRef, PooledBuffer, TierConfig};
pub use error::PoolError;
pub use object::{DynReset, ObjectPool, Pooled, PooledRef, Reset};
pub use stats::PoolStats;

/// Re-export of the `bytes` version whose `BytesMut` the buffer pool hands out.
pub use bytes;
