//! Criterion bench for `gguf` (written by its issue).
fn main() {}
