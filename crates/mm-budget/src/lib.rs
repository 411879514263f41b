//! `mm_budget`: placeholder crate, filled in by its issue.
