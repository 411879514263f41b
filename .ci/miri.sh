#!/usr/bin/env bash
# Miri over the unit tests of the crates that contain `unsafe`. File-backed mmap tests and
# heavy workloads are `#[cfg_attr(miri, ignore)]` in the crates themselves.
set -euo pipefail
cd "$(dirname "$0")/.."
rustup toolchain list | grep -q '^nightly' || rustup toolchain install nightly --profile minimal
rustup component add miri rust-src --toolchain nightly
export CARGO_TARGET_DIR=target/miri
export MIRIFLAGS="${MIRIFLAGS:--Zmiri-disable-isolation}"
export MM_UNDER_SANITIZER=1
cargo +nightly miri setup
cargo +nightly miri test ${MIRI_CRATES:--p mm-track -p mm-arena -p mm-pool -p mm-intern -p mm-gguf} --lib
