//! Criterion bench for `mmap` (written by its issue).
fn main() {}
