//! `mm_mmap`: placeholder crate, filled in by its issue.
