//! Criterion bench for `embedding` (written by its issue).
fn main() {}
