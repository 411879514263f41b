#![doc = include_str!("../README.md")]

mod component;
mod config;
mod error;
mod gate;
mod manager;
mod owned;
mod report;
mod sampler;
mod sync;

/// The charge gate, public only for the loom models in `tests/loom.rs`.
#[cfg(loom)]
#[doc(hidden)]
pub mod loom_api {
    pub use crate::gate::{ChargeGate, MAX_ROUNDS};
}

pub use component::{
    Charging, Component, ComponentId, ComponentReading, ModelReading, ModelState, Residency,
    resident_bytes,
};
pub use config::{
    DEFAULT_ARENA_INITIAL_BYTES, DEFAULT_ARENA_LIMIT_BYTES, DEFAULT_LEAK_WINDOW,
    DEFAULT_MMAP_CACHE_BYTES, DEFAULT_POOL_TIERS, DEFAULT_SAMPLER_CAPACITY, MemoryConfig,
    PressureDelivery, SETTINGS,
};
pub use error::{ConfigError, MemoryError};
pub use manager::{HandlerId, ManagedBuffer, MemoryManager, PressureContext, PressureEvents};
pub use owned::{ARENA_POOL_MAX_IDLE, ManagedArena};
pub use report::{
    AllocatorReport, ArenaReport, BudgetReport, ComponentReport, FragmentationReport,
    InternerReport, MemoryReport, MetricFamily, MetricKind, MetricSample, MetricUnit,
    MetricsConfig, MmapReport, PressureReport, ProcessReport, metric_families,
};
pub use sampler::{SAMPLED, Sample, Sampler, SamplerThread};

pub use mm_arena::{Arena, ArenaPool, PooledArena};
pub use mm_budget::{MemoryBudget, PressureEvent, PressureLevel, Reservation};
pub use mm_intern::{Interner, Symbol};
pub use mm_mmap::{MappedFile, MmapCache};
pub use mm_pool::{BufferPool, ObjectPool, PooledBuffer};
pub use mm_track::TrackedAlloc;
