//! `mm-stress`: filled in by its issue.
fn main() {}
