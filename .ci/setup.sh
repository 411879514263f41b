#!/usr/bin/env bash
# Installs what CI needs: the pinned toolchain with rustfmt and clippy.
set -euo pipefail
cd "$(dirname "$0")/.."
rustup show active-toolchain || rustup toolchain install 1.95.0 --profile minimal
rustup component add rustfmt clippy
cargo --version
cargo fetch --locked
