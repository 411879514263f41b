#!/usr/bin/env bash
# Builds the docs with warnings as errors (broken links, missing docs).
set -euo pipefail
cd "$(dirname "$0")/.."
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --locked
