//! Criterion bench for `arena` (written by its issue).
fn main() {}
