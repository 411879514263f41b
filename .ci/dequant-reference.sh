#!/usr/bin/env bash
# Checks that the committed dequantization fixtures (crates/mm-gguf/tests/fixtures/dequant)
# are still exactly what gguf-py 0.19 produces: regenerates them in a temporary directory
# with scripts/dequant_ref.py and compares byte for byte. Uses the venv of .ci/python.sh.
# (The real-model bit-identity test, tests/dequant_real_model.rs, runs in gguf-reference.sh.)
set -euo pipefail
cd "$(dirname "$0")/.."
bash .ci/python.sh > /dev/null
"$PWD/.venv/bin/python" -W ignore::RuntimeWarning crates/mm-gguf/scripts/dequant_ref.py --check
