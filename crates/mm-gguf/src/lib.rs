//! `mm_gguf`: GGUF model loader (being filled in by its issue).

pub mod quant;
pub mod types;
