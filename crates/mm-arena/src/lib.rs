#![doc = include_str!("../README.md")]

mod arena;
mod config;
mod error;
mod generational;
mod pool;
mod request;
mod scope;

pub use arena::Arena;
pub use config::{ArenaConfig, ArenaStats};
pub use error::ArenaError;
pub use generational::{Generational, GenerationalStats, Handle};
pub use pool::{ArenaPool, ArenaPoolStats, PooledArena};
pub use request::RequestArena;
pub use scope::{
    GlobalArenaStats, configure_thread, global_stats, in_scope, request_trim, scope, thread_stats,
    trim_thread,
};

/// Re-export of the `bumpalo` version this crate uses, for `bumpalo::collections`.
pub use bumpalo;
