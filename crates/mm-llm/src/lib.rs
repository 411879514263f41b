//! `mm_llm`: placeholder crate, filled in by its issue.
