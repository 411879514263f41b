#!/usr/bin/env bash
# Runs the loom models (tests/loom*.rs) of every crate that has them, in their own
# target directory since `--cfg loom` rebuilds every dependency.
set -euo pipefail
cd "$(dirname "$0")/.."
export RUSTFLAGS="--cfg loom ${RUSTFLAGS:-}"
export LOOM_MAX_PREEMPTIONS="${LOOM_MAX_PREEMPTIONS:-2}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR_LOOM:-target/loom}"
crates=()
for dir in crates/*/; do
    if compgen -G "${dir}tests/loom*.rs" >/dev/null; then
        crates+=("$(basename "$dir")")
    fi
done
if [ ${#crates[@]} -eq 0 ]; then
    echo "no loom models yet"
    exit 0
fi
# One cargo invocation for every crate, so the `--cfg loom` dependency graph is built once.
args=()
for c in "${crates[@]}"; do args+=(-p "$c"); done
names=()
for f in crates/*/tests/loom*.rs; do names+=("$(basename "$f" .rs)"); done
# Only the loom test targets: the rest of a crate's tests are not written for loom.
targets=()
for n in $(printf '%s\n' "${names[@]}" | sort -u); do targets+=(--test "$n"); done
echo "loom: ${crates[*]}"
cargo test --release --locked "${args[@]}" "${targets[@]}"
