//! `mm`: command-line tool (filled in by its issue).
fn main() {}
