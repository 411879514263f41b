#!/usr/bin/env bash
# `mm mcp` end to end with the official Python MCP client (PyPI `mcp`, in its own venv under
# the target dir): crates/mm-cli/tests/mcp_client.py spawns `mm mcp` over stdio, initialises,
# lists the tools, calls each one (inspect_model on the real Gemma 3 270M model from
# .ci/python.sh) and checks the results and the error cases. Every request has a timeout,
# the client run a deadline, and the stage a bound of a few minutes.
set -euo pipefail
cd "$(dirname "$0")/.."
TARGET="${CARGO_TARGET_DIR:-$PWD/target}"
MODEL=$(bash .ci/python.sh | tail -n1)
[ -f "$MODEL" ] || { echo "mcp.sh: no model at '$MODEL'"; exit 1; }
VENV="$TARGET/mcp-venv"
if [ ! -x "$VENV/bin/python" ]; then
    python3 -m venv "$VENV"
fi
if ! "$VENV/bin/python" -c 'import mcp' 2>/dev/null; then
    timeout 300 "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check 'mcp==2.3.*'
fi
"$VENV/bin/python" -c 'import importlib.metadata as m; print("mcp.sh: Python MCP client", m.version("mcp"))'
timeout 600 cargo build --locked -q -p mm-cli --bin mm
timeout 180 "$VENV/bin/python" crates/mm-cli/tests/mcp_client.py "$TARGET/debug/mm" "$MODEL"
