#![doc = include_str!("../README.md")]

mod counters;
mod error;
mod frozen;
mod interner;
mod live;
mod spans;
mod stats;
mod store;
mod symbol;
mod sync;

pub use error::InternError;
pub use frozen::FrozenInterner;
pub use interner::{Interner, InternerConfig};
pub use stats::InternStats;
pub use symbol::Symbol;
