//! Criterion bench for `pool` (written by its issue).
fn main() {}
