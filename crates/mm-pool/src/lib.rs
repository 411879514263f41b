//! `mm_pool`: placeholder crate, filled in by its issue.
