#!/usr/bin/env bash
# The test suite and a small mm-stress run under AddressSanitizer + LeakSanitizer (nightly).
# The explicit --target keeps proc-macro crates out of the sanitizer; the system allocator is
# kept (the sanitizer cannot see inside mimalloc), so the bench crate is left out.
# Tests that measure RSS or page residency skip themselves when MM_UNDER_SANITIZER is set,
# since the sanitizer's shadow memory changes those figures.
set -euo pipefail
cd "$(dirname "$0")/.."
rustup toolchain list | grep -q '^nightly' || rustup toolchain install nightly --profile minimal
rustup component add rust-src --toolchain nightly >/dev/null 2>&1 || true
target=x86_64-unknown-linux-gnu
export RUSTFLAGS="-Zsanitizer=address"
export RUSTDOCFLAGS="-Zsanitizer=address"
export CARGO_TARGET_DIR=target/asan
export ASAN_OPTIONS="detect_leaks=1:abort_on_error=1"
export MM_UNDER_SANITIZER=1
cargo +nightly test --target "$target" --workspace --exclude mm-benches --lib --tests --bins
cargo +nightly run --target "$target" --release -p mm-stress -- ${MM_STRESS_ASAN_ARGS:---quick}
