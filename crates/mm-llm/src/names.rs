//! The name interner used for model ids and tool names: `mm-intern`'s.

pub use mm_intern::{Interner, Symbol};
