#![doc = include_str!("../README.md")]

mod cache;
mod counter;
mod error;
mod index;
mod ledger;
mod map;
mod sync;

pub use cache::{
    CacheStats, DEFAULT_BUDGET_BYTES, MmapCache, MmapCacheConfig, OversizedPolicy, Revalidate,
};
pub use error::MmapError;
pub use map::{Access, FileIdentity, MappedFile};

/// The accounting core, public only for the loom models in `tests/loom.rs`.
#[cfg(loom)]
#[doc(hidden)]
pub mod loom_core {
    pub use crate::ledger::{Charge, Ledger};
}
