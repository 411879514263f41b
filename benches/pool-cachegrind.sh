#!/usr/bin/env bash
# Instructions per round trip of each pool probe case (benches/benches/pool_probe.rs), from
# cachegrind: two single-threaded runs of one case with different iteration counts, the
# difference divided by the difference in iterations (each run does ITERS / 100 warm-up
# iterations and then ITERS), so start-up and the warm-up's misses cancel out. Unlike the
# times, these counts do not move with the machine's load.
#
# usage: benches/pool-cachegrind.sh [PROBE_BINARY]
#   (default: builds the probe and uses the newest one under $CARGO_TARGET_DIR or target/)
set -euo pipefail
bin=${1:+$(realpath "$1")}
cd "$(dirname "$0")/.."
command -v valgrind >/dev/null || { echo "pool-cachegrind: valgrind is not installed"; exit 1; }
if [ -z "$bin" ]; then
    cargo bench -q -p mm-benches --bench pool_probe --no-run
    bin=$(ls -t "${CARGO_TARGET_DIR:-target}"/release/deps/pool_probe-* | grep -v '\.d$' | head -1)
fi
irefs() {
    PROBE_CASE="$1" PROBE_THREADS=1 PROBE_ROUNDS=1 PROBE_ITERS="$2" \
        valgrind --tool=cachegrind --cache-sim=no --cachegrind-out-file=/dev/null \
        "$bin" --bench 2>&1 | grep "I *refs" | tr -d ',' | awk '{print $NF}'
}
lo=100000
hi=300000
for case in "ObjectPool acquire_ref" "ObjectPool acquire (owned guard)" \
    "typed-reset acquire_ref" "typed-reset acquire (owned)" "BufferPool acquire_ref" "BufferPool acquire 4 KiB" \
    "lockfree-object-pool" "mimalloc"; do
    a=$(irefs "$case" "$lo")
    b=$(irefs "$case" "$hi")
    printf '%-34s %4d instructions per iteration\n' "$case" $(((b - a) / ((hi - lo) * 101 / 100)))
done
