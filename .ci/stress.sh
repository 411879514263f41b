#!/usr/bin/env bash
# A short run of the main job; it exits non-zero when any of its checks fails.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo run --release --locked -p mm-stress -- ${MM_STRESS_CI_ARGS:-}
