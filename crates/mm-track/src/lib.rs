//! `mm_track`: placeholder crate, filled in by its issue.
