//! `memory_manager`: placeholder crate, filled in by its issue.
