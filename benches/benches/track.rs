//! Criterion bench for `track` (written by its issue).
fn main() {}
