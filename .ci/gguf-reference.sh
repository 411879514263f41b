#!/usr/bin/env bash
# Runs the mm-gguf real-model and gguf-py reference tests: builds the venv and the model
# (.ci/python.sh), then runs the tests with MM_GGUF_TEST_MODEL and MM_PYTHON set.
# Fails if the model or gguf-py is missing, so these tests cannot silently skip in CI.
set -euo pipefail
cd "$(dirname "$0")/.."
MM_GGUF_TEST_MODEL="$(bash .ci/python.sh | tail -n 1)"
MM_PYTHON="$PWD/.venv/bin/python"
if [ ! -s "$MM_GGUF_TEST_MODEL" ]; then
    echo "gguf-reference: the test model is missing ($MM_GGUF_TEST_MODEL)" >&2
    exit 1
fi
"$MM_PYTHON" -c 'import gguf, numpy' || { echo "gguf-reference: gguf-py is missing" >&2; exit 1; }
export MM_GGUF_TEST_MODEL MM_PYTHON
echo "model: $MM_GGUF_TEST_MODEL"
# Release: the real-model tests read and dequantize 250 MB.
# MM_GGUF_REQUIRE_REFERENCE turns a skip into a failure inside the tests themselves.
MM_GGUF_REQUIRE_REFERENCE=1 cargo test --release --locked -p mm-gguf -p mm-cli
