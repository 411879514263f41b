#!/usr/bin/env bash
# A short run of the main job (`--quick`): every deterministic check (leaks, allocations per
# request, reuse, budgets) is enforced; timing ratios are printed but only warn, since CI
# machines are shared. The full run (`cargo run --release -p mm-stress`) enforces them too.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck disable=SC2086
cargo run --release --locked -p mm-stress -- ${MM_STRESS_CI_ARGS:---quick}
