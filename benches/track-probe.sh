#!/usr/bin/env bash
# The tracker's outside probe (issue 15): separate binaries with `System`, `System` plus one
# thread-local add per call (the floor), and `TrackedAlloc<System>` as the global allocator,
# each thread churning `vec![x; 16 + (i % 8) * 24].into_boxed_slice()` through 64 slots
# (one alloc and one free per iteration). Two shapes: the loop compiled in the binary (the
# allocator inlined into it, as in the issue's probe) and in a library crate (reached
# through `__rust_alloc`, as from std and other crates). Runs ROUNDS rounds (system, floor,
# tracked back to back in each) at 1 and 2 threads and prints the medians of wall and
# thread-CPU time per iteration and the median of the per-round ratios to system. Then, with
# valgrind installed, instructions per allocator call above `System` from cachegrind
# (deterministic, unlike the times).
#
# usage: benches/track-probe.sh [ROUNDS (5)] [ITERS (10000000)]
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-5}
iters=${2:-10000000}
cargo build -q --release -p mm-benches --example track_probe_system \
    --example track_probe_floor --example track_probe_tracked
bin="${CARGO_TARGET_DIR:-target}/release/examples"
out=$(mktemp)
trap 'rm -f "$out" "$out".cg.*' EXIT
for shape in inline extern; do
    for threads in 1 2; do
        for ((r = 0; r < rounds; r++)); do
            for kind in system floor tracked; do
                echo "$shape $threads $kind $("$bin/track_probe_$kind" "$threads" "$iters" "$shape")" >>"$out"
            done
        done
    done
done
python3 - "$out" "$rounds" "$iters" <<'PY'
import statistics as st, sys
rows = [l.split() for l in open(sys.argv[1])]
rounds, iters = int(sys.argv[2]), int(sys.argv[3])
print(f"{rounds} rounds of {iters:,} iterations per thread; ns per iteration (median) and "
      "ratio to system (median of per-round ratios)")
print(f"{'shape':>6} {'threads':>7} {'kind':>8} {'wall':>8} {'cpu':>8} {'wall/sys':>9} {'cpu/sys':>8}")
for shape in ("inline", "extern"):
    for t in ("1", "2"):
        got = {k: [(float(r[3].split('=')[1]), float(r[4].split('=')[1]))
                   for r in rows if r[0] == shape and r[1] == t and r[2] == k]
               for k in ("system", "floor", "tracked")}
        for k, v in got.items():
            wr = st.median(a[0] / b[0] for a, b in zip(v, got["system"]))
            cr = st.median(a[1] / b[1] for a, b in zip(v, got["system"]))
            print(f"{shape:>6} {t:>7} {k:>8} {st.median(a[0] for a in v):8.3f} "
                  f"{st.median(a[1] for a in v):8.3f} {(wr - 1) * 100:+8.1f}% {(cr - 1) * 100:+7.1f}%")
PY
if command -v valgrind >/dev/null; then
    n=1000000
    for shape in inline extern; do
        for kind in system floor tracked; do
            valgrind -q --tool=cachegrind --cache-sim=no \
                --cachegrind-out-file="$out.cg.$shape.$kind" \
                "$bin/track_probe_$kind" 1 "$n" "$shape" >/dev/null 2>&1
        done
    done
    python3 - "$out" "$n" <<'PY'
import sys
def ir(path):
    for line in open(path):
        if line.startswith("summary:"):
            return int(line.split()[1])
base, n = sys.argv[1], int(sys.argv[2])
calls = 2 * n - 64  # n allocs and n - 64 frees
print(f"cachegrind, 1 thread, {n:,} iterations: instructions per allocator call above System")
for shape in ("inline", "extern"):
    s = ir(f"{base}.cg.{shape}.system")
    print(f"  {shape:>6}: " + "  ".join(
        f"{k} {(ir(f'{base}.cg.{shape}.{k}') - s) / calls:+.2f}" for k in ("floor", "tracked")))
PY
fi
