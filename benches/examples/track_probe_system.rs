//! The churn probe (`track_probe/common.rs`) under the bare `System` allocator.
//!
//! cargo run --release -p mm-benches --example track_probe_system -- 1 10000000

#[path = "track_probe/common.rs"]
mod common;

#[global_allocator]
static GLOBAL: std::alloc::System = std::alloc::System;

fn main() {
    common::main();
}
