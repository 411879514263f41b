//! The name interner used for model ids and tool names.
//!
//! Temporary adapter: lasso's `ThreadedRodeo` until `mm-intern` lands.

/// The thread-safe interner conversations share.
pub type Interner = lasso::ThreadedRodeo;
/// An interned name.
pub type Symbol = lasso::Spur;
