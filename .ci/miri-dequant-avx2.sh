#!/usr/bin/env bash
# Runs mm-gguf's AVX2 dequantization kernels under Miri: with AVX2 enabled at compile time the
# runtime check selects them, and the unit test `fast_matches_scalar_on_a_few_blocks` drives
# every type's fast path (unaligned input) against the scalar kernels. About 10 s.
set -euo pipefail
cd "$(dirname "$0")/.."
RUSTFLAGS="-C target-feature=+avx2" CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-target}/miri-avx2" \
    cargo +nightly miri test -p mm-gguf --lib -- quant::tests::fast_matches_scalar_on_a_few_blocks
