//! `mm_gguf`: placeholder crate, filled in by its issue.
