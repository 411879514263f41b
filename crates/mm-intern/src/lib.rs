//! `mm_intern`: placeholder crate, filled in by its issue.
