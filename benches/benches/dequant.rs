//! Criterion bench for `dequant` (written by its issue).
fn main() {}
