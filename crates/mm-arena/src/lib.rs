//! `mm_arena`: placeholder crate, filled in by its issue.
