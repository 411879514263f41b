//! Criterion bench for `sse` (written by its issue).
fn main() {}
