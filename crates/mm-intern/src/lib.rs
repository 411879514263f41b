#![doc = include_str!("../README.md")]

mod counters;
mod error;
mod interner;
mod live;
mod stats;
mod store;
mod symbol;
mod sync;

pub use error::InternError;
pub use interner::{FrozenInterner, Interner, InternerConfig};
pub use stats::InternStats;
pub use symbol::Symbol;
