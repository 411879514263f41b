//! Criterion bench for `intern` (written by its issue).
fn main() {}
